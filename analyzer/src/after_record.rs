//! The short report `alloctrace record` prints about the run it just recorded.

use std::path::Path;

use crate::analysis::analyze_with;
use crate::cmd_leaks::leak_report;
use crate::report_table::{bytes, count};
use crate::suppressions::Suppressions;
use crate::symbols::Symbols;

/// Analyses `trace` and prints allocations, peak, leaks, errors, where the
/// trace is and the commands to dig deeper (to stderr, like the recorder's
/// own messages, so the program's stdout stays its own).
pub fn report(trace: &Path) -> anyhow::Result<()> {
    let a = analyze_with(trace, None, true)?;
    // The commands suggested below then start from this analysis.
    crate::cache::save(trace, &a);
    a.warn_truncation();
    let t = &a.result.totals;
    let mut syms = Symbols::new(&a.result.modules);
    let leaks = leak_report(
        &a,
        &mut syms,
        &Suppressions::parse(crate::suppressions::DEFAULT),
    )?;
    let errors: u64 = t.errors_by_kind.values().sum();
    let p = trace.display();
    eprintln!("alloctrace: {}", p);
    eprintln!(
        "  {} allocations, {} frees, {} allocated, peak {} live",
        count(t.allocations),
        count(t.frees),
        bytes(t.bytes_allocated),
        bytes(t.peak_live_bytes)
    );
    eprintln!(
        "  leaked {} in {} blocks from {} sites; {} heap errors",
        bytes(leaks.leaked_bytes),
        count(leaks.leaked_allocations),
        leaks.leaks.len(),
        count(errors)
    );
    if let Some(g) = leaks.leaks.first() {
        let stack = crate::symbols::skip_plumbing(&g.stack).0;
        if let Some(f) = stack.first() {
            eprintln!(
                "  largest leak: {} from {}{}",
                bytes(g.bytes),
                f.display(),
                named_caller(stack)
            );
        }
    }
    eprintln!("  more: alloctrace summary {p}");
    if !leaks.leaks.is_empty() {
        eprintln!("        alloctrace leaks {p}");
    }
    if errors > 0 {
        eprintln!("        alloctrace errors {p}");
    }
    Ok(())
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
