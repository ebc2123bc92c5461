//! The heap: one allocator instance. Central per-class span lists behind per-class
//! locks, the span pool and large-block list behind the heap lock.
//!
//! Lock order: class locks in ascending index order (a refill that borrows a
//! larger class's free run block holds its own class's lock while it takes that
//! one's, see [`Heap::borrow_run_block`]), then the heap lock. The fork handlers
//! take every class lock in index order, then the heap lock.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};

use crate::chunk_map::ChunkMap;
use crate::large::LargeList;
use crate::lock::SpinLock;
use crate::os::brk::{Backend, BrkArena};
use crate::os::thread::now_ms;
use crate::pool::Pool;
use crate::size_class::{
    class_size, run_budget, CHUNK, MAX_SMALL, NUM_CLASSES, PURGE_CLASS, RUN_BLOCKS, SPAN_CHUNKS,
};
use crate::span::{self, FreeBlock, Span, SpanStack, SpanState};
use crate::stats::{add, Counters};
use crate::thread_cache::tag_of;

/// The default [`Config::max_dirty`]: none, an emptied span's pages go back at once
/// (one `madvise`; the pages fault in again if the span is reused). `git log -p`
/// kept 870 KiB of emptied spans resident at its peak with only the decay; a 64 KiB
/// or 256 KiB budget still cost it 100 to 400 KiB of peak.
pub const MAX_DIRTY: usize = 0;

/// The time for the pool's decay: the clock when empty spans may stay resident, else
/// 0 (nothing waits for a decay). Not reading the clock spares a preloaded process
/// the libc page(s) `clock_gettime` lives in (64 KiB or more of resident text with
/// fault-around, measured on `bench/churn.c`).
fn clock(config: &Config) -> u64 {
    if config.max_dirty == 0 {
        0
    } else {
        now_ms()
    }
}

/// How a heap gets and returns memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// What backs the brk arena for small blocks.
    pub backend: Backend,
    /// Address space the brk arena may grow into, in bytes (a multiple of 64 KiB).
    pub arena_limit: usize,
    /// Requests larger than this many bytes get their own mapping (at most 128 KiB,
    /// [`crate::size_class::MAX_SMALL`]).
    pub large_threshold: usize,
    /// How long an empty span stays resident before its pages are returned with
    /// `madvise(MADV_DONTNEED)`, in milliseconds (0: at once).
    pub decay_ms: u64,
    /// The most bytes of empty spans kept resident, whatever the decay: beyond it the
    /// longest idle are returned at once. A short-lived program never reaches the
    /// decay, and its peak then carries every span it emptied on the way.
    pub max_dirty: usize,
}

impl Config {
    /// Real program break, 64 GiB arena limit, 128 KiB large threshold, 1 s decay,
    /// at most [`MAX_DIRTY`] (0) bytes resident in empty spans.
    pub const DEFAULT: Config = Config {
        backend: Backend::Brk,
        arena_limit: 64 << 30,
        large_threshold: MAX_SMALL,
        decay_ms: 1000,
        max_dirty: MAX_DIRTY,
    };

    /// [`Config::DEFAULT`] with a reserved region instead of the real break: the
    /// choice for a process whose glibc malloc also uses `brk`.
    pub const RESERVED: Config = Config {
        backend: Backend::Reserved,
        ..Config::DEFAULT
    };
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

/// Why a heap could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitError;

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("could not set up the allocator's arena (mmap/sbrk failed)")
    }
}

impl core::error::Error for InitError {}

/// A class's central state, under its lock.
#[derive(Debug)]
pub(crate) struct ClassInner {
    /// Formatted spans with at least one free block.
    pub partial: SpanStack,
    /// Blocks handed out, of spans and of runs.
    pub used: u64,
    /// Free blocks of the class's runs in mixed spans, linked through their first
    /// word (runs are never given back, so their blocks stay with the class, or
    /// are lent to a smaller one, see [`Heap::borrow_run_block`]).
    pub run_free: *mut FreeBlock,
}

/// The most bytes a refill takes from a new run (at least one block).
const RUN_BATCH: usize = 256;

/// A class's lock and central state. (32 bytes: the preload library's writable
/// data, this heap's 57 of them included, fits one page, which every process it is
/// preloaded into keeps resident.)
#[derive(Debug)]
pub(crate) struct Central {
    pub lock: SpinLock,
    /// Blocks in the class's runs, at most [`run_budget`] (written under the lock;
    /// beside it, in what would be padding; read without it by thread caches, see
    /// [`Heap::in_runs`]).
    pub run_blocks: AtomicU8,
    /// Blocks on [`ClassInner::run_free`] (written under the lock; read without it
    /// by smaller classes looking for a block to borrow).
    pub run_free_len: AtomicU8,
    /// Blocks the class borrowed from larger ones ([`Heap::borrow_run_block`]), up
    /// to 255: then it takes blocks of its own. A borrowed block goes back to its
    /// lender when freed, so a class that allocates and frees in a loop can borrow
    /// the same block over and over, each time at the cost of two class locks
    /// instead of a bin pop (sqlite3's 64-byte class borrowed a 112-byte block
    /// 45,000 times: 2 % more instructions). A thread cache takes such a block
    /// back from the lender's bin itself (`ThreadCache::pop_lender`); the bound
    /// covers the blocks that reach the lender's central list. Written under the
    /// class lock.
    pub borrowed: AtomicU8,
    /// The class's formatted spans (written under the lock, beside it in what would
    /// be padding; their blocks are this times [`span_capacity`]).
    pub spans: AtomicU32,
    pub inner: UnsafeCell<ClassInner>,
}

const _: () = assert!(core::mem::size_of::<Central>() <= 32 && RUN_BLOCKS <= u8::MAX as usize);

impl Central {
    /// Adds `n` (+1 or -1) to the count of free run blocks. Class lock held: only
    /// its holder writes the count.
    fn add_run_free(&self, n: i8) {
        let v = self.run_free_len.load(Ordering::Relaxed);
        self.run_free_len
            .store(v.wrapping_add_signed(n), Ordering::Relaxed);
    }

    /// Adds `n` (+1 or -1) to the span count. Class lock held: only its holder
    /// writes the count.
    fn add_spans(&self, n: i32) {
        let v = self.spans.load(Ordering::Relaxed);
        self.spans
            .store(v.wrapping_add_signed(n), Ordering::Relaxed);
    }
}

/// Heap-wide state, under the heap lock.
#[derive(Debug)]
pub(crate) struct Inner {
    pub config: Config,
    pub pool: Pool,
    pub large: LargeList,
    pub failed: bool,
    /// The mixed span runs are carved from (null before the first run).
    pub mixed: *mut Span,
}

/// One allocator instance: size classes, span pool, large blocks and statistics.
///
/// A `Heap` can be used directly (every call takes a short lock) or, for the
/// process-global instance, through per-thread caches (see [`crate::global`]).
pub struct Heap {
    pub(crate) classes: [Central; NUM_CLASSES],
    pub(crate) lock: SpinLock,
    pub(crate) inner: UnsafeCell<Inner>,
    pub(crate) map: ChunkMap,
    ready: AtomicBool,
    pub(crate) large_threshold: usize,
    pub(crate) counters: Counters,
}

// SAFETY: all mutable state is behind the class locks, the heap lock or atomics.
unsafe impl Sync for Heap {}
// SAFETY: the raw pointers inside point into memory the heap owns, not thread-bound.
unsafe impl Send for Heap {}

impl Heap {
    /// A heap that sets itself up on first use (usable in a `static`).
    pub const fn new_lazy(config: Config) -> Heap {
        Heap::new_lazy_with_map_prefix(config, &[])
    }

    /// [`Heap::new_lazy`] whose chunk map starts with `prefix` (zeroed, for this heap
    /// alone) as its table, and maps one only once the arena outgrows it.
    pub(crate) const fn new_lazy_with_map_prefix(
        config: Config,
        prefix: &'static [AtomicUsize],
    ) -> Heap {
        let large_threshold = if config.large_threshold > MAX_SMALL {
            MAX_SMALL
        } else {
            config.large_threshold
        };
        Heap {
            classes: [const {
                Central {
                    lock: SpinLock::new(),
                    inner: UnsafeCell::new(ClassInner {
                        partial: SpanStack::new(),
                        used: 0,
                        run_free: core::ptr::null_mut(),
                    }),
                    run_blocks: AtomicU8::new(0),
                    run_free_len: AtomicU8::new(0),
                    borrowed: AtomicU8::new(0),
                    spans: AtomicU32::new(0),
                }
            }; NUM_CLASSES],
            lock: SpinLock::new(),
            inner: UnsafeCell::new(Inner {
                config,
                pool: Pool::new(),
                large: LargeList::new(),
                failed: false,
                mixed: core::ptr::null_mut(),
            }),
            map: ChunkMap::with_prefix(prefix),
            ready: AtomicBool::new(false),
            large_threshold,
            counters: Counters::new(),
        }
    }

    /// A heap set up now: its arena and chunk map are reserved before returning.
    pub fn new(config: Config) -> Result<Heap, InitError> {
        let heap = Heap::new_lazy(config);
        if heap.ensure_init() {
            Ok(heap)
        } else {
            Err(InitError)
        }
    }

    /// The heap's configuration.
    pub fn config(&self) -> Config {
        let _g = self.lock.lock();
        // SAFETY: heap lock held.
        unsafe { (*self.inner.get()).config }
    }

    /// Replaces the backend of a heap that has not set itself up yet. Returns false
    /// (and changes nothing) once it has.
    pub fn set_backend_if_unused(&self, backend: Backend) -> bool {
        let _g = self.lock.lock();
        if self.ready.load(Ordering::Relaxed) {
            return false;
        }
        // SAFETY: heap lock held.
        unsafe { (*self.inner.get()).config.backend = backend };
        true
    }

    /// Sets up the arena and chunk map once. Returns false if that failed.
    #[inline]
    pub(crate) fn ensure_init(&self) -> bool {
        if self.ready.load(Ordering::Acquire) {
            return true;
        }
        self.init_slow()
    }

    #[cold]
    fn init_slow(&self) -> bool {
        let _g = self.lock.lock();
        if self.ready.load(Ordering::Relaxed) {
            return true;
        }
        // SAFETY: heap lock held.
        let inner = unsafe { &mut *self.inner.get() };
        if inner.failed {
            return false;
        }
        let limit = inner.config.arena_limit.next_multiple_of(CHUNK);
        add(
            &self.counters.mmap_calls,
            if inner.config.backend == Backend::Reserved {
                2
            } else {
                1
            },
        );
        let Some(arena) = BrkArena::new(inner.config.backend, limit, CHUNK) else {
            inner.failed = true;
            return false;
        };
        let Some(meta) = self.map.init(arena.base(), arena.limit()) else {
            inner.failed = true;
            return false;
        };
        add(&self.counters.metadata_bytes, meta as u64);
        inner.pool.arena = Some(arena);
        self.ready.store(true, Ordering::Release);
        true
    }

    /// Fetches up to `want` blocks of `class`, linked through their first word, into
    /// `*out`. Returns how many it got (0 when out of memory) and their class:
    /// `class`, or, instead of a new run, the larger class of one free run block it
    /// borrowed (see [`Heap::borrow_run_block`]).
    pub(crate) fn refill(
        &self,
        class: usize,
        want: usize,
        out: &mut *mut FreeBlock,
    ) -> (usize, usize) {
        if !self.ensure_init() {
            return (0, class);
        }
        let central = crate::at(&self.classes, class);
        let _g = central.lock.lock();
        // SAFETY: class lock held.
        let ci = unsafe { &mut *central.inner.get() };
        let purged = class >= PURGE_CLASS;
        let budget = run_budget(class);
        let mut got = 0;
        while got < want {
            // Run blocks first: freed ones, then a new run while the budget lasts.
            let b = ci.run_free;
            if !b.is_null() {
                // SAFETY: free run blocks hold a valid link; the class lock is held.
                unsafe {
                    ci.run_free = (*b).next;
                    (*b).next = *out;
                }
                central.add_run_free(-1);
                *out = b;
                got += 1;
                continue;
            }
            let room = budget - central.run_blocks.load(Ordering::Relaxed) as usize;
            if room > 0 {
                let borrowed = central.borrowed.load(Ordering::Relaxed);
                if got == 0 && borrowed < u8::MAX {
                    // A free run block of a slightly larger class rather than
                    // memory no block used yet.
                    let (b, lender) = self.borrow_run_block(class);
                    if !b.is_null() {
                        // SAFETY: a free run block, now ours alone.
                        unsafe { (*b).next = *out };
                        *out = b;
                        // (Under the class lock: only the lock holder writes it.)
                        central.borrowed.store(borrowed + 1, Ordering::Relaxed);
                        return (1, lender);
                    }
                }
                // A few hundred bytes at a time: a class used for a block or two
                // does not park (and touch) a batch of them in a thread cache.
                let n = room
                    .min(want - got)
                    .min(crate::div(RUN_BATCH, class_size(class)).max(1));
                let first = self.new_run(class, n);
                if first != 0 {
                    let size = class_size(class);
                    for i in (0..n).rev() {
                        let b = (first + i * size) as *mut FreeBlock;
                        // SAFETY: a fresh run of `n` blocks, ours alone.
                        unsafe { (*b).next = *out };
                        *out = b;
                    }
                    // (Under the class lock: only the lock holder writes it.)
                    central.run_blocks.store(
                        central.run_blocks.load(Ordering::Relaxed) + n as u8,
                        Ordering::Relaxed,
                    );
                    got += n;
                    continue;
                }
            }
            let mut s = ci.partial.head;
            if s.is_null() {
                if got > 0 {
                    // Do not start a span to round a batch up.
                    break;
                }
                s = self.new_span(class);
                if s.is_null() {
                    break;
                }
                central.add_spans(1);
                // SAFETY: fresh formatted span on no list.
                unsafe { ci.partial.push_front(s) };
            }
            // SAFETY: `s` is a formatted span of this class; class lock held.
            unsafe {
                while got < want {
                    let b = if purged {
                        span::take_purged(s)
                    } else {
                        span::take_block(s)
                    };
                    if b.is_null() {
                        break;
                    }
                    (*b).next = *out;
                    *out = b;
                    got += 1;
                }
                if (*s).is_full() {
                    ci.partial.remove(s);
                    (*s).state = SpanState::Full;
                }
            }
        }
        ci.used += got as u64;
        (got, class)
    }

    /// Takes a free run block of the smallest class above `class` that has one and
    /// whose blocks are at most twice as large, counted as handed out by that
    /// class; null (and `class`) if there is none. The lender keeps the block: its
    /// run table entry still names the lender's class, so the block goes back to
    /// it when freed.
    ///
    /// A run block freed by its class (a buffer that grew past it, say) is
    /// otherwise only reused by that class, while a smaller class touches new
    /// memory for its next run. Called with `class`'s lock held: each lender's lock
    /// is taken after it, so class locks nest in ascending index order only (as
    /// the fork handlers take them), and no two threads can wait for each other.
    #[inline(never)]
    fn borrow_run_block(&self, class: usize) -> (*mut FreeBlock, usize) {
        let limit = 2 * class_size(class);
        let mut lender = class + 1;
        while lender < NUM_CLASSES && class_size(lender) <= limit && run_budget(lender) > 0 {
            let c = crate::at(&self.classes, lender);
            // (A hint, read without the lender's lock.)
            if c.run_free_len.load(Ordering::Relaxed) != 0 {
                let _g = c.lock.lock();
                // SAFETY: the lender's lock is held.
                let ci = unsafe { &mut *c.inner.get() };
                let b = ci.run_free;
                if !b.is_null() {
                    // SAFETY: free run blocks hold a valid link; lock held.
                    ci.run_free = unsafe { (*b).next };
                    c.add_run_free(-1);
                    ci.used += 1;
                    return (b, lender);
                }
            }
            lender += 1;
        }
        (core::ptr::null_mut(), class)
    }

    /// Returns `count` blocks of `class`, linked through their first word from
    /// `head`, to their spans.
    ///
    /// # Safety
    /// Every block must be a dead block start of `class` from this heap, each once.
    pub(crate) unsafe fn flush(&self, class: usize, mut head: *mut FreeBlock, count: usize) {
        let central = crate::at(&self.classes, class);
        let _g = central.lock.lock();
        // SAFETY: class lock held.
        let ci = unsafe { &mut *central.inner.get() };
        let purged = class >= PURGE_CLASS;
        for _ in 0..count {
            let b = head;
            // SAFETY: the caller passes `count` linked dead blocks.
            head = unsafe { (*b).next };
            let s = self.map.lookup(b as usize);
            debug_assert!(!s.is_null());
            // SAFETY: `b` is a block of formatted span `s` of this class; the class lock
            // is held, so the span is ours to change (and trim).
            unsafe {
                if (*s).is_mixed() {
                    debug_assert_eq!(span::mixed_block(s, b as usize), (b as usize, class));
                    // A run block: back to the class's run list.
                    (*b).next = ci.run_free;
                    ci.run_free = b;
                    central.add_run_free(1);
                    continue;
                }
                debug_assert_eq!((*s).class as usize, class);
                if purged && (*s).used == 1 {
                    // The span's last block: it goes back to the pool with all its
                    // pages, header included, in the block's one `madvise`. (A span
                    // holds at least four blocks, so with one out it is partial.)
                    ci.partial.remove(s);
                    central.add_spans(-1);
                    let chunks = (*s).chunks as usize;
                    span::give_purged(s, b);
                    add(&self.counters.madvise_calls, 1);
                    self.release_clean(s as usize, chunks);
                    continue;
                }
                if purged {
                    if span::give_purged(s, b) {
                        add(&self.counters.madvise_calls, 1);
                    }
                } else {
                    span::give_block(s, b);
                }
                if (*s).state == SpanState::Full {
                    (*s).state = SpanState::Partial;
                    ci.partial.push_front(s);
                }
                if (*s).used == 0 {
                    ci.partial.remove(s);
                    central.add_spans(-1);
                    self.release_span(s);
                } else if !purged && span::should_trim(s) && span::trim_top(s) > 0 {
                    add(&self.counters.madvise_calls, 1);
                }
            }
        }
        ci.used -= count as u64;
    }

    /// Whether `class` still takes new blocks from runs (a hint, read without the
    /// class lock): thread caches keep few of such a sparse class's blocks.
    #[inline]
    pub(crate) fn in_runs(&self, class: usize) -> bool {
        let c = crate::at(&self.classes, class);
        (c.run_blocks.load(Ordering::Relaxed) as usize) < run_budget(class)
    }

    /// Whether a refill of `class` would borrow or carve a new run: the class
    /// still takes new blocks from runs and has no free run block (a hint, read
    /// without the class lock).
    #[inline]
    pub(crate) fn would_carve(&self, class: usize) -> bool {
        let c = crate::at(&self.classes, class);
        self.in_runs(class) && c.run_free_len.load(Ordering::Relaxed) == 0
    }

    /// Carves a run of `n` blocks of `class` from the mixed span (a new one when it
    /// is full) and returns its first block, or 0 when out of memory.
    #[inline(never)]
    fn new_run(&self, class: usize, n: usize) -> usize {
        let _g = self.lock.lock();
        // SAFETY: heap lock held.
        let inner = unsafe { &mut *self.inner.get() };
        if !inner.mixed.is_null() {
            // SAFETY: `mixed` is a mixed span of this heap; heap lock held.
            let b = unsafe { span::carve_run(inner.mixed, class, n) };
            if b != 0 {
                return b;
            }
        }
        let now = clock(&inner.config);
        // SAFETY: heap lock held; the map is ours.
        let s = unsafe { inner.pool.take(1, &self.map, &self.counters, now) };
        if s.is_null() {
            return 0;
        }
        // SAFETY: an idle one-chunk span on no list, ours under the heap lock.
        unsafe {
            span::format_mixed(s);
            // Tag 0 (a reused span keeps its old class's tag): the fast free path
            // leaves its blocks to `ThreadCache::try_free_mixed`.
            self.map.set(s as usize, 1, s, 0);
            inner.mixed = s;
            span::carve_run(s, class, n)
        }
    }

    /// A freshly formatted span for `class`, or null when out of memory.
    fn new_span(&self, class: usize) -> *mut Span {
        let _g = self.lock.lock();
        // SAFETY: heap lock held.
        let inner = unsafe { &mut *self.inner.get() };
        let now = clock(&inner.config);
        // SAFETY: heap lock held; the map is ours.
        let s = unsafe {
            inner
                .pool
                .take(SPAN_CHUNKS[class] as usize, &self.map, &self.counters, now)
        };
        if !s.is_null() {
            // SAFETY: `s` is an idle span of the right length, on no list.
            unsafe { span::format(s, class) };
            self.map
                .set(s as usize, SPAN_CHUNKS[class] as usize, s, tag_of(class));
        }
        s
    }

    /// Gives an empty span back to the pool.
    ///
    /// # Safety
    /// `s` must be formatted, with no blocks out, on no list.
    unsafe fn release_span(&self, s: *mut Span) {
        let _g = self.lock.lock();
        // SAFETY: heap lock held; guaranteed by the caller.
        unsafe {
            let inner = &mut *self.inner.get();
            let (decay, max_dirty) = (inner.config.decay_ms, inner.config.max_dirty);
            let now = clock(&inner.config);
            inner
                .pool
                .give(s, &self.map, &self.counters, now, decay, max_dirty);
        }
    }

    /// Gives the `chunks` chunks at `at`, an empty span of a purged class whose pages
    /// all went back already (see [`span::give_purged`]), to the pool's clean lists.
    fn release_clean(&self, at: usize, chunks: usize) {
        let _g = self.lock.lock();
        // SAFETY: heap lock held.
        let inner = unsafe { &mut *self.inner.get() };
        inner.pool.give_clean(at, chunks, &self.map, &self.counters);
    }

    /// Returns every idle span's pages to the OS now, whatever the decay.
    pub fn purge(&self) {
        let _g = self.lock.lock();
        // SAFETY: heap lock held.
        unsafe {
            let inner = &mut *self.inner.get();
            inner
                .pool
                .decay(now_ms(), 0, &self.map, &self.counters, true);
        }
    }

    /// Takes every lock (class locks in order, then the heap lock): before `fork`.
    pub(crate) fn lock_all(&self) {
        for c in &self.classes {
            c.lock.acquire();
        }
        self.lock.acquire();
    }

    /// Releases every lock taken by [`Heap::lock_all`].
    pub(crate) fn unlock_all(&self) {
        self.lock.release();
        // A loop, not 57 unrolled stores (400 bytes of library text). The order does
        // not matter: nobody else runs while the fork handlers hold every lock.
        for c in core::hint::black_box(&self.classes[..]) {
            c.lock.release();
        }
    }

    /// The block start of small block `p` in span `s`, its usable size from `p`,
    /// and its class.
    #[inline]
    pub(crate) fn small_block(s: *mut Span, p: usize) -> (usize, usize, usize) {
        // SAFETY: `s` came from the chunk map for a live block, so it is formatted
        // or mixed.
        let sp = unsafe { &*s };
        if sp.is_mixed() {
            // SAFETY: `p` is in a live block of one of the mixed span's runs.
            let (start, class) = unsafe { span::mixed_block(s, p) };
            return (start, start + class_size(class) - p, class);
        }
        let start = sp.block_start(p);
        (start, start + sp.block_size as usize - p, sp.class as usize)
    }

    /// The block size of class `class` (re-exported for the caches).
    #[inline]
    pub(crate) fn class_bytes(class: usize) -> usize {
        class_size(class)
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        let inner = self.inner.get_mut();
        // SAFETY: `&mut self`: no block of this heap can be used any more.
        unsafe {
            while !inner.large.head.is_null() {
                let h = inner.large.head;
                inner.large.remove(h);
                crate::stats::sub(&self.counters.large_mapped_bytes, (*h).len as u64);
                crate::large::unmap_block(h, &self.counters);
            }
            if let Some(arena) = inner.pool.arena.as_mut() {
                arena.release();
            }
            self.map.release();
        }
        inner.pool = Pool::new();
    }
}
