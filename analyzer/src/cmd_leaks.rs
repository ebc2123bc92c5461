//! `alloctrace leaks TRACE`: blocks never freed, grouped by allocation stack.
//!
//! Every block still live when the trace ends is a leak, including blocks
//! whose last reference is dropped only at exit (there is no reachability
//! scan: a block the program never frees is reported). Groups whose stack
//! matches a suppression (the C library's own buffers by default, see
//! `default.supp`) are counted apart and not listed.

use serde::Serialize;
use std::io::Write;
use traces::StackId;

use crate::analysis::Analysis;
use crate::report_json::JSON_VERSION;
use crate::report_table::{align_right, bytes, count, stack_cell, table};
use crate::suppressions::Suppressions;
use crate::symbols::{Frame, Symbols};
use crate::table;

/// One leak group (JSON: an element of `leaks`).
#[derive(Clone, Debug, Serialize)]
pub struct LeakGroup {
    /// Blocks never freed from this stack.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Allocation stack, innermost first.
    pub stack: Vec<Frame>,
    /// Stack id in the trace (and in exported tables).
    pub stack_id: StackId,
}

/// What the suppressions hid (JSON `suppressed`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Suppressed {
    /// Blocks hidden.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Groups hidden.
    pub groups: u64,
}

/// The leak report (JSON object of `leaks --json`).
#[derive(Clone, Debug, Serialize)]
pub struct LeakReport {
    /// Version of the JSON shapes.
    pub version: u32,
    /// Trace path.
    pub trace: String,
    /// Leaked blocks (after suppressions).
    pub leaked_allocations: u64,
    /// Leaked bytes (after suppressions).
    pub leaked_bytes: u64,
    /// Groups, most bytes first.
    pub leaks: Vec<LeakGroup>,
    /// What suppressions hid.
    pub suppressed: Suppressed,
    /// How the program ended ("exited with code 0", "killed by signal 6
    /// (SIGABRT)"), `null` when the recording did not finish cleanly.
    pub ended: Option<String>,
    /// The program was killed or exec'd: blocks in use then are listed too.
    #[serde(skip)]
    pub cut_short: bool,
}

/// Groups the live blocks of `a` by stack, symbolizes and filters them.
pub fn leak_report(
    a: &Analysis,
    syms: &mut Symbols,
    sup: &Suppressions,
) -> anyhow::Result<LeakReport> {
    let groups = table::leak_groups(&a.result.live)?;
    syms.prefetch(&a.stacks, groups.iter().map(|g| g.0));
    let mut report = LeakReport {
        version: JSON_VERSION,
        trace: a.path.clone(),
        leaked_allocations: 0,
        leaked_bytes: 0,
        leaks: Vec::new(),
        suppressed: Suppressed::default(),
        ended: a.ended(),
        cut_short: a.cut_short(),
    };
    for (stack_id, n, b) in groups {
        let stack = syms.stack(&a.stacks, stack_id);
        if sup.matching(&stack).is_some() {
            report.suppressed.count += n;
            report.suppressed.bytes += b;
            report.suppressed.groups += 1;
            continue;
        }
        report.leaked_allocations += n;
        report.leaked_bytes += b;
        report.leaks.push(LeakGroup {
            count: n,
            bytes: b,
            stack,
            stack_id,
        });
    }
    Ok(report)
}

/// Prints the report as a table; at most `limit` groups (0: all).
pub fn print_table(out: &mut impl Write, r: &LeakReport, limit: usize) -> std::io::Result<()> {
    if r.leaks.is_empty() {
        writeln!(out, "No leaks in {}.", r.trace)?;
    } else {
        let mut t = table(&["#", "blocks", "bytes", "allocated at"]);
        let shown = if limit == 0 {
            r.leaks.len()
        } else {
            limit.min(r.leaks.len())
        };
        for (i, g) in r.leaks.iter().take(shown).enumerate() {
            t.add_row(vec![
                (i + 1).to_string(),
                count(g.count),
                bytes(g.bytes),
                stack_cell(&g.stack),
            ]);
        }
        align_right(&mut t, &[0, 1, 2]);
        writeln!(out, "{t}")?;
        if shown < r.leaks.len() {
            writeln!(
                out,
                "… {} more groups (--limit 0 shows all)",
                r.leaks.len() - shown
            )?;
        }
        writeln!(
            out,
            "{} leaked in {} blocks from {} stacks.",
            bytes(r.leaked_bytes),
            count(r.leaked_allocations),
            r.leaks.len()
        )?;
        if r.cut_short {
            writeln!(
                out,
                "Note: the program was {}; blocks still in use at that moment are listed too.",
                r.ended.as_deref().unwrap_or("did not exit")
            )?;
        }
    }
    if r.suppressed.count > 0 {
        writeln!(
            out,
            "Suppressed: {} in {} blocks from {} stacks (C library buffers; --no-default-suppressions shows them).",
            bytes(r.suppressed.bytes),
            count(r.suppressed.count),
            r.suppressed.groups
        )?;
    }
    Ok(())
}
