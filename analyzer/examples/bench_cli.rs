//! The analyzer's commands, plus `record` through the recorder's library API,
//! as one small binary for `bench/run.sh` (the `alloctrace` binary gets the
//! same commands from `analyzer::cli`; this one needs no other crate).
//!
//! Usage: `bench_cli record OUT -- CMD ARGS…`, `bench_cli summary|leaks|errors|export …`

use std::ffi::OsString;
use std::path::PathBuf;

use analyzer::cli;
use clap::Parser;

#[derive(Parser)]
enum Cmd {
    /// Record CMD into OUT.
    Record {
        /// Trace to write.
        output: PathBuf,
        /// Program and arguments.
        #[arg(last = true, required = true)]
        command: Vec<OsString>,
    },
    /// See `alloctrace summary`.
    Summary(cli::SummaryArgs),
    /// See `alloctrace leaks`.
    Leaks(cli::LeaksArgs),
    /// See `alloctrace errors`.
    Errors(cli::ErrorsArgs),
    /// See `alloctrace export`.
    Export(cli::ExportArgs),
    /// Only read the trace (the decoder's share of a pass): prints records and seconds.
    Decode {
        /// The trace.
        trace: PathBuf,
    },
    /// Only the pass, over the trace's first records decoded beforehand.
    Pass {
        /// The trace.
        trace: PathBuf,
        /// Records to decode first.
        #[arg(default_value_t = 5_000_000)]
        records: usize,
        /// Passes over those records (each a new pass; the time is their total).
        #[arg(default_value_t = 1)]
        repeat: usize,
    },
}

/// CPU seconds (user + system) of this process so far: meaningful on a busy
/// machine where wall time is not.
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> anyhow::Result<()> {
    let code = match Cmd::parse() {
        Cmd::Record { output, command } => {
            let opts = recorder::RecordOptions {
                output,
                command,
                max_depth: 64,
                quiet: true,
                time_resolution: recorder::DEFAULT_TIME_RESOLUTION,
            };
            let out = recorder::record(&opts)?;
            cli::after_record(&out.traces)?;
            out.exit_code
        }
        Cmd::Summary(a) => cli::summary(&a)?,
        Cmd::Leaks(a) => cli::leaks(&a)?,
        Cmd::Errors(a) => cli::errors(&a)?,
        Cmd::Export(a) => cli::export(&a)?,
        Cmd::Decode { trace } => {
            let (t, c) = (std::time::Instant::now(), cpu_seconds());
            let mut r = traces::Reader::open(&trace)?;
            let (mut b, mut n) = (traces::EventBatch::new(), 0);
            while r.next_batch(&mut b)? {
                n += b.len();
            }
            println!(
                "decode: {n} records in {:.3} s wall, {:.2} s CPU",
                t.elapsed().as_secs_f64(),
                cpu_seconds() - c
            );
            0
        }
        Cmd::Pass {
            trace,
            records,
            repeat,
        } => {
            let mut r = traces::Reader::open(&trace)?;
            let flags = r.header().flags;
            let (mut batches, mut n) = (Vec::new(), 0);
            let mut b = traces::EventBatch::new();
            while n < records && r.next_batch(&mut b)? {
                n += b.len();
                batches.push(std::mem::take(&mut b));
            }
            let (t, c) = (std::time::Instant::now(), cpu_seconds());
            let mut res = None;
            for _ in 0..repeat.max(1) {
                let mut pass = analyzer::Pass::new(flags);
                for b in &batches {
                    pass.batch(b);
                }
                res = Some(pass.finish());
            }
            let res = res.expect("at least one pass");
            let n = n * repeat.max(1);
            let (s, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
            println!(
                "pass: {n} records in {s:.3} s wall, {cpu:.2} s CPU ({:.1} ns/record of CPU), {} allocations",
                cpu * 1e9 / n.max(1) as f64,
                res.totals.allocations
            );
            0
        }
    };
    std::process::exit(code)
}
