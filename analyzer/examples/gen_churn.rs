//! Writes a synthetic churn trace for benchmarks: `EVENTS` allocation and
//! free events over `THREADS` threads, `LIVE` blocks live in steady state,
//! allocation stacks drawn from `STACKS` distinct stacks of 12 frames.
//! Addresses are reused like an allocator would, so the live set (and the
//! analyzer's memory) stays the same however long the trace is.
//!
//! Usage: `gen_churn OUT EVENTS [LIVE] [STACKS] [THREADS]`
//! (defaults: LIVE 10000, STACKS 500, THREADS 4).

use std::fs::File;
use std::io::BufWriter;

use traces::{AllocFn, Event, ExitStatus, FreeFn, Header, Record, Trailer, Writer, WriterOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: u64| args.get(i).map_or(Ok(d), |s| s.parse::<u64>()).unwrap_or(d);
    let out = args
        .first()
        .ok_or_else(|| anyhow::anyhow!("usage: gen_churn OUT EVENTS [LIVE] [STACKS] [THREADS]"))?;
    let (events, live, nstacks, threads) =
        (arg(1, 20_000_000), arg(2, 10_000), arg(3, 500), arg(4, 4));
    let mut h = Header::synthetic(&["gen_churn"]);
    h.cmdline.push(events.to_string());
    let opts = WriterOptions {
        ordered: true,
        ..Default::default()
    };
    let mut w = Writer::new(BufWriter::new(File::create(out)?), &h, opts)?;
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let stacks: Vec<u32> = (0..nstacks)
        .map(|s| {
            let frames: Vec<u64> = (0..12).map(|d| 0x40_0000 + s * 0x1000 + d * 0x10).collect();
            w.intern_stack(&frames)
        })
        .collect::<Result<_, _>>()?;
    // Slot i holds address base + i*64 when occupied.
    let mut slots: Vec<Option<(u32, u32)>> = vec![None; live as usize];
    let (mut time, mut n) = (0u64, 0u64);
    while n < events {
        time += 7;
        let i = (next() % live) as usize;
        let thread = 1 + (next() % threads) as u32;
        let addr = 0x1000_0000 + i as u64 * 64;
        let event = match slots[i].take() {
            Some((_, stack)) => Event::Free {
                func: FreeFn::Free,
                addr,
                size: 0,
                align: 0,
                stack,
            },
            None => {
                let stack = stacks[(next() % nstacks) as usize];
                slots[i] = Some((thread, stack));
                Event::Alloc {
                    func: AllocFn::Malloc,
                    addr,
                    size: 16 + next() % 48,
                    align: 0,
                    stack,
                }
            }
        };
        w.write(&Record {
            time,
            thread,
            event,
        })?;
        n += 1;
    }
    w.finish(&Trailer {
        end_time: time + 1,
        exit: ExitStatus::Code(0),
        dropped_events: 0,
    })?;
    eprintln!("wrote {out}: {n} events, {live} slots, {nstacks} stacks, {threads} threads");
    Ok(())
}
