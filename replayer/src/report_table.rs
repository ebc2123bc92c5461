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
    t.set_header(vec![
        "allocator",
        "runs",
        "wall ms",
        "cpu ms",
        "ns/op",
        "p99 ns",
        "peak RSS MiB",
        "footprint MiB",
        "live MiB",
        "frag@peak",
        "frag avg",
        "brk",
        "mmap",
        "munmap",
        "madvise",
    ]);
    for o in outcomes {
        let calls = o.median_run().and_then(|r| r.os_calls);
        let c = |f: fn(&crate::backend::OsCalls) -> u64| {
            calls.map_or("-".into(), |c| f(&c).to_string())
        };
        let row = vec![
            o.allocator.clone(),
            o.runs.len().to_string(),
            pm(o.stat(|r| r.wall_ns as f64), |v| format!("{:.2}", v / 1e6)),
            pm(o.stat(|r| r.cpu_ns as f64), |v| format!("{:.2}", v / 1e6)),
            pm(o.stat(|r| r.op_mean_ns), |v| format!("{v:.0}")),
            pm(o.stat(|r| r.op_p99_ns as f64), |v| format!("{v:.0}")),
            pm(o.stat(|r| r.peak_rss_bytes as f64), mib),
            pm(o.stat(|r| r.footprint_peak_bytes as f64), mib),
            pm(o.stat(|r| r.live_peak_bytes as f64), mib),
            pm(o.stat(|r| r.fragmentation_at_peak), |v| format!("{v:.2}")),
            pm(o.stat(|r| r.fragmentation_over_time), |v| format!("{v:.2}")),
            c(|c| c.brk),
            c(|c| c.mmap),
            c(|c| c.munmap),
            c(|c| c.madvise),
        ];
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
