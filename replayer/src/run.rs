//! Runs one allocator on one trace `N` times, in this process or in replay
//! driver processes, and summarizes the runs as median and spread.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::backend::libc_malloc::{LibcMalloc, Which};
use crate::backend::ours::Ours;
use crate::driver::{replay, ReplayOptions, RunResult};
use crate::plan::Plan;
use crate::preload_driver::{self, DriverBackend, Request};

/// An allocator named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllocatorSpec {
    /// `alloctrace`: our allocator.
    Ours,
    /// `glibc`: the C library's malloc.
    Glibc,
    /// A malloc shared library, replayed in a driver process under `LD_PRELOAD`.
    Library(PathBuf),
}

impl FromStr for AllocatorSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "alloctrace" | "ours" => Ok(AllocatorSpec::Ours),
            "glibc" => Ok(AllocatorSpec::Glibc),
            p => {
                let path = Path::new(p);
                if !path.is_file() {
                    return Err(format!(
                        "`{p}` is neither `alloctrace`, `glibc` nor a malloc library file"
                    ));
                }
                Ok(AllocatorSpec::Library(
                    path.canonicalize().map_err(|e| format!("{p}: {e}"))?,
                ))
            }
        }
    }
}

impl AllocatorSpec {
    /// The name reports use: `alloctrace`, `glibc`, or the library's file name.
    pub fn name(&self) -> String {
        match self {
            AllocatorSpec::Ours => "alloctrace".into(),
            AllocatorSpec::Glibc => "glibc".into(),
            AllocatorSpec::Library(p) => p
                .file_name()
                .map_or_else(|| p.display().to_string(), |f| f.to_string_lossy().into()),
        }
    }
}

/// How the runs are made.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Runs per allocator and trace.
    pub runs: usize,
    /// Replay options of each run.
    pub replay: ReplayOptions,
    /// Run `alloctrace` and `glibc` in driver processes too (clean RSS per run).
    pub isolate: bool,
    /// Count the kernel calls of allocators that do not count them themselves
    /// with one extra run under `strace`.
    pub strace: bool,
}

/// Median, extremes and spread (max − min) of one metric over the runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// Median (mean of the middle two for an even count).
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// `max - min`, the run-to-run spread.
    pub spread: f64,
}

impl Stat {
    /// The statistic of `values` (all zero when empty).
    pub fn of(mut values: Vec<f64>) -> Stat {
        if values.is_empty() {
            return Stat::default();
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Stat {
            median,
            min: values[0],
            max: values[n - 1],
            spread: values[n - 1] - values[0],
        }
    }
}

/// One allocator's runs on one trace.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome {
    /// Allocator name (see [`AllocatorSpec::name`]).
    pub allocator: String,
    /// Every run, in order.
    pub runs: Vec<RunResult>,
}

impl Outcome {
    /// The statistic of a metric over the runs.
    pub fn stat(&self, metric: impl Fn(&RunResult) -> f64) -> Stat {
        Stat::of(self.runs.iter().map(metric).collect())
    }

    /// The run whose wall time is the median (for samples and kernel call counts).
    pub fn median_run(&self) -> Option<&RunResult> {
        let mut idx: Vec<usize> = (0..self.runs.len()).collect();
        idx.sort_by_key(|&i| self.runs[i].wall_ns);
        idx.get(idx.len() / 2).map(|&i| &self.runs[i])
    }
}

/// Runs `spec` on `trace` (`plan` is its plan, for runs in this process).
pub fn run_allocator(
    trace: &Path,
    plan: &Plan,
    spec: &AllocatorSpec,
    cfg: &RunConfig,
    progress: &dyn Fn(u64),
) -> anyhow::Result<Outcome> {
    let mut runs = Vec::with_capacity(cfg.runs);
    let in_process = !cfg.isolate && !matches!(spec, AllocatorSpec::Library(_));
    for i in 0..cfg.runs {
        let done = i as u64 * plan.ops();
        let tick = |n: u64| progress(done + n);
        let r = if in_process {
            match spec {
                AllocatorSpec::Ours => replay(plan, &Ours::new()?, &cfg.replay, &tick),
                _ => replay(plan, &LibcMalloc::new(Which::Glibc), &cfg.replay, &tick),
            }
        } else {
            let r = preload_driver::spawn(&request(trace, spec, &cfg.replay), preload(spec), None)
                .with_context(|| format!("replaying {} with {}", trace.display(), spec.name()))?;
            tick(plan.ops());
            r
        };
        runs.push(r);
    }
    if cfg.strace && *spec != AllocatorSpec::Ours {
        match strace_counts(trace, spec, &cfg.replay) {
            Ok(calls) => {
                for r in &mut runs {
                    r.os_calls = Some(calls);
                    r.os_calls_source = Some("strace".into());
                }
            }
            Err(e) => eprintln!(
                "alloctrace replay: no kernel call counts for {}: {e:#}",
                spec.name()
            ),
        }
    }
    Ok(Outcome {
        allocator: spec.name(),
        runs,
    })
}

fn preload(spec: &AllocatorSpec) -> Option<&Path> {
    match spec {
        AllocatorSpec::Library(p) => Some(p),
        _ => None,
    }
}

fn request(trace: &Path, spec: &AllocatorSpec, opts: &ReplayOptions) -> Request {
    Request {
        trace: trace.to_path_buf(),
        backend: match spec {
            AllocatorSpec::Ours => DriverBackend::Ours,
            AllocatorSpec::Glibc => DriverBackend::Glibc,
            AllocatorSpec::Library(_) => DriverBackend::Preloaded,
        },
        options: opts.clone(),
    }
}

/// One extra driver run under `strace -f`, counting kernel calls between the
/// replay's start and end markers.
fn strace_counts(
    trace: &Path,
    spec: &AllocatorSpec,
    opts: &ReplayOptions,
) -> anyhow::Result<crate::backend::OsCalls> {
    let dir = std::env::temp_dir();
    let log = dir.join(format!(
        "alloctrace-replay-strace-{}.log",
        std::process::id()
    ));
    let opts = ReplayOptions {
        op_timing: false,
        ..opts.clone()
    };
    let res = preload_driver::spawn(&request(trace, spec, &opts), preload(spec), Some(&log));
    let text = std::fs::read_to_string(&log);
    let _ = std::fs::remove_file(&log);
    res?;
    preload_driver::count_strace_log(&text.context("reading the strace log")?)
        .context("the strace log has no replay markers")
}
