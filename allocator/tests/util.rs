//! Shared helpers: a seeded RNG, fill patterns, and serialising tests that use the
//! process-global instance.

use std::sync::{Mutex, MutexGuard};

use allocator::{global, Backend};

/// xorshift64*: deterministic, seedable, good enough for choosing sizes.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The byte a block with tag `tag` holds at offset `i`.
fn pattern(tag: u64, i: usize) -> u8 {
    (tag as u8) ^ (i as u8).wrapping_mul(31) ^ ((tag >> 8) as u8)
}

/// Fills `len` bytes at `p` with the pattern of `tag`.
///
/// # Safety
/// `p` must be valid for `len` bytes of writes.
pub unsafe fn fill(p: *mut u8, len: usize, tag: u64) {
    for i in 0..len {
        // SAFETY: caller's promise.
        unsafe { *p.add(i) = pattern(tag, i) };
    }
}

/// Asserts that `len` bytes at `p` still hold the pattern of `tag`: the block was not
/// handed to anyone else or overwritten by the allocator.
///
/// # Safety
/// `p` must be valid for `len` bytes of reads.
pub unsafe fn verify(p: *const u8, len: usize, tag: u64) {
    for i in 0..len {
        // SAFETY: caller's promise.
        let got = unsafe { *p.add(i) };
        assert_eq!(
            got,
            pattern(tag, i),
            "block {p:p} tag {tag} corrupted at byte {i} of {len}"
        );
    }
}

static GLOBAL: Mutex<()> = Mutex::new(());

/// Serialises tests that use the process-global instance and puts it on a reserved
/// region (the test harness's own glibc malloc uses the real program break).
pub fn global_instance() -> MutexGuard<'static, ()> {
    global::set_backend(Backend::Reserved);
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}
