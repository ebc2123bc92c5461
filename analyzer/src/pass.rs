//! The streaming pass: one walk over a trace's records in global time order
//! that gives every allocation an identity and classifies every release.
//!
//! Memory: the pass keeps one [`Slot`] per heap address it has seen that is
//! either live or was freed and not yet reused, plus per-stack aggregates
//! ([`SiteStats`]). Neither grows with the trace length for a program that
//! reuses its addresses (every allocator does). Freed slots are what make a
//! double free name the first free's stack; if they outnumber
//! [`FREED_SLOTS_FLOOR`] and four times the live blocks when a new address
//! comes (the only time the map grows), the freed ones are forgotten, and a double free of such an old block is then reported as an
//! invalid free. Per-allocation rows are only produced for a caller that asks
//! for them ([`Pass::with_rows`], used by `export`), which streams them away.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use traces::{
    flags, AllocFn, Event, EventBatch, Family, FreeFn, Kind, Module, Record, StackId, ThreadId,
};

use crate::errors::{ErrorKind, HeapError, MAX_ERRORS};
use crate::fasthash::{AddrMap, FoldHasher, StackMap};
pub use crate::findings::{AllocRow, PassResult, SiteStats, Slot, Totals};

/// Freed slots are forgotten only above this many (and 4x the live blocks).
pub const FREED_SLOTS_FLOOR: usize = 4 << 20;

/// Slots the interior-pointer search may visit in one pass. The search is a
/// linear scan that runs only for releases of unknown addresses (errors, or
/// inherited blocks in attached and forked traces); past this budget such a
/// release is classified without it (invalid, or before-the-trace).
pub const INTERIOR_SCAN_BUDGET: u64 = 500_000_000;

/// `Pass::last_thread` before the first record (no thread id is this large).
const NO_THREAD: u64 = u64::MAX;

/// Allocation functions.
const NA: usize = AllocFn::ALL.len();
/// Release functions.
const NF: usize = FreeFn::ALL.len();
const _: () = assert!(NF < 32, "Pass::mismatch holds a bit per release function");

/// Events between the prefetch of a slot and its use (`Pass::batch`).
const PREFETCH_AHEAD: usize = 16;

/// Up to this many threads, the current thread is found by a scan.
const SCAN_THREADS: usize = 16;

/// The streaming pass. Feed it records with [`Pass::record`], then [`Pass::finish`].
pub struct Pass<'a> {
    attached: bool,
    slots: AddrMap<Slot>,
    live_count: usize,
    live_bytes: u64,
    next_id: u64,
    sites: StackMap<SiteStats>,
    /// Per thread seen: the id of its last allocation (temporary allocations).
    last_alloc: Vec<u64>,
    /// The thread of each entry of `last_alloc`: searched first, while
    /// there are at most [`SCAN_THREADS`] (threads that interleave their
    /// events switch at nearly every record).
    thread_ids: Vec<ThreadId>,
    /// Thread → index into `last_alloc` (all threads).
    threads: HashMap<ThreadId, usize, BuildHasherDefault<FoldHasher>>,
    /// The thread of the previous record ([`NO_THREAD`] before the first)
    /// and its index (records come in runs of one thread, so the map is
    /// consulted only when it changes).
    last_thread: u64,
    cur: usize,
    /// `last_alloc` of the current thread (written back when it changes).
    cur_last_alloc: u64,
    modules: Vec<Module>,
    totals: Totals,
    errors: Vec<HeapError>,
    peak_sites: Vec<(StackId, u64)>,
    snapshot_at: u64,
    scan_budget: u64,
    rows: Option<&'a mut dyn FnMut(AllocRow)>,
    /// Per-event counters kept in fixed arrays (no bounds or capacity checks
    /// on the hot path), moved into [`Totals`] by [`Pass::finish`].
    by_alloc_fn: [u64; NA],
    by_free_fn: [u64; NF],
    histogram: [u64; 65],
    /// [`mismatched`] for every pair, computed once (the family functions
    /// are calls into another crate): per allocation function, bit `f` for
    /// release function `f`, and bit [`NF`] for realloc.
    mismatch: [u32; NA],
}

impl<'a> Pass<'a> {
    /// A pass for a trace whose header has `header_flags`. Traces that start
    /// mid-run (attached, or a forked child, which inherits its parent's
    /// heap) count releases of unknown blocks instead of reporting them.
    pub fn new(header_flags: u32) -> Self {
        Pass {
            attached: header_flags & (flags::ATTACHED | flags::FORKED) != 0,
            slots: AddrMap::default(),
            live_count: 0,
            live_bytes: 0,
            next_id: 1,
            sites: StackMap::default(),
            last_alloc: Vec::new(),
            thread_ids: Vec::new(),
            threads: HashMap::default(),
            last_thread: NO_THREAD,
            cur: 0,
            cur_last_alloc: 0,
            modules: Vec::new(),
            totals: Totals::default(),
            errors: Vec::new(),
            peak_sites: Vec::new(),
            snapshot_at: 0,
            scan_budget: INTERIOR_SCAN_BUDGET,
            rows: None,
            by_alloc_fn: [0; NA],
            by_free_fn: [0; NF],
            histogram: [0; 65],
            mismatch: std::array::from_fn(|a| {
                let alloc = AllocFn::ALL[a];
                let frees = (0..NF).filter(|&f| mismatched(alloc, Release::Free(FreeFn::ALL[f])));
                let realloc = mismatched(alloc, Release::Realloc(AllocFn::Realloc));
                frees.fold(u32::from(realloc) << NF, |m, f| m | 1 << f)
            }),
        }
    }

    /// Whether releasing a block from `alloc` with `how` mixes families.
    #[inline]
    fn is_mismatched(&self, alloc: AllocFn, how: Release) -> bool {
        let bit = match how {
            Release::Free(f) => f as usize,
            Release::Realloc(_) => NF,
        };
        self.mismatch[alloc as usize] >> bit & 1 != 0
    }

    /// Also produce one [`AllocRow`] per allocation, when it ends (and for
    /// live blocks at [`Pass::finish`]).
    pub fn with_rows(mut self, sink: &'a mut dyn FnMut(AllocRow)) -> Self {
        self.rows = Some(sink);
        self
    }

    /// Classifies one record.
    pub fn record(&mut self, r: &Record) {
        self.count(r.time, r.time, 1);
        let at = At {
            time: r.time,
            thread: r.thread,
        };
        self.thread(at.thread);
        match &r.event {
            Event::Alloc {
                func,
                addr,
                size,
                stack,
                ..
            } => self.alloc_event(at, *func, *addr, *size, *stack, 0),
            Event::Free {
                func, addr, stack, ..
            } => self.free_event(at, *func, *addr, *stack, 0),
            Event::Realloc {
                func,
                old_addr,
                new_addr,
                size,
                stack,
            } => self.realloc(at, *func, *old_addr, *new_addr, *size, *stack),
            Event::Mmap { len, .. } => {
                self.totals.mmaps += 1;
                self.totals.mmap_bytes += len;
            }
            Event::Munmap { .. } => self.totals.munmaps += 1,
            Event::ModuleLoad(m) => self.modules.push((**m).clone()),
            _ => {}
        }
    }

    /// Classifies a batch of records (the same as [`Pass::record`] on each,
    /// without building them): the hot path.
    pub fn batch(&mut self, b: &EventBatch) {
        let n = b.len();
        if n == 0 {
            return;
        }
        // Slices of one length: no bounds checks in the loop.
        let (times, threads, kinds) = (&b.times()[..n], &b.threads()[..n], &b.kinds()[..n]);
        let (addrs, aux) = (&b.addrs()[..n], &b.aux()[..n]);
        let (sizes, stacks) = (&b.sizes()[..n], &b.stacks()[..n]);
        self.count(times[0], times[n - 1], n as u64);
        // The slots of the next PREFETCH_AHEAD events are being loaded;
        // `hints[j % PREFETCH_AHEAD]` is event j's (see `AddrMap::prefetch`).
        let mut hints = [0u32; PREFETCH_AHEAD];
        for (j, &a) in addrs.iter().enumerate().take(PREFETCH_AHEAD) {
            hints[j] = self.slots.prefetch(a);
        }
        for i in 0..n {
            // The slot of the event PREFETCH_AHEAD on (or of the last) is
            // loaded while this one is classified.
            let hint = hints[i % PREFETCH_AHEAD];
            hints[i % PREFETCH_AHEAD] = self.slots.prefetch(addrs[(i + PREFETCH_AHEAD).min(n - 1)]);
            let at = At {
                time: times[i],
                thread: threads[i],
            };
            self.thread(at.thread);
            // Two compares for the bulk of a trace, not a jump table.
            match kinds[i] {
                Kind::Free(f) => self.free_event(at, f, addrs[i], stacks[i], hint),
                Kind::Alloc(f) => self.alloc_event(at, f, addrs[i], sizes[i], stacks[i], hint),
                k => self.other_event(at, k, aux[i], addrs[i], sizes[i], stacks[i]),
            }
        }
        for (_, e) in b.others() {
            if let Event::ModuleLoad(m) = e {
                self.modules.push((**m).clone());
            }
        }
    }

    /// An event of the batch other than an allocation or a free.
    #[inline(never)]
    fn other_event(&mut self, at: At, k: Kind, aux: u64, addr: u64, size: u64, stack: StackId) {
        match k {
            Kind::Realloc(f) => self.realloc(at, f, aux, addr, size, stack),
            Kind::Mmap => {
                self.totals.mmaps += 1;
                self.totals.mmap_bytes += size;
            }
            Kind::Munmap => self.totals.munmaps += 1,
            _ => {}
        }
    }

    /// Counts `n` records from `first` to `last` (times).
    #[inline]
    fn count(&mut self, first: u64, last: u64, n: u64) {
        let t = &mut self.totals;
        if t.records == 0 {
            t.first_time = first;
        }
        t.records += n;
        t.last_time = last;
    }

    /// Makes `thread` the current one (records come in runs of one thread,
    /// so the thread map is consulted only when it changes).
    #[inline(always)]
    fn thread(&mut self, thread: ThreadId) {
        if self.last_thread != u64::from(thread) {
            self.switch_thread(thread);
        }
    }

    #[inline(never)]
    fn switch_thread(&mut self, thread: ThreadId) {
        if self.last_thread != NO_THREAD {
            self.last_alloc[self.cur] = self.cur_last_alloc;
        }
        self.last_thread = u64::from(thread);
        self.cur = self.thread_index(thread);
        self.cur_last_alloc = self.last_alloc[self.cur];
    }

    /// The index of `thread` into `last_alloc`, added if new.
    fn thread_index(&mut self, thread: ThreadId) -> usize {
        let known = if self.thread_ids.len() <= SCAN_THREADS {
            self.thread_ids.iter().position(|&t| t == thread)
        } else {
            self.threads.get(&thread).copied()
        };
        known.unwrap_or_else(|| {
            let n = self.thread_ids.len();
            self.thread_ids.push(thread);
            self.threads.insert(thread, n);
            self.last_alloc.push(0);
            n
        })
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn alloc_event(
        &mut self,
        at: At,
        func: AllocFn,
        addr: u64,
        size: u64,
        stack: StackId,
        hint: u32,
    ) {
        if addr == 0 {
            self.totals.failed += 1;
        } else {
            self.alloc(at, func, addr, size, stack, hint);
        }
    }

    #[inline(always)]
    fn free_event(&mut self, at: At, func: FreeFn, addr: u64, stack: StackId, hint: u32) {
        self.by_free_fn[func as usize] += 1;
        self.free(at, Release::Free(func), addr, stack, hint);
    }

    #[inline(always)]
    /// An allocation; `hint` from [`AddrMap::prefetch`] (0: none).
    #[allow(clippy::too_many_arguments)]
    fn alloc(&mut self, r: At, func: AllocFn, addr: u64, size: u64, stack: StackId, hint: u32) {
        let id = self.next_id;
        self.next_id += 1;
        self.by_alloc_fn[func as usize] += 1;
        self.histogram[(64 - size.leading_zeros()) as usize] += 1;
        let slot = Slot {
            id,
            size,
            time: r.time,
            free_time: 0,
            thread: r.thread,
            stack,
            free_stack: 0,
            func,
            live: true,
            known: true,
        };
        // A new address gets an empty (not live) slot, overwritten here.
        let (s, existed) = self.slots.get_or_insert_hinted(addr, hint);
        if s.live {
            let old = std::mem::replace(s, slot);
            self.overlapping(addr, &old, r.time);
        } else {
            *s = slot;
        }
        if !existed {
            self.maybe_forget_freed();
        }
        self.live_count += 1;
        self.live_bytes += size;
        let site = self.sites.entry(stack);
        site.allocs += 1;
        site.bytes += size;
        site.live += 1;
        site.live_bytes += size;
        self.cur_last_alloc = id;
        if self.live_bytes > self.totals.peak_live_bytes {
            self.totals.peak_live_bytes = self.live_bytes;
            self.totals.peak_time = r.time;
            if self.live_bytes >= self.snapshot_at {
                self.snapshot_peak();
            }
        }
    }

    /// The free of the previous block at `addr` was not recorded: ends it here.
    #[cold]
    #[inline(never)]
    fn overlapping(&mut self, addr: u64, old: &Slot, time: u64) {
        self.totals.overlapping_allocs += 1;
        self.end_block(addr, old, time, 0, None);
    }

    /// Remembers the per-stack live bytes now; the next snapshot is taken
    /// once the peak has grown by another 1/64 (rate limit).
    fn snapshot_peak(&mut self) {
        self.peak_sites.clear();
        self.peak_sites.extend(
            self.sites
                .iter()
                .filter(|(_, s)| s.live_bytes > 0)
                .map(|(k, s)| (k, s.live_bytes)),
        );
        self.snapshot_at = self.live_bytes + (self.live_bytes >> 6).max(1);
    }

    /// Accounts for the end of a live block (valid or mismatched release).
    #[inline]
    fn end_block(
        &mut self,
        addr: u64,
        b: &Slot,
        time: u64,
        free_stack: StackId,
        how: Option<Release>,
    ) {
        self.live_count -= 1;
        self.live_bytes -= b.size;
        let site = self.sites.entry(b.stack);
        site.live -= 1;
        site.live_bytes -= b.size;
        if self.rows.is_some() {
            self.row(addr, b, time, free_stack, how);
        }
    }

    /// The row of a block that ended, for a caller that asked for rows.
    #[cold]
    #[inline(never)]
    fn row(&mut self, addr: u64, b: &Slot, time: u64, free_stack: StackId, how: Option<Release>) {
        if let Some(sink) = self.rows.as_mut() {
            sink(AllocRow {
                id: b.id,
                address: addr,
                size: b.size,
                func: b.func,
                thread: b.thread,
                alloc_time: b.time,
                free_time: Some(time),
                free_func: how.map(Release::name),
                alloc_stack: b.stack,
                free_stack,
            });
        }
    }

    #[inline(always)]
    /// A release; `hint` from [`AddrMap::prefetch`] (0: none).
    fn free(&mut self, r: At, how: Release, addr: u64, stack: StackId, hint: u32) {
        let Some(slot) = self.slots.get_mut_hinted(addr, hint) else {
            self.unknown_free(r, how, addr, stack);
            return;
        };
        if !slot.live {
            let first = *slot;
            self.freed_again(r, how, addr, stack, first);
            return;
        }
        slot.live = false;
        slot.free_time = r.time;
        slot.free_stack = stack;
        let (id, size, b_stack, func) = (slot.id, slot.size, slot.stack, slot.func);
        // Valid releases (`totals.frees`) are counted by `finish`.
        if self.is_mismatched(func, how) {
            self.mismatched_free(r, how, addr, stack);
        }
        // Temporary: freed before its thread allocated anything else. Ids
        // are unique, so a block whose id is the current thread's last
        // allocation was allocated by this thread.
        let temporary = u64::from(self.cur_last_alloc == id);
        self.live_count -= 1;
        self.live_bytes -= size;
        let site = self.sites.entry(b_stack);
        site.live -= 1;
        site.live_bytes -= size;
        site.temporary += temporary;
        if self.rows.is_some() {
            let b = *self.slots.get_mut(addr).expect("released above");
            self.row(addr, &b, r.time, stack, Some(how));
        }
    }

    /// A release of a block already released: double free or realloc of freed.
    #[cold]
    #[inline(never)]
    fn freed_again(&mut self, r: At, how: Release, addr: u64, stack: StackId, first: Slot) {
        let kind = match how {
            Release::Free(_) => ErrorKind::DoubleFree,
            Release::Realloc(_) => ErrorKind::ReallocOfFreed,
        };
        let mut e = release_error(kind, r, how, addr, stack, Some(&first));
        e.first_free_stack = Some(first.free_stack);
        e.first_free_time = Some(first.free_time);
        self.error(e);
    }

    /// A live block released by a function of another family.
    #[cold]
    #[inline(never)]
    fn mismatched_free(&mut self, r: At, how: Release, addr: u64, stack: StackId) {
        let b = *self.slots.get_mut(addr).expect("released block");
        let e = release_error(ErrorKind::MismatchedFree, r, how, addr, stack, Some(&b));
        self.error(e);
    }

    #[cold]
    #[inline(never)]
    fn unknown_free(&mut self, r: At, how: Release, addr: u64, stack: StackId) {
        if let Some((start, b)) = self.containing_block(addr) {
            let mut e = release_error(ErrorKind::InteriorFree, r, how, addr, stack, Some(&b));
            e.block = Some((start, addr - start));
            self.error(e);
        } else if self.attached {
            // Allocated before the trace started: expected, not an error.
            self.totals.unknown_before_attach += 1;
            self.slots.insert(
                addr,
                Slot {
                    id: 0,
                    size: 0,
                    time: 0,
                    free_time: r.time,
                    thread: r.thread,
                    stack: 0,
                    free_stack: stack,
                    func: AllocFn::Malloc,
                    live: false,
                    known: false,
                },
            );
            self.maybe_forget_freed();
        } else {
            let e = release_error(ErrorKind::InvalidFree, r, how, addr, stack, None);
            self.error(e);
        }
    }

    /// The live block that contains `addr` strictly inside it, if any. A
    /// linear scan: it runs only for releases of unknown addresses.
    fn containing_block(&mut self, addr: u64) -> Option<(u64, Slot)> {
        let cost = self.slots.len() as u64;
        if cost > self.scan_budget {
            return None;
        }
        self.scan_budget -= cost;
        self.slots
            .iter()
            .find(|(start, s)| s.live && *start < addr && addr - *start < s.size.max(1))
    }

    fn realloc(&mut self, r: At, func: AllocFn, old: u64, new: u64, size: u64, stack: StackId) {
        self.totals.reallocs += 1;
        if old != 0 {
            let live = self.slots.get_mut(old).is_some_and(|s| s.live);
            if new == 0 && size > 0 && live {
                // Failed: the old block stays live.
                self.totals.failed += 1;
                return;
            }
            self.free(r, Release::Realloc(func), old, stack, 0);
        }
        if new != 0 {
            self.alloc(r, func, new, size, stack, 0);
        } else if size > 0 {
            self.totals.failed += 1;
        }
    }

    fn error(&mut self, e: HeapError) {
        *self.totals.errors_by_kind.entry(e.kind).or_default() += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(e);
        }
    }

    /// Forgets the freed slots if they are too many (checked when a new
    /// address is inserted: only then does the address map grow).
    #[cold]
    #[inline(never)]
    fn maybe_forget_freed(&mut self) {
        let freed = self.slots.len() - self.live_count;
        if freed > FREED_SLOTS_FLOOR && freed > 4 * self.live_count {
            self.slots.retain(|s| s.live);
        }
    }

    /// Ends the pass: still-live blocks become leak candidates (and rows).
    pub fn finish(mut self) -> PassResult {
        // Every successful allocation is counted in its site, and so is
        // every block that ended: by a valid release, a mismatched one (an
        // error), or an allocation at its address (overlapping).
        let (mut n, mut bytes, mut ended, mut temporary) = (0, 0, 0, 0);
        for (_, s) in self.sites.iter() {
            n += s.allocs;
            bytes += s.bytes;
            ended += s.allocs - s.live;
            temporary += s.temporary;
        }
        let t = &mut self.totals;
        t.allocations = n;
        t.bytes_allocated = bytes;
        t.temporary = temporary;
        let mismatched = t.errors_by_kind.get(&ErrorKind::MismatchedFree);
        t.frees = ended - t.overlapping_allocs - mismatched.copied().unwrap_or(0);
        self.totals.by_alloc_fn = self.by_alloc_fn.to_vec();
        self.totals.by_free_fn = self.by_free_fn.to_vec();
        self.totals.histogram = self.histogram.to_vec();
        let mut live: Vec<(u64, Slot)> = self.slots.iter().filter(|(_, s)| s.live).collect();
        live.sort_unstable_by_key(|(a, _)| *a);
        if let Some(sink) = self.rows.as_mut() {
            for (addr, b) in &live {
                sink(AllocRow {
                    id: b.id,
                    address: *addr,
                    size: b.size,
                    func: b.func,
                    thread: b.thread,
                    alloc_time: b.time,
                    free_time: None,
                    free_func: None,
                    alloc_stack: b.stack,
                    free_stack: 0,
                });
            }
        }
        let mut peak_sites = std::mem::take(&mut self.peak_sites);
        peak_sites.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        PassResult {
            sites: self.sites.iter().map(|(k, s)| (k, *s)).collect(),
            live,
            errors: self.errors,
            peak_sites,
            threads: self.threads.len(),
            modules: self.modules,
            totals: self.totals,
        }
    }
}

/// When and on which thread an event happened.
/// An error of the release of `addr` by `how` at `stack`, at `r`, about
/// `block` (the released or the containing block, if there is one): its size,
/// and its allocation's stack and function when the trace saw the allocation.
fn release_error(
    kind: ErrorKind,
    r: At,
    how: Release,
    addr: u64,
    stack: StackId,
    block: Option<&Slot>,
) -> HeapError {
    let size = block.map_or(0, |b| b.size);
    let mut e = HeapError::at(kind, r.time, r.thread, addr, size, stack);
    if let Some(b) = block.filter(|b| b.known) {
        e.alloc_stack = Some(b.stack);
        e.alloc_func = Some(b.func);
    }
    e.free_func = Some(how.name().to_string());
    e
}

#[derive(Clone, Copy)]
struct At {
    time: u64,
    thread: ThreadId,
}

/// How a block is being released.
#[derive(Clone, Copy, Debug)]
enum Release {
    Free(FreeFn),
    Realloc(AllocFn),
}

impl Release {
    fn name(self) -> &'static str {
        match self {
            Release::Free(f) => f.name(),
            Release::Realloc(f) => f.name(),
        }
    }
}

/// Whether releasing a block from `alloc` with `how` mixes families:
/// new[] by free or delete, malloc by delete, new by delete[], aligned new
/// by a delete without alignment (and the reverse), new by realloc.
fn mismatched(alloc: AllocFn, how: Release) -> bool {
    match how {
        Release::Realloc(_) => alloc.family() != Family::C,
        Release::Free(f) => {
            alloc.family() != f.family()
                || (alloc.family() != Family::C && alloc.is_aligned() != f.is_aligned())
        }
    }
}
