//! `alloctrace replay`: arguments and entry points for the `alloctrace` binary.
//!
//! `main` calls [`driver_main_if_requested`] first thing (a replay driver
//! process is this same binary), then dispatches `replay` to [`replay`], whose
//! result is the exit code: 0, or 1 when the regression gate failed.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::Touch;
use crate::driver::ReplayOptions;
use crate::gate;
use crate::plan::Plan;
use crate::report_json::{self, GateReport, Report};
use crate::report_table;
use crate::run::{run_allocator, AllocatorSpec, Outcome, RunConfig};

pub use crate::preload_driver::driver_main_if_requested;

/// Arguments of `alloctrace replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Trace files to replay.
    #[arg(required = true, value_name = "TRACE")]
    pub traces: Vec<PathBuf>,
    /// Allocator: `alloctrace`, `glibc`, or the path of a malloc shared library
    /// (replayed in a driver process under LD_PRELOAD). Repeat or separate with
    /// commas to compare. Default: glibc and alloctrace.
    #[arg(short, long = "allocator", value_name = "NAME", value_delimiter = ',')]
    pub allocators: Vec<AllocatorSpec>,
    /// Runs per allocator and trace (reported as median and spread).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// How replayed blocks are written to.
    #[arg(long, value_enum, default_value_t = Touch::Page)]
    pub touch: Touch,
    /// Interval between memory samples, in milliseconds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub sample_ms: u64,
    /// Follow the recorded timing, FACTOR times faster (1 = recorded speed; 0 =
    /// as fast as possible). Pacing keeps threads interleaved as recorded, which
    /// makes peak RSS of multithreaded traces faithful; times are then not
    /// allocator speed.
    #[arg(long, value_name = "FACTOR", default_value_t = 0.0)]
    pub pace: f64,
    /// Write memory samples over time to FILE (CSV; JSON if it ends in .json).
    #[arg(long, value_name = "FILE")]
    pub samples: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Regression gate: the baseline allocator.
    #[arg(long, value_name = "NAME", requires = "candidate")]
    pub baseline: Option<AllocatorSpec>,
    /// Regression gate: the candidate allocator.
    #[arg(long, value_name = "NAME", requires = "baseline")]
    pub candidate: Option<AllocatorSpec>,
    /// Regression gate: largest accepted worsening, like `5%` or `0.05`.
    #[arg(long, value_name = "PCT", default_value = "5%", value_parser = gate::parse_threshold)]
    pub max_regression: f64,
    /// Replay `alloctrace` and `glibc` in fresh driver processes too.
    #[arg(long)]
    pub isolate: bool,
    /// Do not count kernel calls of glibc and libraries with an extra run under strace.
    #[arg(long)]
    pub no_strace: bool,
    /// Do not time each allocator call (no ns/op and p99 figures; less overhead).
    #[arg(long)]
    pub no_op_timing: bool,
    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// Which allocators run, in order: the gate's two, then the others named.
fn allocators(args: &ReplayArgs) -> Vec<AllocatorSpec> {
    let mut list: Vec<AllocatorSpec> = Vec::new();
    let gate = [&args.baseline, &args.candidate];
    for a in gate.into_iter().flatten().chain(&args.allocators) {
        if !list.contains(a) {
            list.push(a.clone());
        }
    }
    if list.is_empty() {
        list = vec![AllocatorSpec::Glibc, AllocatorSpec::Ours];
    }
    list
}

fn strace_available() -> bool {
    std::process::Command::new("strace")
        .arg("-V")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `alloctrace replay`; returns the exit code (1: the gate found a regression).
pub fn replay(args: &ReplayArgs) -> anyhow::Result<i32> {
    let specs = allocators(args);
    let cfg = RunConfig {
        runs: args.runs as usize,
        replay: ReplayOptions {
            touch: args.touch,
            op_timing: !args.no_op_timing,
            sample_interval: Duration::from_millis(args.sample_ms),
            pace: args.pace,
        },
        // A library runs in a driver process; the gate compares like with like.
        isolate: args.isolate
            || [&args.baseline, &args.candidate]
                .into_iter()
                .flatten()
                .any(|a| matches!(a, AllocatorSpec::Library(_))),
        strace: !args.no_strace && strace_available(),
    };
    let mut plans = Vec::new();
    for t in &args.traces {
        plans.push(Plan::from_trace(t)?);
    }
    let total: u64 = plans.iter().map(|p| p.ops()).sum::<u64>() * (specs.len() * cfg.runs) as u64;
    let bar = progress_bar(args, total);
    let mut all: Vec<(String, Vec<Outcome>)> = Vec::new();
    let mut base = 0u64;
    for (trace, plan) in args.traces.iter().zip(&plans) {
        let mut outcomes = Vec::new();
        for spec in &specs {
            bar.set_message(format!("{} × {}", trace.display(), spec.name()));
            let tick = |n: u64| bar.set_position(base + n);
            outcomes.push(run_allocator(trace, plan, spec, &cfg, &tick)?);
            base += plan.ops() * cfg.runs as u64;
        }
        all.push((trace.display().to_string(), outcomes));
    }
    bar.finish_and_clear();

    let gate_report = gate_verdict(args, &all);
    if let Some(path) = &args.samples {
        report_json::write_samples(path, &all)
            .with_context(|| format!("writing samples to {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let report = Report {
            version: report_json::JSON_VERSION,
            traces: all
                .iter()
                .zip(&plans)
                .map(|((t, o), p)| report_json::trace_report(t, p, o))
                .collect(),
            gate: gate_report.as_ref().map(|(g, _)| g.clone()),
        };
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        for ((t, o), p) in all.iter().zip(&plans) {
            writeln!(out, "{}", report_table::table(t, p, o))?;
        }
    }
    let Some((g, _)) = gate_report else {
        return Ok(0);
    };
    for r in &g.regressions {
        eprintln!(
            "alloctrace replay: regression: {} is worse than {}: {r}",
            g.candidate, g.baseline
        );
    }
    if !args.json {
        let verdict = if g.passed { "passed" } else { "FAILED" };
        writeln!(
            out,
            "gate {verdict}: {} against {} (max regression {:.1}%)",
            g.candidate,
            g.baseline,
            g.max_regression * 100.0
        )?;
    }
    Ok(if g.passed { 0 } else { 1 })
}

fn gate_verdict(args: &ReplayArgs, all: &[(String, Vec<Outcome>)]) -> Option<(GateReport, ())> {
    let (b, c) = (args.baseline.as_ref()?, args.candidate.as_ref()?);
    let (bn, cn) = (b.name(), c.name());
    let mut regressions = Vec::new();
    for (trace, outcomes) in all {
        let find = |n: &str| outcomes.iter().find(|o| o.allocator == n);
        if let (Some(bo), Some(co)) = (find(&bn), find(&cn)) {
            regressions.extend(gate::compare(trace, bo, co, args.max_regression));
        }
    }
    Some((
        GateReport {
            baseline: bn,
            candidate: cn,
            max_regression: args.max_regression,
            passed: regressions.is_empty(),
            regressions,
        },
        (),
    ))
}

fn progress_bar(args: &ReplayArgs, total: u64) -> ProgressBar {
    // Only long replays get a bar; indicatif draws nothing when stderr is not a terminal.
    if args.no_progress || total < 2_000_000 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {human_pos}/{human_len} ops {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}
