//! Synthetic traces for the tests, and the expected calls they should replay to.

use std::path::{Path, PathBuf};

use replayer::OpKind;
use traces::synthetic::Rng;
use traces::{AllocFn, Event, ExitStatus, FreeFn, Header, Record, Trailer, Writer, WriterOptions};

/// Writes `records` (in global time order) as a trace at `path`.
pub fn write_trace(path: &Path, records: &[Record]) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = Writer::new(
        file,
        &Header::synthetic(&["replayer-test"]),
        WriterOptions {
            ordered: true,
            ..Default::default()
        },
    )
    .unwrap();
    for r in records {
        w.write(r).unwrap();
    }
    w.finish(&Trailer {
        end_time: records.last().map_or(0, |r| r.time + 1),
        exit: ExitStatus::Code(0),
        dropped_events: 0,
    })
    .unwrap();
}

/// A call as the checking backend should see it: kind, size, alignment and the
/// size of the block it releases (sizes are unique, so a size names a block).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub kind: OpKind,
    pub size: u64,
    pub align: u64,
    pub released: Option<u64>,
}

/// A random multithreaded trace: `threads` threads, `events` events, frees of
/// blocks from any thread, reallocs, the aligned family, address reuse. Every
/// allocation has a unique size. Returns the records and, per thread id, the
/// calls a faithful replay makes.
pub fn random_trace(
    seed: u64,
    threads: u32,
    events: usize,
) -> (Vec<Record>, Vec<(u32, Vec<Expected>)>) {
    let mut rng = Rng::new(seed);
    let mut live: Vec<(u64, u64)> = Vec::new(); // (addr, size)
    let mut free_addrs: Vec<u64> = Vec::new();
    let mut next_addr = 0x1000_0000u64;
    let mut next_size = 1u64;
    let mut expected: Vec<(u32, Vec<Expected>)> =
        (0..threads).map(|t| (101 + t, Vec::new())).collect();
    let mut recs = Vec::new();
    let mut addr_for = |rng: &mut Rng, free_addrs: &mut Vec<u64>| {
        if !free_addrs.is_empty() && rng.next_u64() % 2 == 0 {
            free_addrs.pop().unwrap()
        } else {
            next_addr += 0x1000;
            next_addr
        }
    };
    for i in 0..events {
        let t = (rng.next_u64() % threads as u64) as usize;
        let tid = 101 + t as u32;
        let roll = rng.next_u64() % 10;
        let event = if !live.is_empty() && roll < 4 {
            let (addr, size) = live.swap_remove((rng.next_u64() % live.len() as u64) as usize);
            free_addrs.push(addr);
            expected[t].1.push(Expected {
                kind: OpKind::Free,
                size: 0,
                align: 0,
                released: Some(size),
            });
            Event::Free {
                func: FreeFn::Free,
                addr,
                size: 0,
                align: 0,
                stack: 0,
            }
        } else if !live.is_empty() && roll < 5 {
            let (old, old_size) = live.swap_remove((rng.next_u64() % live.len() as u64) as usize);
            let new = addr_for(&mut rng, &mut free_addrs);
            free_addrs.push(old);
            next_size += 8;
            live.push((new, next_size));
            expected[t].1.push(Expected {
                kind: OpKind::Realloc,
                size: next_size,
                align: 0,
                released: Some(old_size),
            });
            Event::Realloc {
                func: AllocFn::Realloc,
                old_addr: old,
                new_addr: new,
                size: next_size,
                stack: 0,
            }
        } else {
            let addr = addr_for(&mut rng, &mut free_addrs);
            next_size += 8;
            let (func, kind, align) = match roll {
                5 => (AllocFn::Calloc, OpKind::Calloc, 0),
                6 => (AllocFn::AlignedAlloc, OpKind::AlignedAlloc, 64),
                7 => (AllocFn::PosixMemalign, OpKind::PosixMemalign, 32),
                8 => (AllocFn::Memalign, OpKind::Memalign, 128),
                _ => (AllocFn::New, OpKind::Malloc, 0),
            };
            // aligned_alloc wants a multiple of the alignment.
            let size = if kind == OpKind::AlignedAlloc {
                next_size.next_multiple_of(64)
            } else {
                next_size
            };
            next_size = next_size.max(size);
            live.push((addr, size));
            expected[t].1.push(Expected {
                kind,
                size,
                align,
                released: None,
            });
            Event::Alloc {
                func,
                addr,
                size,
                align,
                stack: 0,
            }
        };
        recs.push(Record {
            time: 1000 + i as u64 * 10,
            thread: tid,
            event,
        });
    }
    (recs, expected)
}

/// A temporary directory for a test's files.
pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The `driver` example binary, built by `cargo test` beside the test binary.
pub fn driver_example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples").join("driver")
}

/// Events of one thread: alloc then free.
pub fn alloc(time: u64, thread: u32, addr: u64, size: u64) -> Record {
    Record {
        time,
        thread,
        event: Event::Alloc {
            func: AllocFn::Malloc,
            addr,
            size,
            align: 0,
            stack: 0,
        },
    }
}

/// A free record.
pub fn free(time: u64, thread: u32, addr: u64) -> Record {
    Record {
        time,
        thread,
        event: Event::Free {
            func: FreeFn::Free,
            addr,
            size: 0,
            align: 0,
            stack: 0,
        },
    }
}
