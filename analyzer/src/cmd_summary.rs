//! `alloctrace summary TRACE`: counts, bytes, peak, leaks, threads, duration,
//! size histogram, top sites, temporary allocations.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;
use traces::{AllocFn, FreeFn, StackId};

use crate::analysis::Analysis;
use crate::cmd_leaks::LeakReport;
use crate::pass::SiteStats;
use crate::report_json::JSON_VERSION;
use crate::report_table::{align_right, bytes, count, key_values, seconds, stack_cell, table};
use crate::symbols::{Frame, Symbols};
use crate::table;

/// One allocation site (JSON: elements of `top_by_count`, `top_by_bytes`).
#[derive(Clone, Debug, Serialize)]
pub struct Site {
    /// Allocations made at this stack.
    pub allocations: u64,
    /// Bytes they requested.
    pub bytes: u64,
    /// How many of them were temporary.
    pub temporary: u64,
    /// How many are still live at the end.
    pub live: u64,
    /// Allocation stack, innermost first.
    pub stack: Vec<Frame>,
    /// Stack id.
    pub stack_id: StackId,
}

/// Live bytes of one stack at the peak (JSON: elements of `peak_contributors`).
#[derive(Clone, Debug, Serialize)]
pub struct PeakContributor {
    /// Live bytes from this stack at the peak.
    pub bytes: u64,
    /// Allocation stack, innermost first.
    pub stack: Vec<Frame>,
    /// Stack id.
    pub stack_id: StackId,
}

/// One bucket of the size histogram: sizes in `[min, max]`.
#[derive(Clone, Debug, Serialize)]
pub struct Bucket {
    /// Smallest size in the bucket.
    pub min: u64,
    /// Largest size in the bucket.
    pub max: u64,
    /// Allocations in the bucket.
    pub count: u64,
}

/// The summary (JSON object of `summary --json`).
#[derive(Clone, Debug, Serialize)]
pub struct SummaryReport {
    /// Version of the JSON shapes.
    pub version: u32,
    /// Trace path.
    pub trace: String,
    /// Command line of the traced process.
    pub command: Vec<String>,
    /// Successful allocations (including reallocs that returned a block).
    pub allocations: u64,
    /// Valid releases.
    pub frees: u64,
    /// realloc/reallocarray calls.
    pub reallocs: u64,
    /// Allocations that returned NULL.
    pub failed_allocations: u64,
    /// Allocations per function (`malloc`, `operator new[]`, ...).
    pub allocations_by_function: BTreeMap<&'static str, u64>,
    /// Releases per function (`free`, `operator delete`, ...).
    pub frees_by_function: BTreeMap<&'static str, u64>,
    /// Bytes requested.
    pub bytes_allocated: u64,
    /// Highest live bytes.
    pub peak_live_bytes: u64,
    /// When the peak was reached, nanoseconds since the trace start.
    pub peak_time_ns: u64,
    /// Leaked blocks (after suppressions, as in `leaks`).
    pub leaked_allocations: u64,
    /// Leaked bytes (after suppressions).
    pub leaked_bytes: u64,
    /// Stacks with leaks (after suppressions).
    pub leaked_sites: u64,
    /// Blocks still live but suppressed (C library buffers).
    pub suppressed_allocations: u64,
    /// Temporary allocations: freed before the thread allocated anything else.
    pub temporary_allocations: u64,
    /// Heap errors found (see `errors`).
    pub errors: u64,
    /// Releases of blocks allocated before an attached trace started.
    pub unknown_before_attach: u64,
    /// Threads seen.
    pub threads: u64,
    /// Recording duration in nanoseconds.
    pub duration_ns: u64,
    /// How the program ended ("exited with code 0", "killed by signal 6
    /// (SIGABRT)", "replaced by exec"), `null` when the recording did not
    /// finish cleanly.
    pub ended: Option<String>,
    /// mmap calls.
    pub mmaps: u64,
    /// Allocation sizes by power of two (only non-empty buckets).
    pub size_histogram: Vec<Bucket>,
    /// Sites with the most allocations.
    pub top_by_count: Vec<Site>,
    /// Sites with the most bytes allocated.
    pub top_by_bytes: Vec<Site>,
    /// Stacks holding the most live bytes at the peak.
    pub peak_contributors: Vec<PeakContributor>,
    /// Set when the trace was cut: what was dropped.
    pub truncated: Option<String>,
}

/// Builds the summary; `leaks` is the leak report of the same analysis.
pub fn summary_report(
    a: &Analysis,
    syms: &mut Symbols,
    leaks: &LeakReport,
    top: usize,
) -> anyhow::Result<SummaryReport> {
    let r = &a.result;
    let t = &r.totals;
    let by_count = table::top_sites(&r.sites, "allocs", top)?;
    let by_bytes = table::top_sites(&r.sites, "bytes", top)?;
    let peak: Vec<(StackId, u64)> = r.peak_sites.iter().take(top).copied().collect();
    syms.prefetch(
        &a.stacks,
        by_count
            .iter()
            .chain(&by_bytes)
            .copied()
            .chain(peak.iter().map(|p| p.0)),
    );
    let stats: BTreeMap<StackId, SiteStats> = by_count
        .iter()
        .chain(&by_bytes)
        .filter_map(|id| r.sites.iter().find(|(k, _)| k == id).copied())
        .collect();
    let mut site = |id: &StackId| {
        let s = stats.get(id).copied().unwrap_or_default();
        Site {
            allocations: s.allocs,
            bytes: s.bytes,
            temporary: s.temporary,
            live: s.live,
            stack: syms.stack(&a.stacks, *id),
            stack_id: *id,
        }
    };
    let top_by_count = by_count.iter().map(&mut site).collect();
    let top_by_bytes = by_bytes.iter().map(&mut site).collect();
    let peak_contributors = peak
        .iter()
        .map(|(id, b)| PeakContributor {
            bytes: *b,
            stack: syms.stack(&a.stacks, *id),
            stack_id: *id,
        })
        .collect();
    let start = a.header.start_time.min(t.first_time);
    Ok(SummaryReport {
        version: JSON_VERSION,
        trace: a.path.clone(),
        command: a.header.cmdline.clone(),
        allocations: t.allocations,
        frees: t.frees,
        reallocs: t.reallocs,
        failed_allocations: t.failed,
        allocations_by_function: AllocFn::ALL
            .iter()
            .zip(&t.by_alloc_fn)
            .filter(|(_, n)| **n > 0)
            .map(|(f, n)| (f.name(), *n))
            .collect(),
        frees_by_function: FreeFn::ALL
            .iter()
            .zip(&t.by_free_fn)
            .filter(|(_, n)| **n > 0)
            .map(|(f, n)| (f.name(), *n))
            .collect(),
        bytes_allocated: t.bytes_allocated,
        peak_live_bytes: t.peak_live_bytes,
        peak_time_ns: t.peak_time.saturating_sub(start),
        leaked_allocations: leaks.leaked_allocations,
        leaked_bytes: leaks.leaked_bytes,
        leaked_sites: leaks.leaks.len() as u64,
        suppressed_allocations: leaks.suppressed.count,
        temporary_allocations: t.temporary,
        errors: t.errors_by_kind.values().sum(),
        unknown_before_attach: t.unknown_before_attach,
        threads: r.threads as u64,
        duration_ns: a.duration(),
        ended: a.ended(),
        mmaps: t.mmaps,
        size_histogram: histogram(&t.histogram),
        top_by_count,
        top_by_bytes,
        peak_contributors,
        truncated: a.truncation.as_ref().map(|t| t.to_string()),
    })
}

fn histogram(h: &[u64]) -> Vec<Bucket> {
    h.iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| {
            let (min, max) = match i {
                0 => (0, 0),
                64 => (1 << 63, u64::MAX),
                _ => (1u64 << (i - 1), (1u64 << i) - 1),
            };
            Bucket {
                min,
                max,
                count: *n,
            }
        })
        .collect()
}

/// Prints the summary as tables.
pub fn print_table(out: &mut impl Write, s: &SummaryReport) -> std::io::Result<()> {
    writeln!(out, "Trace {} ({})", s.trace, s.command.join(" "))?;
    let funcs = |m: &BTreeMap<&str, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {}", count(*v)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows = [
        ("allocations", count(s.allocations)),
        ("  by function", funcs(&s.allocations_by_function)),
        ("frees (valid)", count(s.frees)),
        ("  calls by function", funcs(&s.frees_by_function)),
        ("reallocs", count(s.reallocs)),
        ("failed allocations", count(s.failed_allocations)),
        ("temporary allocations", count(s.temporary_allocations)),
        ("bytes allocated", bytes(s.bytes_allocated)),
        (
            "peak live bytes",
            format!(
                "{} at {}",
                bytes(s.peak_live_bytes),
                seconds(s.peak_time_ns)
            ),
        ),
        (
            "leaked",
            format!(
                "{} in {} blocks from {} stacks",
                bytes(s.leaked_bytes),
                count(s.leaked_allocations),
                s.leaked_sites
            ),
        ),
        ("heap errors", count(s.errors)),
        ("threads", count(s.threads)),
        ("duration", seconds(s.duration_ns)),
        (
            "ended",
            s.ended
                .clone()
                .unwrap_or_else(|| "unknown (the recording did not finish)".into()),
        ),
    ];
    writeln!(out, "{}", key_values(&rows))?;
    let mut h = table(&["size", "allocations"]);
    for b in &s.size_histogram {
        h.add_row(vec![
            format!("{} – {}", bytes(b.min), bytes(b.max)),
            count(b.count),
        ]);
    }
    align_right(&mut h, &[0, 1]);
    writeln!(out, "Sizes\n{h}")?;
    for (title, sites) in [
        ("Top sites by allocations", &s.top_by_count),
        ("Top sites by bytes", &s.top_by_bytes),
    ] {
        let mut t = table(&["allocations", "bytes", "temporary", "allocated at"]);
        for x in sites.iter() {
            t.add_row(vec![
                count(x.allocations),
                bytes(x.bytes),
                count(x.temporary),
                stack_cell(&x.stack),
            ]);
        }
        align_right(&mut t, &[0, 1, 2]);
        writeln!(out, "{title}\n{t}")?;
    }
    if !s.peak_contributors.is_empty() {
        let mut t = table(&["live bytes at peak", "allocated at"]);
        for p in &s.peak_contributors {
            t.add_row(vec![bytes(p.bytes), stack_cell(&p.stack)]);
        }
        align_right(&mut t, &[0]);
        writeln!(out, "Peak contributors\n{t}")?;
    }
    Ok(())
}
