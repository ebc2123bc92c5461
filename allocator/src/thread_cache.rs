//! Per-thread caches: a free list per size class, so the common malloc and free take
//! no lock and touch no shared cache line.
//!
//! A cache is filled from the central lists in batches and flushed back in batches
//! when a list grows past its cap. Each class's cap starts small (8 blocks) and
//! doubles every time the list runs dry or overflows, up to about 8 KiB worth of
//! blocks (between 1 and 256 blocks: a bin of 8 KiB blocks holds one): a class a
//! thread uses a little parks (and touches) a few blocks only, while a hot class
//! reaches the full cap after a handful of refills. Cached blocks are resident memory the program cannot use: with 32 KiB
//! per class, `bench/churn.c` kept about 300 KiB parked; at 8 KiB the extra central
//! traffic costs about 2 % more instructions on it.
//!
//! Classes of at least 16 KiB ([`PURGE_CLASS`]) are the exception: every free of
//! theirs takes the slow path, which returns the block's pages to the OS (all but the
//! first), and their bins hold at most four such blocks.
//!
//! A block freed by another thread simply joins that thread's
//! cache: blocks are interchangeable within a class, and spans are found from the
//! block address, so cross-thread frees need no special path.
//!
//! The cache itself is plain data with a `const` initialiser and no destructor, so
//! it can live in a `thread_local!` without allocating; the global module arms a
//! pthread key whose destructor flushes it when the thread exits.

use core::ptr;

use crate::heap::Heap;
use crate::size_class::{class_of, class_size, NUM_CLASSES, PURGE_CLASS};
use crate::span::{self, FreeBlock};
use crate::stats::{add, LocalCounts};

/// Bytes of blocks a bin may hold at its full cap.
const CLASS_BYTES: u32 = 8 * 1024;

/// Cached-block limit per class.
const LIMIT: [u32; NUM_CLASSES] = {
    let mut t = [0u32; NUM_CLASSES];
    let mut i = 0;
    while i < NUM_CLASSES {
        let n = (CLASS_BYTES / crate::size_class::CLASS_SIZE[i]) as usize;
        t[i] = if n < 1 {
            1
        } else if n > 256 {
            256
        } else {
            n as u32
        };
        i += 1;
    }
    t
};

/// The cache has not registered its thread-exit hook yet.
pub(crate) const INACTIVE: u8 = 0;
/// The cache is in use.
pub(crate) const ACTIVE: u8 = 1;
/// The thread is exiting: the cache was flushed and must stay empty.
pub(crate) const DEAD: u8 = 2;

/// One class's cached blocks.
#[derive(Debug)]
#[repr(C)]
struct Bin {
    head: *mut FreeBlock,
    count: u32,
    /// The current cap on `count`, grown from [`START`] towards [`LIMIT`] each time the
    /// bin runs dry or overflows (0: not grown yet).
    limit: u32,
    allocs: u64,
    frees: u64,
}

/// One thread's cached free blocks and unpublished counts. All-zero bytes are a
/// valid inactive cache.
#[derive(Debug)]
#[repr(C)]
pub struct ThreadCache {
    bins: [Bin; NUM_CLASSES],
    requested: u64,
    pub(crate) state: u8,
}

/// The first cap of a bin: a class a thread uses a little costs it a few blocks, not
/// [`CLASS_BYTES`] of touched pages.
const START: u32 = 8;

/// The next cap of a bin of `class` whose cap is `limit`: doubled, up to the class
/// limit. Bins of purged classes keep cap 0, so every free of theirs takes the slow
/// path, which returns the block's pages (see [`PURGE_CLASS`]).
#[inline]
fn grown(limit: u32, class: usize) -> u32 {
    if class >= PURGE_CLASS {
        return 0;
    }
    let next = if limit == 0 { START } else { limit * 2 };
    next.min(LIMIT[class])
}

/// How many (purged) blocks a bin of a purged class may hold.
const PURGED_CAP: u32 = 4;

impl ThreadCache {
    /// An empty, inactive cache.
    pub const fn new() -> ThreadCache {
        ThreadCache {
            bins: [const {
                Bin {
                    head: ptr::null_mut(),
                    count: 0,
                    limit: 0,
                    allocs: 0,
                    frees: 0,
                }
            }; NUM_CLASSES],
            requested: 0,
            state: INACTIVE,
        }
    }

    /// Pops a cached block for `size` bytes (at most the large threshold), or null.
    #[inline(always)]
    pub(crate) fn try_pop(&mut self, size: usize) -> *mut u8 {
        let class = class_of(size);
        debug_assert!(class < NUM_CLASSES);
        // SAFETY: `class_of` maps every size up to `MAX_SMALL` (callers check the large
        // threshold, which is at most that) to a class below NUM_CLASSES (a unit test
        // of `size_class` checks every size); this saves a compare on the fast path.
        let bin = unsafe { self.bins.get_unchecked_mut(class) };
        let b = bin.head;
        if b.is_null() {
            return b as *mut u8;
        }
        // SAFETY: cached blocks are free and hold a valid link.
        bin.head = unsafe { (*b).next };
        bin.count -= 1;
        bin.allocs += 1;
        self.requested += size as u64;
        b as *mut u8
    }

    /// Publishes the counts of one class (and the requested bytes) to `heap`.
    fn publish(&mut self, heap: &Heap, class: usize) {
        let bin = &mut self.bins[class];
        let size = class_size(class) as i64;
        let net = bin.allocs as i64 - bin.frees as i64;
        let mut local = LocalCounts {
            live_bytes: net * size,
            live_blocks: net,
            requested: self.requested,
            allocs: bin.allocs,
            frees: bin.frees,
        };
        bin.allocs = 0;
        bin.frees = 0;
        self.requested = 0;
        heap.counters.publish(&mut local);
    }

    /// Refills the bin for `size` from `heap` and pops a block; null when out of
    /// memory. The cache must be active.
    #[inline(never)]
    pub(crate) fn refill_pop(&mut self, heap: &Heap, size: usize) -> *mut u8 {
        let class = class_of(size);
        self.publish(heap, class);
        let bin = &mut self.bins[class];
        bin.limit = grown(bin.limit, class);
        let want = (bin.limit / 2).max(1) as usize;
        let got = heap.refill(class, want, &mut bin.head);
        bin.count += got as u32;
        self.try_pop(size)
    }

    /// Caches dead block `p`, a block of class `class` starting at `start`.
    /// The cache must be active.
    #[inline(always)]
    pub(crate) fn push(&mut self, heap: &Heap, class: usize, start: usize) {
        debug_assert!(class < NUM_CLASSES);
        // SAFETY: callers pass a class read from a span header, always < NUM_CLASSES.
        let bin = unsafe { self.bins.get_unchecked_mut(class) };
        let b = start as *mut FreeBlock;
        // SAFETY: the caller hands over a dead block; its first word is ours to use.
        unsafe { (*b).next = bin.head };
        bin.head = b;
        bin.count += 1;
        bin.frees += 1;
        if bin.count > bin.limit {
            self.overflow(heap, class);
        }
    }

    /// A bin went over its cap: grows the cap, and trims the bin to half of it if
    /// that is not enough.
    #[inline(never)]
    fn overflow(&mut self, heap: &Heap, class: usize) {
        let bin = &mut self.bins[class];
        if class >= PURGE_CLASS {
            // SAFETY: the head is the dead block just pushed, a block of `class`; the
            // cache keeps only its first word (the link).
            if unsafe { span::purge_block(bin.head as usize, class_size(class)) } {
                add(&heap.counters.madvise_calls, 1);
            }
            if bin.count > PURGED_CAP {
                self.trim(heap, class, PURGED_CAP as usize / 2);
            }
            return;
        }
        bin.limit = grown(bin.limit, class);
        if bin.count > bin.limit {
            let keep = bin.limit as usize / 2;
            self.trim(heap, class, keep);
        }
    }

    /// Keeps the first `keep` blocks of a bin and returns the rest to the heap.
    #[inline(never)]
    fn trim(&mut self, heap: &Heap, class: usize, keep: usize) {
        self.publish(heap, class);
        let bin = &mut self.bins[class];
        let count = bin.count as usize;
        if count <= keep {
            return;
        }
        let rest = if keep == 0 {
            core::mem::replace(&mut bin.head, ptr::null_mut())
        } else {
            let mut last = bin.head;
            for _ in 1..keep {
                // SAFETY: the bin holds `count > keep` linked blocks.
                last = unsafe { (*last).next };
            }
            // SAFETY: `last` is the keep-th block; detach what follows.
            unsafe { core::mem::replace(&mut (*last).next, ptr::null_mut()) }
        };
        bin.count = keep as u32;
        // SAFETY: `rest` links `count - keep` dead blocks of `class`, each once.
        unsafe { heap.flush(class, rest, count - keep) };
    }

    /// Returns every cached block to `heap` and publishes the counts.
    pub(crate) fn flush_all(&mut self, heap: &Heap) {
        for class in 0..NUM_CLASSES {
            self.trim(heap, class, 0);
        }
    }
}

impl Default for ThreadCache {
    fn default() -> Self {
        ThreadCache::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use std::vec::Vec;

    #[test]
    fn cache_round_trip_returns_everything() {
        let heap = Heap::new(Config::RESERVED).expect("heap");
        let mut tc = ThreadCache::new();
        tc.state = ACTIVE;
        let mut ptrs = Vec::new();
        for i in 0..5000 {
            let size = 1 + (i * 37) % 2000;
            let p = tc.try_pop(size);
            let p = if p.is_null() {
                tc.refill_pop(&heap, size)
            } else {
                p
            };
            assert!(!p.is_null());
            ptrs.push(p);
        }
        for p in ptrs {
            let s = heap.map.lookup(p as usize);
            // SAFETY: `s` is the span of live block `p`.
            let class = unsafe { (*s).class } as usize;
            tc.push(&heap, class, p as usize);
        }
        tc.flush_all(&heap);
        heap.check().expect("invariants");
        let st = heap.stats();
        assert_eq!(st.live_blocks, 0);
        assert_eq!(st.allocs, 5000);
        assert!(st.classes.iter().all(|c| c.used_blocks == 0));
    }
}
