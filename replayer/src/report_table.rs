//! Side-by-side tables of allocators, one per trace (comfy-table).

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};

use crate::plan::Plan;
use crate::run::{Outcome, Stat};

fn mib(v: f64) -> String {
    format!("{:.1}", v / (1024.0 * 1024.0))
}

/// `median ±spread/2` with `f` formatting each value.
fn pm(s: Stat, f: impl Fn(f64) -> String) -> String {
    if s.spread > 0.0 {
        format!("{} ±{}", f(s.median), f(s.spread / 2.0))
    } else {
        f(s.median)
    }
}

/// The table of one trace's outcomes.
pub fn table(trace: &str, plan: &Plan, outcomes: &[Outcome]) -> String {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    // Each column is its header and how to fill it, so the two cannot drift apart.
    type Column = (&'static str, fn(&Outcome) -> String);
    fn calls(o: &Outcome, f: fn(&crate::backend::OsCalls) -> u64) -> String {
        let c = o.median_run().and_then(|r| r.os_calls);
        c.map_or("-".into(), |c| f(&c).to_string())
    }
    const COLUMNS: &[Column] = &[
        ("allocator", |o| o.allocator.clone()),
        ("runs", |o| o.runs.len().to_string()),
        ("wall ms", |o| {
            pm(o.stat(|r| r.wall_ns as f64), |v| format!("{:.2}", v / 1e6))
        }),
        ("cpu ms", |o| {
            pm(o.stat(|r| r.cpu_ns as f64), |v| format!("{:.2}", v / 1e6))
        }),
        ("ns/op", |o| {
            pm(o.stat(|r| r.op_mean_ns), |v| format!("{v:.0}"))
        }),
        ("p99 ns", |o| {
            pm(o.stat(|r| r.op_p99_ns as f64), |v| format!("{v:.0}"))
        }),
        ("peak RSS MiB", |o| {
            pm(o.stat(|r| r.peak_rss_bytes as f64), mib)
        }),
        ("footprint MiB", |o| {
            pm(o.stat(|r| r.footprint_peak_bytes as f64), mib)
        }),
        ("live MiB", |o| {
            pm(o.stat(|r| r.live_peak_bytes as f64), mib)
        }),
        ("frag@peak", |o| {
            pm(o.stat(|r| r.fragmentation_at_peak), |v| format!("{v:.2}"))
        }),
        ("frag avg", |o| {
            pm(o.stat(|r| r.fragmentation_over_time), |v| format!("{v:.2}"))
        }),
        ("brk", |o| calls(o, |c| c.brk)),
        ("mmap", |o| calls(o, |c| c.mmap)),
        ("munmap", |o| calls(o, |c| c.munmap)),
        ("madvise", |o| calls(o, |c| c.madvise)),
    ];
    t.set_header(COLUMNS.iter().map(|c| c.0).collect::<Vec<_>>());
    for o in outcomes {
        let row: Vec<String> = COLUMNS.iter().map(|c| (c.1)(o)).collect();
        t.add_row(row.into_iter().enumerate().map(|(i, s)| {
            let cell = Cell::new(s);
            if i == 0 {
                cell
            } else {
                cell.set_alignment(CellAlignment::Right)
            }
        }));
    }
    let s = &plan.skipped;
    format!(
        "{trace}: {} ops on {} threads, live peak {} MiB in the trace; skipped {} (double frees {}, invalid frees {}, failed allocations {})\n{t}",
        plan.ops(),
        plan.threads.len(),
        mib(plan.peak_live_bytes as f64),
        s.total(),
        s.double_frees,
        s.invalid_frees,
        s.failed_allocs,
    )
}
