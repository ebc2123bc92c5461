//! Byte-identity check for encoder changes that must not change the bytes:
//! writes event streams (each TRACE's records, a synthetic churn stream, one
//! whose live set passes the live table's cap, and two "wild" streams of
//! every heap event kind, three threads, unknown frees, address 0 and
//! second-long pauses) uncompressed, with stacks defined at first use, in
//! three ways (collector-like `write_heap` with watermarks, ordered `write`,
//! small blocks), and prints each output's size and FNV-1a hash.
//!
//! `cargo run --release -p traces --example enccheck -- [TRACE...] > out.txt`
//!
//! Run it built from the old and the new code on the same traces and
//! compare the outputs: any difference is a change of the bytes.

use traces::synthetic::{Churn, ChurnConfig, Rng};
use traces::{
    AllocFn, Event, ExitStatus, FreeFn, Header, Reader, Record, Trailer, Writer, WriterOptions,
};

fn hash(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Writes `recs` with `write_heap` for plain malloc/free (as the collector)
/// or always `write`.
fn encode(recs: &[Record], block_bytes: usize, heap: bool, ordered: bool) -> Vec<u8> {
    let opts = WriterOptions {
        compression_level: 0,
        block_bytes,
        ordered,
        max_lag: 1_000_000,
    };
    let mut w = Writer::new(Vec::new(), &Header::synthetic(&["chk"]), opts).unwrap();
    let mut defined = std::collections::HashSet::new();
    for (i, r) in recs.iter().enumerate() {
        let st = r.event.stack();
        if st != 0 && defined.insert(st) {
            let frames: Vec<u64> = (0..(st % 40 + 1) as u64)
                .map(|k| 0x40_0000 + k * 0x1234 + st as u64 * 77)
                .collect();
            w.define_stack(st, &frames).unwrap();
        }
        match (&r.event, heap) {
            (
                Event::Alloc {
                    func: AllocFn::Malloc,
                    addr,
                    size,
                    align: 0,
                    stack,
                },
                true,
            ) => w
                .write_heap(r.thread, r.time, true, *addr, *size, *stack)
                .unwrap(),
            (
                Event::Free {
                    func: FreeFn::Free,
                    addr,
                    stack,
                    size: 0,
                    align: 0,
                },
                true,
            ) => w
                .write_heap(r.thread, r.time, false, *addr, 0, *stack)
                .unwrap(),
            _ => w.write(r).unwrap(),
        }
        if !ordered && i % 500 == 499 {
            w.advance(r.time.saturating_sub(1000)).unwrap();
        }
    }
    w.finish(&Trailer {
        end_time: 0,
        exit: ExitStatus::Code(0),
        dropped_events: 0,
    })
    .unwrap()
}

/// A wild stream: many threads, a live set growing past the live table's
/// cap, every kind of heap event, unknown frees, address 0, odd addresses.
fn wild(seed: u64, n: usize) -> Vec<Record> {
    let mut rng = Rng::new(seed);
    let mut live: Vec<Vec<(u64, u64)>> = vec![Vec::new(); 3];
    let mut freed: Vec<Vec<u64>> = vec![Vec::new(); 3];
    let mut next = 0x5555_0000_0000u64;
    let mut out = Vec::with_capacity(n);
    let mut time = 1000u64;
    for i in 0..n {
        let t = (rng.next_u64() % 3) as usize;
        time += rng.range(0, 100)
            + if rng.next_u64() % 1000 == 0 {
                1 << 30
            } else {
                0
            };
        let phase = (i / 50_000) % 3; // grow, steady, shrink
        let r = rng.next_u64() % 100;
        let size = match rng.next_u64() % 10 {
            0 => rng.range(1000, 1 << 20),
            1 => rng.range(0, 16),
            _ => rng.range(8, 1024),
        };
        let stack = (rng.next_u64() % 300) as u32;
        let pick_addr = |rng: &mut Rng, freed: &mut Vec<u64>, next: &mut u64| -> u64 {
            match rng.next_u64() % 10 {
                0..=5 if !freed.is_empty() => {
                    let k = (rng.next_u64() % freed.len().min(20) as u64) as usize;
                    let j = freed.len() - 1 - k;
                    freed.remove(j)
                }
                6 => 0,
                7 => *next + 8 * (rng.next_u64() % 4),
                _ => {
                    *next += 16 * rng.range(1, 100);
                    *next
                }
            }
        };
        let alloc_p = match phase {
            0 => 70,
            1 => 50,
            _ => 30,
        };
        let ev = if r < alloc_p || live[t].is_empty() {
            let a = pick_addr(&mut rng, &mut freed[t], &mut next);
            if a != 0 {
                live[t].push((a, size));
            }
            let f = rng.next_u64() % 20;
            if f < 14 {
                Event::Alloc {
                    func: AllocFn::Malloc,
                    addr: a,
                    size,
                    align: 0,
                    stack,
                }
            } else if f < 16 {
                Event::Alloc {
                    func: AllocFn::Calloc,
                    addr: a,
                    size,
                    align: 0,
                    stack,
                }
            } else if f < 18 {
                Event::Alloc {
                    func: AllocFn::PosixMemalign,
                    addr: a,
                    size,
                    align: 64,
                    stack,
                }
            } else if live[t].len() > 1 {
                let k = (rng.next_u64() % live[t].len() as u64) as usize;
                let (old, _) = live[t].swap_remove(k);
                freed[t].push(old);
                Event::Realloc {
                    func: AllocFn::Realloc,
                    old_addr: old,
                    new_addr: a,
                    size,
                    stack,
                }
            } else {
                Event::Alloc {
                    func: AllocFn::New,
                    addr: a,
                    size,
                    align: 0,
                    stack,
                }
            }
        } else {
            let k = if rng.next_u64() % 2 == 0 {
                live[t].len() - 1 - (rng.next_u64() % live[t].len().min(8) as u64) as usize
            } else {
                (rng.next_u64() % live[t].len() as u64) as usize
            };
            let (a, sz) = live[t].swap_remove(k);
            freed[t].push(a);
            if freed[t].len() > 5000 {
                freed[t].drain(..1000);
            }
            let a = if rng.next_u64() % 50 == 0 {
                a + 0x1000_0000
            } else {
                a
            };
            match rng.next_u64() % 20 {
                0 => Event::Free {
                    func: FreeFn::DeleteSized,
                    addr: a,
                    size: sz,
                    align: 0,
                    stack,
                },
                1 => Event::Free {
                    func: FreeFn::Delete,
                    addr: a,
                    size: 0,
                    align: 0,
                    stack,
                },
                2 if a > 0x5555_0000_0000 + 100 => Event::Munmap {
                    addr: a,
                    len: sz,
                    stack,
                },
                _ => Event::Free {
                    func: FreeFn::Free,
                    addr: a,
                    size: 0,
                    align: 0,
                    stack,
                },
            }
        };
        out.push(Record {
            time,
            thread: 1 + t as u32,
            event: ev,
        });
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut streams: Vec<(String, Vec<Record>)> = Vec::new();
    for p in std::env::args().skip(1) {
        let r = Reader::open(&p)?;
        let recs: Vec<Record> = r.collect::<Result<_, _>>()?;
        streams.push((p, recs));
    }
    streams.push((
        "churn".into(),
        Churn::new(ChurnConfig {
            events: 2_000_000,
            ..Default::default()
        })
        .collect(),
    ));
    streams.push((
        "churn-big".into(),
        Churn::new(ChurnConfig {
            events: 1_000_000,
            working_set: 60_000,
            seed: 7,
            ..Default::default()
        })
        .collect(),
    ));
    streams.push(("wild1".into(), wild(1, 400_000)));
    streams.push(("wild2".into(), wild(2, 400_000)));
    for (name, recs) in &streams {
        for (bb, heap, ordered) in [
            (1 << 20, true, false),
            (1 << 20, false, true),
            (5000, true, true),
        ] {
            let out = encode(recs, bb, heap, ordered);
            println!(
                "{name} bb={bb} heap={heap} ordered={ordered}: {} events {} bytes hash {:016x}",
                recs.len(),
                out.len(),
                hash(&out)
            );
        }
    }
    Ok(())
}
