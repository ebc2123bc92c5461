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
        if let Some(f) = crate::symbols::skip_plumbing(&g.stack).0.first() {
            eprintln!("  largest leak: {} from {}", bytes(g.bytes), f.display());
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
