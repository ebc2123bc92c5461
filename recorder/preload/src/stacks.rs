//! The in-process stack table: a lock-free open-addressing map from a stack's
//! 64-bit hash to its id, so each distinct stack is sent to the collector once
//! (by the first thread that meets it, as a `KIND_STACK` record in its own
//! stream before its first use).
//!
//! The table is a few levels of growing size (64 KB up to 16 MB), each mapped
//! when first needed. A hash lives in the first level whose probe window
//! (from its home slot) had room when it was inserted; windows only fill up
//! (nothing is removed), so a lookup that meets a full window without its
//! hash goes on to the next level. A program with a thousand stacks touches
//! the 16 pages of the first level only: one table of 16 MB had each new
//! stack land on a page of its own, a page fault for most (1,300 of
//! sqlite3's run's 4,500).

use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// log2 of each level's slot count.
const LEVEL_BITS: [u32; 5] = [12, 14, 16, 18, 20];
/// Slots probed in each level before going on to the next.
const PROBES: [usize; 5] = [16, 16, 16, 32, 64];
const LEVELS: usize = LEVEL_BITS.len();

#[repr(C)]
struct Slot {
    hash: AtomicU64,
    id: AtomicU32,
    _pad: u32,
}

#[allow(clippy::declare_interior_mutable_const)] // only used to initialise TABLES
const NO_TABLE: AtomicPtr<Slot> = AtomicPtr::new(core::ptr::null_mut());
static TABLES: [AtomicPtr<Slot>; LEVELS] = [NO_TABLE; LEVELS];

fn level_bytes(level: usize) -> usize {
    (1usize << LEVEL_BITS[level]) * core::mem::size_of::<Slot>()
}

/// Level `level`'s slots, mapped on first use; `None` if it cannot be mapped.
fn table(level: usize) -> Option<&'static [Slot]> {
    let slots = 1usize << LEVEL_BITS[level];
    let mut t = TABLES[level].load(Ordering::Acquire);
    if t.is_null() {
        // SAFETY: anonymous private mapping; zero pages are empty slots.
        let m = unsafe {
            crate::real::mmap(
                core::ptr::null_mut(),
                level_bytes(level),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if m == libc::MAP_FAILED || (m as isize) < 0 {
            return None;
        }
        match TABLES[level].compare_exchange(
            core::ptr::null_mut(),
            m.cast(),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => t = m.cast(),
            Err(other) => {
                // SAFETY: our own unused mapping.
                unsafe { crate::real::munmap(m, level_bytes(level)) };
                t = other;
            }
        }
    }
    // SAFETY: the level maps `slots` slots for the life of the process.
    Some(unsafe { core::slice::from_raw_parts(t, slots) })
}

/// After fork: the child's trace starts with no stacks defined.
pub fn reset() {
    for (level, t) in TABLES.iter().enumerate() {
        let t = t.load(Ordering::Acquire);
        if !t.is_null() {
            // SAFETY: zeroing our own private anonymous mapping (only this
            // thread runs in the child).
            unsafe { libc::madvise(t.cast(), level_bytes(level), libc::MADV_DONTNEED) };
        }
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
    for (level, &probes) in PROBES.iter().enumerate() {
        let Some(t) = table(level) else {
            break;
        };
        let mask = t.len() - 1;
        let mut i = (h as usize) & mask;
        for _ in 0..probes {
            let s = &t[i];
            let cur = s.hash.load(Ordering::Acquire);
            if cur == h {
                let id = s.id.load(Ordering::Acquire);
                if id != 0 {
                    return (id, true);
                }
                // Being inserted by another thread: define our own copy.
                return (new_id(), false);
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
                    return (new_id(), false);
                }
            }
            i = (i + 1) & mask;
        }
    }
    (new_id(), false)
}
