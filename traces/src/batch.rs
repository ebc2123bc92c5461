//! [`EventBatch`]: decoded events as columns (struct of arrays), the fast way
//! to read a trace. See [`crate::Reader::next_batch`].

use crate::event::{AllocFn, Event, FreeFn, Record, StackId, ThreadId};

/// What an event is: its kind and, for heap events, the function called.
/// One byte of opcode in the file; two bytes here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// [`Event::Alloc`] with this function.
    Alloc(AllocFn),
    /// [`Event::Free`] with this function.
    Free(FreeFn),
    /// [`Event::Realloc`] with [`AllocFn::Realloc`] or [`AllocFn::Reallocarray`].
    Realloc(AllocFn),
    /// [`Event::Mmap`].
    Mmap,
    /// [`Event::Munmap`].
    Munmap,
    /// [`Event::Mremap`].
    Mremap,
    /// [`Event::Brk`].
    Brk,
    /// [`Event::ThreadStart`].
    ThreadStart,
    /// [`Event::ThreadExit`].
    ThreadExit,
    /// [`Event::Fork`].
    Fork,
    /// [`Event::Exec`].
    Exec,
    /// [`Event::ModuleLoad`].
    ModuleLoad,
    /// [`Event::ModuleUnload`].
    ModuleUnload,
    /// [`Event::Marker`].
    Marker,
}

impl Kind {
    /// The kind of `ev`.
    pub fn of(ev: &Event) -> Kind {
        match ev {
            Event::Alloc { func, .. } => Kind::Alloc(*func),
            Event::Free { func, .. } => Kind::Free(*func),
            Event::Realloc { func, .. } => Kind::Realloc(*func),
            Event::Mmap { .. } => Kind::Mmap,
            Event::Munmap { .. } => Kind::Munmap,
            Event::Mremap { .. } => Kind::Mremap,
            Event::Brk { .. } => Kind::Brk,
            Event::ThreadStart { .. } => Kind::ThreadStart,
            Event::ThreadExit => Kind::ThreadExit,
            Event::Fork { .. } => Kind::Fork,
            Event::Exec { .. } => Kind::Exec,
            Event::ModuleLoad(_) => Kind::ModuleLoad,
            Event::ModuleUnload { .. } => Kind::ModuleUnload,
            Event::Marker { .. } => Kind::Marker,
        }
    }

    /// Whether events of this kind are heap events (`Alloc`, `Free`,
    /// `Realloc`), whose fields are all in the batch's columns. Every other
    /// kind also has its whole [`Event`] in [`EventBatch::others`].
    #[inline]
    pub fn is_heap(self) -> bool {
        matches!(self, Kind::Alloc(_) | Kind::Free(_) | Kind::Realloc(_))
    }
}

/// A run of decoded events in global order, as columns: element `i` of every
/// column belongs to the `i`-th event. Filled by [`crate::Reader::next_batch`];
/// reuse one batch for a whole trace so its buffers are allocated once.
///
/// | [`Kind`] | [`addrs`](Self::addrs) | [`aux`](Self::aux) | [`sizes`](Self::sizes) | [`stacks`](Self::stacks) | in [`others`](Self::others) |
/// | --- | --- | --- | --- | --- | --- |
/// | `Alloc(f)` | `addr` | `align` | `size` | `stack` | no |
/// | `Free(f)` | `addr` | `align` | `size` | `stack` | no |
/// | `Realloc(f)` | `new_addr` | `old_addr` | `size` | `stack` | no |
/// | `Mmap` | `addr` | 0 | `len` | `stack` | yes |
/// | `Munmap` | `addr` | 0 | `len` | `stack` | yes |
/// | `Mremap` | `new_addr` | `old_addr` | `new_len` | `stack` | yes |
/// | `Brk` | `new_break` | `old_break` | 0 | `stack` | yes |
/// | any other | 0 | 0 | 0 | 0 | yes |
///
/// [`times`](Self::times), [`threads`](Self::threads) and
/// [`kinds`](Self::kinds) are set for every event. Heap events (the bulk of a
/// trace) live only in the columns; every other event is also kept whole in
/// [`others`](Self::others), so [`EventBatch::event`] rebuilds any event
/// exactly.
#[derive(Clone)]
pub struct EventBatch {
    /// Events held: the first `len` entries of each column; the rest are
    /// stale. Columns are fixed arrays so the decoder writes them without
    /// bounds checks or capacity checks.
    len: usize,
    time: Box<[u64; CAP]>,
    thread: Box<[ThreadId; CAP]>,
    cols: Box<Cols>,
    others: Vec<(u32, Event)>,
    /// The decoder's working space (see [`Scratch`]).
    scratch: Box<Scratch>,
}

/// Values of a run of events decoded column by column before the event loop
/// reads them (`codec`'s fast path): at most [`Scratch::RUN`] of each.
#[derive(Clone)]
pub(crate) struct Scratch {
    /// Sizes of the run's allocations (a run ends before one of 4 GiB or
    /// more: 32 bits widen in fewer instructions than 64).
    pub(crate) size: [u32; Scratch::RUN],
    /// Address codes of the run's allocations.
    pub(crate) alloc: [u32; Scratch::RUN],
    /// Address codes of the run's frees.
    pub(crate) free: [u32; Scratch::RUN],
    /// Opcodes of the run's events, at their slots' indexes in the batch.
    pub(crate) ops: [u8; CAP],
}

impl Scratch {
    /// Most events in a run (a power of two).
    pub(crate) const RUN: usize = 256;
}

/// The columns the decoder writes per event, in one allocation so that its
/// hot loop reaches all of them from one pointer.
#[derive(Clone)]
struct Cols {
    kind: [Kind; CAP],
    addr: [u64; CAP],
    aux: [u64; CAP],
    size: [u64; CAP],
    stack: [StackId; CAP],
}

const CAP: usize = EventBatch::CAPACITY;

impl Default for EventBatch {
    fn default() -> Self {
        EventBatch {
            len: 0,
            time: Box::new([0; CAP]),
            thread: Box::new([0; CAP]),
            cols: Box::new(Cols {
                kind: [Kind::ThreadExit; CAP],
                addr: [0; CAP],
                aux: [0; CAP],
                size: [0; CAP],
                stack: [0; CAP],
            }),
            others: Vec::new(),
            scratch: Box::new(Scratch {
                size: [0; Scratch::RUN],
                alloc: [0; Scratch::RUN],
                free: [0; Scratch::RUN],
                ops: [0; CAP],
            }),
        }
    }
}

impl std::fmt::Debug for EventBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries((0..self.len).map(|i| self.record(i)))
            .finish()
    }
}

impl EventBatch {
    /// Most events a batch holds ([`crate::Reader::next_batch`] fills it up
    /// to this many).
    pub const CAPACITY: usize = 4096;

    /// An empty batch (allocates its columns, about 170 KB).
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of events.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no event.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the batch holds [`EventBatch::CAPACITY`] events.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == CAP
    }

    /// Removes every event.
    pub fn clear(&mut self) {
        self.len = 0;
        self.others.clear();
    }

    /// Times (ns), non-decreasing.
    #[inline]
    pub fn times(&self) -> &[u64] {
        &self.time[..self.len]
    }

    /// Thread of each event.
    #[inline]
    pub fn threads(&self) -> &[ThreadId] {
        &self.thread[..self.len]
    }

    /// Kind (and function) of each event.
    #[inline]
    pub fn kinds(&self) -> &[Kind] {
        &self.cols.kind[..self.len]
    }

    /// Address of each event (see the table above): the allocated or freed
    /// address, a realloc's new address, a mapping's (new) address, the new break.
    #[inline]
    pub fn addrs(&self) -> &[u64] {
        &self.cols.addr[..self.len]
    }

    /// Second value of each event: alignment of an `Alloc` or `Free` (0 when
    /// the function takes none), old address of a `Realloc` or `Mremap`, old
    /// break of a `Brk`.
    #[inline]
    pub fn aux(&self) -> &[u64] {
        &self.cols.aux[..self.len]
    }

    /// Size of each event: requested size, a sized delete's size (else 0),
    /// a mapping's (new) length.
    #[inline]
    pub fn sizes(&self) -> &[u64] {
        &self.cols.size[..self.len]
    }

    /// Stack id of each event (0: none).
    #[inline]
    pub fn stacks(&self) -> &[StackId] {
        &self.cols.stack[..self.len]
    }

    /// Every event that is not a heap event, whole, with its index in the
    /// batch, in order.
    #[inline]
    pub fn others(&self) -> &[(u32, Event)] {
        &self.others
    }

    /// The whole non-heap event at index `i`, if event `i` is one.
    pub fn other(&self, i: usize) -> Option<&Event> {
        let k = self
            .others
            .binary_search_by_key(&i, |e| e.0 as usize)
            .ok()?;
        Some(&self.others[k].1)
    }

    /// Event `i`, rebuilt from the columns (cloned from [`Self::others`] for
    /// non-heap events). Panics if `i >= len()`.
    pub fn event(&self, i: usize) -> Event {
        assert!(i < self.len, "event {i} of a batch of {}", self.len);
        match self.cols.kind[i] {
            Kind::Alloc(func) => Event::Alloc {
                func,
                addr: self.cols.addr[i],
                size: self.cols.size[i],
                align: self.cols.aux[i],
                stack: self.cols.stack[i],
            },
            Kind::Free(func) => Event::Free {
                func,
                addr: self.cols.addr[i],
                size: self.cols.size[i],
                align: self.cols.aux[i],
                stack: self.cols.stack[i],
            },
            Kind::Realloc(func) => Event::Realloc {
                func,
                old_addr: self.cols.aux[i],
                new_addr: self.cols.addr[i],
                size: self.cols.size[i],
                stack: self.cols.stack[i],
            },
            _ => self.other(i).cloned().unwrap_or(Event::ThreadExit),
        }
    }

    /// Record `i` (time, thread and [`Self::event`]). Panics if `i >= len()`.
    pub fn record(&self, i: usize) -> Record {
        Record {
            time: self.time[i],
            thread: self.thread[i],
            event: self.event(i),
        }
    }

    /// Appends a record (for tests and for building batches by hand).
    /// Panics if the batch is full.
    pub fn push_record(&mut self, r: &Record) {
        assert!(!self.is_full(), "batch full");
        let i = self.len;
        self.thread[i] = r.thread;
        self.time[i] = r.time;
        self.slots(i).set_event(0, r.event.clone());
        self.len += 1;
    }

    /// Keeps the first `n` events.
    pub(crate) fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
        while self.others.last().is_some_and(|e| e.0 as usize >= self.len) {
            self.others.pop();
        }
    }

    /// The slots from `base` on, to write events in place (their thread
    /// excepted); [`EventBatch::set_len`] then makes them part of the batch.
    #[inline]
    pub(crate) fn slots(&mut self, base: usize) -> Slots<'_> {
        Slots {
            base: base.min(CAP),
            cols: &mut self.cols,
            others: &mut self.others,
        }
    }

    /// [`EventBatch::slots`], and the decoder's working space.
    #[inline]
    pub(crate) fn slots_and_scratch(&mut self, base: usize) -> (Slots<'_>, &mut Scratch) {
        let slots = Slots {
            base: base.min(CAP),
            cols: &mut self.cols,
            others: &mut self.others,
        };
        (slots, &mut self.scratch)
    }

    /// Sets the length to `n` after slots were written, and the thread of
    /// events from the old length on to `thread`.
    pub(crate) fn set_len(&mut self, n: usize, thread: ThreadId) {
        let n = n.min(CAP);
        if n > self.len {
            self.thread[self.len..n].fill(thread);
        }
        self.len = n;
    }

    /// The time column from the current length on, to write in place.
    #[inline]
    pub(crate) fn free_times(&mut self) -> &mut [u64] {
        &mut self.time[self.len..]
    }

    /// Moves events of `from` (one thread's, decoded ahead) into this batch,
    /// from `from`'s event `*pos` on: at most `max` of them (and no more than
    /// there is room for), stopping before the first whose time is not below
    /// `limit`, as [`crate::codec::BlockDecoder::decode_into`] would have.
    /// Advances `*pos`, and `*other_pos` (the position in `from`'s others)
    /// past them; non-heap events are moved, not cloned. Returns how many.
    #[inline(always)]
    pub(crate) fn take_run(
        &mut self,
        from: &mut EventBatch,
        pos: &mut usize,
        other_pos: &mut usize,
        limit: u128,
        max: usize,
        thread: ThreadId,
    ) -> usize {
        let first = *pos;
        let n = from.len.saturating_sub(first).min(max).min(CAP - self.len);
        // One loop over all columns, stopping at the limit: a run is often
        // a single event, where a copy per column would cost a call each.
        let base = self.len;
        let (time, threads, cols) = (&mut *self.time, &mut *self.thread, &mut *self.cols);
        let (from_time, from_cols) = (&*from.time, &*from.cols);
        let mut k = 0;
        while k < n {
            let (j, f) = ((base + k) & (CAP - 1), (first + k) & (CAP - 1));
            let t = from_time[f];
            if u128::from(t) >= limit {
                break;
            }
            time[j] = t;
            threads[j] = thread;
            cols.kind[j] = from_cols.kind[f];
            cols.addr[j] = from_cols.addr[f];
            cols.aux[j] = from_cols.aux[f];
            cols.size[j] = from_cols.size[f];
            cols.stack[j] = from_cols.stack[f];
            k += 1;
        }
        while let Some((j, e)) = from.others.get_mut(*other_pos) {
            let j = *j as usize;
            if j >= first + k {
                break;
            }
            let e = std::mem::replace(e, Event::ThreadExit);
            self.others.push(((base + j - first) as u32, e));
            *other_pos += 1;
        }
        self.len = base + k;
        *pos = first + k;
        k
    }

    /// Moves event `i` out as a record, leaving a placeholder in
    /// [`Self::others`]; `other_pos` is the caller's position in `others`,
    /// advanced past event `i` (events must be taken in order).
    pub(crate) fn take_record(&mut self, i: usize, other_pos: &mut usize) -> Record {
        let event = if self.cols.kind[i].is_heap() {
            self.event(i)
        } else {
            match self.others.get_mut(*other_pos) {
                Some((j, e)) if *j as usize == i => {
                    *other_pos += 1;
                    std::mem::replace(e, Event::ThreadExit)
                }
                _ => self.event(i),
            }
        };
        Record {
            time: self.time[i],
            thread: self.thread[i],
            event,
        }
    }
}

/// Events from `base` on, written in place by the decoder. Indexes are
/// masked to the capacity, so the compiler knows every write is in bounds.
pub(crate) struct Slots<'a> {
    base: usize,
    cols: &'a mut Cols,
    others: &'a mut Vec<(u32, Event)>,
}

impl Slots<'_> {
    /// Writes slot `i` (all but its time, written beforehand through
    /// [`EventBatch::free_times`]).
    #[inline(always)]
    pub(crate) fn set(
        &mut self,
        i: usize,
        kind: Kind,
        addr: u64,
        aux: u64,
        size: u64,
        stack: StackId,
    ) {
        let j = (self.base + i) & (CAP - 1);
        self.cols.kind[j] = kind;
        self.cols.addr[j] = addr;
        self.cols.aux[j] = aux;
        self.cols.size[j] = size;
        self.cols.stack[j] = stack;
    }

    /// The index in the batch of slot `i`.
    #[inline(always)]
    pub(crate) fn index(&self, i: usize) -> usize {
        self.base + i
    }

    /// The stacks of slots `i..i + n` (fewer if that runs past the batch's end).
    #[inline]
    pub(crate) fn stacks_mut(&mut self, i: usize, n: usize) -> &mut [StackId] {
        let from = (self.base + i).min(CAP);
        let to = from.saturating_add(n).min(CAP);
        &mut self.cols.stack[from..to]
    }

    /// The stack of the event at index `j` of the batch (see [`Slots::index`]).
    #[inline(always)]
    pub(crate) fn stack_at(&self, j: usize) -> StackId {
        self.cols.stack[j & (CAP - 1)]
    }

    /// Sets 0 as the `aux` of the events at indexes `j..j + n` of the
    /// batch (a run of plain mallocs and frees, whose kinds, addresses,
    /// sizes and stacks are then set one by one).
    #[inline]
    pub(crate) fn clear_aux(&mut self, j: usize, n: usize) {
        let (from, to) = (j.min(CAP), (j + n).min(CAP));
        self.cols.aux[from..to].fill(0);
    }

    /// Sets the kind and address of the event at index `j` of the batch.
    #[inline(always)]
    pub(crate) fn set_kind_addr_at(&mut self, j: usize, kind: Kind, addr: u64) {
        let j = j & (CAP - 1);
        self.cols.kind[j] = kind;
        self.cols.addr[j] = addr;
    }

    /// Sets the size of the event at index `j` of the batch.
    #[inline(always)]
    pub(crate) fn set_size_at(&mut self, j: usize, size: u64) {
        self.cols.size[j & (CAP - 1)] = size;
    }

    /// Sets the stack of the event at index `j` of the batch.
    #[inline(always)]
    pub(crate) fn set_stack_at(&mut self, j: usize, stack: StackId) {
        self.cols.stack[j & (CAP - 1)] = stack;
    }

    /// Writes slot `i` (but its time) from a whole event, keeping the event
    /// in `others` unless it is a heap event.
    pub(crate) fn set_event(&mut self, i: usize, event: Event) {
        let (addr, aux, size, stack) = match event {
            Event::Alloc {
                addr,
                size,
                align,
                stack,
                ..
            }
            | Event::Free {
                addr,
                size,
                align,
                stack,
                ..
            } => (addr, align, size, stack),
            Event::Realloc {
                old_addr,
                new_addr,
                size,
                stack,
                ..
            } => (new_addr, old_addr, size, stack),
            Event::Mmap {
                addr, len, stack, ..
            }
            | Event::Munmap { addr, len, stack } => (addr, 0, len, stack),
            Event::Mremap {
                old_addr,
                new_addr,
                new_len,
                stack,
                ..
            } => (new_addr, old_addr, new_len, stack),
            Event::Brk {
                old_break,
                new_break,
                stack,
            } => (new_break, old_break, 0, stack),
            _ => (0, 0, 0, 0),
        };
        let kind = Kind::of(&event);
        let j = (self.base + i) & (CAP - 1);
        if !kind.is_heap() {
            self.others.push((j as u32, event));
        }
        self.set(i, kind, addr, aux, size, stack);
    }
}
