//! Spans (slabs): runs of whole 64 KiB chunks carved from the brk arena, holding
//! blocks of one size class, with their header in the first 128 bytes.
//!
//! A span hands out blocks from its free list first, then by bumping through memory
//! it never used (so a fresh span touches pages only as blocks are taken). Spans are
//! linked into intrusive doubly linked lists: a class's partial list, or the pool's
//! idle lists. All functions take raw span pointers; the caller holds the lock that
//! owns the span (the class lock while formatted, the heap lock while idle).
//!
//! A **mixed** span is one chunk shared by the sparse start of many classes: it is
//! carved bottom up into **runs**, each a few blocks of one class, recorded in a run
//! table after the header (see [`carve_run`]). A class takes its first blocks (up to
//! [`RUN_BYTES`](crate::size_class::RUN_BYTES)) from runs, so the twenty classes a
//! small program uses a few blocks of share pages instead of each keeping a partly
//! used page of its own span. Runs are never given back: their free blocks stay
//! with their class (on its central list of run blocks), which lends them to
//! slightly smaller classes about to carve runs of their own (see
//! `Heap::borrow_run_block`; a lent block goes back to its class when freed).

use core::ptr;
use core::sync::atomic::{AtomicU16, AtomicU8, Ordering};

use crate::size_class::{class_size, span_capacity, CHUNK, SPAN_CHUNKS, SPAN_HEADER};

/// Where a span is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum SpanState {
    /// Formatted, has free blocks, on its class's partial list.
    Partial,
    /// Formatted, every block handed out, on no list.
    Full,
    /// Empty, on the pool's dirty list (pages still resident).
    Idle,
    /// Empty, on the pool's clean list (pages returned with madvise).
    Purged,
    /// One chunk carved into runs of several classes, on no list, never given back.
    Mixed,
}

/// A free block: its first word links to the next one.
#[repr(C)]
pub(crate) struct FreeBlock {
    pub next: *mut FreeBlock,
}

/// The span header, at the span's first address.
#[repr(C)]
pub(crate) struct Span {
    pub next: *mut Span,
    pub prev: *mut Span,
    free: *mut FreeBlock,
    bump: usize,
    data_end: usize,
    /// `ceil(2^40 / block_size)`, to find a block from an interior pointer.
    recip: u64,
    /// When the span went idle (coarse ms), for decay.
    pub idle_since: u64,
    pub block_size: u32,
    pub capacity: u32,
    pub used: u32,
    pub chunks: u32,
    /// Blocks to take back before [`trim_top`] is tried again after one that found
    /// nothing to return (so its walk costs O(1) per block, amortised).
    trim_wait: u32,
    /// The free blocks of a span of a purged class, one bit per block index (they are
    /// not linked: a free block of such a span keeps no page resident, see
    /// [`give_purged`]); 0 in every other span.
    free_bits: u64,
    pub class: u8,
    pub state: SpanState,
}

const _: () = assert!(core::mem::size_of::<Span>() <= SPAN_HEADER);

impl Span {
    /// The span's length in bytes.
    pub fn bytes(&self) -> usize {
        self.chunks as usize * CHUNK
    }

    /// Whether this is a mixed span. Read without the lock by whoever frees a live
    /// block of the span: the block size is written only while a span has none.
    #[inline]
    pub fn is_mixed(&self) -> bool {
        self.block_size == 0
    }

    /// Whether every block is handed out.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.used == self.capacity
    }

    /// The start of the block containing `p` (which may point inside the block, as
    /// aligned allocations do).
    #[inline]
    pub fn block_start(&self, p: usize) -> usize {
        let data = self as *const Span as usize + SPAN_HEADER;
        let off = (p - data) as u64;
        let idx = (off * self.recip) >> 40;
        data + idx as usize * self.block_size as usize
    }

    /// Whether `block` is a block boundary of this span's data area.
    pub fn is_block(&self, block: usize) -> bool {
        let data = self as *const Span as usize + SPAN_HEADER;
        block >= data && block < self.data_end && (block - data) % self.block_size as usize == 0
    }

    /// Number of blocks never handed out yet (beyond the bump pointer).
    pub fn untouched(&self) -> usize {
        crate::div(self.data_end - self.bump, self.block_size as usize)
    }

    /// The free list head (for the invariant checker).
    pub fn free_head(&self) -> *mut FreeBlock {
        self.free
    }

    /// The free blocks of a span of a purged class, one bit per block index (for the
    /// invariant checker).
    pub fn free_bits(&self) -> u64 {
        self.free_bits
    }
}

/// Writes a fresh idle span header at `at`, `chunks` chunks long.
///
/// # Safety
/// `[at, at + chunks * CHUNK)` must be arena memory owned by the caller, with `at`
/// chunk-aligned.
pub(crate) unsafe fn init_idle(at: usize, chunks: usize, state: SpanState, now: u64) -> *mut Span {
    let span = at as *mut Span;
    // SAFETY: the caller owns the memory; the header fits in it and `at` is aligned.
    unsafe {
        span.write(Span {
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
            free: ptr::null_mut(),
            bump: 0,
            data_end: 0,
            recip: 0,
            idle_since: now,
            block_size: 0,
            capacity: 0,
            used: 0,
            chunks: chunks as u32,
            trim_wait: 0,
            free_bits: 0,
            class: 0,
            state,
        });
    }
    span
}

/// Formats an idle span of the right length for `class`: empty free list, bump
/// pointer at the first block.
///
/// # Safety
/// `span` must be an idle span of `SPAN_CHUNKS[class]` chunks owned by the caller.
pub(crate) unsafe fn format(span: *mut Span, class: usize) {
    let size = class_size(class);
    let data = span as usize + SPAN_HEADER;
    // SAFETY: the caller owns the idle span, so nobody else reads its header.
    let s = unsafe { &mut *span };
    debug_assert_eq!(s.chunks as usize, SPAN_CHUNKS[class] as usize);
    s.free = ptr::null_mut();
    s.bump = data;
    s.data_end = data + span_capacity(class) * size;
    s.recip = (1u64 << 40).div_ceil(size as u64);
    s.block_size = size as u32;
    s.capacity = span_capacity(class) as u32;
    s.used = 0;
    s.trim_wait = 0;
    s.free_bits = 0;
    s.class = class as u8;
    s.state = SpanState::Partial;
}

/// Takes one block from the span, or returns null if it is full.
///
/// # Safety
/// `span` must be formatted and owned by the caller (class lock held).
#[inline]
pub(crate) unsafe fn take_block(span: *mut Span) -> *mut FreeBlock {
    // SAFETY: the caller owns the span header.
    let s = unsafe { &mut *span };
    let b = s.free;
    if !b.is_null() {
        // SAFETY: blocks on the free list are free and hold a valid link.
        s.free = unsafe { (*b).next };
        s.used += 1;
        return b;
    }
    take_untouched(s)
}

/// Takes the span's next never handed out block (above its bump pointer), or
/// returns null if there is none.
#[inline(always)]
fn take_untouched(s: &mut Span) -> *mut FreeBlock {
    if s.bump < s.data_end {
        let b = s.bump as *mut FreeBlock;
        s.bump += s.block_size as usize;
        s.used += 1;
        return b;
    }
    ptr::null_mut()
}

/// Gives block `b` back to its span.
///
/// # Safety
/// `b` must be a block start of the formatted span `span`, currently handed out and
/// no longer used; the caller owns the span (class lock held).
#[inline]
pub(crate) unsafe fn give_block(span: *mut Span, b: *mut FreeBlock) {
    // SAFETY: the caller owns the span header and the dead block.
    unsafe {
        let s = &mut *span;
        (*b).next = s.free;
        s.free = b;
        s.used -= 1;
    }
}

/// Takes one block from a span of a purged class (blocks of at least
/// [`PURGE_MIN_BLOCK`](crate::size_class::PURGE_MIN_BLOCK) bytes): the lowest free block, else the next untouched one; null if it is full.
///
/// The block's whole pages read as zero if it was given back before, the rest holds
/// old bytes.
///
/// # Safety
/// `span` must be a formatted span of a purged class, owned by the caller (class
/// lock held).
pub(crate) unsafe fn take_purged(span: *mut Span) -> *mut FreeBlock {
    // SAFETY: the caller owns the span header.
    let s = unsafe { &mut *span };
    let data = span as usize + SPAN_HEADER;
    if s.free_bits != 0 {
        let i = s.free_bits.trailing_zeros() as usize;
        s.free_bits &= s.free_bits - 1;
        s.used += 1;
        return (data + i * s.block_size as usize) as *mut FreeBlock;
    }
    take_untouched(s)
}

/// Gives block `b` back to its span of a purged class and returns to the OS every
/// page of the block that no block in use shares (the header page excepted, unless
/// `b` was the span's last block out: then every page goes, header included, and
/// the caller must not read the header again): a free block keeps no page resident. It is marked in the span's free bits, not linked
/// through its memory; a top block moves the bump pointer down instead, past every
/// free block below it. Returns whether it made a system call (one `madvise`, which
/// also covers the pages the block shares with a free neighbour).
///
/// Blocks of these classes are at least two pages long, so a page overlaps at most
/// two blocks, and only the block's two neighbours decide its edge pages.
///
/// # Safety
/// `b` must be a block start of the formatted span `span` of a purged class,
/// currently handed out and no longer used; the caller owns the span (class lock
/// held).
pub(crate) unsafe fn give_purged(span: *mut Span, b: *mut FreeBlock) -> bool {
    // SAFETY: the caller owns the span header.
    let s = unsafe { &mut *span };
    let page = crate::os::mmap::page_size();
    let data = span as usize + SPAN_HEADER;
    let size = s.block_size as usize;
    debug_assert!(size >= 2 * page);
    let (lo, hi) = (b as usize, b as usize + size);
    let i = crate::div(lo - data, size);
    let bits = s.free_bits;
    let free = |j: usize| bits & (1 << j) != 0;
    let from = if s.used == 1 {
        // The last block out: the span goes back to the pool whole, its header
        // page with it (every other page went with the blocks before).
        span as usize
    } else if i > 0 && free(i - 1) {
        lo & !(page - 1)
    } else {
        lo.next_multiple_of(page)
    };
    let to = if hi == s.bump {
        // The top block: what lies above is untouched, and the bump pointer moves
        // down past the free blocks below.
        let mut top = i;
        while top > 0 && free(top - 1) {
            top -= 1;
        }
        s.free_bits &= (1u64 << top) - 1;
        s.bump = data + top * size;
        hi.next_multiple_of(page)
    } else {
        s.free_bits |= 1 << i;
        if free(i + 1) {
            hi.next_multiple_of(page)
        } else {
            hi & !(page - 1)
        }
    };
    s.used -= 1;
    if to <= from {
        return false;
    }
    // SAFETY: `[from, to)` holds whole pages of dead block `b` and of its free
    // neighbours (or of the untouched space above the bump pointer), inside the span
    // and above its header page; no block in use overlaps them and nothing reads them
    // (free blocks of this span are not linked through memory).
    unsafe { crate::os::mmap::advise_free(from, to - from) };
    true
}

/// Most blocks a span can hold (a one-chunk span of the smallest class), so a span's
/// blocks fit a fixed bitmap in [`trim_top`].
pub(crate) const MAX_BLOCKS: usize = (CHUNK - SPAN_HEADER) / 16;

/// Whether a span just given a block back should try [`trim_top`]: its blocks out
/// have just fallen to a quarter of those it ever handed out, or to one (each
/// downward crossing triggers once), at least [`TRIM_MIN_BYTES`] lie beyond them,
/// and no attempt that found nothing is too recent.
///
/// # Safety
/// `span` must be formatted and owned by the caller (class lock held).
#[inline]
pub(crate) unsafe fn should_trim(span: *mut Span) -> bool {
    // SAFETY: the caller owns the formatted span header.
    let s = unsafe { &mut *span };
    if s.trim_wait > 0 {
        s.trim_wait -= 1;
        return false;
    }
    let data = span as usize + SPAN_HEADER;
    let touched = crate::div(s.bump - data, s.block_size as usize);
    (s.used as usize * 4 == touched || s.used == 1) && s.bump - data >= TRIM_MIN_BYTES
}

/// The least a span must have handed out before [`trim_top`] is tried.
pub(crate) const TRIM_MIN_BYTES: usize = 8 * 1024;

/// Takes back the free blocks above the highest block in use: the free list loses
/// them, the bump pointer moves down to just past that block, and the whole pages
/// above it (up to where the bump pointer was) go back to the OS. Returns the bytes
/// returned. The blocks are handed out again, fresh, by bumping.
///
/// A span that served a burst and kept a few long-lived blocks at its bottom (the
/// usual case: blocks are handed out bottom up) otherwise keeps the burst's pages
/// resident for as long as those blocks live. Costs a walk of the free list.
///
/// # Safety
/// `span` must be formatted, owned by the caller (class lock held), with no block
/// being handed out or given back concurrently.
pub(crate) unsafe fn trim_top(span: *mut Span) -> usize {
    // SAFETY: the caller owns the span header.
    let s = unsafe { &mut *span };
    let data = span as usize + SPAN_HEADER;
    let size = s.block_size as usize;
    let touched = crate::div(s.bump - data, size);
    debug_assert!(touched <= MAX_BLOCKS);
    // Rounded up: a full span of the smallest class has 4088 blocks, 63.875 words.
    let mut free = [0u64; MAX_BLOCKS.div_ceil(64)];
    let mut b = s.free;
    while !b.is_null() {
        let i = crate::div(b as usize - data, size);
        *crate::at_mut(&mut free, i / 64) |= 1 << (i % 64);
        // SAFETY: blocks on the free list are free and hold a valid link.
        b = unsafe { (*b).next };
    }
    // The lowest index from which every touched block is free.
    let mut keep = touched;
    while keep > 0 && crate::at(&free, (keep - 1) / 64) & (1 << ((keep - 1) % 64)) != 0 {
        keep -= 1;
    }
    let page = crate::os::mmap::page_size();
    let new_bump = data + keep * size;
    let from = new_bump.next_multiple_of(page);
    let to = s.bump.next_multiple_of(page);
    if to <= from {
        // The walk found nothing: wait for as many blocks back as it looked at.
        s.trim_wait = touched as u32;
        return 0;
    }
    // Unlink the free blocks at or above `keep`.
    let mut link: *mut *mut FreeBlock = &mut s.free;
    // SAFETY: `link` points at the span's head or at a free block's link word, all
    // owned by the caller; blocks on the list hold valid links.
    unsafe {
        while !(*link).is_null() {
            let b = *link;
            if b as usize >= new_bump {
                *link = (*b).next;
            } else {
                link = &mut (*b).next;
            }
        }
    }
    s.bump = new_bump;
    // SAFETY: `[from, to)` lies above every block in use and below the span's end
    // (`to` is at most the page after the last touched byte, inside the span's
    // chunks); nothing in it is reachable any more.
    unsafe { crate::os::mmap::advise_free(from, to - from) };
    to - from
}

/// Most runs one mixed span records (a class's successive runs that end up
/// adjacent share one entry). `sqlite3`, `python3`, `git log -p` and `gcc` fill a
/// mixed span with 90 to 101 runs, `bench/churn.c` with about 240 (its classes'
/// runs interleave); a span whose table is full is left for a new one.
pub(crate) const MAX_RUNS: usize = 256;

/// The granule table of a mixed span names, for every this many bytes, the run
/// holding the granule's first byte, so [`mixed_block`] finds a run with one load
/// (and a few steps when runs shorter than a granule share it). The table is part
/// of the runs' first page, resident in every process: 64-byte granules, with the
/// table aligned to them, made it 1.8 KiB (a page of sqlite3's peak); now 1.1 KiB.
const GRANULE: usize = 256;

/// The run table of a mixed span, right after its header. Entries are appended
/// under the heap lock and read without it: a block of a run is handed out only
/// after the heap lock that wrote its entry was released.
#[repr(C)]
pub(crate) struct RunTable {
    /// Offset from the span of the first byte no run holds yet (heap lock).
    top: usize,
    /// Entries recorded (heap lock).
    len: usize,
    /// Offset of each run's first block, increasing; the entry after the last
    /// holds `u16::MAX` (past every block start).
    start: [AtomicU16; MAX_RUNS],
    /// The class of each run.
    class: [AtomicU8; MAX_RUNS],
    /// The run (entry index) each granule of the span belongs to.
    granule: [AtomicU8; CHUNK / GRANULE],
}

/// Offset of the first run in a mixed span: after the header and run table, on a
/// cache line. Not granule-aligned: the granule holding it names the first run
/// (see [`format_mixed`]).
pub(crate) const MIXED_DATA: usize =
    (SPAN_HEADER + core::mem::size_of::<RunTable>()).next_multiple_of(64);
const _: () = assert!(CHUNK <= 1 << 16 && MIXED_DATA < CHUNK / 8 && MAX_RUNS <= 256);

/// `start` value past every block start (blocks are at least 16 bytes).
const NO_RUN: u16 = u16::MAX;

/// The run table of mixed span `span`.
#[inline]
fn runs(span: *const Span) -> *mut RunTable {
    (span as usize + SPAN_HEADER) as *mut RunTable
}

/// Formats idle one-chunk span `span` as an empty mixed span.
///
/// # Safety
/// `span` must be an idle span of one chunk, on no list, owned by the caller (heap
/// lock held).
pub(crate) unsafe fn format_mixed(span: *mut Span) {
    // SAFETY: the caller owns the idle span; the table fits before `MIXED_DATA`.
    unsafe {
        debug_assert_eq!((*span).chunks, 1);
        (*span).state = SpanState::Mixed;
        (*span).class = 0;
        (*span).block_size = 0;
        (*span).used = 0;
        let t = runs(span);
        ptr::addr_of_mut!((*t).top).write(MIXED_DATA);
        ptr::addr_of_mut!((*t).len).write(0);
        (*t).start[0].store(NO_RUN, Ordering::Relaxed);
        // The granule holding the first run's start begins in the table, so no
        // run holds its first byte: it names the first run (entry 0), where the
        // lookups of its blocks start.
        (*t).granule[MIXED_DATA / GRANULE].store(0, Ordering::Relaxed);
    }
}

/// Carves a run of `n` blocks of `class` at the top of mixed span `span` and
/// returns its first block, or 0 if the span has no room (or no table entry
/// left). A run right after a run of the same class extends it.
///
/// # Safety
/// `span` must be a mixed span; the heap lock must be held.
#[inline(never)]
pub(crate) unsafe fn carve_run(span: *mut Span, class: usize, n: usize) -> usize {
    // SAFETY: mixed span (caller), its table is initialised; heap lock held, so
    // nobody else writes it.
    let t = unsafe { &mut *runs(span) };
    let bytes = n * class_size(class);
    let first = t.top;
    let len = t.len;
    let extends = len > 0 && crate::at(&t.class, len - 1).load(Ordering::Relaxed) as usize == class;
    // The last entry stays free for the `NO_RUN` mark.
    if first + bytes > CHUNK || (!extends && len == MAX_RUNS - 1) {
        return 0;
    }
    if !extends {
        crate::at(&t.start, len).store(first as u16, Ordering::Relaxed);
        crate::at(&t.class, len).store(class as u8, Ordering::Relaxed);
        crate::at(&t.start, len + 1).store(NO_RUN, Ordering::Relaxed);
        t.len = len + 1;
    }
    let run = t.len - 1;
    // The granules whose first byte the run holds.
    for g in first.div_ceil(GRANULE)..(first + bytes).div_ceil(GRANULE) {
        crate::at(&t.granule, g).store(run as u8, Ordering::Relaxed);
    }
    t.top = first + bytes;
    span as usize + first
}

/// The block of mixed span `span` containing `p`: its start and class.
///
/// # Safety
/// `span` must be a mixed span and `p` point into a block of one of its runs
/// handed out (or freed) before this call.
#[inline(never)]
pub(crate) unsafe fn mixed_block(span: *const Span, p: usize) -> (usize, usize) {
    // SAFETY: mixed span (caller's promise).
    let t = unsafe { &*runs(span) };
    let off = p - span as usize;
    debug_assert!((MIXED_DATA..CHUNK).contains(&off));
    // SAFETY: `p` is in the span, so `off / GRANULE` indexes the granule table; a
    // run index there is below `MAX_RUNS - 1` (`carve_run`), and the runs after the one
    // holding the granule's first byte that start at or below `off` exist, so the
    // entry after each is in the table (the last entry is never a run).
    let (class, start) = unsafe {
        let mut run = t
            .granule
            .get_unchecked(off / GRANULE)
            .load(Ordering::Relaxed) as usize;
        while t.start.get_unchecked(run + 1).load(Ordering::Relaxed) as usize <= off {
            run += 1;
        }
        (
            t.class.get_unchecked(run).load(Ordering::Relaxed) as usize,
            t.start.get_unchecked(run).load(Ordering::Relaxed) as usize,
        )
    };
    let size = class_size(class);
    (
        span as usize + start + crate::div(off - start, size) * size,
        class,
    )
}

/// Calls `f(first block, end, class)` for every run of mixed span `span`, in
/// address order (for the invariant checker).
///
/// # Safety
/// `span` must be a mixed span; the heap lock must be held.
pub(crate) unsafe fn for_each_run(span: *const Span, mut f: impl FnMut(usize, usize, usize)) {
    // SAFETY: mixed span, heap lock held.
    let t = unsafe { &*runs(span) };
    let len = t.len;
    for i in 0..len {
        let start = crate::at(&t.start, i).load(Ordering::Relaxed) as usize;
        let end = if i + 1 < len {
            crate::at(&t.start, i + 1).load(Ordering::Relaxed) as usize
        } else {
            t.top
        };
        let class = crate::at(&t.class, i).load(Ordering::Relaxed) as usize;
        f(span as usize + start, span as usize + end, class);
    }
}

/// An intrusive doubly linked list of spans that also knows its back (the pool's
/// idle lists, purged oldest first): a [`SpanStack`] plus a tail pointer.
#[derive(Debug)]
pub(crate) struct SpanList {
    list: SpanStack,
    pub tail: *mut Span,
}

impl SpanList {
    /// An empty list.
    pub const fn new() -> SpanList {
        SpanList {
            list: SpanStack::new(),
            tail: ptr::null_mut(),
        }
    }

    /// Pushes `s` at the front.
    ///
    /// # Safety
    /// `s` must be a valid span on no list, owned by the caller.
    pub unsafe fn push_front(&mut self, s: *mut Span) {
        if self.list.head.is_null() {
            self.tail = s;
        }
        // SAFETY: the caller's promise.
        unsafe { self.list.push_front(s) };
    }

    /// Unlinks `s`.
    ///
    /// # Safety
    /// `s` must be on this list.
    pub unsafe fn remove(&mut self, s: *mut Span) {
        if s == self.tail {
            // SAFETY: `s` is a valid span on this list (caller).
            self.tail = unsafe { (*s).prev };
        }
        // SAFETY: the caller's promise.
        unsafe { self.list.remove(s) };
    }

    /// Unlinks and returns the front span, or null.
    ///
    /// # Safety
    /// The list must be well formed.
    pub unsafe fn pop_front(&mut self) -> *mut Span {
        let s = self.list.head;
        if !s.is_null() {
            // SAFETY: `s` is on this list.
            unsafe { self.remove(s) };
        }
        s
    }
}

/// An intrusive doubly linked list of spans with no tail pointer (a class's partial
/// spans: 8 bytes a class, so the heap's static data stays on one page).
#[derive(Debug)]
pub(crate) struct SpanStack {
    pub head: *mut Span,
}

impl SpanStack {
    /// An empty list.
    pub const fn new() -> SpanStack {
        SpanStack {
            head: ptr::null_mut(),
        }
    }

    /// Pushes `s` at the front.
    ///
    /// # Safety
    /// `s` must be a valid span on no list, owned by the caller.
    pub unsafe fn push_front(&mut self, s: *mut Span) {
        // SAFETY: `s` and the current head are valid spans owned by the caller.
        unsafe {
            (*s).prev = ptr::null_mut();
            (*s).next = self.head;
            if !self.head.is_null() {
                (*self.head).prev = s;
            }
        }
        self.head = s;
    }

    /// Unlinks `s`.
    ///
    /// # Safety
    /// `s` must be on this list.
    pub unsafe fn remove(&mut self, s: *mut Span) {
        // SAFETY: `s` and its neighbours are valid spans on this list.
        unsafe {
            let (p, n) = ((*s).prev, (*s).next);
            if p.is_null() {
                self.head = n;
            } else {
                (*p).next = n;
            }
            if !n.is_null() {
                (*n).prev = p;
            }
            (*s).next = ptr::null_mut();
            (*s).prev = ptr::null_mut();
        }
    }
}
