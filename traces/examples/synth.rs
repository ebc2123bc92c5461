//! Writes the synthetic churn stream to a trace and prints bytes per event.
//!
//! `cargo run --release -p traces --example synth -- [EVENTS] [OUT] [THREADS] [RUN]`
//!
//! With `THREADS` > 1 (default 1), each thread runs a churn stream of its own
//! (seeds 1, 2, …) and the threads take turns: `RUN` events of one (default 1:
//! they alternate every event), then `RUN` of the next, all on one clock
//! (each event 20–40 ns after the previous one, now and then a longer pause).
//! One thread writes exactly the single-thread stream of BENCHMARKS.md.

use std::io::BufWriter;

use traces::synthetic::{Churn, ChurnConfig};
use traces::{ExitStatus, Header, Record, Trailer, Writer, WriterOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let events: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000_000);
    let out = args
        .next()
        .unwrap_or_else(|| "synthetic-churn.atrace".into());
    let threads: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let run: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    if threads == 0 || run == 0 {
        return Err("THREADS and RUN must be at least 1".into());
    }
    let churn = |seed: u64| {
        Churn::new(ChurnConfig {
            events,
            seed,
            ..Default::default()
        })
    };
    let file = BufWriter::new(std::fs::File::create(&out)?);
    let mut w = Writer::new(
        file,
        &Header::synthetic(&["synthetic-churn"]),
        WriterOptions {
            ordered: true,
            ..Default::default()
        },
    )?;
    // Each stream draws stacks of its own (from its seed): thread k's are
    // defined under ids moved up by k times the stacks per stream.
    let mut streams: Vec<Churn> = (1..=u64::from(threads)).map(churn).collect();
    let sites = streams[0].stacks().count() as u32;
    for (k, s) in streams.iter().enumerate() {
        let stacks: Vec<(u32, Vec<u64>)> = s.stacks().map(|(i, f)| (i, f.to_vec())).collect();
        for (id, f) in &stacks {
            w.define_stack(*id + k as u32 * sites, f)?;
        }
    }
    let t0 = std::time::Instant::now();
    if threads == 1 {
        for r in streams.pop().into_iter().flatten() {
            w.write(&r)?;
        }
    } else {
        // The clock of one more stream, so every thread's own times do not matter.
        let mut clock = churn(u64::from(threads) + 1);
        for i in 0..events {
            let k = ((i / run) % u64::from(threads)) as usize;
            let (Some(r), Some(tick)) = (streams[k].next(), clock.next()) else {
                break;
            };
            w.write(&Record {
                time: tick.time,
                thread: k as u32 + 1,
                event: offset_stack(r.event, k as u32 * sites),
            })?;
        }
    }
    w.finish(&Trailer {
        end_time: 0,
        exit: ExitStatus::Code(0),
        dropped_events: 0,
    })?;
    let enc = t0.elapsed();
    let bytes = std::fs::metadata(&out)?.len();
    let t1 = std::time::Instant::now();
    let n = traces::Reader::open(&out)?.count();
    let dec = t1.elapsed();
    println!(
        "{events} events, {threads} thread(s), {bytes} bytes, {:.3} bytes/event; encode {:.1} Mev/s, decode {:.1} Mev/s ({n} read)",
        bytes as f64 / events as f64,
        events as f64 / enc.as_secs_f64() / 1e6,
        n as f64 / dec.as_secs_f64() / 1e6
    );
    Ok(())
}

/// `ev` with its stack id moved up by `by` (each thread's stacks apart).
fn offset_stack(ev: traces::Event, by: u32) -> traces::Event {
    use traces::Event;
    match ev {
        Event::Alloc {
            func,
            addr,
            size,
            align,
            stack,
        } => Event::Alloc {
            func,
            addr,
            size,
            align,
            stack: stack + by,
        },
        Event::Free {
            func,
            addr,
            size,
            align,
            stack,
        } => Event::Free {
            func,
            addr,
            size,
            align,
            stack: stack + by,
        },
        other => other,
    }
}
