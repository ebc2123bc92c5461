//! Round-trip tests: every event kind survives writing and reading, and the
//! reader merges threads into global time order.

use proptest::prelude::*;
use traces::{AllocFn, Event, FreeFn, Module, Record, WriterOptions};

use crate::common::*;

fn alloc_fn() -> impl Strategy<Value = AllocFn> {
    prop::sample::select(AllocFn::ALL.to_vec())
}

fn free_fn() -> impl Strategy<Value = FreeFn> {
    prop::sample::select(FreeFn::ALL.to_vec())
}

/// Addresses drawn from a small pool so that frees hit live blocks (the
/// predicted codes) as well as unknown ones (literals).
fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u64..64).prop_map(|i| 0x5555_0000_0000 + i * 48),
        any::<u64>(),
        Just(0u64),
    ]
}

pub fn event() -> impl Strategy<Value = Event> {
    let stack = 0u32..40;
    prop_oneof![
        (
            alloc_fn(),
            addr(),
            any::<u64>(),
            any::<u64>(),
            stack.clone()
        )
            .prop_map(|(func, addr, size, align, stack)| {
                // Realloc functions only appear in Event::Realloc; alignment only when the function takes one.
                let func = if matches!(func, AllocFn::Realloc | AllocFn::Reallocarray) {
                    AllocFn::Malloc
                } else {
                    func
                };
                let align = if func.is_aligned() { align } else { 0 };
                Event::Alloc {
                    func,
                    addr,
                    size,
                    align,
                    stack,
                }
            }),
        (free_fn(), addr(), any::<u64>(), any::<u64>(), stack.clone()).prop_map(
            |(func, addr, size, align, stack)| {
                let sized = func.name().contains("sized");
                let size = if sized { size } else { 0 };
                let align = if func.is_aligned() { align } else { 0 };
                Event::Free {
                    func,
                    addr,
                    size,
                    align,
                    stack,
                }
            }
        ),
        (any::<bool>(), addr(), addr(), any::<u64>(), stack.clone()).prop_map(
            |(arr, old_addr, new_addr, size, stack)| {
                let func = if arr {
                    AllocFn::Reallocarray
                } else {
                    AllocFn::Realloc
                };
                Event::Realloc {
                    func,
                    old_addr,
                    new_addr,
                    size,
                    stack,
                }
            }
        ),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<i32>(),
            stack.clone()
        )
            .prop_map(|(addr, len, prot, flags, fd, stack)| Event::Mmap {
                addr,
                len,
                prot,
                flags,
                fd,
                stack
            }),
        (any::<u64>(), any::<u64>(), stack.clone()).prop_map(|(addr, len, stack)| Event::Munmap {
            addr,
            len,
            stack
        }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            stack.clone()
        )
            .prop_map(
                |(old_addr, old_len, new_addr, new_len, stack)| Event::Mremap {
                    old_addr,
                    old_len,
                    new_addr,
                    new_len,
                    stack
                }
            ),
        (any::<u64>(), any::<u64>(), stack).prop_map(|(old_break, new_break, stack)| Event::Brk {
            old_break,
            new_break,
            stack
        }),
        any::<u32>().prop_map(|parent| Event::ThreadStart { parent }),
        Just(Event::ThreadExit),
        any::<u32>().prop_map(|child_pid| Event::Fork { child_pid }),
        ".{0,40}".prop_map(|path| Event::Exec { path }),
        (
            ".{0,40}",
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..24)
        )
            .prop_map(
                |(path, base, start, end, build_id)| Event::ModuleLoad(Box::new(Module {
                    path,
                    base,
                    start,
                    end,
                    build_id
                }))
            ),
        any::<u64>().prop_map(|base| Event::ModuleUnload { base }),
        (any::<u64>(), ".{0,20}").prop_map(|(value, label)| Event::Marker { value, label }),
    ]
}

/// Records on up to 4 threads with per-thread increasing times.
pub fn records() -> impl Strategy<Value = Vec<Record>> {
    prop::collection::vec((0u32..4, 0u64..50, event()), 0..300).prop_map(|v| {
        let mut t = 0;
        v.into_iter()
            .map(|(thread, dt, event)| {
                t += dt;
                Record {
                    time: t,
                    thread,
                    event,
                }
            })
            .collect()
    })
}

/// Sorts like the reader: by time, then thread, keeping per-thread order.
pub fn global_order(recs: &[Record]) -> Vec<Record> {
    let mut v: Vec<(usize, &Record)> = recs.iter().enumerate().collect();
    v.sort_by_key(|(i, r)| (r.time, r.thread, *i));
    v.into_iter().map(|(_, r)| r.clone()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every event kind, with small and tiny blocks (many block boundaries),
    /// compressed or not, reads back exactly, in global order.
    #[test]
    fn every_event_kind_round_trips(recs in records(), block in prop_oneof![Just(16usize), Just(200), Just(1 << 20)], level in 0i32..2) {
        let stacks = vec![(1, vec![0x10, 0x20]), (2, vec![0x30, 0x20]), (39, vec![1])];
        let opts = WriterOptions { block_bytes: block, compression_level: level * 3, ordered: true, ..Default::default() };
        let bytes = write_trace(&recs, &stacks, opts);
        let (got, r) = read_all(&bytes);
        prop_assert_eq!(got, global_order(&recs));
        prop_assert_eq!(r.stacks().frames(2), vec![0x30, 0x20]);
        prop_assert!(r.trailer().is_some());
    }

    /// Unordered writing (as a collector does, thread by thread) with explicit
    /// watermarks still reads back in global order, whether blocks are
    /// written by the caller's thread or by a thread of their own.
    #[test]
    fn collector_style_writing_merges(recs in records(), thread in any::<bool>()) {
        let opts = WriterOptions { block_bytes: 64, max_lag: 10, ..Default::default() };
        let header = traces::Header::synthetic(&["t"]);
        let mut w = if thread {
            traces::Writer::with_thread(Vec::new(), &header, opts).unwrap()
        } else {
            traces::Writer::new(Vec::new(), &header, opts).unwrap()
        };
        // Write in rounds: each round takes every thread's records below a horizon.
        let mut horizon = 0;
        let end = recs.last().map_or(0, |r| r.time) + 1;
        while horizon < end {
            let next = horizon + 37;
            for t in 0..4 {
                for r in recs.iter().filter(|r| r.thread == t && r.time >= horizon && r.time < next) {
                    w.write(r).unwrap();
                }
            }
            w.advance(next).unwrap();
            horizon = next;
        }
        let bytes = w.finish(&traces::Trailer { end_time: end, exit: traces::ExitStatus::Signal(9), dropped_events: 3 }).unwrap();
        let (got, r) = read_all(&bytes);
        prop_assert_eq!(got, global_order(&recs));
        prop_assert_eq!(r.trailer().unwrap().dropped_events, 3);
    }
}

#[test]
fn single_thread_round_trip() {
    let recs: Vec<_> = (0..1000)
        .map(|i| alloc(i * 3, 7, 0x1000 + i * 16, i))
        .collect();
    let bytes = write_trace(&recs, &[(1, vec![3, 2, 1])], WriterOptions::default());
    let (got, r) = read_all(&bytes);
    assert_eq!(got, recs);
    assert_eq!(r.stacks().frames(1), vec![3, 2, 1]);
    assert!(r.trailer().is_some());
    assert!(r.truncation().is_none());
}

/// A writer whose blocks are written by a thread of their own: the same
/// records and stacks come back, with flushes between blocks.
#[test]
fn writing_thread_round_trips_churn() {
    use traces::synthetic::{Churn, ChurnConfig};
    let churn = Churn::new(ChurnConfig {
        events: 200_000,
        ..Default::default()
    });
    let stacks: Vec<(u32, Vec<u64>)> = churn.stacks().map(|(i, f)| (i, f.to_vec())).collect();
    let recs: Vec<Record> = churn.collect();
    let opts = WriterOptions {
        ordered: true,
        block_bytes: 32 << 10,
        ..Default::default()
    };
    let header = traces::Header::synthetic(&["t"]);
    let mut w = traces::Writer::with_thread(Vec::new(), &header, opts).unwrap();
    for (id, frames) in &stacks {
        w.define_stack(*id, frames).unwrap();
    }
    for (i, r) in recs.iter().enumerate() {
        w.write(r).unwrap();
        if i % 50_000 == 0 {
            w.flush().unwrap();
        }
    }
    let bytes = w
        .finish(&traces::Trailer {
            end_time: 0,
            exit: traces::ExitStatus::Code(0),
            dropped_events: 0,
        })
        .unwrap();
    let (got, r) = read_all(&bytes);
    assert!(got == recs, "records differ");
    for (id, frames) in &stacks {
        assert_eq!(&r.stacks().frames(*id), frames);
    }
    assert!(r.trailer().is_some());
}

/// The synthetic churn stream reads back exactly, and the reader holds only a
/// bounded amount of it at once.
#[test]
fn churn_reads_back_in_bounded_memory() {
    use traces::synthetic::{Churn, ChurnConfig};
    let cfg = ChurnConfig {
        events: 300_000,
        ..Default::default()
    };
    let churn = Churn::new(cfg.clone());
    let stacks: Vec<(u32, Vec<u64>)> = churn.stacks().map(|(i, f)| (i, f.to_vec())).collect();
    let recs: Vec<Record> = churn.collect();
    let opts = WriterOptions {
        ordered: true,
        block_bytes: 64 << 10,
        ..Default::default()
    };
    let bytes = write_trace(&recs, &stacks, opts);
    let (got, r) = read_all(&bytes);
    assert_eq!(got.len(), recs.len());
    assert!(got == recs, "records differ");
    // Blocks of 64 KiB: the reader never holds more than a couple at once.
    assert!(
        r.max_buffered() <= 3 * (64 << 10),
        "held {} bytes",
        r.max_buffered()
    );
}

#[test]
fn free_stacks_and_addresses_survive_prediction_misses() {
    // Frees of unknown blocks, double frees, reuse of freed addresses by other sizes.
    let mk = |time, event| Record {
        time,
        thread: 1,
        event,
    };
    let a = |addr, size, stack| Event::Alloc {
        func: AllocFn::Malloc,
        addr,
        size,
        align: 0,
        stack,
    };
    let f = |addr, stack| Event::Free {
        func: FreeFn::Free,
        addr,
        size: 0,
        align: 0,
        stack,
    };
    let recs = vec![
        mk(1, a(0x100, 16, 1)),
        mk(2, f(0x100, 5)),
        mk(3, f(0x100, 6)),       // double free: literal
        mk(4, a(0x100, 4000, 2)), // reuse with another size class
        mk(5, f(0x999, 5)),       // unknown block
        mk(6, f(0x100, 5)),
        mk(7, a(0x100, 16, 1)),
        mk(8, f(0x100, 5)),      // predicted free site
        mk(9, a(0, 1 << 50, 3)), // failed allocation
    ];
    let bytes = write_trace(&recs, &[], WriterOptions::default());
    assert_eq!(read_all(&bytes).0, recs);
}

/// More live blocks than the live table holds (it is cleared when full), some
/// freed before and after the clear, one address allocated twice without a
/// free: the writer's slot choice must stay the reader's.
#[test]
fn live_table_overflow_round_trips() {
    let mk = |time, event| Record {
        time,
        thread: 1,
        event,
    };
    let a = |addr, size| Event::Alloc {
        func: AllocFn::Malloc,
        addr,
        size,
        align: 0,
        stack: 1,
    };
    let f = |addr| Event::Free {
        func: FreeFn::Free,
        addr,
        size: 0,
        align: 0,
        stack: 2,
    };
    let mut recs = Vec::new();
    let mut t = 0;
    let mut push = |e| {
        t += 1;
        recs.push(mk(t, e));
    };
    let addr = |i: u64| 0x10_0000 + i * 48;
    push(a(addr(0), 40));
    push(a(addr(0), 40)); // allocated twice: its first slot stays occupied
    for i in 1..80_000u64 {
        push(a(addr(i), 8 + i % 200));
        if i % 7 == 0 {
            push(f(addr(i - 3)));
        }
        if i % 11 == 0 {
            push(f(addr(i / 2)));
            push(a(addr(i / 2), 24));
        }
    }
    for i in (0..80_000u64).step_by(5) {
        push(f(addr(i)));
    }
    let bytes = write_trace(&recs, &[], WriterOptions::default());
    assert!(read_all(&bytes).0 == recs, "records differ");
}
