//! The short report `alloctrace record` prints about the run it just recorded.

use std::path::{Path, PathBuf};

use crate::analysis::analyze_with;
use crate::cmd_leaks::leak_report;
use crate::report_table::{bytes, count};
use crate::suppressions::Suppressions;
use crate::symbols::{SharedSymbolizer, Symbols};

/// Traces that get the full report; past this many, the first trace gets it
/// and the others one line each.
const FULL_REPORTS: usize = 3;

/// Lines for the other traces, at most (those with heap errors, then the
/// busiest, come first: a wrapper script's program is not lost among the
/// script's small helpers).
const MAX_LINES: usize = 15;

/// What the report says about one trace.
struct Brief {
    trace: PathBuf,
    program: String,
    allocations: u64,
    frees: u64,
    bytes_allocated: u64,
    peak: u64,
    leaked_bytes: u64,
    leaked_blocks: u64,
    leak_sites: usize,
    errors: u64,
    /// `BYTES from FRAME`: the largest leak group's size and innermost frame.
    largest_leak: Option<String>,
    /// "killed by signal 6 (SIGABRT)" or "replaced by exec" when the program
    /// did not exit: its still-live blocks are then not all leaks.
    cut_short: Option<String>,
}

/// Analyses every trace of a recording (the root's first) and prints, to
/// stderr (like the recorder's own messages, so the program's stdout stays
/// its own), for each: allocations, peak, leaks, errors and the commands to
/// dig deeper; one line each when there are many. Each analysis is cached
/// beside its trace, so the suggested commands start from it. A trace that
/// cannot be analysed gets a warning; the recording never fails here.
pub fn report_all(traces: &[PathBuf]) {
    // Shell scripts and build tools run the same few programs many times:
    // one symbolizer reads each module's debug info once for all of them.
    let shared = SharedSymbolizer::new();
    let mut briefs = Vec::new();
    for t in traces {
        match brief(t, &shared) {
            Ok(b) => briefs.push(b),
            Err(e) => eprintln!(
                "alloctrace: warning: could not analyse {}: {e:#}",
                t.display()
            ),
        }
    }
    if briefs.len() <= FULL_REPORTS {
        briefs.iter().for_each(print_full);
        return;
    }
    print_full(&briefs[0]);
    let mut rest: Vec<&Brief> = briefs[1..].iter().collect();
    rest.sort_by_key(|b| {
        (
            std::cmp::Reverse(b.errors),
            std::cmp::Reverse(b.allocations),
        )
    });
    eprintln!(
        "alloctrace: {} more traces, one per process image (children, exec'd programs):",
        rest.len()
    );
    eprintln!(
        "  {:>11}  {:>10}  {:>10}  {:>8}  {:>6}  {:<12}  trace",
        "allocations", "peak", "leaked", "blocks", "errors", "program"
    );
    for b in rest.iter().take(MAX_LINES) {
        eprintln!(
            "  {:>11}  {:>10}  {:>10}  {:>8}  {:>6}  {:<12}  {}",
            count(b.allocations),
            bytes(b.peak),
            bytes(b.leaked_bytes),
            count(b.leaked_blocks),
            count(b.errors),
            b.program,
            b.trace.display()
        );
    }
    if rest.len() > MAX_LINES {
        eprintln!(
            "  … and {} more with no heap errors and fewer allocations",
            rest.len() - MAX_LINES
        );
    }
    eprintln!("  more: alloctrace summary|leaks|errors TRACE");
}

/// Analyses `trace`, caches the analysis beside it, and sums it up.
fn brief(trace: &Path, shared: &SharedSymbolizer) -> anyhow::Result<Brief> {
    let a = analyze_with(trace, None, true)?;
    crate::cache::save(trace, &a);
    a.warn_incomplete();
    let t = &a.result.totals;
    let mut syms = Symbols::shared(&a.result.modules, shared);
    let leaks = leak_report(
        &a,
        &mut syms,
        &Suppressions::parse(crate::suppressions::DEFAULT),
    )?;
    let largest_leak = leaks.leaks.first().and_then(|g| {
        let stack = crate::symbols::skip_plumbing(&g.stack).0;
        stack.first().map(|f| {
            format!(
                "{} from {}{}",
                bytes(g.bytes),
                crate::report_table::table_frame(f),
                named_caller(stack)
            )
        })
    });
    let program = a
        .header
        .cmdline
        .first()
        .map(|c| c.rsplit('/').next().unwrap_or(c).to_string())
        .unwrap_or_default();
    Ok(Brief {
        trace: trace.to_path_buf(),
        program,
        allocations: t.allocations,
        frees: t.frees,
        bytes_allocated: t.bytes_allocated,
        peak: t.peak_live_bytes,
        leaked_bytes: leaks.leaked_bytes,
        leaked_blocks: leaks.leaked_allocations,
        leak_sites: leaks.leaks.len(),
        errors: t.errors_by_kind.values().sum(),
        largest_leak,
        cut_short: a.cut_short().then(|| a.ended()).flatten(),
    })
}

/// The full report of one trace.
fn print_full(b: &Brief) {
    let p = b.trace.display();
    eprintln!("alloctrace: {p}");
    eprintln!(
        "  {} allocations, {} frees, {} allocated, peak {} live",
        count(b.allocations),
        count(b.frees),
        bytes(b.bytes_allocated),
        bytes(b.peak)
    );
    eprintln!(
        "  leaked {} in {} blocks from {} sites; {} heap errors",
        bytes(b.leaked_bytes),
        count(b.leaked_blocks),
        b.leak_sites,
        count(b.errors)
    );
    if let Some(l) = &b.largest_leak {
        eprintln!("  largest leak: {l}");
    }
    if let Some(how) = &b.cut_short {
        eprintln!("  the program was {how}: blocks still in use then count as leaked");
    }
    eprintln!("  more: alloctrace summary {p}");
    if b.leak_sites > 0 {
        eprintln!("        alloctrace leaks {p}");
    }
    if b.errors > 0 {
        eprintln!("        alloctrace errors {p}");
    }
}

/// ` (called from NAME)` for a stack whose innermost frame has no name (a
/// stripped or static function): the nearest caller that has one, so the
/// one-line report still says where to look. Empty otherwise.
fn named_caller(stack: &[crate::symbols::Frame]) -> String {
    if stack.first().is_some_and(|f| f.function.is_some()) {
        return String::new();
    }
    stack
        .iter()
        .find_map(|f| f.function.as_deref())
        .map(|name| format!(" (called from {name})"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use crate::symbols::Frame;

    fn frame(function: Option<&str>) -> Frame {
        Frame {
            function: function.map(str::to_string),
            file: None,
            line: None,
            module: Some("/usr/bin/python3.11".to_string()),
            address: 0x1000,
            offset: 0x62d1d9,
            inlined: false,
        }
    }

    #[test]
    fn unnamed_innermost_frames_name_their_nearest_named_caller() {
        let stack = [
            frame(None),
            frame(None),
            frame(Some("_PyObject_GC_New")),
            frame(Some("main")),
        ];
        assert_eq!(
            super::named_caller(&stack),
            " (called from _PyObject_GC_New)"
        );
        assert_eq!(super::named_caller(&stack[2..]), "");
        assert_eq!(super::named_caller(&[frame(None)]), "");
        assert_eq!(super::named_caller(&[]), "");
    }
}
