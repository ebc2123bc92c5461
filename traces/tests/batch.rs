//! The batch API (`Reader::next_batch`): the same events as the iterator, in
//! the same order, with every field; the same behaviour on damaged files.

use proptest::prelude::*;
use traces::{EventBatch, Kind, Reader, Record, WriterOptions};

use crate::common::*;
use crate::roundtrip::{global_order, records};

/// Every record of a trace, read in batches.
fn read_batches(bytes: &[u8]) -> (Vec<Record>, Option<traces::Error>, Reader<&[u8]>) {
    let mut r = Reader::new(bytes, "mem.atrace".into()).unwrap();
    let mut batch = EventBatch::new();
    let mut out = Vec::new();
    let err = loop {
        match r.next_batch(&mut batch) {
            Ok(true) => {
                assert!(!batch.is_empty() && batch.len() <= EventBatch::CAPACITY);
                check_columns(&batch);
                out.extend((0..batch.len()).map(|i| batch.record(i)));
            }
            Ok(false) => break None,
            Err(e) => break Some(e),
        }
    };
    (out, err, r)
}

/// The columns agree with the events they describe.
fn check_columns(b: &EventBatch) {
    let n = b.len();
    for col in [
        b.times().len(),
        b.addrs().len(),
        b.aux().len(),
        b.sizes().len(),
    ] {
        assert_eq!(col, n);
    }
    assert_eq!(
        (b.threads().len(), b.kinds().len(), b.stacks().len()),
        (n, n, n)
    );
    let mut others = b.others().iter();
    for i in 0..n {
        let ev = b.event(i);
        assert_eq!(b.kinds()[i], Kind::of(&ev));
        assert_eq!(b.stacks()[i], ev.stack());
        if !b.kinds()[i].is_heap() {
            let (j, o) = others.next().expect("non-heap event in others");
            assert_eq!((*j as usize, o), (i, &ev));
        }
    }
    assert!(others.next().is_none());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    /// Batches give exactly the iterator's records, in global order, on
    /// multi-thread traces with many small blocks.
    #[test]
    fn batches_equal_iterator(recs in records(), block in prop_oneof![Just(16usize), Just(200), Just(1 << 20)], level in 0i32..2) {
        let opts = WriterOptions { block_bytes: block, compression_level: level * 3, ordered: true, ..Default::default() };
        let bytes = write_trace(&recs, &[(1, vec![0x10, 0x20])], opts);
        let (got, err, r) = read_batches(&bytes);
        prop_assert!(err.is_none());
        prop_assert_eq!(&got, &read_all(&bytes).0);
        prop_assert_eq!(got, global_order(&recs));
        prop_assert!(r.trailer().is_some());
        prop_assert_eq!(r.stacks().frames(1), vec![0x10, 0x20]);
    }

    /// Collector-style writing (threads written in rounds, watermarks).
    #[test]
    fn batches_merge_collector_style(recs in records()) {
        let mut w = traces::Writer::new(Vec::new(), &traces::Header::synthetic(&["t"]),
            WriterOptions { block_bytes: 64, max_lag: 10, ..Default::default() }).unwrap();
        let end = recs.last().map_or(0, |r| r.time) + 1;
        let mut horizon = 0;
        while horizon < end {
            let next = horizon + 23;
            for t in (0..4).rev() {
                for r in recs.iter().filter(|r| r.thread == t && r.time >= horizon && r.time < next) {
                    w.write(r).unwrap();
                }
            }
            w.advance(next).unwrap();
            horizon = next;
        }
        let bytes = w.finish(&traces::Trailer { end_time: end, exit: traces::ExitStatus::Code(0), dropped_events: 0 }).unwrap();
        let (got, err, _) = read_batches(&bytes);
        prop_assert!(err.is_none());
        prop_assert_eq!(got, global_order(&recs));
    }
}

/// Many threads interleaved event by event, more events than a batch holds:
/// runs of one event per thread, batches cut anywhere.
#[test]
fn fine_interleaving_over_many_batches() {
    let recs: Vec<Record> = (0..20_000u64)
        .map(|i| alloc(i / 3, (i % 7) as u32 + 1, 0x1000 + i * 16, i % 600))
        .collect();
    let opts = WriterOptions {
        block_bytes: 512,
        ordered: true,
        ..Default::default()
    };
    let bytes = write_trace(&recs, &[], opts);
    let (got, err, r) = read_batches(&bytes);
    assert!(err.is_none());
    assert_eq!(got, global_order(&recs));
    assert!(r.max_buffered() < 64 << 10, "held {}", r.max_buffered());
}

/// A truncated file: batches give the same prefix as the iterator, then end
/// with the truncation reported.
#[test]
fn truncated_file_batches_equal_iterator() {
    let recs: Vec<_> = (0..5000)
        .map(|i| alloc(i, (i % 3) as u32 + 1, 0x1000 + i * 32, i % 100))
        .collect();
    let opts = WriterOptions {
        block_bytes: 1024,
        ordered: true,
        ..Default::default()
    };
    let bytes = write_trace(&recs, &[(1, vec![1, 2, 3])], opts);
    for cut in [
        bytes.len() - 1,
        bytes.len() * 2 / 3,
        bytes.len() / 2 + 7,
        200,
    ] {
        let cut_bytes = &bytes[..cut];
        let (got, err, r) = read_batches(cut_bytes);
        assert!(err.is_none(), "{err:?}");
        let (want, it) = read_all(cut_bytes);
        assert_eq!(got, want, "cut at {cut}");
        assert!(got.len() < recs.len() || cut == bytes.len() - 1);
        assert_eq!(r.truncation(), it.truncation());
        assert!(r.truncation().is_some());
    }
}

/// A damaged block: the events before it, then the error, then the end.
#[test]
fn damaged_block_events_then_error_then_end() {
    let recs: Vec<_> = (0..5000)
        .map(|i| alloc(i, 1, 0x1000 + i * 32, i % 100))
        .collect();
    let opts = WriterOptions {
        block_bytes: 1024,
        compression_level: 0,
        ordered: true,
        ..Default::default()
    };
    let mut bytes = write_trace(&recs, &[], opts);
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    let mut it = Reader::new(&bytes[..], "t".into()).unwrap();
    let mut want = Vec::new();
    let want_err = loop {
        match it.next() {
            Some(Ok(r)) => want.push(r),
            Some(Err(e)) => break e,
            None => panic!("no error"),
        }
    };
    let mut r = Reader::new(&bytes[..], "t".into()).unwrap();
    let mut batch = EventBatch::new();
    let mut got = Vec::new();
    let err = loop {
        match r.next_batch(&mut batch) {
            Ok(true) => got.extend((0..batch.len()).map(|i| batch.record(i))),
            Ok(false) => panic!("no error"),
            Err(e) => break e,
        }
    };
    assert!(!got.is_empty());
    assert_eq!(got, want);
    assert_eq!(err.to_string(), want_err.to_string());
    assert!(!r.next_batch(&mut batch).unwrap());
    assert!(batch.is_empty());
}

/// Corrupt column contents inside a valid block (no checksum to catch it):
/// same records and same error from both APIs, never a panic.
#[test]
fn corrupt_columns_same_as_iterator() {
    let recs: Vec<_> = (0..300)
        .map(|i| alloc(i, 1 + (i % 2) as u32, 0x1000 + i * 32, i % 100))
        .collect();
    let opts = WriterOptions {
        compression_level: 0,
        ordered: true,
        ..Default::default()
    };
    let bytes = write_trace(&recs, &[], opts);
    let mut rng = traces::synthetic::Rng::new(3);
    for _ in 0..300 {
        let mut d = bytes.clone();
        let at = rng.range(40, d.len() as u64 - 30) as usize;
        d[at] = rng.next_u64() as u8;
        fix_crcs(&mut d);
        let Ok(mut it) = Reader::new(&d[..], "mem.atrace".into()) else {
            continue;
        };
        let mut want = Vec::new();
        let mut want_err = None;
        for x in it.by_ref() {
            match x {
                Ok(r) => want.push(r),
                Err(e) => want_err = Some(e.to_string()),
            }
        }
        let (got, err, _) = read_batches(&d);
        assert_eq!(got, want, "byte {at}");
        assert_eq!(err.map(|e| e.to_string()), want_err, "byte {at}");
    }
}

/// Recomputes every block's CRC, so damage reaches the decoders.
pub fn fix_crcs(d: &mut [u8]) {
    let mut at = 12;
    while at + 16 <= d.len() {
        let stored = u32::from_le_bytes(d[at + 4..at + 8].try_into().unwrap()) as usize;
        let end = (at + 16 + stored).min(d.len());
        let crc = crc32(&d[at + 16..end]);
        d[at + 12..at + 16].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

fn crc32(b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in b {
        c ^= x as u32;
        for _ in 0..8 {
            c = (c >> 1) ^ (0xEDB8_8320 & (c & 1).wrapping_neg());
        }
    }
    !c
}

#[test]
fn push_record_round_trips_every_kind() {
    let recs: Vec<Record> = vec![
        alloc(1, 2, 0x10, 3),
        Record {
            time: 2,
            thread: 3,
            event: traces::Event::Marker {
                value: 7,
                label: "x".into(),
            },
        },
        Record {
            time: 3,
            thread: 3,
            event: traces::Event::Mremap {
                old_addr: 1,
                old_len: 2,
                new_addr: 3,
                new_len: 4,
                stack: 5,
            },
        },
    ];
    let mut b = EventBatch::new();
    for r in &recs {
        b.push_record(r);
    }
    check_columns(&b);
    assert_eq!((0..b.len()).map(|i| b.record(i)).collect::<Vec<_>>(), recs);
    assert_eq!(b.aux()[2], 1);
    b.clear();
    assert!(b.is_empty() && b.others().is_empty());
}

/// The recorded sample traces (real multi-thread programs): batches equal
/// the iterator, in global order.
#[test]
fn recorded_samples_batches_equal_iterator() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    for name in ["mt.atrace", "python3.atrace", "sqlite3.atrace"] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let (got, err, r) = read_batches(&bytes);
        assert!(err.is_none(), "{name}: {err:?}");
        let (want, _) = read_all(&bytes);
        assert!(!got.is_empty());
        assert!(got == want, "{name}: batches differ from the iterator");
        assert!(got
            .windows(2)
            .all(|w| (w[0].time, w[0].thread) <= (w[1].time, w[1].thread)));
        assert!(r.trailer().is_some(), "{name}");
    }
}

/// The recorded samples (format version 1) written again with the current
/// writer (version 2: sizes split into two columns, stacks delta-coded) read
/// back as the same records and stacks, through batches and the iterator.
#[test]
fn recorded_samples_reencoded_read_the_same() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    for name in ["mt.atrace", "python3.atrace", "sqlite3.atrace"] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let (want, r) = read_all(&bytes);
        let stacks: Vec<(u32, Vec<u64>)> = r
            .stacks()
            .ids()
            .map(|id| (id, r.stacks().frames(id)))
            .collect();
        let again = write_trace(&want, &stacks, traces::WriterOptions::default());
        let (got, r2) = read_all(&again);
        assert!(got == want, "{name}: records differ after re-encoding");
        for (id, frames) in &stacks {
            assert_eq!(&r2.stacks().frames(*id), frames, "{name}: stack {id}");
        }
        let (batched, err, _) = read_batches(&again);
        assert!(err.is_none(), "{name}: {err:?}");
        assert!(batched == want, "{name}: batches differ");
        assert!(
            again.len() < bytes.len(),
            "{name}: {} -> {}",
            bytes.len(),
            again.len()
        );
    }
}
