//! The chunk map: from any address in the brk arena to the span covering it.
//!
//! One pointer per 64 KiB chunk of the arena's address range, in a table mapped with
//! `MAP_NORESERVE` and touched lazily (8 bytes per 64 KiB: a 64 GiB arena needs an
//! 8 MiB table of which only the used part ever becomes resident). `free` uses it to
//! tell small blocks (non-null entry) from large ones, and to find the span header of
//! blocks in multi-chunk spans. Entries are written under the heap lock and read
//! without a lock.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::os::mmap;
use crate::size_class::CHUNK_SHIFT;
use crate::span::Span;

/// Span lookup table over `[base, base + len * CHUNK)`.
#[derive(Debug)]
pub(crate) struct ChunkMap {
    base: AtomicUsize,
    table: AtomicPtr<AtomicPtr<Span>>,
    len: AtomicUsize,
}

impl ChunkMap {
    /// An empty map: every lookup misses.
    pub const fn new() -> ChunkMap {
        ChunkMap {
            base: AtomicUsize::new(0),
            table: AtomicPtr::new(ptr::null_mut()),
            len: AtomicUsize::new(0),
        }
    }

    /// Maps the table for an arena at `base` spanning `limit` bytes. Returns the bytes
    /// reserved for the table, or `None` if the mapping failed.
    pub fn init(&self, base: usize, limit: usize) -> Option<usize> {
        let len = limit >> CHUNK_SHIFT;
        let bytes = (len * core::mem::size_of::<usize>()).next_multiple_of(mmap::page_size());
        let table = mmap::map_sparse(bytes)?;
        self.base.store(base, Ordering::Relaxed);
        self.table
            .store(table as *mut AtomicPtr<Span>, Ordering::Relaxed);
        self.len.store(len, Ordering::Release);
        Some(bytes)
    }

    /// Unmaps the table.
    ///
    /// # Safety
    /// No lookups may run concurrently or afterwards.
    pub unsafe fn release(&self) {
        let len = self.len.swap(0, Ordering::Relaxed);
        let table = self.table.swap(ptr::null_mut(), Ordering::Relaxed);
        if !table.is_null() {
            let bytes = (len * core::mem::size_of::<usize>()).next_multiple_of(mmap::page_size());
            // SAFETY: the table is our own mapping and nobody reads it any more.
            unsafe { mmap::unmap(table as usize, bytes) };
        }
    }

    /// The span covering `p`, or null if `p` is outside the arena or in no span.
    #[inline(always)]
    pub fn lookup(&self, p: usize) -> *mut Span {
        let len = self.len.load(Ordering::Acquire);
        let idx = p.wrapping_sub(self.base.load(Ordering::Relaxed)) >> CHUNK_SHIFT;
        if idx >= len {
            return ptr::null_mut();
        }
        let table = self.table.load(Ordering::Relaxed);
        // SAFETY: `idx < len`, and the table has `len` entries once `len` is published.
        unsafe { (*table.add(idx)).load(Ordering::Acquire) }
    }

    /// Points every chunk of `[start, start + chunks * CHUNK)` at `span`.
    pub fn set(&self, start: usize, chunks: usize, span: *mut Span) {
        let table = self.table.load(Ordering::Relaxed);
        let first = (start - self.base.load(Ordering::Relaxed)) >> CHUNK_SHIFT;
        debug_assert!(first + chunks <= self.len.load(Ordering::Relaxed));
        for i in first..first + chunks {
            // SAFETY: the arena never hands out memory beyond the table's coverage.
            unsafe { (*table.add(i)).store(span, Ordering::Release) };
        }
    }
}
