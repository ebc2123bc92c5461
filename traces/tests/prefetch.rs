//! `Reader::with_prefetch` (blocks read and decompressed on a thread of their
//! own): the same events, errors, truncation reports and end state as reading
//! on one thread, on valid, cut and damaged traces; the thread stops when the
//! reader is dropped early.

use std::io::{Cursor, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use traces::{EventBatch, Reader, Record, WriterOptions};

use crate::common::*;

/// Everything a reader reports, as comparable values.
#[derive(Debug, PartialEq)]
struct Outcome {
    open_error: Option<String>,
    records: Vec<Record>,
    error: Option<(String, Option<u64>, Option<u64>)>,
    truncation: Option<traces::Truncation>,
    trailer: Option<traces::Trailer>,
    stacks: Vec<(u32, Vec<u64>)>,
    bytes_read: u64,
    max_buffered: usize,
}

fn outcome<R: Read>(opened: traces::Result<Reader<R>>, batched: bool) -> Outcome {
    let mut o = Outcome {
        open_error: None,
        records: Vec::new(),
        error: None,
        truncation: None,
        trailer: None,
        stacks: Vec::new(),
        bytes_read: 0,
        max_buffered: 0,
    };
    let mut r = match opened {
        Ok(r) => r,
        Err(e) => {
            o.open_error = Some(e.to_string());
            return o;
        }
    };
    let note = |e: traces::Error| Some((e.to_string(), e.block(), e.offset()));
    if batched {
        let mut batch = EventBatch::new();
        loop {
            match r.next_batch(&mut batch) {
                Ok(true) => o.records.extend((0..batch.len()).map(|i| batch.record(i))),
                Ok(false) => break,
                Err(e) => {
                    o.error = note(e);
                    // After the error: the end.
                    assert!(!r.next_batch(&mut batch).unwrap());
                    break;
                }
            }
        }
    } else {
        for x in r.by_ref() {
            match x {
                Ok(rec) => o.records.push(rec),
                Err(e) => o.error = note(e),
            }
        }
    }
    o.truncation = r.truncation().cloned();
    o.trailer = r.trailer().cloned();
    let ids: Vec<u32> = r.stacks().ids().collect();
    o.stacks = ids
        .into_iter()
        .map(|id| (id, r.stacks().frames(id)))
        .collect();
    o.bytes_read = r.bytes_read();
    o.max_buffered = r.max_buffered();
    o
}

/// Reads `bytes` both ways (iterator and batches) and checks that prefetch
/// changes nothing.
fn same_both_ways(bytes: &[u8]) -> Outcome {
    let mut first = None;
    for batched in [false, true] {
        let direct = outcome(Reader::new(bytes, "p.atrace".into()), batched);
        let pre = Reader::new(Cursor::new(bytes.to_vec()), "p.atrace".into()).map(|r| {
            let r = r.with_prefetch();
            assert!(r.is_prefetching());
            r
        });
        let pre = outcome(pre, batched);
        assert_eq!(direct, pre, "batched: {batched}");
        first.get_or_insert(direct);
    }
    first.unwrap()
}

fn sample(n: u64, threads: u64, level: i32) -> Vec<u8> {
    let recs: Vec<_> = (0..n)
        .map(|i| alloc(i, (i % threads) as u32 + 1, 0x1000 + i * 32, i % 100))
        .collect();
    let opts = WriterOptions {
        block_bytes: 1024,
        compression_level: level,
        ordered: true,
        ..Default::default()
    };
    write_trace(&recs, &[(1, vec![1, 2, 3]), (2, vec![4])], opts)
}

#[test]
fn prefetch_asked_twice_keeps_its_thread() {
    let bytes = sample(5000, 3, 3);
    let r = Reader::new(Cursor::new(bytes.clone()), "p.atrace".into()).map(|r| {
        let r = r.with_prefetch().with_prefetch();
        assert!(r.is_prefetching());
        r
    });
    assert_eq!(
        outcome(r, true),
        outcome(Reader::new(&bytes[..], "p.atrace".into()), true)
    );
}

#[test]
fn valid_traces_read_the_same() {
    for (n, threads, level) in [
        (0, 1, 3),
        (1, 1, 3),
        (5000, 3, 3),
        (20000, 7, 0),
        (20000, 2, 1),
    ] {
        let o = same_both_ways(&sample(n, threads, level));
        assert_eq!(o.records.len() as u64, n);
        assert!(o.error.is_none() && o.trailer.is_some());
    }
}

#[test]
fn every_cut_reads_the_same() {
    let bytes = sample(3000, 3, 3);
    for cut in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
        same_both_ways(&bytes[..cut]);
    }
}

#[test]
fn damaged_traces_read_the_same() {
    let bytes = sample(3000, 3, 3);
    let mut rng = traces::synthetic::Rng::new(11);
    for _ in 0..400 {
        let mut d = bytes.clone();
        for _ in 0..rng.range(1, 4) {
            let at = rng.range(0, d.len() as u64 - 1) as usize;
            d[at] ^= 1 << rng.range(0, 7);
        }
        same_both_ways(&d);
    }
    // A newer version is refused before any thread starts.
    let mut d = bytes.clone();
    d[8..10].copy_from_slice(&(traces::VERSION + 1).to_le_bytes());
    let o = same_both_ways(&d);
    assert!(o.open_error.unwrap().contains("newer"));
}

#[test]
fn arbitrary_bytes_read_the_same() {
    let mut rng = traces::synthetic::Rng::new(5);
    let good = sample(500, 2, 3);
    for i in 0..1000 {
        let len = rng.range(0, 400) as usize;
        let d: Vec<u8> = if i % 2 == 0 {
            let mut d = good[..12].to_vec();
            d.extend((0..len).map(|_| rng.next_u64() as u8));
            d
        } else {
            let mut d = good[..good.len().min(len + 40)].to_vec();
            let at = rng.range(0, d.len() as u64 - 1) as usize;
            d[at] = rng.next_u64() as u8;
            d
        };
        same_both_ways(&d);
    }
}

/// A byte source that says when it has been dropped (by the block thread,
/// when that thread ends).
struct Watched {
    inner: Cursor<Vec<u8>>,
    dropped: Arc<AtomicBool>,
}

impl Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

#[test]
fn dropping_the_reader_early_stops_the_block_thread() {
    // Many blocks: the block thread waits for room in the full window when
    // the reader goes away.
    let bytes = sample(200_000, 4, 3);
    for take in [0, 1, 1000] {
        let dropped = Arc::new(AtomicBool::new(false));
        let src = Watched {
            inner: Cursor::new(bytes.clone()),
            dropped: Arc::clone(&dropped),
        };
        let mut r = Reader::new(src, "p.atrace".into()).unwrap().with_prefetch();
        for x in r.by_ref().take(take) {
            x.unwrap();
        }
        assert!(!dropped.load(Ordering::SeqCst) || take == 0);
        drop(r);
        // Dropping joined the thread, which dropped the source.
        assert!(dropped.load(Ordering::SeqCst), "after {take} records");
    }
}

#[test]
fn the_block_thread_ends_with_the_trace() {
    let bytes = sample(5000, 3, 3);
    let dropped = Arc::new(AtomicBool::new(false));
    let src = Watched {
        inner: Cursor::new(bytes),
        dropped: Arc::clone(&dropped),
    };
    let mut r = Reader::new(src, "p.atrace".into()).unwrap().with_prefetch();
    assert_eq!(r.drain().unwrap(), 5000);
    // The last block was read: the thread has been joined already.
    assert!(dropped.load(Ordering::SeqCst));
    assert!(r.trailer().is_some());
}
