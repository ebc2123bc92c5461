//! Bytes per column of a trace re-encoded with the current encoder, each
//! column compressed alone with zstd at level 1 (where an encoder change
//! would pay), and the whole blocks as the writer stores them.
//!
//! `cargo run --release -p traces --example colsize -- TRACE [QUANTUM_NS]`
//!
//! With `QUANTUM_NS`, times are rounded down to a multiple of it first;
//! `LEVEL=n` in the environment sets the zstd level.

use std::collections::HashMap;
use traces::codec::BlockEncoder;
use traces::Reader;

const NAMES: [&str; traces::codec::COLUMNS] = [
    "ops", "times", "addrs", "frees", "frees_hi", "allocs", "sizes", "stacks", "extra", "sizes_lo",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let inp = args.next().ok_or("usage: colsize TRACE [QUANTUM_NS]")?;
    let quantum: u64 = args.next().map_or(Ok(1), |q| q.parse())?.max(1);
    let mut r = Reader::open(&inp)?;
    let mut encs: HashMap<u32, BlockEncoder> = HashMap::new();
    let mut raw = [0usize; traces::codec::COLUMNS];
    let mut packed = [0usize; traces::codec::COLUMNS];
    let mut blocks = 0usize;
    let mut n = 0u64;
    let mut payload = Vec::new();
    let level: i32 = std::env::var("LEVEL").map_or(1, |l| l.parse().unwrap_or(1));
    let mut flush = |enc: &mut BlockEncoder,
                     raw: &mut [usize; traces::codec::COLUMNS],
                     packed: &mut [usize; traces::codec::COLUMNS],
                     blocks: &mut usize| {
        enc.finish_into(&mut payload);
        let mut c = traces::varint::Cursor::new(&payload);
        for _ in 0..3 {
            c.get();
        }
        let lens: Vec<usize> = (0..traces::codec::COLUMNS)
            .map(|_| c.get().unwrap() as usize)
            .collect();
        let mut at = c.pos();
        for (k, &l) in lens.iter().enumerate() {
            let col = &payload[at..at + l];
            raw[k] += l;
            if l > 0 {
                packed[k] += zstd::bulk::compress(col, level).unwrap().len();
            }
            at += l;
        }
        *blocks += zstd::bulk::compress(&payload, level).unwrap().len();
    };
    for rec in r.by_ref() {
        let rec = rec?;
        let enc = encs
            .entry(rec.thread)
            .or_insert_with(|| BlockEncoder::new(rec.thread));
        enc.push(rec.time - rec.time % quantum, &rec.event);
        n += 1;
        if enc.is_full(1 << 20) {
            flush(enc, &mut raw, &mut packed, &mut blocks);
        }
    }
    for enc in encs.values_mut() {
        if !enc.is_empty() {
            flush(enc, &mut raw, &mut packed, &mut blocks);
        }
    }
    println!("{n} events; column: raw bytes, alone zstd-1 bytes, bytes/event");
    for k in 0..traces::codec::COLUMNS {
        println!(
            "{:>9}: {:>11} {:>11} {:.3}",
            NAMES[k],
            raw[k],
            packed[k],
            packed[k] as f64 / n as f64
        );
    }
    let tot: usize = packed.iter().sum();
    println!(
        "columns alone: {tot}; blocks as stored: {blocks} ({:.3} B/event)",
        blocks as f64 / n as f64
    );
    Ok(())
}
