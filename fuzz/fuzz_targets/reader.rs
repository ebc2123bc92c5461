//! Fuzz target: the trace reader on arbitrary bytes must never panic, hang or
//! allocate without bound (libFuzzer's -rss_limit_mb catches the latter).
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run reader -- -max_total_time=60`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Half the inputs get a valid preamble so the fuzzer reaches the blocks.
    let mut owned;
    let bytes = if data.first().is_some_and(|b| b & 1 == 1) && data.len() > 1 {
        owned = traces::MAGIC.to_vec();
        owned.extend_from_slice(&traces::VERSION.to_le_bytes());
        owned.extend_from_slice(&[0, 0]);
        owned.extend_from_slice(&data[1..]);
        &owned[..]
    } else {
        data
    };
    if let Ok(mut r) = traces::Reader::new(bytes, "fuzz".into()) {
        for rec in r.by_ref() {
            if rec.is_err() {
                break;
            }
        }
        let ids: Vec<u32> = r.stacks().ids().take(64).collect();
        for id in ids {
            let _ = r.stacks().frames(id);
        }
    }
});
