//! Damaged files: each gives its exact, positioned error, and a truncated file
//! still yields every complete block.

use traces::{ErrorKind, Reader, Record, WriterOptions};

use crate::common::*;

fn sample() -> (Vec<Record>, Vec<u8>) {
    let recs: Vec<_> = (0..5000)
        .map(|i| alloc(i, (i % 3) as u32 + 1, 0x1000 + i * 32, i % 100))
        .collect();
    // Small blocks so a cut falls after many complete ones.
    let opts = WriterOptions {
        block_bytes: 1024,
        ordered: true,
        ..Default::default()
    };
    let bytes = write_trace(&recs, &[(1, vec![1, 2, 3])], opts);
    (recs, bytes)
}

fn open(bytes: &[u8]) -> Result<Reader<&[u8]>, traces::Error> {
    Reader::new(bytes, "t.atrace".into())
}

#[test]
fn empty_file() {
    let e = open(&[]).err().unwrap();
    assert!(matches!(e.kind(), ErrorKind::Empty));
    assert_eq!(
        e.to_string(),
        "t.atrace at byte 0: empty file, not an alloctrace trace"
    );
}

#[test]
fn wrong_magic() {
    let e = open(b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00")
        .err()
        .unwrap();
    assert!(matches!(e.kind(), ErrorKind::BadMagic { .. }));
    assert!(e.to_string().contains("not an alloctrace trace"), "{e}");
}

#[test]
fn future_version_names_both_versions() {
    let (_, mut bytes) = sample();
    bytes[8..10].copy_from_slice(&(traces::VERSION + 1).to_le_bytes());
    let e = open(&bytes).err().unwrap();
    match *e.kind() {
        ErrorKind::UnsupportedVersion { found, supported } => {
            assert_eq!((found, supported), (traces::VERSION + 1, traces::VERSION));
        }
        ref k => panic!("unexpected {k:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("version {}", traces::VERSION + 1))
            && msg.contains(&format!("version {}", traces::VERSION)),
        "{msg}"
    );
}

#[test]
fn truncated_file_yields_complete_blocks_then_reports() {
    let (recs, bytes) = sample();
    for cut in [bytes.len() - 1, bytes.len() * 2 / 3, bytes.len() / 2 + 7] {
        let mut r = open(&bytes[..cut]).unwrap();
        let got: Vec<Record> = r.by_ref().map(|x| x.unwrap()).collect();
        assert!(!got.is_empty());
        assert!(got.len() < recs.len() || cut == bytes.len() - 1);
        // In global order, and per thread exactly a prefix of what was written:
        // nothing invented, nothing skipped before the cut.
        assert!(got
            .windows(2)
            .all(|w| (w[0].time, w[0].thread) <= (w[1].time, w[1].thread)));
        for t in 1..=3 {
            let want: Vec<&Record> = recs.iter().filter(|r| r.thread == t).collect();
            let have: Vec<&Record> = got.iter().filter(|r| r.thread == t).collect();
            assert_eq!(&want[..have.len()], &have[..], "thread {t}");
        }
        let t = r.truncation().expect("truncation reported");
        assert!(t.dropped_bytes > 0);
        assert!(
            t.offset + t.dropped_bytes == cut as u64,
            "cut at {cut}: {t:?}"
        );
        assert!(t.to_string().contains("truncated"));
        assert!(r.trailer().is_none() || cut == bytes.len() - 1);
    }
}

#[test]
fn truncated_inside_header_is_an_error() {
    let (_, bytes) = sample();
    let e = open(&bytes[..20]).err().unwrap();
    assert!(e.to_string().contains("file ends inside the header"), "{e}");
}

#[test]
fn bit_flip_gives_checksum_error_with_block_and_offset() {
    let (_, bytes) = sample();
    // Flip a bit in the middle of the file: inside some block's payload or header.
    let mut damaged = bytes.clone();
    let at = bytes.len() / 2;
    damaged[at] ^= 0x10;
    let mut r = open(&damaged).unwrap();
    let mut n = 0;
    let err = loop {
        match r.next() {
            Some(Ok(_)) => n += 1,
            Some(Err(e)) => break e,
            None => panic!("no error after {n} records"),
        }
    };
    assert!(n > 0, "records before the damaged block are still yielded");
    assert!(err.block().is_some() && err.offset().is_some(), "{err}");
    assert!(err.offset().unwrap() <= at as u64);
    let msg = err.to_string();
    assert!(msg.starts_with("t.atrace: block "), "{msg}");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Checksum { .. } | ErrorKind::Corrupt(_)
        ),
        "{msg}"
    );
}

#[test]
fn every_single_bit_flip_is_detected_or_harmless() {
    // No panic and never silently different records for any flipped bit in
    // a small trace.
    let recs: Vec<_> = (0..40).map(|i| alloc(i, 1, 0x1000 + i * 32, i)).collect();
    let bytes = write_trace(&recs, &[(1, vec![1])], WriterOptions::default());
    for bit in 0..bytes.len() * 8 {
        let mut d = bytes.clone();
        d[bit / 8] ^= 1 << (bit % 8);
        let Ok(mut r) = open(&d) else { continue };
        let got: Result<Vec<Record>, _> = r.by_ref().collect();
        if let Ok(got) = got {
            if r.truncation().is_some() {
                // A block's stored length made to reach past the end of the
                // file reads as a truncated file (a compressed block has no
                // other length to check it against): reported, and the
                // records before it are the file's.
                assert_eq!(got, recs[..got.len()], "bit {bit}: not a prefix");
                continue;
            }
            // Only reserved/padding bits could be harmless; records must match.
            assert_eq!(got, recs, "bit {bit} changed records silently");
        }
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut rng = traces::synthetic::Rng::new(7);
    let (_, good) = sample();
    for i in 0..2000 {
        let len = rng.range(0, 300) as usize;
        let mut d: Vec<u8> = if i % 2 == 0 {
            (0..len).map(|_| rng.next_u64() as u8).collect()
        } else {
            // Mutations of a valid file go deeper than random bytes.
            let mut d = good[..good.len().min(len + 40)].to_vec();
            for _ in 0..rng.range(1, 8) {
                let at = rng.range(0, d.len() as u64 - 1) as usize;
                d[at] = rng.next_u64() as u8;
            }
            d
        };
        if i % 3 == 0 && d.len() >= 8 {
            d[..8].copy_from_slice(traces::MAGIC);
        }
        if let Ok(r) = open(&d) {
            for x in r {
                if x.is_err() {
                    break;
                }
            }
        }
    }
}
