//! The chunk map: from any address in the brk arena to the span covering it.
//!
//! One word per 64 KiB chunk of the arena's address range, in a table mapped with
//! `MAP_NORESERVE` and touched lazily (8 bytes per 64 KiB: a 64 GiB arena needs an
//! 8 MiB table of which only the used part ever becomes resident). `free` uses it to
//! tell small blocks (non-null entry) from large ones, and to find the span header of
//! blocks in multi-chunk spans. Entries are written under the heap lock (or, for
//! [`ChunkMap::clear_tag`], by the owner of a live block of the span) and read without
//! a lock.
//!
//! An entry is the span's address (chunk-aligned) with a **tag** in its low 16 bits:
//! the byte offset of the span's class bin in a thread cache
//! ([`crate::thread_cache::tag_of`]), so the thread-cache `free` finds where the block
//! goes with one load and no look at the span header. A zero tag (idle spans, and
//! spans holding blocks handed out at an offset by an aligned allocation, whose start
//! must be computed) sends `free` down its slow path.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::lock::SpinLock;
use crate::os::mmap;
use crate::size_class::{CHUNK, CHUNK_SHIFT};
use crate::span::Span;

/// The bits of an entry holding the tag (below the chunk alignment).
pub(crate) const TAG_MASK: usize = 0xffff;
const _: () = assert!(TAG_MASK < CHUNK);

/// Set in the entry of a clean idle span's first chunk (bin tags are even): such a
/// span keeps no page resident, header included, so the pool's list of clean spans
/// runs through the map. The entry is the next clean span of the same length (or
/// 0), this bit, and the span's length in chunks above it ([`ChunkMap::clean`]).
const CLEAN: usize = 1;

/// Span lookup table over `[base, base + len * CHUNK)`.
///
/// A map may be given a small static table (`with_prefix`): it starts with that one
/// and maps the full table only when the arena outgrows it, copying the entries.
/// The prefix keeps being written beside the full table afterwards, so a thread
/// cache's copy of the old table and length stays right for the chunks it covers.
#[derive(Debug)]
pub(crate) struct ChunkMap {
    base: AtomicUsize,
    table: AtomicPtr<AtomicUsize>,
    len: AtomicUsize,
    /// Entries the arena limit needs (the full table's length).
    full: AtomicUsize,
    /// The static table used first (empty: none).
    prefix: &'static [AtomicUsize],
}

impl ChunkMap {
    /// An empty map that starts with `prefix` (zeroed, used by no other map) as its
    /// table, while the arena fits it.
    pub const fn with_prefix(prefix: &'static [AtomicUsize]) -> ChunkMap {
        ChunkMap {
            base: AtomicUsize::new(0),
            table: AtomicPtr::new(ptr::null_mut()),
            len: AtomicUsize::new(0),
            full: AtomicUsize::new(0),
            prefix,
        }
    }

    /// Sets the table up for an arena at `base` spanning `limit` bytes: the prefix
    /// if there is one, else a mapping of the full table. Returns the bytes the full
    /// table takes, or `None` if the mapping failed.
    pub fn init(&self, base: usize, limit: usize) -> Option<usize> {
        let full = limit >> CHUNK_SHIFT;
        let bytes = Self::bytes(full);
        let (table, len) = if !self.prefix.is_empty() && self.prefix.len() < full {
            (self.prefix.as_ptr() as usize, self.prefix.len())
        } else {
            (mmap::map_sparse(bytes)?, full)
        };
        self.base.store(base, Ordering::Relaxed);
        self.full.store(full, Ordering::Relaxed);
        self.table
            .store(table as *mut AtomicUsize, Ordering::Relaxed);
        self.len.store(len, Ordering::Release);
        Some(bytes)
    }

    /// Page-rounded bytes of a table of `len` entries.
    fn bytes(len: usize) -> usize {
        (len * core::mem::size_of::<usize>()).next_multiple_of(mmap::page_size())
    }

    /// Makes the table cover the arena up to `end`: maps the full table and copies
    /// the prefix's entries if the prefix is too short. False if that mapping failed.
    /// Runs under the lock that serialises `set` (the heap lock).
    #[inline(never)]
    pub fn cover(&self, end: usize) -> bool {
        let len = self.len.load(Ordering::Relaxed);
        if (end - self.base.load(Ordering::Relaxed)) >> CHUNK_SHIFT <= len {
            return true;
        }
        let full = self.full.load(Ordering::Relaxed);
        debug_assert!(len == self.prefix.len() && full > len);
        let Some(table) = mmap::map_sparse(Self::bytes(full)) else {
            return false;
        };
        let table = table as *mut AtomicUsize;
        for (i, e) in self.prefix.iter().enumerate() {
            // SAFETY: `i` is below the prefix's length, less than the new table's.
            unsafe { (*table.add(i)).store(e.load(Ordering::Relaxed), Ordering::Relaxed) };
        }
        // Release: a clear that sees the full table sees the copied entries
        // (`clear_tag`).
        self.table.store(table, Ordering::Release);
        self.len.store(full, Ordering::Release);
        true
    }

    /// Unmaps the table.
    ///
    /// # Safety
    /// No lookups may run concurrently or afterwards.
    pub unsafe fn release(&self) {
        let len = self.len.swap(0, Ordering::Relaxed);
        let table = self.table.swap(ptr::null_mut(), Ordering::Relaxed);
        if !table.is_null() && table.cast_const() != self.prefix.as_ptr() {
            // SAFETY: the table is our own mapping and nobody reads it any more.
            unsafe { mmap::unmap(table as usize, Self::bytes(len)) };
        }
    }

    /// Stores `value` in entry `i` of the table, and of the prefix if `i` is in it.
    #[inline(never)]
    fn store(&self, i: usize, value: usize) {
        let table = self.table.load(Ordering::Relaxed);
        debug_assert!(i < self.len.load(Ordering::Relaxed));
        // SAFETY: callers pass entries of arena memory, which the table covers
        // (`cover` ran when the arena grew).
        unsafe { (*table.add(i)).store(value, Ordering::Release) };
        if table.cast_const() != self.prefix.as_ptr() {
            if let Some(e) = self.prefix.get(i) {
                e.store(value, Ordering::Release);
            }
        }
    }

    /// The table's base address, length and entries, for a thread cache's copy
    /// (length 0 before [`ChunkMap::init`]).
    pub fn params(&self) -> (usize, usize, *const AtomicUsize) {
        let len = self.len.load(Ordering::Acquire);
        (
            self.base.load(Ordering::Relaxed),
            len,
            self.table.load(Ordering::Relaxed),
        )
    }

    /// The raw entry (span address and tag) covering `p`, or 0 if `p` is outside
    /// the arena or in no span.
    #[inline(always)]
    pub fn entry(&self, p: usize) -> usize {
        let len = self.len.load(Ordering::Acquire);
        let idx = p.wrapping_sub(self.base.load(Ordering::Relaxed)) >> CHUNK_SHIFT;
        if idx >= len {
            return 0;
        }
        let table = self.table.load(Ordering::Relaxed);
        // SAFETY: `idx < len`, and the table has `len` entries once `len` is published.
        unsafe { (*table.add(idx)).load(Ordering::Acquire) }
    }

    /// The span covering `p`, or null if `p` is outside the arena or in no span.
    #[inline(always)]
    pub fn lookup(&self, p: usize) -> *mut Span {
        (self.entry(p) & !TAG_MASK) as *mut Span
    }

    /// Points every chunk of `[start, start + chunks * CHUNK)` at `span`, with `tag`.
    pub fn set(&self, start: usize, chunks: usize, span: *mut Span, tag: usize) {
        debug_assert!(span as usize % CHUNK == 0 && tag <= TAG_MASK);
        let first = (start - self.base.load(Ordering::Relaxed)) >> CHUNK_SHIFT;
        for i in first..first + chunks {
            self.store(i, span as usize | tag);
        }
    }

    /// Marks the chunk at `at` as the first of a clean idle span of `chunks` chunks,
    /// followed on its pool list by the clean span at `next` (0: none). The other
    /// chunks' entries are left as they are: nothing looks them up.
    pub fn set_clean(&self, at: usize, chunks: usize, next: usize) {
        debug_assert!(at % CHUNK == 0 && next % CHUNK == 0 && chunks <= 0xff);
        let i = (at - self.base.load(Ordering::Relaxed)) >> CHUNK_SHIFT;
        self.store(i, next | chunks << 8 | CLEAN);
    }

    /// If the chunk at `at` starts a clean idle span: its length in chunks and the
    /// next clean span on its list (0: none).
    pub fn clean(&self, at: usize) -> Option<(usize, usize)> {
        let e = self.entry(at);
        (e & CLEAN != 0).then_some(((e & TAG_MASK) >> 8, e & !TAG_MASK))
    }

    /// Clears the tag of every chunk of formatted span `span` of `chunks` chunks
    /// (its frees take the slow path from now on). The caller holds a live block of
    /// the span, so the span cannot be reformatted meanwhile. `lock` is the lock
    /// that serialises `set` and [`ChunkMap::cover`] (the heap lock): taken while
    /// the map is still on its prefix, since a clear written to the prefix after
    /// `cover` copied the entry and before it switched tables would be lost in the
    /// full table (whose readers would then cache offset pointers as blocks).
    pub fn clear_tag(&self, span: *mut Span, chunks: usize, lock: &SpinLock) {
        // Once the switch is done (it happens once), no `cover` can run any more.
        let on_prefix = self.table.load(Ordering::Acquire).cast_const() == self.prefix.as_ptr();
        let _g = on_prefix.then(|| lock.lock());
        self.set(span as usize, chunks, span, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::vec::Vec;

    /// The heap's use of the map while it moves off its prefix: `set` and `cover`
    /// under the heap lock, `clear_tag` by an aligned allocation that holds no lock
    /// (`Heap::malloc_aligned`). A clear must not be lost in the full table, else
    /// frees of offset blocks take the fast path with a pointer that does not
    /// start a block. (More threads than CPUs, so some are preempted inside a
    /// clear. The loss needs a preemption between the clear's table load and its
    /// store, which this rarely hits: before the fix, a clear stopped there under
    /// gdb while `cover` ran lost its write every time.)
    #[test]
    fn a_tag_cleared_while_the_map_leaves_its_prefix_stays_cleared() {
        const PREFIX: usize = 128;
        const WRITERS: usize = 4;
        let base = 1usize << 40;
        let trials: usize = std::env::var("ALLOCTRACE_MAP_TRIALS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50);
        let mut lost = 0;
        for _ in 0..trials {
            let prefix: &'static [AtomicUsize] =
                Vec::leak((0..PREFIX).map(|_| AtomicUsize::new(0)).collect());
            let map: &'static ChunkMap = Box::leak(Box::new(ChunkMap::with_prefix(prefix)));
            map.init(base, 1 << 30).expect("table");
            let lock = Arc::new(SpinLock::new());
            let done = Arc::new(AtomicBool::new(false));
            let ws: Vec<_> = (0..WRITERS)
                .map(|k| {
                    let (lock, done) = (lock.clone(), done.clone());
                    std::thread::spawn(move || {
                        let span = (base + k * CHUNK) as *mut Span;
                        loop {
                            let stop = done.load(Ordering::Acquire);
                            {
                                let _g = lock.lock();
                                map.set(span as usize, 1, span, 0x40);
                            }
                            map.clear_tag(span, 1, &lock);
                            if stop {
                                break;
                            }
                        }
                    })
                })
                .collect();
            std::thread::sleep(std::time::Duration::from_micros(100));
            {
                let _g = lock.lock();
                assert!(map.cover(base + (PREFIX + 1) * CHUNK));
            }
            done.store(true, Ordering::Release);
            for w in ws {
                w.join().unwrap();
            }
            for k in 0..WRITERS {
                if map.entry(base + k * CHUNK) & TAG_MASK != 0 {
                    lost += 1;
                }
            }
            // SAFETY: no thread uses the map any more.
            unsafe { map.release() };
        }
        assert_eq!(lost, 0, "tag clears lost in the full table");
    }
}
