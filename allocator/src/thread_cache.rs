//! Per-thread caches: a free list per size class, so the common malloc and free take
//! no lock and touch no shared cache line.
//!
//! A cache is filled from the central lists in batches and flushed back in batches
//! when a list grows past its cap. Each class's cap starts small (8 blocks) and
//! doubles every time the list runs dry or overflows, up to about 4 KiB worth of
//! blocks (between 1 and 256 blocks: a bin of 4 KiB blocks holds one): a class a
//! thread uses a little parks (and touches) a few blocks only, while a hot class
//! reaches the full cap after a handful of refills. Cached blocks are resident memory
//! the program cannot use: with 32 KiB per class, `bench/churn.c` kept about 300 KiB
//! parked. 8 KiB cost `sqlite3` and `git log -p` 130 to 150 KiB of peak RSS over
//! 4 KiB, which costs `bench/churn.c` 7 % more instructions (215 M instead of 201 M
//! for 2 M pairs); 2 KiB would cost 24 %.
//!
//! Classes of at least 8 KiB ([`PURGE_CLASS`]) are the exception: their bins hold no
//! block. A free of theirs goes straight back to the block's span, which returns its
//! pages to the OS and keeps none of them resident (the span tracks such free blocks
//! in a bitmap, not through their memory); a malloc takes one block from the span.
//!
//! A block freed by another thread simply joins that thread's
//! cache: blocks are interchangeable within a class, and spans are found from the
//! block address, so cross-thread frees need no special path.
//!
//! # The fast paths
//!
//! Like mimalloc's, they are a dozen instructions each, with no call, lock or
//! atomic read-modify-write (`bench/churn.c`: 17 instructions per `malloc`, 17 per
//! `free`, counted with callgrind):
//!
//! * A bin is addressed by its **tag**, its byte offset in the cache (`tag_of`).
//!   `malloc` maps the size to the tag with one table load (`small_tag`).
//! * `free` reads the tag from the chunk map entry of the block's chunk, through a
//!   copy of the map's base, length and table kept in the cache (no global to load),
//!   and pushes the block: the span header is not read. Spans holding a block that
//!   an aligned allocation handed out at an offset have tag 0 in the map, as do all
//!   spans until this cache is active: their frees take the slow path, which finds
//!   the block start from the span. A mixed span (runs of many classes) has tag 0
//!   too: the slow path's first step, `try_free_mixed`, finds the block's class in
//!   the span's run table (a table load or two) and caches it, with no lock.
//! * Each bin keeps `room` (cap minus length), so a free is one decrement and a sign
//!   test; the inactive, all-zero cache has no room and no map copy, so its first
//!   use goes down the slow paths, which activate it.
//! * Statistics cost two adds per `malloc` (allocations, requested bytes) and none
//!   per `free`: the bins' net use is derived from the blocks moved between bin and
//!   heap and the list lengths when counts are published.
//!
//! The cache itself is plain data with a `const` initialiser and no destructor, so
//! it can live in a zero-initialised thread area without allocating; the global
//! module arms a pthread key whose destructor flushes it when the thread exits.

use core::mem::{offset_of, size_of};
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::chunk_map::TAG_MASK;
use crate::heap::Heap;
use crate::size_class::{
    class_of, class_of_const, class_size, CHUNK_SHIFT, MAX_SMALL, NUM_CLASSES, PURGE_CLASS,
};
use crate::span::{FreeBlock, Span};
use crate::stats::LocalCounts;

/// Bytes of blocks a bin may hold at its full cap.
const CLASS_BYTES: u32 = 4 * 1024;

/// The most blocks a bin ever holds (the cap of its 16-byte class).
const MAX_LIMIT: usize = 256;

// A bin keeps its cap in 16 bits and its lender's class in a byte (0: none; a
// lender is larger than its borrower, so never class 0).
const _: () = assert!(MAX_LIMIT <= u16::MAX as usize && NUM_CLASSES <= u8::MAX as usize + 1);

/// Cached-block limit per class.
static LIMIT: [u32; NUM_CLASSES] = {
    let mut t = [0u32; NUM_CLASSES];
    let mut i = 0;
    while i < NUM_CLASSES {
        let n = (CLASS_BYTES / crate::size_class::CLASS_SIZE[i]) as usize;
        t[i] = if n < 1 {
            1
        } else if n > MAX_LIMIT {
            MAX_LIMIT as u32
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

/// One class's cached blocks: 16 bytes, so the thread cache is 968 and its thread
/// area 1024 (24 and 1472 with a 32-bit `room` and a 64-bit `delta`). The area is
/// static TLS, which the dynamic loader allocates for the main thread beside the
/// link maps, on pages of its own: `sqlite3` touched one page more with the larger
/// area (see `os::tls`).
#[derive(Debug)]
#[repr(C)]
struct Bin {
    head: *mut FreeBlock,
    /// `limit` minus the blocks on the list: a free that takes it below zero goes to
    /// [`ThreadCache::overflow`] (one decrement and sign test on the fast path). At
    /// least -1 (a push past the cap overflows at once) and at most the cap.
    room: i16,
    /// The current cap on the list's length, grown from [`START`] towards [`LIMIT`]
    /// each time the bin runs dry or overflows (0: not grown yet).
    limit: u16,
    /// Blocks moved in from the heap minus blocks moved back, plus the list length
    /// at the last publish: `delta - len` is the blocks the program took from this
    /// bin since then (allocations minus frees), so the fast paths count nothing
    /// per class. Between 0 and [`MAX_DELTA`]: each refill and trim publishes first
    /// (setting it to the list length), then adds what it moved in (at most the
    /// cap) or subtracts what it moved out (leaving what it keeps); in between only
    /// lending adds to it, once per block a smaller class borrowed, and a class
    /// borrows at most 255 blocks in the heap's life (`Heap::refill`).
    delta: i16,
    /// The larger class this bin's class last borrowed a run block from (0:
    /// none), see [`ThreadCache::pop_lender`].
    lender: u8,
}

/// The largest [`Bin::delta`]: a full list (cap plus one) and a refill's batch, plus
/// a block lent by each class 255 times.
const MAX_DELTA: usize = 2 * MAX_LIMIT + 1 + 255 * NUM_CLASSES;

// (`room` is at most the cap, which is below `MAX_DELTA`.)
const _: () = assert!(MAX_DELTA <= i16::MAX as usize);
const _: () = assert!(size_of::<Bin>() == 16);

impl Bin {
    fn len(&self) -> usize {
        (self.limit as i64 - self.room as i64) as usize
    }

    fn set_limit(&mut self, limit: u32) {
        debug_assert!(limit as usize <= MAX_LIMIT);
        self.room += limit as i16 - self.limit as i16;
        self.limit = limit as u16;
    }
}

/// One thread's cached free blocks and unpublished counts. All-zero bytes are a
/// valid inactive cache.
#[derive(Debug)]
#[repr(C)]
pub struct ThreadCache {
    /// A copy of the chunk map of the heap the cache serves ([`ThreadCache::try_free`]
    /// reads it with no pointer chasing); length 0 until the cache is active and the
    /// heap set up, and again once the thread exits, which sends every free down the
    /// slow path.
    map_base: usize,
    map_len: usize,
    map_table: *const AtomicUsize,
    /// Allocations served from the bins since the last publish.
    allocs: u64,
    pub(crate) state: u8,
    /// Bytes those allocations asked for. (Not next to `allocs`: the compiler would
    /// update the pair with vector instructions, five instead of two.)
    requested: u64,
    bins: [Bin; NUM_CLASSES],
}

/// Byte offset of the first bin in a [`ThreadCache`].
const BINS: usize = offset_of!(ThreadCache, bins);

/// The tag of `class`: the byte offset of its bin in a [`ThreadCache`], never 0. The
/// chunk map carries it beside every span of the class, and the size lookups below
/// map request sizes straight to it.
pub(crate) const fn tag_of(class: usize) -> usize {
    BINS + class * size_of::<Bin>()
}

/// The class of a bin tag.
#[inline(always)]
pub(crate) fn class_of_tag(tag: usize) -> usize {
    (tag - BINS) / size_of::<Bin>()
}

const _: () = assert!(BINS > 0 && tag_of(NUM_CLASSES) <= TAG_MASK);

/// Largest size served by [`SMALL_TAG`] (classes up to it are multiples of 16 only).
pub(crate) const SMALL_TAG_MAX: usize = crate::size_class::SMALL_LOOKUP_MAX;

/// Bin tag for sizes up to [`SMALL_TAG_MAX`], indexed by `(size + 15) / 16`; also
/// the class lookup for these sizes ([`crate::size_class::class_of`] takes the
/// tag's bin index). (The tables are statics: a `const` array is copied into every function that
/// indexes it, each copy library data.)
static SMALL_TAG: [u16; SMALL_TAG_MAX / 16 + 1] = {
    let mut t = [0u16; SMALL_TAG_MAX / 16 + 1];
    let mut i = 0;
    while i < t.len() {
        t[i] = tag_of(class_of_const(i * 16)) as u16;
        i += 1;
    }
    t
};

/// The bin tag serving `size` bytes (`size <= SMALL_TAG_MAX`; 0 counts as 1).
#[inline(always)]
pub(crate) fn small_tag(size: usize) -> usize {
    debug_assert!(size <= SMALL_TAG_MAX);
    // SAFETY: `size <= SMALL_TAG_MAX`, so the index is at most `SMALL_TAG_MAX / 16`.
    unsafe { *SMALL_TAG.get_unchecked(size.div_ceil(16)) as usize }
}

/// The bin tag serving `size` bytes (`SMALL_TAG_MAX < size <= MAX_SMALL`): from the
/// computed class (a tag table of its own would be 2 KiB more of the library's
/// read-only data, which every process keeps resident; these sizes are rare).
#[inline(always)]
pub(crate) fn large_tag(size: usize) -> usize {
    debug_assert!(size > SMALL_TAG_MAX && size <= MAX_SMALL);
    tag_of(class_of(size))
}

/// The bin tag serving `size` bytes (`size <= MAX_SMALL`).
#[inline(always)]
pub(crate) fn tag_for(size: usize) -> usize {
    if size <= SMALL_TAG_MAX {
        small_tag(size)
    } else {
        large_tag(size)
    }
}

/// The first cap of a bin: a class a thread uses a little costs it a few blocks, not
/// [`CLASS_BYTES`] of touched pages.
const START: u32 = 8;

/// Bytes of blocks (at least one) a bin holds at most while its class still takes
/// new blocks from runs (`Heap::in_runs`): such a class is used for a few blocks,
/// and what its bin parks is resident memory no other class can use (`sqlite3`
/// parked 12 KiB at its peak with the full caps).
const SPARSE_BYTES: usize = 512;

/// A bin's cap while its class is sparse: [`SPARSE_BYTES`] of blocks, at least one.
static SPARSE_LIMIT: [u8; NUM_CLASSES] = {
    let mut t = [0u8; NUM_CLASSES];
    let mut i = 0;
    while i < NUM_CLASSES {
        let n = SPARSE_BYTES / crate::size_class::CLASS_SIZE[i] as usize;
        t[i] = if n < 1 { 1 } else { n as u8 };
        i += 1;
    }
    t
};

/// The cap of a bin of `class` that would grow to `limit`: at most
/// [`SPARSE_BYTES`] of blocks while the class is sparse.
#[inline(never)]
fn capped(heap: &Heap, limit: u32, class: usize) -> u32 {
    if heap.in_runs(class) {
        limit.min(*crate::at(&SPARSE_LIMIT, class) as u32)
    } else {
        limit
    }
}

/// The next cap of a bin of `class` whose cap is `limit`: doubled, up to the class
/// limit. Bins of purged classes keep cap 0, so every free of theirs overflows and
/// goes back to its span, which returns the block's pages (see [`PURGE_CLASS`]).
#[inline]
fn grown(limit: u32, class: usize) -> u32 {
    if class >= PURGE_CLASS {
        return 0;
    }
    let next = if limit == 0 { START } else { limit * 2 };
    next.min(*crate::at(&LIMIT, class))
}

impl ThreadCache {
    /// An empty, inactive cache.
    pub const fn new() -> ThreadCache {
        ThreadCache {
            map_base: 0,
            map_len: 0,
            map_table: ptr::null(),
            allocs: 0,
            requested: 0,
            state: INACTIVE,
            bins: [const {
                Bin {
                    head: ptr::null_mut(),
                    room: 0,
                    limit: 0,
                    lender: 0,
                    delta: 0,
                }
            }; NUM_CLASSES],
        }
    }

    /// The bin at byte offset `tag`.
    #[inline(always)]
    fn bin_at(&mut self, tag: usize) -> &mut Bin {
        debug_assert!(tag >= BINS && (tag - BINS) % size_of::<Bin>() == 0);
        debug_assert!(class_of_tag(tag) < NUM_CLASSES);
        // SAFETY: tags come from `tag_of` for a class below NUM_CLASSES (the size
        // tables, the chunk map), so `tag` is the offset of one of `self.bins`.
        unsafe {
            &mut *(self as *mut ThreadCache)
                .cast::<u8>()
                .add(tag)
                .cast::<Bin>()
        }
    }

    /// Pops a cached block from the bin at `tag` (from [`tag_for`]) for a request of
    /// `size` bytes, or null.
    #[inline(always)]
    pub(crate) fn try_pop_tag(&mut self, tag: usize, size: usize) -> *mut u8 {
        let bin = self.bin_at(tag);
        let b = bin.head;
        if b.is_null() {
            return b as *mut u8;
        }
        // SAFETY: cached blocks are free and hold a valid link.
        bin.head = unsafe { (*b).next };
        bin.room += 1;
        self.allocs += 1;
        self.requested += size as u64;
        b as *mut u8
    }

    /// Pops a cached block for `size` bytes (at most [`MAX_SMALL`]), or null.
    #[inline(always)]
    pub(crate) fn try_pop(&mut self, size: usize) -> *mut u8 {
        self.try_pop_tag(tag_for(size), size)
    }

    /// Caches block `p` if the chunk map copy says it starts a block of a span with a
    /// tag; false (nothing done) otherwise: a large block, a pointer into a span with
    /// offset blocks, a null pointer, or an inactive or exiting cache.
    ///
    /// # Safety
    /// `p` must be null or a live block of the heap this cache serves (`heap`), not
    /// used afterwards if this returns true. The cache must not be borrowed elsewhere.
    #[inline(always)]
    pub(crate) unsafe fn try_free(&mut self, heap: &Heap, p: usize) -> bool {
        let idx = p.wrapping_sub(self.map_base) >> CHUNK_SHIFT;
        if idx >= self.map_len {
            return false;
        }
        // SAFETY: `idx < map_len`, the length of the table copied with it. The entry
        // was published before the block was handed out, which happened before this
        // free (the caller's promise), so a relaxed load sees it.
        let tag = unsafe { (*self.map_table.add(idx)).load(Ordering::Relaxed) } & TAG_MASK;
        if tag == 0 {
            return false;
        }
        // A tagged span hands out block starts only, so `p` starts a dead block.
        self.push_dead(heap, tag, p as *mut FreeBlock);
        true
    }

    /// What [`ThreadCache::try_free`] leaves to the slow path, first: caches `p` if
    /// the chunk map copy says it is in a mixed span (whose run table has the
    /// classes of its blocks); false (nothing done) otherwise.
    ///
    /// # Safety
    /// As for [`ThreadCache::try_free`].
    #[inline(always)]
    pub(crate) unsafe fn try_free_mixed(&mut self, heap: &Heap, p: usize) -> bool {
        let idx = p.wrapping_sub(self.map_base) >> CHUNK_SHIFT;
        if idx >= self.map_len {
            return false;
        }
        // SAFETY: as in `try_free`.
        let entry = unsafe { (*self.map_table.add(idx)).load(Ordering::Relaxed) };
        let s = (entry & !TAG_MASK) as *mut Span;
        // SAFETY: a non-null entry is the span of live block `p`.
        if s.is_null() || !unsafe { (*s).is_mixed() } {
            return false;
        }
        // SAFETY: `p` is a live block of one of the mixed span's runs.
        let (start, class) = unsafe { crate::span::mixed_block(s, p) };
        self.push_dead(heap, tag_of(class), start as *mut FreeBlock);
        true
    }

    /// Copies `heap`'s chunk map parameters for [`ThreadCache::try_free`] once the
    /// heap is set up, and again when the map moved from its static prefix to a
    /// full table (a stale copy stays right for the chunks it covers: the prefix
    /// keeps being written).
    pub(crate) fn sync_map(&mut self, heap: &Heap) {
        let (base, len, table) = heap.map.params();
        if len != self.map_len {
            (self.map_base, self.map_len, self.map_table) = (base, len, table);
        }
    }

    /// Stops [`ThreadCache::try_free`] from caching anything (thread exit).
    pub(crate) fn forget_map(&mut self) {
        self.map_len = 0;
    }

    /// Publishes the counts of one class (and the thread's allocation counts) to
    /// `heap`.
    fn publish(&mut self, heap: &Heap, class: usize) {
        let bin = crate::at_mut(&mut self.bins, class);
        let len = bin.len() as i64;
        let net = bin.delta as i64 - len;
        bin.delta = len as i16;
        let mut local = LocalCounts {
            live_bytes: net * class_size(class) as i64,
            live_blocks: net,
            requested: self.requested,
            allocs: self.allocs,
        };
        self.allocs = 0;
        self.requested = 0;
        heap.counters.publish(&mut local);
    }

    /// Refills the bin for `size` from `heap` and pops a block; null when out of
    /// memory. The cache must be active.
    #[inline(never)]
    pub(crate) fn refill_pop(&mut self, heap: &Heap, size: usize) -> *mut u8 {
        crate::global::fork_guard();
        let class = class_of(size);
        if crate::at(&self.bins, class).lender != 0 {
            let p = self.pop_lender(heap, class, size);
            if !p.is_null() {
                return p;
            }
        }
        self.publish(heap, class);
        let bin = crate::at_mut(&mut self.bins, class);
        bin.set_limit(capped(heap, grown(bin.limit as u32, class), class));
        let want = (bin.limit / 2).max(1) as usize;
        let mut got_head = bin.head;
        let (got, lender) = heap.refill(class, want, &mut got_head);
        self.sync_map(heap);
        if lender != class {
            // A larger class's run block, borrowed: straight to the program, counted
            // as taken from the lender's bin (it goes back there when freed).
            crate::at_mut(&mut self.bins, class).lender = lender as u8;
            let lent = crate::at_mut(&mut self.bins, lender);
            lent.delta += 1;
            self.allocs += 1;
            self.requested += size as u64;
            return got_head.cast();
        }
        let bin = crate::at_mut(&mut self.bins, class);
        bin.head = got_head;
        bin.room -= got as i16;
        bin.delta += got as i16;
        self.try_pop(size)
    }

    /// Pops, for a request of `size` bytes of `class`, a run block cached in the bin
    /// of the class it last borrowed from, if it would otherwise borrow again or
    /// carve a new run; null if not. A class that allocates and frees in a loop
    /// borrows the same lender's blocks each time (they go back to the lender's
    /// bin when freed): from this thread's bin that costs a pop, not two class
    /// locks.
    #[inline(never)]
    fn pop_lender(&mut self, heap: &Heap, class: usize, size: usize) -> *mut u8 {
        let lender = crate::at(&self.bins, class).lender as usize;
        if !heap.would_carve(class) {
            return ptr::null_mut();
        }
        let b = crate::at(&self.bins, lender).head;
        if b.is_null() {
            return ptr::null_mut();
        }
        let s = heap.map.lookup(b as usize);
        // SAFETY: a cached block's span is formatted or mixed.
        if s.is_null() || !unsafe { (*s).is_mixed() } {
            return ptr::null_mut();
        }
        self.try_pop_tag(tag_of(lender), size)
    }

    /// Caches dead block `p`, a block of class `class` starting at `start`.
    /// The cache must be active.
    #[inline]
    pub(crate) fn push(&mut self, heap: &Heap, class: usize, start: usize) {
        if class >= NUM_CLASSES {
            crate::os::thread::abort();
        }
        self.push_dead(heap, tag_of(class), start as *mut FreeBlock);
    }

    /// Pushes dead block `b` on the bin of `tag`, trimming the bin if it went
    /// over its cap. `b` must start a dead block of that bin's class (its first
    /// word is ours to use).
    #[inline(always)]
    fn push_dead(&mut self, heap: &Heap, tag: usize, b: *mut FreeBlock) {
        let bin = self.bin_at(tag);
        // SAFETY: the callers hand over the start of a dead block of this class.
        unsafe { (*b).next = bin.head };
        bin.head = b;
        bin.room -= 1;
        if bin.room < 0 {
            self.overflow(heap, tag);
        }
    }

    /// A bin went over its cap: grows the cap, and trims the bin to half of it if
    /// that is not enough.
    #[inline(never)]
    fn overflow(&mut self, heap: &Heap, tag: usize) {
        let class = class_of_tag(tag);
        let bin = crate::at_mut(&mut self.bins, class);
        if class >= PURGE_CLASS {
            // Straight back to its span, which returns its pages.
            self.trim(heap, class, 0);
            return;
        }
        bin.set_limit(capped(heap, grown(bin.limit as u32, class), class));
        if bin.room < 0 {
            let keep = bin.limit as usize / 2;
            self.trim(heap, class, keep);
        }
    }

    /// Keeps the first `keep` blocks of a bin and returns the rest to the heap.
    #[inline(never)]
    fn trim(&mut self, heap: &Heap, class: usize, keep: usize) {
        crate::global::fork_guard();
        self.publish(heap, class);
        let bin = crate::at_mut(&mut self.bins, class);
        let count = bin.len();
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
        let gone = count - keep;
        bin.room += gone as i16;
        bin.delta -= gone as i16;
        // SAFETY: `rest` links `count - keep` dead blocks of `class`, each once.
        unsafe { heap.flush(class, rest, gone) };
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
            let (_, _, class) = Heap::small_block(s, p as usize);
            tc.push(&heap, class, p as usize);
        }
        tc.flush_all(&heap);
        heap.check().expect("invariants");
        let st = heap.stats();
        assert_eq!(st.live_blocks, 0);
        assert_eq!(st.allocs, 5000);
        assert_eq!(st.frees, 5000);
        assert!(st.classes.iter().all(|c| c.used_blocks == 0));
    }

    /// Allocates `size` bytes through `tc`, refilling from `heap` when needed.
    fn alloc(tc: &mut ThreadCache, heap: &Heap, size: usize) -> *mut u8 {
        let p = tc.try_pop(size);
        let p = if p.is_null() {
            tc.refill_pop(heap, size)
        } else {
            p
        };
        assert!(!p.is_null());
        p
    }

    #[test]
    fn size_tables_and_tags_agree_with_the_class_table() {
        for size in 0..=MAX_SMALL {
            assert_eq!(tag_for(size), tag_of(class_of(size)), "size {size}");
        }
        for class in 0..NUM_CLASSES {
            assert_eq!(class_of_tag(tag_of(class)), class);
            assert!(tag_of(class) > 0 && tag_of(class) <= TAG_MASK);
        }
    }

    /// Takes every block `class` may have in runs, so its next blocks come from
    /// spans; free them with [`give_back`].
    fn use_up_runs(heap: &Heap, class: usize) -> Vec<*mut u8> {
        (0..crate::size_class::run_budget(class))
            .map(|_| heap.malloc(class_size(class)))
            .collect()
    }

    fn give_back(heap: &Heap, blocks: Vec<*mut u8>) {
        for p in blocks {
            // SAFETY: live blocks of `heap` from `use_up_runs`, freed once.
            unsafe { heap.free(p) };
        }
    }

    #[test]
    fn fast_free_caches_tagged_blocks_and_leaves_the_rest() {
        let heap = Heap::new(Config::RESERVED).expect("heap");
        let mut tc = ThreadCache::new();
        tc.state = ACTIVE;
        let runs = use_up_runs(&heap, class_of(40));
        let p = alloc(&mut tc, &heap, 40);
        // SAFETY: `p` is a live block of `heap`, the heap `tc` serves.
        unsafe {
            // Each refusal below leaves `p` live and the cache untouched.
            assert!(!tc.try_free(&heap, 0), "null");
            let mut fresh = ThreadCache::new();
            assert!(!fresh.try_free(&heap, p as usize), "no chunk map copy yet");
            let large = heap.malloc(MAX_SMALL + 1);
            assert!(!tc.try_free(&heap, large as usize), "a large block");
            heap.free(large);
        }
        let before = tc.bins[class_of(40)].len();
        // SAFETY: as above; `p` is not used afterwards.
        assert!(unsafe { tc.try_free(&heap, p as usize) });
        assert_eq!(tc.bins[class_of(40)].len(), before + 1);
        assert_eq!(tc.try_pop(33), p, "the block went to the 48-byte bin");
        // SAFETY: `p` is live again and not used afterwards.
        assert!(unsafe { tc.try_free(&heap, p as usize) });
        tc.flush_all(&heap);
        give_back(&heap, runs);
        heap.check().expect("invariants");
        assert_eq!(heap.stats().live_blocks, 0);
    }

    #[test]
    fn run_blocks_are_cached_through_the_run_table() {
        let heap = Heap::new(Config::RESERVED).expect("heap");
        let mut tc = ThreadCache::new();
        tc.state = ACTIVE;
        let p = alloc(&mut tc, &heap, 300);
        let s = heap.map.lookup(p as usize);
        // SAFETY: the span of live block `p`.
        assert!(unsafe { (*s).is_mixed() }, "a first block comes from a run");
        assert_eq!(heap.map.entry(p as usize) & TAG_MASK, 0);
        // SAFETY: `p` is a live block of `heap`; refused, so it stays live.
        let fast = unsafe { tc.try_free(&heap, p as usize) };
        assert!(!fast, "no tag, no fast path");
        let before = tc.bins[class_of(300)].len();
        // SAFETY: as above; `p` is not used afterwards.
        assert!(unsafe { tc.try_free_mixed(&heap, p as usize) });
        assert_eq!(tc.bins[class_of(300)].len(), before + 1);
        assert_eq!(tc.try_pop(300), p, "the block went to its class's bin");
        // SAFETY: `p` is live again and not used afterwards.
        assert!(unsafe { tc.try_free_mixed(&heap, p as usize) });
        // A large block and a null pointer are not run blocks.
        let large = heap.malloc(MAX_SMALL + 1);
        // SAFETY: live large block; refused, then freed once.
        unsafe {
            assert!(!tc.try_free_mixed(&heap, large as usize));
            assert!(!tc.try_free_mixed(&heap, 0));
            heap.free(large);
        }
        tc.flush_all(&heap);
        heap.check().expect("invariants");
        assert_eq!(heap.stats().live_blocks, 0);
    }

    #[test]
    fn a_borrowed_run_block_is_counted_by_its_lender() {
        let heap = Heap::new(Config::RESERVED).expect("heap");
        let mut tc = ThreadCache::new();
        tc.state = ACTIVE;
        let (small, large) = (class_of(1000), class_of(1536));
        let p = alloc(&mut tc, &heap, 1536);
        // SAFETY: live run block of `heap`, not used afterwards.
        assert!(unsafe { tc.try_free_mixed(&heap, p as usize) });
        tc.flush_all(&heap);
        // The smaller class has no free run block: it borrows the larger one's
        // instead of carving a run, and the block stays the lender's.
        let q = alloc(&mut tc, &heap, 1000);
        assert_eq!(q, p);
        let st = heap.stats();
        assert_eq!(st.classes[small].run_blocks, 0, "no run carved");
        assert_eq!(st.classes[large].used_blocks, 1);
        assert_eq!(st.classes[small].used_blocks, 0);
        assert_eq!(tc.bins[small].len(), 0, "nothing parked for the borrower");
        // Freed, it goes back to the lender's bin.
        // SAFETY: live block, not used afterwards.
        assert!(unsafe { tc.try_free_mixed(&heap, q as usize) });
        assert_eq!(tc.bins[large].len(), 1);
        tc.flush_all(&heap);
        heap.check().expect("invariants");
        let st = heap.stats();
        assert_eq!((st.live_blocks, st.live_bytes), (0, 0));
        assert_eq!((st.allocs, st.frees), (2, 2));
        assert!(st.classes.iter().all(|c| c.used_blocks == 0));
    }

    #[test]
    fn a_class_borrows_again_from_its_lenders_bin() {
        let heap = Heap::new(Config::RESERVED).expect("heap");
        let mut tc = ThreadCache::new();
        tc.state = ACTIVE;
        let (small, large) = (class_of(1000), class_of(1536));
        let p = alloc(&mut tc, &heap, 1536);
        // SAFETY: live run block of `heap`, not used afterwards.
        assert!(unsafe { tc.try_free_mixed(&heap, p as usize) });
        tc.flush_all(&heap);
        // Borrowed from the lender's central list (two class locks)...
        assert_eq!(alloc(&mut tc, &heap, 1000), p);
        assert_eq!(tc.bins[small].lender as usize, large);
        // SAFETY: live block, not used afterwards.
        assert!(unsafe { tc.try_free_mixed(&heap, p as usize) });
        assert_eq!(tc.bins[large].len(), 1, "back in the lender's bin");
        // ...then, freed and wanted again, from the lender's bin in this cache.
        assert_eq!(alloc(&mut tc, &heap, 1000), p);
        assert_eq!(tc.bins[large].len(), 0);
        let borrowed = heap.classes[small].borrowed.load(Ordering::Relaxed);
        assert_eq!(borrowed, 1, "one borrow from the heap");
        // SAFETY: live block, not used afterwards.
        assert!(unsafe { tc.try_free_mixed(&heap, p as usize) });
        tc.flush_all(&heap);
        heap.check().expect("invariants");
        let st = heap.stats();
        assert_eq!((st.live_blocks, st.live_bytes), (0, 0));
        assert_eq!((st.allocs, st.frees), (3, 3));
    }

    /// Frees `p` as the global instance does: the fast path, the run table, else
    /// the block's class from its span.
    ///
    /// # Safety
    /// `p` must be a live block of `heap`, not used afterwards.
    unsafe fn free_through(tc: &mut ThreadCache, heap: &Heap, p: *mut u8) {
        // SAFETY: caller's promise.
        if unsafe { tc.try_free(heap, p as usize) || tc.try_free_mixed(heap, p as usize) } {
            return;
        }
        let (start, _, class) = Heap::small_block(heap.map.lookup(p as usize), p as usize);
        tc.sync_map(heap);
        tc.push(heap, class, start);
    }

    /// Fills `len` bytes at `p` with a pattern of `tag`, or checks them.
    ///
    /// # Safety
    /// `p` must be valid for `len` bytes.
    unsafe fn pattern(p: *mut u8, len: usize, tag: u64, check: bool) {
        for i in 0..len {
            let v = (tag as u8) ^ (i as u8).wrapping_mul(31) ^ (tag >> 8) as u8;
            // SAFETY: caller's promise.
            unsafe {
                if check {
                    assert_eq!(*p.add(i), v, "block {p:p} changed at byte {i} of {len}");
                } else {
                    *p.add(i) = v;
                }
            }
        }
    }

    /// Threads with caches of their own over one fresh heap take blocks of every
    /// run class in a random order (a class's first refill often finds a larger
    /// class's blocks free, trimmed from a bin or flushed by a thread that
    /// exited), grow some to their usable size in place, and hand half of them to
    /// the next thread to free into its cache (a borrowed block goes to its
    /// lender's bin there), while another thread runs the invariant checker,
    /// which takes every class lock in index order as the fork handlers do. Waves
    /// of threads exit flushing their caches; the last blocks are freed without a
    /// cache. No block may be handed out twice, lost or counted by the wrong class.
    #[test]
    fn lending_under_threads_with_caches_frees_and_checks() {
        use std::sync::atomic::AtomicBool;
        use std::sync::{mpsc, Arc, Mutex};
        let classes: Vec<usize> = (0..NUM_CLASSES)
            .filter(|&c| crate::size_class::run_budget(c) > 0)
            .collect();
        let mut lent = 0;
        for seed in 0..6u64 {
            let heap = Arc::new(Heap::new(Config::RESERVED).expect("heap"));
            let done = Arc::new(AtomicBool::new(false));
            let checker = {
                let (heap, done) = (heap.clone(), done.clone());
                std::thread::spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        heap.check().expect("invariants while threads lend");
                        std::thread::yield_now();
                    }
                })
            };
            const T: usize = 4;
            let (txs, rxs): (Vec<_>, Vec<_>) = (0..T)
                .map(|_| mpsc::channel::<Vec<(usize, usize, u64)>>())
                .unzip();
            let rxs: Vec<_> = rxs.into_iter().map(|r| Arc::new(Mutex::new(r))).collect();
            for wave in 0..3u64 {
                let threads: Vec<_> = (0..T)
                    .map(|t| {
                        let (heap, classes) = (heap.clone(), classes.clone());
                        let (tx, rx) = (txs[(t + 1) % T].clone(), rxs[t].clone());
                        std::thread::spawn(move || {
                            let mut tc = ThreadCache::new();
                            tc.state = ACTIVE;
                            let mut x =
                                (seed << 32 | wave << 8 | t as u64).wrapping_mul(0x9e37_79b9) | 1;
                            let mut rnd = move |n: usize| {
                                x ^= x << 13;
                                x ^= x >> 7;
                                x ^= x << 17;
                                (x % n as u64) as usize
                            };
                            let mut lent = 0;
                            for round in 0..60u64 {
                                let mut mine = Vec::new();
                                let mut theirs = Vec::new();
                                for i in 0..16u64 {
                                    let c = classes[rnd(classes.len())];
                                    let low = if c == 0 { 1 } else { class_size(c - 1) + 1 };
                                    let mut len = low + rnd(class_size(c) - low + 1);
                                    let p = alloc(&mut tc, &heap, len);
                                    // SAFETY: a live block of `heap`.
                                    let usable = unsafe { heap.usable_size(p) };
                                    assert!(usable >= len);
                                    if usable > class_size(c) {
                                        lent += 1;
                                        // A borrowed block is its lender's size: it
                                        // grows to it in place.
                                        // SAFETY: as above.
                                        match unsafe { heap.resize_in_place(p, usable) } {
                                            crate::heap_api::Resize::Done(q) => assert_eq!(q, p),
                                            crate::heap_api::Resize::Move(_) => {
                                                panic!("a lent block moved to grow to its size")
                                            }
                                        }
                                        len = usable;
                                    }
                                    let tag =
                                        seed << 40 | wave << 32 | (t as u64) << 24 | round << 8 | i;
                                    // SAFETY: `len` bytes of a live block.
                                    unsafe { pattern(p, len, tag, false) };
                                    if rnd(2) == 0 {
                                        mine.push((p as usize, len, tag));
                                    } else {
                                        theirs.push((p as usize, len, tag));
                                    }
                                }
                                let _ = tx.send(theirs);
                                let got: Vec<_> = rx.lock().unwrap().try_iter().collect();
                                for (p, len, tag) in
                                    mine.into_iter().chain(got.into_iter().flatten())
                                {
                                    // SAFETY: live blocks filled with `tag`, freed once.
                                    unsafe {
                                        pattern(p as *mut u8, len, tag, true);
                                        free_through(&mut tc, &heap, p as *mut u8);
                                    }
                                }
                            }
                            // Thread exit.
                            tc.flush_all(&heap);
                            lent
                        })
                    })
                    .collect();
                lent += threads
                    .into_iter()
                    .map(|t| t.join().unwrap())
                    .sum::<usize>();
            }
            done.store(true, Ordering::Relaxed);
            checker.join().unwrap();
            drop(txs);
            for rx in rxs {
                for (p, len, tag) in rx.lock().unwrap().try_iter().flatten() {
                    // SAFETY: as above, freed without a cache.
                    unsafe {
                        pattern(p as *mut u8, len, tag, true);
                        heap.free(p as *mut u8);
                    }
                }
            }
            heap.check().expect("invariants");
            let st = heap.stats();
            assert_eq!((st.live_blocks, st.live_bytes), (0, 0));
            assert_eq!(st.allocs, st.frees);
            assert!(st.classes.iter().all(|c| c.used_blocks == 0));
        }
        assert!(lent > 0, "no block was lent");
    }

    #[test]
    fn a_sparse_class_parks_few_blocks() {
        let heap = Heap::new(Config::RESERVED).expect("heap");
        let mut tc = ThreadCache::new();
        tc.state = ACTIVE;
        let class = class_of(200);
        let cap = SPARSE_BYTES / class_size(class);
        // A burst below the class's run budget: freed, the bin keeps at most
        // `SPARSE_BYTES` of them, the rest go back to the class's runs.
        let n = crate::size_class::run_budget(class) / 2;
        let ps: Vec<_> = (0..n).map(|_| alloc(&mut tc, &heap, 200)).collect();
        assert!(heap.in_runs(class));
        for p in ps {
            // SAFETY: live blocks of `heap`, not used afterwards.
            if !unsafe { tc.try_free_mixed(&heap, p as usize) } {
                tc.push(&heap, class, p as usize);
            }
        }
        assert!(
            tc.bins[class].len() <= cap,
            "{} parked",
            tc.bins[class].len()
        );
        // Past its runs, the class's bin grows as before.
        let ps: Vec<_> = (0..200).map(|_| alloc(&mut tc, &heap, 200)).collect();
        assert!(!heap.in_runs(class));
        for p in ps {
            tc.push(&heap, class, p as usize);
        }
        assert!(tc.bins[class].len() > cap);
        tc.flush_all(&heap);
        heap.check().expect("invariants");
        assert_eq!(heap.stats().live_blocks, 0);
    }

    #[test]
    fn a_map_outgrowing_its_prefix_keeps_old_copies_right() {
        // The arena grows 16 chunks at a time: a prefix of 32 covers two growths.
        static PREFIX: [AtomicUsize; 32] = [const { AtomicUsize::new(0) }; 32];
        let heap = Heap::new_lazy_with_map_prefix(Config::RESERVED, &PREFIX);
        let mut tc = ThreadCache::new();
        tc.state = ACTIVE;
        // A first block, from a span in the prefix's chunks (a class above
        // RUN_BYTES: it takes no run blocks).
        const SIZE: usize = 7000;
        const _: () = assert!(SIZE > crate::size_class::RUN_BYTES);
        let early = alloc(&mut tc, &heap, SIZE);
        let (_, len, table) = heap.map.params();
        assert_eq!((len, table), (32, PREFIX.as_ptr()));
        let old = (tc.map_base, tc.map_len, tc.map_table);
        assert_eq!(old.1, 32);
        // Forty 64 KiB blocks take ten spans of five chunks: the arena outgrows the
        // prefix and the map moves to a full table.
        let big: Vec<_> = (0..40).map(|_| heap.malloc(64 * 1024)).collect();
        let (_, len, table) = heap.map.params();
        assert!(len > 32 && table != PREFIX.as_ptr());
        heap.check().expect("invariants after the move");
        // A cache still holding the prefix frees through it (the prefix is kept up
        // to date), and picks up the full table at its next slow path.
        let q = alloc(&mut tc, &heap, SIZE);
        (tc.map_base, tc.map_len, tc.map_table) = old;
        // SAFETY: live blocks of `heap`, not used afterwards if cached.
        unsafe {
            assert!(tc.try_free(&heap, early as usize));
            let s = heap.map.lookup(q as usize);
            let in_prefix = (s as usize - tc.map_base) >> CHUNK_SHIFT < 32;
            assert_eq!(tc.try_free(&heap, q as usize), in_prefix);
            if !in_prefix {
                tc.push(&heap, class_of(SIZE), q as usize);
            }
        }
        tc.sync_map(&heap);
        assert_eq!(tc.map_len, len);
        tc.flush_all(&heap);
        for p in big {
            // SAFETY: live blocks, freed once.
            unsafe { heap.free(p) };
        }
        heap.check().expect("invariants");
        assert_eq!(heap.stats().live_blocks, 0);
    }

    #[test]
    fn a_span_with_an_offset_block_sends_its_frees_down_the_slow_path() {
        let heap = Heap::new(Config::RESERVED).expect("heap");
        let mut tc = ThreadCache::new();
        tc.state = ACTIVE;
        // 64 bytes aligned to 32 take an 80-byte block (64 + 16 of padding): the
        // first block of a fresh span is 128-aligned (after the header), the second
        // 16 bytes off, so the second allocation is offset into its block.
        let runs = use_up_runs(&heap, class_of(80));
        let first = heap.malloc_aligned(64, 32);
        let span = heap.map.lookup(first as usize);
        assert_eq!(
            first as usize,
            span as usize + crate::size_class::SPAN_HEADER
        );
        assert_ne!(heap.map.entry(first as usize) & TAG_MASK, 0, "still tagged");
        let second = heap.malloc_aligned(64, 32);
        assert_eq!(heap.map.lookup(second as usize), span);
        assert_eq!(second as usize % 32, 0);
        assert_eq!(heap.map.entry(second as usize) & TAG_MASK, 0, "tag cleared");
        heap.check().expect("invariants");
        // A block the cache takes from the same span is refused by the fast path,
        // and goes back by the class path instead.
        let p = alloc(&mut tc, &heap, 70);
        assert_eq!(heap.map.lookup(p as usize), span);
        // SAFETY: `p` is a live block of `heap`; refused, so it stays live.
        assert!(!unsafe { tc.try_free(&heap, p as usize) });
        tc.push(&heap, class_of(70), p as usize);
        // SAFETY: live blocks of `heap`, freed once.
        unsafe {
            heap.free(second);
            heap.free(first);
        }
        tc.flush_all(&heap);
        heap.check().expect("invariants");
        assert_eq!(heap.stats().live_blocks, runs.len() as u64);
        // Emptied and formatted again, the span is tagged again.
        let q = alloc(&mut tc, &heap, 70);
        assert_ne!(heap.map.entry(q as usize) & TAG_MASK, 0);
        // SAFETY: live block of `heap`, not used afterwards.
        assert!(unsafe { tc.try_free(&heap, q as usize) });
        tc.flush_all(&heap);
        give_back(&heap, runs);
        heap.check().expect("invariants");
    }
}
