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
#[derive(Clone, Debug, Default)]
pub struct EventBatch {
    pub(crate) time: Vec<u64>,
    pub(crate) thread: Vec<ThreadId>,
    pub(crate) kind: Vec<Kind>,
    pub(crate) addr: Vec<u64>,
    pub(crate) aux: Vec<u64>,
    pub(crate) size: Vec<u64>,
    pub(crate) stack: Vec<StackId>,
    pub(crate) others: Vec<(u32, Event)>,
}

impl EventBatch {
    /// Events a batch holds at most when filled by [`crate::Reader::next_batch`].
    pub const CAPACITY: usize = 4096;

    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of events.
    #[inline]
    pub fn len(&self) -> usize {
        self.time.len()
    }

    /// Whether the batch holds no event.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }

    /// Removes every event, keeping the buffers.
    pub fn clear(&mut self) {
        self.time.clear();
        self.thread.clear();
        self.kind.clear();
        self.addr.clear();
        self.aux.clear();
        self.size.clear();
        self.stack.clear();
        self.others.clear();
    }

    /// Times (ns), non-decreasing.
    #[inline]
    pub fn times(&self) -> &[u64] {
        &self.time
    }

    /// Thread of each event.
    #[inline]
    pub fn threads(&self) -> &[ThreadId] {
        &self.thread
    }

    /// Kind (and function) of each event.
    #[inline]
    pub fn kinds(&self) -> &[Kind] {
        &self.kind
    }

    /// Address of each event (see the table above): the allocated or freed
    /// address, a realloc's new address, a mapping's (new) address, the new break.
    #[inline]
    pub fn addrs(&self) -> &[u64] {
        &self.addr
    }

    /// Second value of each event: alignment of an `Alloc` or `Free` (0 when
    /// the function takes none), old address of a `Realloc` or `Mremap`, old
    /// break of a `Brk`.
    #[inline]
    pub fn aux(&self) -> &[u64] {
        &self.aux
    }

    /// Size of each event: requested size, a sized delete's size (else 0),
    /// a mapping's (new) length.
    #[inline]
    pub fn sizes(&self) -> &[u64] {
        &self.size
    }

    /// Stack id of each event (0: none).
    #[inline]
    pub fn stacks(&self) -> &[StackId] {
        &self.stack
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
        match self.kind[i] {
            Kind::Alloc(func) => Event::Alloc {
                func,
                addr: self.addr[i],
                size: self.size[i],
                align: self.aux[i],
                stack: self.stack[i],
            },
            Kind::Free(func) => Event::Free {
                func,
                addr: self.addr[i],
                size: self.size[i],
                align: self.aux[i],
                stack: self.stack[i],
            },
            Kind::Realloc(func) => Event::Realloc {
                func,
                old_addr: self.aux[i],
                new_addr: self.addr[i],
                size: self.size[i],
                stack: self.stack[i],
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
    pub fn push_record(&mut self, r: &Record) {
        self.push_event(r.time, r.event.clone());
        self.thread.push(r.thread);
    }

    /// Appends an event's columns (and the whole event if it is not a heap
    /// event), except its thread.
    pub(crate) fn push_event(&mut self, time: u64, event: Event) {
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
        if !kind.is_heap() {
            self.others.push((self.len() as u32, event));
        }
        self.push(time, kind, addr, aux, size, stack);
    }

    /// Appends an event's columns except its thread (filled per run by the decoder).
    #[inline(always)]
    pub(crate) fn push(
        &mut self,
        time: u64,
        kind: Kind,
        addr: u64,
        aux: u64,
        size: u64,
        stack: u32,
    ) {
        self.time.push(time);
        self.kind.push(kind);
        self.addr.push(addr);
        self.aux.push(aux);
        self.size.push(size);
        self.stack.push(stack);
    }

    /// Keeps the first `n` events.
    pub(crate) fn truncate(&mut self, n: usize) {
        self.time.truncate(n);
        self.thread.truncate(n);
        self.kind.truncate(n);
        self.addr.truncate(n);
        self.aux.truncate(n);
        self.size.truncate(n);
        self.stack.truncate(n);
        while self.others.last().is_some_and(|e| e.0 as usize >= n) {
            self.others.pop();
        }
    }

    /// Extends every column but the threads by `n` placeholder events and
    /// returns them for writing in place, with `others`.
    pub(crate) fn grow(&mut self, n: usize) -> Slots<'_> {
        let base = self.len();
        let end = base + n;
        self.time.resize(end, 0);
        self.kind.resize(end, Kind::ThreadExit);
        self.addr.resize(end, 0);
        self.aux.resize(end, 0);
        self.size.resize(end, 0);
        self.stack.resize(end, 0);
        Slots {
            base: base as u32,
            time: &mut self.time[base..],
            kind: &mut self.kind[base..],
            addr: &mut self.addr[base..],
            aux: &mut self.aux[base..],
            size: &mut self.size[base..],
            stack: &mut self.stack[base..],
            others: &mut self.others,
        }
    }

    /// Moves event `i` out as a record, leaving a placeholder in
    /// [`Self::others`]; `other_pos` is the caller's position in `others`,
    /// advanced past event `i` (events must be taken in order).
    pub(crate) fn take_record(&mut self, i: usize, other_pos: &mut usize) -> Record {
        let event = if self.kind[i].is_heap() {
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

/// Placeholder events at the end of a batch, written in place by the decoder
/// (cheaper than pushing to seven vectors).
pub(crate) struct Slots<'a> {
    base: u32,
    time: &'a mut [u64],
    kind: &'a mut [Kind],
    addr: &'a mut [u64],
    aux: &'a mut [u64],
    size: &'a mut [u64],
    stack: &'a mut [StackId],
    others: &'a mut Vec<(u32, Event)>,
}

impl Slots<'_> {
    /// Number of slots.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.time.len()
    }

    /// Writes slot `i`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn set(
        &mut self,
        i: usize,
        time: u64,
        kind: Kind,
        addr: u64,
        aux: u64,
        size: u64,
        stack: StackId,
    ) {
        self.time[i] = time;
        self.kind[i] = kind;
        self.addr[i] = addr;
        self.aux[i] = aux;
        self.size[i] = size;
        self.stack[i] = stack;
    }

    /// Writes slot `i` from a whole event, keeping it in `others` unless it
    /// is a heap event.
    pub(crate) fn set_event(&mut self, i: usize, time: u64, event: Event) {
        let mut one = EventBatch::default();
        one.push_event(time, event);
        self.set(
            i,
            time,
            one.kind[0],
            one.addr[0],
            one.aux[0],
            one.size[0],
            one.stack[0],
        );
        if let Some((_, e)) = one.others.pop() {
            self.others.push((self.base + i as u32, e));
        }
    }
}
