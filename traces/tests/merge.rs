//! The merge of threads: global `(time, thread)` order with each thread's
//! events in file order, the same whether a thread's events are decoded
//! straight into the batch or decoded ahead (when threads take turns every
//! few events), on valid, cut and damaged traces alike.

use proptest::prelude::*;
use traces::{EventBatch, Reader, Record, WriterOptions};

use crate::batch::fix_crcs;
use crate::common::*;
use crate::roundtrip::{event, global_order};

/// Everything a read gives: records, the error (as text, which names the
/// block and offset), truncation, the most bytes held, the bytes read.
#[derive(Debug, PartialEq)]
struct Read {
    records: Vec<Record>,
    error: Option<String>,
    truncated: Option<traces::Truncation>,
    max_buffered: usize,
    bytes_read: u64,
}

/// Reads `bytes` with runs shorter than `short_run` decoded ahead, through
/// batches or (`iter`) the iterator.
fn read(bytes: &[u8], short_run: usize, iter: bool) -> Option<Read> {
    let mut r = Reader::new(bytes, "mem.atrace".into()).ok()?;
    r.set_short_run(short_run);
    let mut records = Vec::new();
    let mut error = None;
    if iter {
        for x in r.by_ref() {
            match x {
                Ok(rec) => records.push(rec),
                Err(e) => error = Some(e.to_string()),
            }
        }
    } else {
        let mut batch = EventBatch::new();
        loop {
            match r.next_batch(&mut batch) {
                Ok(true) => records.extend((0..batch.len()).map(|i| batch.record(i))),
                Ok(false) => break,
                Err(e) => error = Some(e.to_string()),
            }
        }
    }
    Some(Read {
        records,
        error,
        truncated: r.truncation().cloned(),
        max_buffered: r.max_buffered(),
        bytes_read: r.bytes_read(),
    })
}

/// Reads `bytes` every way (never, sometimes and always decoding ahead;
/// batches and iterator) and checks that all agree; returns the batch read.
fn read_every_way(bytes: &[u8]) -> Option<Read> {
    let want = read(bytes, 0, false)?;
    for short_run in [0, 4, 32, usize::MAX] {
        for iter in [false, true] {
            let got = read(bytes, short_run, iter).expect("header read once");
            assert_eq!(got, want, "short_run {short_run}, iterator {iter}");
        }
    }
    Some(want)
}

/// Records of `threads` threads taking turns in runs of 1 to `run` events,
/// times advancing by 0 to `dt` (0: ties between threads).
fn turns(threads: u32, run: u64, dt: u64) -> impl Strategy<Value = Vec<Record>> {
    prop::collection::vec((0..threads, 1..=run, 0..=dt, event()), 0..150).prop_map(|v| {
        let mut t = 0;
        let mut out = Vec::new();
        for (thread, n, step, ev) in v {
            for k in 0..n {
                t += if k == 0 { step } else { step / 2 };
                out.push(Record {
                    time: t,
                    thread: thread * 3 + 1,
                    event: ev.clone(),
                });
            }
        }
        out
    })
}

fn opts(block: usize) -> WriterOptions {
    WriterOptions {
        block_bytes: block,
        compression_level: 0,
        ordered: true,
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Global order (ties to the lower thread), however the threads take
    /// turns and whether or not events are decoded ahead.
    #[test]
    fn merge_is_global_order(recs in turns(12, 40, 3), block in prop_oneof![Just(64usize), Just(400), Just(1 << 20)]) {
        let bytes = write_trace(&recs, &[], opts(block));
        let got = read_every_way(&bytes).unwrap();
        prop_assert_eq!(got.records, global_order(&recs));
        prop_assert_eq!(got.error, None);
    }

    /// Damaged column contents (checksums fixed, so the decoders meet the
    /// damage) and cut files: the same events, the same error at the same
    /// point, the same truncation, whether or not events are decoded ahead.
    #[test]
    fn damage_reads_the_same_every_way(recs in turns(5, 20, 2), at in 0.0f64..1.0, byte in any::<u8>(), cut in any::<bool>()) {
        let mut bytes = write_trace(&recs, &[], opts(300));
        let i = 40 + ((bytes.len().saturating_sub(41)) as f64 * at) as usize;
        if cut {
            bytes.truncate(i);
        } else if let Some(b) = bytes.get_mut(i) {
            *b = byte;
            fix_crcs(&mut bytes);
        }
        read_every_way(&bytes);
    }
}

/// Many threads, each event on the next thread, many events at the same
/// time: exactly the sort by time then thread, decoding ahead or not.
#[test]
fn many_threads_alternating_with_ties() {
    let threads = 100u64;
    let recs: Vec<Record> = (0..30_000u64)
        .map(|i| {
            let thread = (i * 37 % threads) as u32 + 1;
            alloc(i / 7, thread, 0x1000 + i * 16, i % 500)
        })
        .collect();
    let bytes = write_trace(&recs, &[], opts(2048));
    let got = read_every_way(&bytes).unwrap();
    assert_eq!(got.error, None);
    assert_eq!(got.records, global_order(&recs));
}

/// Damage at every tenth byte of a trace whose threads alternate: reads
/// agree every way.
#[test]
fn damage_anywhere_in_alternating_threads() {
    let recs: Vec<Record> = (0..600u64)
        .map(|i| alloc(i / 2, (i % 3) as u32 + 1, 0x1000 + i * 16, i % 50))
        .collect();
    let bytes = write_trace(&recs, &[], opts(256));
    let mut rng = traces::synthetic::Rng::new(11);
    for at in (40..bytes.len()).step_by(10) {
        let mut d = bytes.clone();
        d[at] = rng.next_u64() as u8;
        fix_crcs(&mut d);
        read_every_way(&d);
    }
}

/// Times near the end of the clock, damaged so that some overflow: the same
/// events and the same error (block and offset included) whether or not
/// events are decoded ahead.
#[test]
fn overflowing_times_read_the_same_every_way() {
    let start = u64::MAX - 1850;
    let recs: Vec<Record> = (0..600u64)
        .map(|i| alloc(start + i * 3, (i % 3) as u32 + 1, 0x1000 + i * 16, i % 50))
        .collect();
    let bytes = write_trace(&recs, &[], opts(256));
    let mut overflows = 0;
    for at in 40..bytes.len() {
        let mut d = bytes.clone();
        d[at] = 0x7f;
        fix_crcs(&mut d);
        let read = read_every_way(&d);
        let error = read.and_then(|r| r.error).unwrap_or_default();
        overflows += usize::from(error.contains(traces::codec::TIME_OVERFLOW));
    }
    assert!(overflows > 0, "no damage made a time overflow");
}
