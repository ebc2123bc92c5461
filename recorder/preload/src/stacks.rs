//! The in-process stack table: a lock-free open-addressing map from a stack's
//! 64-bit hash to its id, so each distinct stack is sent to the collector once
//! (by the first thread that meets it, as a `KIND_STACK` record in its own
//! stream before its first use).

use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

const SLOTS: usize = 1 << 20;
const PROBES: usize = 64;

#[repr(C)]
struct Slot {
    hash: AtomicU64,
    id: AtomicU32,
    _pad: u32,
}

static TABLE: AtomicPtr<Slot> = AtomicPtr::new(core::ptr::null_mut());

fn table() -> Option<&'static [Slot]> {
    let mut t = TABLE.load(Ordering::Acquire);
    if t.is_null() {
        // SAFETY: anonymous private mapping; zero pages are empty slots.
        let m = unsafe {
            crate::real::mmap(
                core::ptr::null_mut(),
                SLOTS * 16,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if m == libc::MAP_FAILED || (m as isize) < 0 {
            return None;
        }
        match TABLE.compare_exchange(
            core::ptr::null_mut(),
            m.cast(),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => t = m.cast(),
            Err(other) => {
                // SAFETY: our own unused mapping.
                unsafe { crate::real::munmap(m, SLOTS * 16) };
                t = other;
            }
        }
    }
    // SAFETY: the table maps SLOTS slots for the life of the process.
    Some(unsafe { core::slice::from_raw_parts(t, SLOTS) })
}

/// After fork: the child's trace starts with no stacks defined.
pub fn reset() {
    let t = TABLE.load(Ordering::Acquire);
    if !t.is_null() {
        // SAFETY: zeroing our own private anonymous mapping (only this thread
        // runs in the child).
        unsafe { libc::madvise(t.cast(), SLOTS * 16, libc::MADV_DONTNEED) };
    }
}

/// Hash of a frame list (never 0).
pub fn hash(frames: &[u64]) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15 ^ frames.len() as u64;
    for &f in frames {
        h = (h ^ f).wrapping_mul(0x0100_0000_01b3_u64.wrapping_mul(0x9e37_79b9));
        h ^= h >> 29;
    }
    h | 1
}

/// Looks `h` up; returns `(id, true)` when found, or claims a slot and
/// returns `(new_id, false)` (the caller must send the frames).
pub fn intern(h: u64, new_id: impl FnOnce() -> u32) -> (u32, bool) {
    let Some(t) = table() else {
        return (new_id(), false);
    };
    let mut i = (h as usize) & (SLOTS - 1);
    for _ in 0..PROBES {
        let s = &t[i];
        let cur = s.hash.load(Ordering::Acquire);
        if cur == h {
            let id = s.id.load(Ordering::Acquire);
            if id != 0 {
                return (id, true);
            }
            break; // being inserted by another thread: define our own copy
        }
        if cur == 0 {
            if s.hash
                .compare_exchange(0, h, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let id = new_id();
                s.id.store(id, Ordering::Release);
                return (id, false);
            }
            if s.hash.load(Ordering::Acquire) == h {
                break;
            }
        }
        i = (i + 1) & (SLOTS - 1);
    }
    (new_id(), false)
}
