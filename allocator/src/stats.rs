//! Statistics for measurement: what the allocator took from the OS, what is live,
//! how each size class is used, and how often it called the kernel.
//!
//! Counters are updated with relaxed atomics. Allocations made through a thread
//! cache (the process-global instance) are counted in the cache and published to
//! the heap whenever the cache talks to the heap (refill, flush, thread exit), so
//! live figures of the global instance lag by at most one cache's worth per thread.
//! A [`crate::Heap`] used directly is always exact.

use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::size_class::NUM_CLASSES;

/// A snapshot of one heap's statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Bytes currently obtained from the OS for blocks: brk arena plus large mappings.
    pub mapped_bytes: u64,
    /// Bytes the brk arena has grown by (small-block spans, including idle ones).
    pub heap_bytes: u64,
    /// Bytes currently mapped for large blocks (page-rounded, including headers).
    pub large_mapped_bytes: u64,
    /// Arena bytes in idle spans whose pages were returned with `madvise`.
    pub purged_bytes: u64,
    /// Arena bytes in idle spans not (yet) returned to the OS.
    pub idle_bytes: u64,
    /// Bytes reserved (not necessarily touched) for metadata such as the chunk map.
    pub metadata_bytes: u64,
    /// Usable bytes of live blocks (block sizes, not requested sizes).
    pub live_bytes: u64,
    /// Number of live blocks.
    pub live_blocks: u64,
    /// Total bytes requested by all allocations so far (cumulative).
    pub requested_bytes_total: u64,
    /// Number of allocations so far.
    pub allocs: u64,
    /// Number of frees so far (`allocs - live_blocks`: like them, it lags behind
    /// the thread caches' unpublished counts).
    pub frees: u64,
    /// Calls growing the brk arena (`sbrk`, or `mprotect` for the reserved backend).
    pub brk_calls: u64,
    /// `mmap` calls.
    pub mmap_calls: u64,
    /// `munmap` calls.
    pub munmap_calls: u64,
    /// `madvise(MADV_DONTNEED)` calls.
    pub madvise_calls: u64,
    /// `mremap` calls (large `realloc`).
    pub mremap_calls: u64,
    /// Per size class slab use, indexed by class.
    pub classes: [ClassStats; NUM_CLASSES],
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            mapped_bytes: 0,
            heap_bytes: 0,
            large_mapped_bytes: 0,
            purged_bytes: 0,
            idle_bytes: 0,
            metadata_bytes: 0,
            live_bytes: 0,
            live_blocks: 0,
            requested_bytes_total: 0,
            allocs: 0,
            frees: 0,
            brk_calls: 0,
            mmap_calls: 0,
            munmap_calls: 0,
            madvise_calls: 0,
            mremap_calls: 0,
            classes: [ClassStats::default(); NUM_CLASSES],
        }
    }
}

/// Slab use of one size class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Block size of the class.
    pub block_size: u32,
    /// Spans currently formatted for the class.
    pub spans: u64,
    /// Blocks those spans can hold.
    pub capacity_blocks: u64,
    /// Blocks handed out of those spans and of the class's runs (live, or parked in
    /// thread caches).
    pub used_blocks: u64,
    /// Blocks of the class in runs of mixed spans (see `size_class::RUN_BYTES`).
    pub run_blocks: u64,
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub heap_bytes: AtomicU64,
    pub large_mapped_bytes: AtomicU64,
    pub purged_bytes: AtomicU64,
    pub idle_bytes: AtomicU64,
    pub metadata_bytes: AtomicU64,
    pub live_bytes: AtomicI64,
    pub live_blocks: AtomicI64,
    pub requested_bytes_total: AtomicU64,
    pub allocs: AtomicU64,
    pub brk_calls: AtomicU64,
    pub mmap_calls: AtomicU64,
    pub munmap_calls: AtomicU64,
    pub madvise_calls: AtomicU64,
    pub mremap_calls: AtomicU64,
}

/// Allocation counts kept by a thread cache and published in batches.
#[derive(Debug, Default)]
pub(crate) struct LocalCounts {
    pub live_bytes: i64,
    pub live_blocks: i64,
    pub requested: u64,
    pub allocs: u64,
}

impl LocalCounts {
    pub const fn new() -> LocalCounts {
        LocalCounts {
            live_bytes: 0,
            live_blocks: 0,
            requested: 0,
            allocs: 0,
        }
    }
}

/// Adds `n` to a counter.
#[inline]
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Subtracts `n` from a counter.
#[inline]
pub(crate) fn sub(c: &AtomicU64, n: u64) {
    c.fetch_sub(n, Ordering::Relaxed);
}

impl Counters {
    pub const fn new() -> Counters {
        Counters {
            heap_bytes: AtomicU64::new(0),
            large_mapped_bytes: AtomicU64::new(0),
            purged_bytes: AtomicU64::new(0),
            idle_bytes: AtomicU64::new(0),
            metadata_bytes: AtomicU64::new(0),
            live_bytes: AtomicI64::new(0),
            live_blocks: AtomicI64::new(0),
            requested_bytes_total: AtomicU64::new(0),
            allocs: AtomicU64::new(0),
            brk_calls: AtomicU64::new(0),
            mmap_calls: AtomicU64::new(0),
            munmap_calls: AtomicU64::new(0),
            madvise_calls: AtomicU64::new(0),
            mremap_calls: AtomicU64::new(0),
        }
    }

    /// Counts one allocation of a `usable`-byte block for a `requested`-byte request.
    #[inline]
    pub fn on_alloc(&self, usable: usize, requested: usize) {
        self.live_bytes.fetch_add(usable as i64, Ordering::Relaxed);
        self.live_blocks.fetch_add(1, Ordering::Relaxed);
        add(&self.requested_bytes_total, requested as u64);
        add(&self.allocs, 1);
    }

    /// Counts one free of a `usable`-byte block.
    #[inline]
    pub fn on_free(&self, usable: usize) {
        self.live_bytes.fetch_sub(usable as i64, Ordering::Relaxed);
        self.live_blocks.fetch_sub(1, Ordering::Relaxed);
    }

    /// Publishes and resets a thread cache's counts.
    pub fn publish(&self, local: &mut LocalCounts) {
        if local.allocs == 0 && local.live_blocks == 0 {
            return;
        }
        self.live_bytes
            .fetch_add(local.live_bytes, Ordering::Relaxed);
        self.live_blocks
            .fetch_add(local.live_blocks, Ordering::Relaxed);
        add(&self.requested_bytes_total, local.requested);
        add(&self.allocs, local.allocs);
        *local = LocalCounts::new();
    }

    /// Copies the counters into `out` (class figures are filled in by the heap).
    pub fn snapshot_into(&self, out: &mut Stats) {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.heap_bytes = r(&self.heap_bytes);
        out.large_mapped_bytes = r(&self.large_mapped_bytes);
        out.mapped_bytes = out.heap_bytes + out.large_mapped_bytes;
        out.purged_bytes = r(&self.purged_bytes);
        out.idle_bytes = r(&self.idle_bytes);
        out.metadata_bytes = r(&self.metadata_bytes);
        out.live_bytes = self.live_bytes.load(Ordering::Relaxed).max(0) as u64;
        let live = self.live_blocks.load(Ordering::Relaxed);
        out.live_blocks = live.max(0) as u64;
        out.requested_bytes_total = r(&self.requested_bytes_total);
        out.allocs = r(&self.allocs);
        out.frees = (out.allocs as i64 - live).max(0) as u64;
        out.brk_calls = r(&self.brk_calls);
        out.mmap_calls = r(&self.mmap_calls);
        out.munmap_calls = r(&self.munmap_calls);
        out.madvise_calls = r(&self.madvise_calls);
        out.mremap_calls = r(&self.mremap_calls);
    }
}
