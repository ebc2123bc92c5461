//! Round-trip tests: every event kind survives writing and reading.

use crate::common::*;
use traces::WriterOptions;

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
