//! Encodes the synthetic churn stream in memory and prints events per second
//! of CPU time (user + system), which stays meaningful on a busy machine.
//!
//! `cargo run --release -p traces --example encspeed -- [EVENTS] [REPEATS] [collector]`
//!
//! `collector` writes like the recorder's collector: four threads' events
//! interleaved in rounds of a few hundred per thread, unordered, with
//! `Writer::advance` after each round, instead of one ordered stream.

use traces::synthetic::{Churn, ChurnConfig};
use traces::{ExitStatus, Header, Record, Trailer, Writer, WriterOptions};

fn cpu_seconds() -> f64 {
    // Nanoseconds on the CPU, from the scheduler (finer than clock ticks).
    if let Some(ns) = std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
    {
        return ns / 1e9;
    }
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name: utime is field 14, stime 15 (1-based).
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let events: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2_000_000);
    let repeats: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let collector = args.next().is_some_and(|a| a == "collector");
    let churn = Churn::new(ChurnConfig {
        events,
        ..Default::default()
    });
    let stacks: Vec<(u32, Vec<u64>)> = churn.stacks().map(|(i, f)| (i, f.to_vec())).collect();
    let mut recs: Vec<Record> = churn.collect();
    if collector {
        // Four threads, each its own quarter of the stream (so each thread's
        // address model sees a consistent history), times interleaved.
        let q = recs.len() / 4;
        for (i, r) in recs.iter_mut().enumerate() {
            r.thread = 1 + (i / q.max(1)).min(3) as u32;
            r.time = (i % q.max(1)) as u64 * 30 + r.thread as u64;
        }
    }
    let (c0, w0) = (cpu_seconds(), std::time::Instant::now());
    let mut bytes = 0;
    for _ in 0..repeats {
        let opts = WriterOptions {
            ordered: !collector,
            ..Default::default()
        };
        let mut w = Writer::new(
            Vec::with_capacity(8 << 20),
            &Header::synthetic(&["enc"]),
            opts,
        )?;
        for (id, f) in &stacks {
            w.define_stack(*id, f)?;
        }
        if collector {
            let q = recs.len() / 4;
            let round = 256;
            let mut at = 0;
            while at < q {
                for t in 0..4 {
                    for r in &recs[t * q + at..t * q + (at + round).min(q)] {
                        w.write(r)?;
                    }
                }
                at += round;
                w.advance(at as u64 * 30)?;
            }
        } else {
            for r in &recs {
                w.write(r)?;
            }
        }
        let out = w.finish(&Trailer {
            end_time: 0,
            exit: ExitStatus::Code(0),
            dropped_events: 0,
        })?;
        bytes = out.len();
    }
    let (cpu, wall) = (cpu_seconds() - c0, w0.elapsed().as_secs_f64());
    let n = events as f64 * repeats as f64;
    println!(
        "{events} events x {repeats}{}: {bytes} bytes ({:.3} B/event), {:.1} M events/s of CPU time ({cpu:.2} s), {:.1} M events/s wall",
        if collector { " (collector-style)" } else { "" },
        bytes as f64 / events as f64,
        n / cpu / 1e6,
        n / wall / 1e6
    );
    Ok(())
}
