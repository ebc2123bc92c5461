//! The invariant checker: walks every span of the arena, every class list, the pool
//! and the large blocks, and cross-checks them with the statistics.
//!
//! It takes every lock, so run it while the heap is quiet (tests, debug builds).
//! Blocks parked in thread caches count as used; flush the caches first (see
//! [`crate::global::flush_thread_cache`]) if the test wants exact numbers.

use crate::chunk_map::TAG_MASK;
use crate::heap::Heap;
use crate::large;
use crate::size_class::{
    class_size, span_capacity, CHUNK, MAX_SPAN_CHUNKS, NUM_CLASSES, PURGE_CLASS, SPAN_CHUNKS,
};
use crate::span::{Span, SpanState};
use crate::thread_cache::tag_of;

/// A broken invariant: what, and the address of the span or block concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckError {
    /// The invariant that does not hold.
    pub what: &'static str,
    /// The span, block or header it was found at.
    pub addr: usize,
}

impl core::fmt::Display for CheckError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "heap invariant broken at {:#x}: {}",
            self.addr, self.what
        )
    }
}

impl core::error::Error for CheckError {}

fn ensure(ok: bool, what: &'static str, addr: usize) -> Result<(), CheckError> {
    if ok {
        Ok(())
    } else {
        Err(CheckError { what, addr })
    }
}

#[derive(Default, Clone, Copy)]
struct Totals {
    spans: u64,
    capacity: u64,
    used: u64,
    partial: usize,
    run_blocks: u64,
}

impl Heap {
    /// Checks every invariant of the heap; returns the first one broken.
    pub fn check(&self) -> Result<(), CheckError> {
        if !self.ensure_init() {
            return Ok(());
        }
        self.lock_all();
        // SAFETY: every lock is held, so no span, list or header changes under us.
        let r = unsafe { self.check_locked() };
        self.unlock_all();
        r
    }

    /// # Safety
    /// Every lock must be held.
    unsafe fn check_locked(&self) -> Result<(), CheckError> {
        let mut per_class = [Totals::default(); NUM_CLASSES];
        let (mut idle, mut purged) = (0u64, 0u64);
        // SAFETY: heap lock held.
        let inner = unsafe { &*self.inner.get() };
        let Some(arena) = inner.pool.arena.as_ref() else {
            return Ok(());
        };
        let (base, end) = (arena.base(), inner.pool.frontier_end());
        let mut at = base;
        while at < end {
            if let Some((n, _)) = self.map.clean(at) {
                ensure(
                    (1..=MAX_SPAN_CHUNKS).contains(&n) && at + n * CHUNK <= end,
                    "clean span of a bad length",
                    at,
                )?;
                purged += (n * CHUNK) as u64;
                at += n * CHUNK;
                continue;
            }
            let s = self.map.lookup(at);
            if s.is_null() {
                at += CHUNK;
                continue;
            }
            ensure(
                s as usize == at,
                "chunk map points into the middle of a span",
                at,
            )?;
            // SAFETY: the map only holds valid span headers.
            let sp = unsafe { &*s };
            for i in 0..sp.chunks as usize {
                ensure(
                    self.map.lookup(at + i * CHUNK) == s,
                    "chunk map entry does not match span",
                    at,
                )?;
            }
            match sp.state {
                SpanState::Mixed => {
                    ensure(
                        self.map.entry(at) & TAG_MASK == 0,
                        "mixed span has a class tag (its frees would skip the run table)",
                        at,
                    )?;
                    // SAFETY: a mixed span; heap lock held.
                    unsafe { check_mixed(s, &mut per_class)? };
                }
                SpanState::Idle => idle += sp.bytes() as u64,
                SpanState::Purged => {
                    ensure(false, "purged span with a header in the arena", at)?;
                }
                SpanState::Partial | SpanState::Full => {
                    // SAFETY: formatted span, class lock held.
                    unsafe { check_span(s)? };
                    let tag = self.map.entry(at) & TAG_MASK;
                    ensure(
                        tag == 0 || tag == tag_of(sp.class as usize),
                        "chunk map tag is not the span's class bin",
                        at,
                    )?;
                    for i in 1..sp.chunks as usize {
                        ensure(
                            self.map.entry(at + i * CHUNK) & TAG_MASK == tag,
                            "chunk map tags differ within a span",
                            at,
                        )?;
                    }
                    let t = &mut per_class[sp.class as usize];
                    t.spans += 1;
                    t.capacity += sp.capacity as u64;
                    t.used += sp.used as u64;
                    t.partial += usize::from(sp.state == SpanState::Partial);
                }
            }
            at += sp.bytes();
        }
        let c = &self.counters;
        let r = |a: &core::sync::atomic::AtomicU64| a.load(core::sync::atomic::Ordering::Relaxed);
        ensure(
            idle == r(&c.idle_bytes),
            "idle bytes disagree with idle spans",
            base,
        )?;
        ensure(
            purged == r(&c.purged_bytes),
            "purged bytes disagree with purged spans",
            base,
        )?;
        // The clean lists, through the chunk map: spans of their list's length that
        // add up to the clean spans found above.
        let mut listed = 0u64;
        let mut budget = end.saturating_sub(base) / CHUNK;
        for n in 1..=MAX_SPAN_CHUNKS {
            let mut at = inner.pool.clean[n];
            while at != 0 {
                ensure(budget > 0, "clean list has a cycle", at)?;
                budget -= 1;
                let Some((len, next)) = self.map.clean(at) else {
                    return Err(CheckError {
                        what: "clean list holds a span that is not clean",
                        addr: at,
                    });
                };
                ensure(len == n, "clean span on the wrong list", at)?;
                listed += (n * CHUNK) as u64;
                at = next;
            }
        }
        ensure(
            listed == purged,
            "clean lists disagree with clean spans",
            base,
        )?;
        for (class, t) in per_class.iter().enumerate() {
            // SAFETY: class lock held.
            let ci = unsafe { &*self.classes[class].inner.get() };
            let spans = self.classes[class]
                .spans
                .load(core::sync::atomic::Ordering::Relaxed) as u64;
            ensure(
                spans == t.spans,
                "class span count disagrees with the arena",
                class,
            )?;
            ensure(
                spans * span_capacity(class) as u64 == t.capacity,
                "class capacity disagrees with the arena",
                class,
            )?;
            // SAFETY: class lock held.
            let run_blocks = self.classes[class]
                .run_blocks
                .load(core::sync::atomic::Ordering::Relaxed) as usize;
            ensure(
                run_blocks as u64 == t.run_blocks
                    && run_blocks <= crate::size_class::run_budget(class),
                "class run blocks disagree with the mixed spans",
                class,
            )?;
            // The run free list: distinct block starts of this class's runs.
            let mut b = ci.run_free;
            let mut free = 0usize;
            while !b.is_null() {
                let s = self.map.lookup(b as usize);
                ensure(!s.is_null(), "run free block outside the arena", b as usize)?;
                // SAFETY: map entries are valid span headers.
                let state = unsafe { (*s).state };
                ensure(
                    state == SpanState::Mixed,
                    "run free block outside a mixed span",
                    b as usize,
                )?;
                // SAFETY: a mixed span; `b` lies in its runs if the table is right.
                let (start, c) = unsafe { crate::span::mixed_block(s, b as usize) };
                ensure(
                    start == b as usize && c == class,
                    "run free block is not a block of its class",
                    b as usize,
                )?;
                free += 1;
                ensure(
                    free <= run_blocks,
                    "run free list longer than the runs",
                    b as usize,
                )?;
                let mut o = ci.run_free;
                for _ in 1..free {
                    ensure(o != b, "block on the run free list twice", b as usize)?;
                    // SAFETY: free run blocks hold a valid link.
                    o = unsafe { (*o).next };
                }
                // SAFETY: as above.
                b = unsafe { (*b).next };
            }
            ensure(
                self.classes[class]
                    .run_free_len
                    .load(core::sync::atomic::Ordering::Relaxed) as usize
                    == free,
                "class free run block count disagrees with its list",
                class,
            )?;
            ensure(
                ci.used == t.used + (run_blocks - free) as u64,
                "class used blocks disagree with the spans and runs",
                class,
            )?;
            let mut s = ci.partial.head;
            let mut n = 0;
            while !s.is_null() {
                // SAFETY: list members are valid spans.
                let sp = unsafe { &*s };
                ensure(
                    sp.state == SpanState::Partial && sp.class as usize == class,
                    "foreign span on partial list",
                    s as usize,
                )?;
                n += 1;
                ensure(
                    n <= t.partial,
                    "partial list longer than the partial spans",
                    s as usize,
                )?;
                s = sp.next;
            }
            ensure(
                n == t.partial,
                "partial list shorter than the partial spans",
                class,
            )?;
        }
        // SAFETY: heap lock held.
        unsafe { self.check_large() }
    }

    /// # Safety
    /// The heap lock must be held.
    unsafe fn check_large(&self) -> Result<(), CheckError> {
        // SAFETY: heap lock held.
        let inner = unsafe { &*self.inner.get() };
        let mut h = inner.large.head;
        let (mut n, mut bytes) = (0usize, 0u64);
        while !h.is_null() {
            let p = h as usize + large::LARGE_HEADER;
            // SAFETY: list members are live large headers.
            unsafe {
                ensure(
                    large::header_of(p) == Some(h),
                    "large header corrupted",
                    h as usize,
                )?;
                ensure(
                    self.map.lookup(p).is_null(),
                    "large block inside the arena",
                    p,
                )?;
                bytes += (*h).len as u64;
                h = (*h).next;
            }
            n += 1;
            ensure(
                n <= inner.large.count,
                "large list longer than its count",
                p,
            )?;
        }
        ensure(
            n == inner.large.count,
            "large list shorter than its count",
            0,
        )?;
        let mapped = self
            .counters
            .large_mapped_bytes
            .load(core::sync::atomic::Ordering::Relaxed);
        ensure(
            bytes == mapped,
            "large mapped bytes disagree with the list",
            0,
        )
    }
}

/// Checks a mixed span's run table (runs in address order, inside the span past
/// the table, each whole blocks of a class with runs) and adds its run blocks to
/// their classes' totals.
///
/// # Safety
/// `s` must be a mixed span; the heap lock must be held.
unsafe fn check_mixed(
    s: *mut Span,
    per_class: &mut [Totals; NUM_CLASSES],
) -> Result<(), CheckError> {
    let at = s as usize;
    // SAFETY: the caller's promise.
    let chunks = unsafe { (*s).chunks };
    ensure(chunks == 1, "mixed span is not one chunk", at)?;
    let mut prev = at + crate::span::MIXED_DATA;
    let mut r = Ok(());
    // SAFETY: the caller's promise.
    unsafe {
        crate::span::for_each_run(s, |start, end, class| {
            if r.is_err() {
                return;
            }
            r = (|| {
                ensure(start == prev, "runs overlap or leave a gap", start)?;
                ensure(
                    end > start && end <= at + CHUNK,
                    "run out of its span",
                    start,
                )?;
                ensure(
                    class < NUM_CLASSES && crate::size_class::run_budget(class) > 0,
                    "run of a class without runs",
                    start,
                )?;
                ensure(
                    (end - start) % class_size(class) == 0,
                    "run is not whole blocks",
                    start,
                )?;
                let size = class_size(class);
                per_class[class].run_blocks += ((end - start) / size) as u64;
                // Every block of the run maps back to itself.
                let mut b = start;
                while b < end {
                    // (Inside the unsafe block: a mixed span, `b` one of its blocks.)
                    let found = crate::span::mixed_block(s, b);
                    ensure(found == (b, class), "run block not found from its start", b)?;
                    let found = crate::span::mixed_block(s, b + size - 16);
                    ensure(found == (b, class), "run block not found from its end", b)?;
                    b += size;
                }
                prev = end;
                Ok(())
            })();
        });
    }
    r
}

/// Checks one formatted span: geometry, and a free list of distinct block starts
/// (free bits below the bump pointer, the top block in use, for a purged class)
/// whose length plus untouched and used blocks makes the capacity.
///
/// # Safety
/// `s` must be a formatted span whose class lock is held.
unsafe fn check_span(s: *mut Span) -> Result<(), CheckError> {
    // SAFETY: guaranteed by the caller.
    let sp = unsafe { &*s };
    let class = sp.class as usize;
    let at = s as usize;
    ensure(class < NUM_CLASSES, "span class out of range", at)?;
    ensure(
        sp.block_size as usize == class_size(class),
        "span block size is not its class's",
        at,
    )?;
    ensure(
        sp.chunks == SPAN_CHUNKS[class] as u32,
        "span length is not its class's",
        at,
    )?;
    ensure(
        sp.capacity as usize == span_capacity(class),
        "span capacity is not its class's",
        at,
    )?;
    ensure(
        sp.used <= sp.capacity,
        "span has more used blocks than capacity",
        at,
    )?;
    ensure(
        (sp.state == SpanState::Full) == sp.is_full(),
        "span state does not match its fill",
        at,
    )?;
    let mut seen = [0u64; 4096 / 64];
    let mut b = sp.free_head();
    let mut free = 0usize;
    while !b.is_null() {
        ensure(
            sp.is_block(b as usize),
            "free list entry is not a block of its span",
            b as usize,
        )?;
        let idx = (b as usize - at - crate::size_class::SPAN_HEADER) / sp.block_size as usize;
        let (w, bit) = (idx / 64, 1u64 << (idx % 64));
        ensure(
            seen[w] & bit == 0,
            "block on the free list twice",
            b as usize,
        )?;
        seen[w] |= bit;
        free += 1;
        ensure(
            free <= sp.capacity as usize,
            "free list longer than the span",
            b as usize,
        )?;
        // SAFETY: free blocks hold a valid link.
        b = unsafe { (*b).next };
    }
    let bits = sp.free_bits();
    if class >= PURGE_CLASS {
        ensure(free == 0, "span of a purged class has a free list", at)?;
        let touched = sp.capacity as usize - sp.untouched();
        ensure(
            touched >= 64 || bits >> touched == 0,
            "free bit above the bump pointer",
            at,
        )?;
        ensure(
            touched == 0 || bits & (1 << (touched - 1)) == 0,
            "top block free below the bump pointer",
            at,
        )?;
        free = bits.count_ones() as usize;
    } else {
        ensure(bits == 0, "free bits in a span of a linked class", at)?;
    }
    ensure(
        free + sp.untouched() + sp.used as usize == sp.capacity as usize,
        "free + untouched + used != capacity",
        at,
    )
}
