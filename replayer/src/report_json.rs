//! The `--json` report and the samples export. Field names are a public
//! interface (documented in `replayer/README.md`).

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::backend::OsCalls;
use crate::gate::Regression;
use crate::plan::{Plan, Skipped};
use crate::run::{Outcome, Stat};

/// Version of the JSON report layout.
pub const JSON_VERSION: u32 = 1;

/// The whole `--json` report.
#[derive(Serialize)]
pub struct Report {
    /// [`JSON_VERSION`].
    pub version: u32,
    /// One entry per trace.
    pub traces: Vec<TraceReport>,
    /// The gate's verdict, when `--baseline`/`--candidate` were given.
    pub gate: Option<GateReport>,
}

/// One trace and its allocators.
#[derive(Serialize)]
pub struct TraceReport {
    /// Trace path.
    pub trace: String,
    /// Ops replayed per run.
    pub ops: u64,
    /// Replay threads.
    pub threads: usize,
    /// Peak of live requested bytes.
    pub live_peak_bytes: u64,
    /// Blocks the trace never freed.
    pub live_at_end: u64,
    /// Trace events not replayed.
    pub skipped: Skipped,
    /// One entry per allocator.
    pub allocators: Vec<AllocatorReport>,
}

/// One allocator's runs on one trace, as median and spread.
#[derive(Serialize)]
pub struct AllocatorReport {
    /// Allocator name.
    pub allocator: String,
    /// Number of runs.
    pub runs: usize,
    /// Wall time.
    pub wall_ns: Stat,
    /// CPU time.
    pub cpu_ns: Stat,
    /// Ops per second of wall time.
    pub ops_per_sec: Stat,
    /// Mean time per allocator call.
    pub op_mean_ns: Stat,
    /// 99th percentile time per allocator call.
    pub op_p99_ns: Stat,
    /// Peak RSS of the replaying process.
    pub peak_rss_bytes: Stat,
    /// RSS before the replay.
    pub rss_baseline_bytes: Stat,
    /// Peak footprint.
    pub footprint_peak_bytes: Stat,
    /// Highest live bytes sampled during the replay.
    pub live_peak_bytes: Stat,
    /// Footprint peak over live peak.
    pub fragmentation_at_peak: Stat,
    /// Sampled footprint over sampled live bytes.
    pub fragmentation_over_time: Stat,
    /// How footprint is measured.
    pub footprint_source: String,
    /// Kernel calls of the median run.
    pub os_calls: Option<OsCalls>,
    /// Where `os_calls` comes from.
    pub os_calls_source: Option<String>,
    /// Allocations the allocator failed, summed over runs.
    pub failed_allocs: u64,
}

/// The gate's verdict.
#[derive(Clone, Serialize)]
pub struct GateReport {
    /// Baseline allocator.
    pub baseline: String,
    /// Candidate allocator.
    pub candidate: String,
    /// Threshold as a fraction.
    pub max_regression: f64,
    /// Whether no regression was found.
    pub passed: bool,
    /// Every regression found.
    pub regressions: Vec<Regression>,
}

/// The report entry of one allocator.
pub fn allocator_report(o: &Outcome) -> AllocatorReport {
    let median = o.median_run();
    AllocatorReport {
        allocator: o.allocator.clone(),
        runs: o.runs.len(),
        wall_ns: o.stat(|r| r.wall_ns as f64),
        cpu_ns: o.stat(|r| r.cpu_ns as f64),
        ops_per_sec: o.stat(|r| r.ops as f64 / (r.wall_ns.max(1) as f64 / 1e9)),
        op_mean_ns: o.stat(|r| r.op_mean_ns),
        op_p99_ns: o.stat(|r| r.op_p99_ns as f64),
        peak_rss_bytes: o.stat(|r| r.peak_rss_bytes as f64),
        rss_baseline_bytes: o.stat(|r| r.rss_baseline_bytes as f64),
        footprint_peak_bytes: o.stat(|r| r.footprint_peak_bytes as f64),
        live_peak_bytes: o.stat(|r| r.live_peak_bytes as f64),
        fragmentation_at_peak: o.stat(|r| r.fragmentation_at_peak),
        fragmentation_over_time: o.stat(|r| r.fragmentation_over_time),
        footprint_source: median.map_or_else(String::new, |r| r.footprint_source.clone()),
        os_calls: median.and_then(|r| r.os_calls),
        os_calls_source: median.and_then(|r| r.os_calls_source.clone()),
        failed_allocs: o.runs.iter().map(|r| r.failed_allocs).sum(),
    }
}

/// The report entry of one trace.
pub fn trace_report(trace: &str, plan: &Plan, outcomes: &[Outcome]) -> TraceReport {
    TraceReport {
        trace: trace.to_string(),
        ops: plan.ops(),
        threads: plan.threads.len(),
        live_peak_bytes: plan.peak_live_bytes,
        live_at_end: plan.live_at_end,
        skipped: plan.skipped.clone(),
        allocators: outcomes.iter().map(allocator_report).collect(),
    }
}

/// Writes every run's samples to `path`: CSV, or JSON when it ends in `.json`.
/// Columns: trace, allocator, run, t_ns, live_bytes, footprint_bytes, rss_bytes,
/// fragmentation.
pub fn write_samples(path: &Path, all: &[(String, Vec<Outcome>)]) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct Row<'a> {
        trace: &'a str,
        allocator: &'a str,
        run: usize,
        t_ns: u64,
        live_bytes: u64,
        footprint_bytes: u64,
        rss_bytes: u64,
        fragmentation: Option<f64>,
    }
    let mut rows = Vec::new();
    for (trace, outcomes) in all {
        for o in outcomes {
            for (run, r) in o.runs.iter().enumerate() {
                for s in &r.samples {
                    rows.push(Row {
                        trace,
                        allocator: &o.allocator,
                        run,
                        t_ns: s.t_ns,
                        live_bytes: s.live_bytes,
                        footprint_bytes: s.footprint_bytes,
                        rss_bytes: s.rss_bytes,
                        fragmentation: s.fragmentation(),
                    });
                }
            }
        }
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::to_writer_pretty(&mut out, &rows)?;
    } else {
        writeln!(
            out,
            "trace,allocator,run,t_ns,live_bytes,footprint_bytes,rss_bytes,fragmentation"
        )?;
        for r in &rows {
            writeln!(
                out,
                "{},{},{},{},{},{},{},{}",
                csv_field(r.trace),
                csv_field(r.allocator),
                r.run,
                r.t_ns,
                r.live_bytes,
                r.footprint_bytes,
                r.rss_bytes,
                r.fragmentation.map_or(String::new(), |f| format!("{f:.4}"))
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
