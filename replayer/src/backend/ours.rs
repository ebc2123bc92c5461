//! Our allocator in this process: an independent [`Heap`] on a reserved region.

use allocator::{Config, Heap};

use super::{Backend, OsCalls};
use crate::plan::OpKind;

/// A fresh [`Heap`] per run, so each run starts from an empty allocator.
pub struct Ours {
    heap: Heap,
}

impl Ours {
    /// A new heap with [`Config::RESERVED`] (glibc keeps the real break).
    pub fn new() -> anyhow::Result<Ours> {
        let heap = Heap::new(Config::RESERVED)
            .map_err(|_| anyhow::anyhow!("could not set up an alloctrace heap"))?;
        Ok(Ours { heap })
    }

    /// The heap's statistics.
    pub fn stats(&self) -> allocator::Stats {
        self.heap.stats()
    }
}

impl Backend for Ours {
    fn alloc(&self, kind: OpKind, size: usize, align: usize) -> *mut u8 {
        const PAGE: usize = 4096;
        match kind {
            OpKind::Calloc => self.heap.calloc(1, size),
            OpKind::PosixMemalign | OpKind::AlignedAlloc | OpKind::Memalign => {
                self.heap.malloc_aligned(size, align.max(1))
            }
            OpKind::Valloc => self.heap.malloc_aligned(size, PAGE),
            OpKind::Pvalloc => self
                .heap
                .malloc_aligned(size.max(1).next_multiple_of(PAGE), PAGE),
            _ => self.heap.malloc(size),
        }
    }

    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: forwarded caller's promise (a live block of this heap or null).
        unsafe { self.heap.realloc(p, size) }
    }

    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: forwarded caller's promise.
        unsafe { self.heap.free(p) }
    }

    fn footprint(&self) -> Option<u64> {
        let s = self.heap.stats();
        Some(s.mapped_bytes.saturating_sub(s.purged_bytes))
    }

    fn footprint_source(&self) -> &'static str {
        "allocator-stats"
    }

    fn os_calls(&self) -> Option<OsCalls> {
        let s = self.heap.stats();
        Some(OsCalls {
            brk: s.brk_calls,
            mmap: s.mmap_calls,
            munmap: s.munmap_calls,
            madvise: s.madvise_calls,
        })
    }

    fn after_run(&self) {
        self.heap.purge();
    }
}
