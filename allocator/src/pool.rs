//! The span pool: idle spans waiting for reuse, and growth of the brk arena.
//!
//! Empty spans come back here from their class. They may stay resident ("dirty") for
//! the decay time, so a program that frees and reallocates does not pay page faults,
//! but never more than `Config::max_dirty` bytes of them (none by default): beyond
//! that, the longest idle go at once. A purged span's pages, its header's included,
//! are returned with `madvise(MADV_DONTNEED)` and it moves to the "clean" lists,
//! which run through the chunk map ([`ChunkMap::set_clean`]): an idle span keeps no
//! page resident (its header page did, `sqlite3` kept four at its peak). Lists are
//! per span length; the dirty ones are ordered by idle time (newest at the front),
//! so decay only looks at their tails.
//!
//! A request for `n` chunks is served, in order, by an idle span of exactly `n`
//! chunks (dirty first), by splitting a longer idle span, or by carving the arena
//! frontier, growing the arena by at least [`GROW_BYTES`]. Idle spans are not
//! coalesced; the madvise keeps that from costing resident memory.
//!
//! Everything here runs under the heap lock.

use crate::chunk_map::ChunkMap;
use crate::os::brk::BrkArena;
use crate::os::mmap;
use crate::size_class::{CHUNK, MAX_SPAN_CHUNKS};
use crate::span::{init_idle, Span, SpanList, SpanState};
use crate::stats::{add, sub, Counters};

/// The least the arena grows by at a time (address space only: untouched brk pages
/// cost no memory).
pub(crate) const GROW_BYTES: usize = 16 * CHUNK;

/// Idle spans and the arena frontier.
#[derive(Debug)]
pub(crate) struct Pool {
    pub arena: Option<BrkArena>,
    frontier: usize,
    frontier_end: usize,
    pub dirty: [SpanList; MAX_SPAN_CHUNKS + 1],
    /// The first clean span of each length (0: none); the chunk map links the rest.
    pub clean: [usize; MAX_SPAN_CHUNKS + 1],
    last_decay: u64,
    /// Bytes of the spans on the dirty lists.
    dirty_bytes: usize,
}

impl Pool {
    /// A pool with no arena yet.
    pub const fn new() -> Pool {
        Pool {
            arena: None,
            frontier: 0,
            frontier_end: 0,
            dirty: [const { SpanList::new() }; MAX_SPAN_CHUNKS + 1],
            clean: [0; MAX_SPAN_CHUNKS + 1],
            last_decay: 0,
            dirty_bytes: 0,
        }
    }

    /// The end of the arena memory obtained so far.
    pub fn frontier_end(&self) -> usize {
        self.frontier_end
    }

    /// Returns an idle span exactly `chunks` long, off every list, or null when the
    /// arena cannot grow.
    ///
    /// # Safety
    /// The heap lock must be held; `map` must be this heap's chunk map.
    pub unsafe fn take(
        &mut self,
        chunks: usize,
        map: &ChunkMap,
        c: &Counters,
        now: u64,
    ) -> *mut Span {
        // SAFETY: the lists hold valid idle spans owned under the heap lock.
        unsafe {
            for n in chunks..=MAX_SPAN_CHUNKS {
                let mut s = self.dirty[n].pop_front();
                let dirty = !s.is_null();
                if !dirty {
                    let at = self.clean[n];
                    if at == 0 {
                        continue;
                    }
                    let Some((len, next)) = map.clean(at) else {
                        crate::os::thread::abort()
                    };
                    debug_assert_eq!(len, n);
                    self.clean[n] = next;
                    // The header page was returned: write a header again.
                    s = init_idle(at, n, SpanState::Purged, now);
                }
                let bytes = (*s).bytes() as u64;
                if dirty {
                    self.dirty_bytes -= bytes as usize;
                }
                sub(
                    if dirty {
                        &c.idle_bytes
                    } else {
                        &c.purged_bytes
                    },
                    bytes,
                );
                if n > chunks {
                    self.split(s, chunks, map, c, now);
                }
                return s;
            }
            self.carve(chunks, map, c, now)
        }
    }

    /// Cuts the tail of idle span `s` off into its own idle span, keeping `chunks`.
    ///
    /// # Safety
    /// `s` must be an idle span longer than `chunks`, on no list.
    unsafe fn split(
        &mut self,
        s: *mut Span,
        chunks: usize,
        map: &ChunkMap,
        c: &Counters,
        now: u64,
    ) {
        // SAFETY: the tail is part of `s`, which the caller owns.
        unsafe {
            let rest_chunks = (*s).chunks as usize - chunks;
            let at = s as usize + chunks * CHUNK;
            (*s).chunks = chunks as u32;
            if (*s).state == SpanState::Purged {
                self.put_clean(at, rest_chunks, map, c);
            } else {
                let rest = init_idle(at, rest_chunks, SpanState::Idle, now);
                map.set(rest as usize, rest_chunks, rest, 0);
                self.put(rest, c);
            }
        }
    }

    /// Puts dirty idle span `s` on its list and counts its bytes.
    ///
    /// # Safety
    /// `s` must be a valid idle span on no list.
    unsafe fn put(&mut self, s: *mut Span, c: &Counters) {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let n = (*s).chunks as usize;
            let bytes = (*s).bytes() as u64;
            add(&c.idle_bytes, bytes);
            self.dirty_bytes += bytes as usize;
            crate::at_mut(&mut self.dirty, n).push_front(s);
        }
    }

    /// Puts the `chunks` chunks at `at`, arena memory nobody uses and none of it
    /// resident, on the clean list of their length, and counts their bytes.
    fn put_clean(&mut self, at: usize, chunks: usize, map: &ChunkMap, c: &Counters) {
        let head = crate::at_mut(&mut self.clean, chunks);
        map.set_clean(at, chunks, *head);
        *head = at;
        add(&c.purged_bytes, (chunks * CHUNK) as u64);
    }

    /// Carves a span from the arena frontier, growing the arena if needed.
    ///
    /// # Safety
    /// The heap lock must be held.
    unsafe fn carve(&mut self, chunks: usize, map: &ChunkMap, c: &Counters, now: u64) -> *mut Span {
        let want = chunks * CHUNK;
        if self.frontier_end - self.frontier < want {
            let Some(arena) = self.arena.as_mut() else {
                return core::ptr::null_mut();
            };
            let grow = want.max(GROW_BYTES);
            add(&c.brk_calls, 1);
            let Some(start) = arena.grow(grow, CHUNK) else {
                return core::ptr::null_mut();
            };
            if !map.cover(start + grow) {
                return core::ptr::null_mut();
            }
            add(&c.heap_bytes, grow as u64);
            if start != self.frontier_end {
                // Someone else moved the break: keep what is left of the old frontier
                // as untouched (clean) idle spans.
                while self.frontier < self.frontier_end {
                    let n = ((self.frontier_end - self.frontier) / CHUNK).min(MAX_SPAN_CHUNKS);
                    self.put_clean(self.frontier, n, map, c);
                    self.frontier += n * CHUNK;
                }
                self.frontier = start;
            }
            self.frontier_end = start + grow;
        }
        // SAFETY: `[frontier, frontier + want)` is fresh arena memory.
        let s = unsafe { init_idle(self.frontier, chunks, SpanState::Idle, now) };
        map.set(s as usize, chunks, s, 0);
        self.frontier += want;
        s
    }

    /// Takes back empty span `s` and runs decay.
    ///
    /// # Safety
    /// The heap lock must be held; `s` must be a formatted span with no blocks out, on
    /// no list.
    pub unsafe fn give(
        &mut self,
        s: *mut Span,
        map: &ChunkMap,
        c: &Counters,
        now: u64,
        decay_ms: u64,
        max_dirty: usize,
    ) {
        // SAFETY: guaranteed by the caller.
        unsafe {
            (*s).state = SpanState::Idle;
            (*s).idle_since = now;
            self.put(s, c);
            self.decay(now, decay_ms, map, c, false);
            while self.dirty_bytes > max_dirty {
                // The longest idle dirty span: the oldest of the lists' tails.
                let mut oldest = 0;
                for n in 1..=MAX_SPAN_CHUNKS {
                    let t = self.dirty[n].tail;
                    if !t.is_null()
                        && (oldest == 0 || (*t).idle_since < (*self.dirty[oldest].tail).idle_since)
                    {
                        oldest = n;
                    }
                }
                if oldest == 0 {
                    break;
                }
                self.purge_tail(oldest, map, c);
            }
        }
    }

    /// Takes back the empty span of `chunks` chunks at `at` whose pages all went
    /// back already: it joins the clean lists, with no `madvise`. (The heap lock must
    /// be held: the pool is behind it.)
    pub fn give_clean(&mut self, at: usize, chunks: usize, map: &ChunkMap, c: &Counters) {
        self.put_clean(at, chunks, map, c);
    }

    /// Returns the pages of the dirty span at the tail of list `n` to the OS and
    /// moves it to the clean list.
    ///
    /// # Safety
    /// The heap lock must be held; the list must not be empty.
    #[inline(never)]
    unsafe fn purge_tail(&mut self, n: usize, map: &ChunkMap, c: &Counters) {
        // SAFETY: the tail is an idle span: no block in it is in use; its header is
        // read before its page goes.
        unsafe {
            let s = self.dirty[n].tail;
            self.dirty[n].remove(s);
            let bytes = (*s).bytes();
            self.dirty_bytes -= bytes;
            sub(&c.idle_bytes, bytes as u64);
            add(&c.madvise_calls, 1);
            mmap::advise_free(s as usize, bytes);
            self.put_clean(s as usize, n, map, c);
        }
    }

    /// Returns the pages of spans idle for at least `decay_ms` (all idle spans if
    /// `force`) to the OS. Without `force`, runs at most every `decay_ms / 4` ms.
    ///
    /// # Safety
    /// The heap lock must be held.
    pub unsafe fn decay(
        &mut self,
        now: u64,
        decay_ms: u64,
        map: &ChunkMap,
        c: &Counters,
        force: bool,
    ) {
        if !force && now.saturating_sub(self.last_decay) < decay_ms / 4 {
            return;
        }
        self.last_decay = now;
        for n in 1..=MAX_SPAN_CHUNKS {
            loop {
                let s = self.dirty[n].tail;
                if s.is_null() {
                    break;
                }
                // SAFETY: list members are valid idle spans.
                let since = unsafe { (*s).idle_since };
                if !force && now.saturating_sub(since) < decay_ms {
                    break;
                }
                // SAFETY: heap lock held (caller); the list is not empty.
                unsafe { self.purge_tail(n, map, c) };
            }
        }
    }
}
