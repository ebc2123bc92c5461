//! Per-thread recording state: the thread's slot and current chunk, and the
//! record writer. The state is reached through a const thread-local raw
//! pointer (no `Drop`) and torn down by a pthread key destructor, which also
//! survives the thread-exit ordering problems of Rust thread-locals.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use abi::ThreadSlot;
use alloctrace_abi as abi;

use crate::guard::Guard;
use crate::process::{self, Process};
use crate::sys;
use crate::unwind::{self, Unwinder};

static KEY: AtomicU32 = AtomicU32::new(u32::MAX);

/// Creates the pthread key whose destructor ends a thread's recording.
pub fn init_key() {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: valid out pointer and a destructor with the right signature.
    if unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } == 0 {
        KEY.store(key, Ordering::Release);
    }
}

/// [`Clock::Late`] records are timed when they start within the first
/// `TIMED_FIRST` bytes of each `TIMED_EVERY` bytes of the mapping (chunks
/// start at multiples of it): among malloc and free records, which are at
/// most `TIMED_FIRST` bytes, at least one in each `TIMED_EVERY` bytes is
/// timed (longer records, 40 to 48 bytes, may step over a window).
const TIMED_EVERY: usize = 2048;
const TIMED_FIRST: usize = 32;

/// How far ahead of the record being written its chunk is prefetched.
const PREFETCH_AHEAD: usize = 512;

/// Asks for the cache line at `p` in a writable state. The chunk lines a
/// thread writes have usually left its caches (the collector read them, or
/// they are a lap of the file old): a store that misses holds back every
/// later store, the hook's own stack pushes included, so the line is fetched
/// a few records ahead. A prefetch cannot fault, so `p` may lie past the
/// chunk or the mapping.
#[inline(always)]
fn prefetch_for_write(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetchw` is a hint with no architectural effect; it cannot
    // fault (CPUs without it run it as a no-op).
    unsafe {
        core::arch::asm!("prefetchw [{p}]", p = in(reg) p,
            options(nostack, preserves_flags, readonly));
    }
}

/// How a record is timed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Untimed (time 0), outside the busy window: definitions, realloc
    /// begin records.
    None,
    /// Timed inside the busy window.
    Exact,
    /// A hook's event: untimed while the process has a single thread and
    /// [`abi::FLAG_LATE_TIMES`] allows it, else as [`Clock::Exact`].
    Late,
}

impl Clock {
    /// `Exact` or `None`.
    pub fn timed(timed: bool) -> Clock {
        if timed {
            Clock::Exact
        } else {
            Clock::None
        }
    }
}

/// A thread's recording state. The fields a record's write reads come
/// first, derived from the process when the state is (re)set, so that a
/// write reads no `Option` and no process field.
pub struct ThreadState {
    /// Where the next record goes in the current chunk (null: no chunk).
    cur: *mut u8,
    /// End of the current chunk's data (null: no chunk, or no slot).
    end: *mut u8,
    /// Start of the current chunk's data.
    data: *mut u8,
    /// The current chunk's `committed` (valid while `end` is not null).
    committed: *const AtomicU32,
    /// This thread's slot in the process's file (null: none).
    slot: *const ThreadSlot,
    /// The process's `multi_since` word.
    multi: *const AtomicU64,
    /// The process the state belongs to (a new one after fork: see
    /// [`ThreadState::current`]).
    process: *const Process,
    /// What a memo hit reads (see [`unwind::Hot`]).
    pub hot: unwind::Hot,
    /// Busy flags are plain stores and the clock is the time-stamp counter.
    fast_clock: bool,
    /// [`Clock::Late`] records are untimed while the process has a single
    /// thread (the process's `late_times`).
    late_times: bool,
    /// The process records no backtraces (depth cap 0).
    pub no_backtraces: bool,
    /// Kernel thread id.
    pub tid: u32,
    slot_idx: Option<usize>,
    chunk: Option<usize>,
    /// Unwinder, created on first backtrace.
    pub unwinder: Option<Box<Unwinder>>,
}

impl ThreadState {
    /// This thread's state: itself when its process is still the current
    /// one (one load and compare), else as [`Self::get`] finds or makes it.
    // The guard is the proof of exclusive access: one per thread at a time.
    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    pub fn current(g: &Guard) -> Option<&mut ThreadState> {
        let ptr = g.tls().state.get();
        // SAFETY: the pointer is only ever set to a leaked Box owned by this
        // thread, and `g` proves no other reference to it is live here.
        if let Some(ts) = unsafe { ptr.as_mut() } {
            if core::ptr::eq(ts.process, process::current()) {
                return Some(ts);
            }
        }
        Self::current_slow(g)
    }

    #[allow(clippy::mut_from_ref)]
    #[cold]
    #[inline(never)]
    fn current_slow(g: &Guard) -> Option<&mut ThreadState> {
        let p = process::get(g)?;
        Self::get(g, p)
    }

    /// This thread's state for process `p`, created (or reset after fork) on demand.
    // The guard is the proof of exclusive access: one per thread at a time.
    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    pub fn get<'a>(g: &'a Guard, p: &Process) -> Option<&'a mut ThreadState> {
        let ptr = g.tls().state.get();
        // SAFETY: the pointer is only ever set to a leaked Box owned by this
        // thread, and `_g` proves no other reference to it is live here.
        match unsafe { ptr.as_mut() } {
            Some(ts) if core::ptr::eq(ts.process, p) => Some(ts),
            Some(ts) => {
                ts.reset(p, g.tls().parent.get());
                Some(ts)
            }
            None => Self::create(g, p),
        }
    }

    // The guard is the proof of exclusive access, as in `get`.
    #[allow(clippy::mut_from_ref)]
    #[cold]
    fn create<'a>(g: &'a Guard, p: &Process) -> Option<&'a mut ThreadState> {
        let ts = Box::into_raw(Box::new(ThreadState {
            cur: core::ptr::null_mut(),
            end: core::ptr::null_mut(),
            data: core::ptr::null_mut(),
            committed: core::ptr::null(),
            slot: core::ptr::null(),
            multi: core::ptr::null(),
            process: p,
            hot: unwind::Hot::NONE,
            fast_clock: false,
            late_times: false,
            no_backtraces: true,
            tid: sys::gettid(),
            slot_idx: None,
            chunk: None,
            unwinder: None,
        }));
        g.tls().state.set(ts);
        let key = KEY.load(Ordering::Acquire);
        if key != u32::MAX {
            // SAFETY: registering the state for the exit destructor.
            unsafe { libc::pthread_setspecific(key, ts.cast()) };
        }
        // SAFETY: just allocated, owned by this thread.
        let ts = unsafe { &mut *ts };
        ts.reset(p, g.tls().parent.get());
        Some(ts)
    }

    #[cold]
    fn reset(&mut self, p: &Process, parent: u32) {
        self.tid = sys::gettid();
        self.process = p;
        self.slot_idx = p.claim_slot(self.tid);
        self.slot = match self.slot_idx {
            Some(i) => p.slot(i),
            None => core::ptr::null(),
        };
        self.multi = &p.header().threads.multi_since;
        self.fast_clock = p.fenceless && sys::tsc_on();
        self.late_times = self.fast_clock && p.late_times;
        self.no_backtraces = p.max_depth == 0;
        if self.slot_idx.is_some() {
            // Before this thread's first record (the module records and the
            // thread start below, both read the clock with a fence).
            p.register_thread();
        }
        self.chunk = None;
        self.no_chunk();
        if let Some(u) = self.unwinder.as_mut() {
            u.forget_stacks();
        }
        unwind::refresh_hot(self, p);
        crate::modules::emit_if_needed(self);
        self.write(abi::KIND_THREAD_START, 0, 0, &[parent as u64], &[], true);
    }

    /// The process this state belongs to.
    pub fn process(&self) -> &'static Process {
        // SAFETY: set at creation to a process, never null; processes are
        // never freed (leaked boxes).
        unsafe { &*self.process }
    }

    /// No current chunk: the next write claims one.
    fn no_chunk(&mut self) {
        self.cur = core::ptr::null_mut();
        self.end = core::ptr::null_mut();
        self.data = core::ptr::null_mut();
        self.committed = core::ptr::null();
    }

    /// Appends one record; `timed` records take the clock inside the busy
    /// window (see the crate docs of `alloctrace-abi`). Returns false if the
    /// event was dropped.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // the hot path: one call, no record struct to build
    pub fn write(
        &mut self,
        kind: u8,
        func: u8,
        stack: u32,
        words: &[u64],
        bytes: &[u8],
        timed: bool,
    ) -> bool {
        let len = abi::RECORD_HEADER + words.len() * 8 + abi::round8(bytes.len());
        self.write_with(kind, func, stack, len, len, Clock::timed(timed), |w| {
            // SAFETY: `w` has room for `len` bytes (see `write_with`).
            unsafe {
                let mut w = w;
                for &v in words {
                    core::ptr::write_unaligned(w.cast::<u64>(), v);
                    w = w.add(8);
                }
                core::ptr::copy_nonoverlapping(bytes.as_ptr(), w, bytes.len());
            }
        })
    }

    /// Appends one record of `words` without their trailing zero words (the
    /// hooks' records; the collector reads missing words as 0, so a malloc's
    /// record is 32 bytes instead of 40, a free's 24), or with all of them
    /// when `trim` is false (no test of each word: the collector reads the
    /// same). All `N` words are stored, a fixed-size copy, but only the
    /// kept ones published.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // the hot path, as `write`
    pub fn write_words<const N: usize>(
        &mut self,
        kind: u8,
        func: u8,
        stack: u32,
        words: &[u64; N],
        trim: bool,
        clock: Clock,
    ) -> bool {
        let mut n = N;
        while trim && n > 0 && words[n - 1] == 0 {
            n -= 1;
        }
        let len = abi::RECORD_HEADER + n * 8;
        let room = abi::RECORD_HEADER + N * 8;
        self.write_with(kind, func, stack, len, room, clock, |w| {
            // SAFETY: `w` has room for `room` bytes (see `write_with`).
            unsafe { core::ptr::write_unaligned(w.cast::<[u64; N]>(), *words) }
        })
    }

    /// Appends a record of `len` bytes whose body `body` writes (given
    /// room for `room - RECORD_HEADER` bytes, `room >= len`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // the hot path, as `write`
    fn write_with(
        &mut self,
        kind: u8,
        func: u8,
        stack: u32,
        len: usize,
        room: usize,
        clock: Clock,
        body: impl FnOnce(*mut u8),
    ) -> bool {
        // One test for no slot, no chunk and a full chunk: `end` and `cur`
        // are both null without a chunk (and there is none without a slot).
        if (self.end as usize).wrapping_sub(self.cur as usize) < room && !self.make_room(room) {
            return false;
        }
        debug_assert!(!self.slot.is_null(), "a current chunk without a slot");
        // SAFETY: a chunk is current, so the thread has a slot: `slot`
        // points at it in the process's mapping, which lives as long as
        // the process (`self.process`, checked by every caller).
        let slot = unsafe { &*self.slot };
        let multi = self.multi;
        // SAFETY: `multi` points into the process's header, mapped as long
        // as the process (as `slot`).
        let single = move || unsafe { &*multi }.load(Ordering::Relaxed) == 0;
        let (time, busy) = match clock {
            Clock::None => (0, false),
            // Untimed, outside any busy window: the collector dates it at or
            // above the watermark it advanced to last (`abi::FLAG_LATE_TIMES`).
            // A record that starts in the first bytes of each
            // `TIMED_EVERY` of the chunk is timed all the same, so that
            // dates lag by at most that many bytes of records while the
            // collector is behind (one counter read in about 70 malloc or
            // free records).
            Clock::Late
                if self.late_times
                    && (self.cur as usize) % TIMED_EVERY >= TIMED_FIRST
                    && single() =>
            {
                (0, false)
            }
            // The flag must be visible before the clock is read (see
            // `abi::ThreadSlot::busy`); the counter reads are compiler
            // barriers.
            _ if self.fast_clock => {
                slot.busy.store(1, Ordering::Relaxed);
                // An allocation's time has to come after the real
                // allocation, and a release's after the load that gave this
                // thread the pointer, when the block may have come from
                // another thread: an unfenced read may run ahead of a load
                // that waits for another core's cache line (a pointer handed
                // over by `atomic_exchange`) and so date a release before
                // its block's allocation (`threads.c`, 1 or 2 of 1.6 M
                // releases in 1 of 6 runs on an AMD EPYC VM). While no second
                // thread has registered, no event of another thread can come
                // before it, and its order in this thread is kept by the
                // collector. (Any read is before the real release's stores
                // become visible: `rdtsc` completes before it retires.)
                let t = if single() {
                    sys::tsc_unordered()
                } else {
                    sys::tsc_ordered()
                };
                (t, true)
            }
            _ => (slow_time(self.process(), slot), true),
        };
        let hdr = abi::RecordHeader {
            time,
            kind,
            func,
            len: len as u16,
            stack,
        };
        // SAFETY: `cur + room <= end` was ensured above; this thread owns
        // the chunk; unaligned-safe writes of plain data. Bytes past `len`
        // are not published (`committed` ends at `cur + len`). `committed`
        // is the chunk's, in the mapping (as `slot`).
        unsafe {
            let at = self.cur;
            prefetch_for_write(at.wrapping_add(PREFETCH_AHEAD));
            core::ptr::write_unaligned(at.cast::<abi::RecordHeader>(), hdr);
            body(at.add(abi::RECORD_HEADER));
            self.cur = at.add(len);
            (*self.committed).store(self.cur.offset_from(self.data) as u32, Ordering::Release);
        }
        if busy {
            slot.last_time.store(time, Ordering::Release);
            slot.busy.store(0, Ordering::Release);
        }
        true
    }

    /// No room for `room` bytes in the current chunk (or no chunk, or no
    /// slot): claims the next chunk; false (the event dropped and counted)
    /// if there is none. (Its process is the state's: the hook keeps no
    /// register for it.)
    #[cold]
    #[inline(never)]
    fn make_room(&mut self, room: usize) -> bool {
        let p = self.process();
        if self.slot_idx.is_none() || !self.next_chunk(p, room) {
            p.drop_event();
            return false;
        }
        true
    }

    #[cold]
    fn next_chunk(&mut self, p: &Process, len: usize) -> bool {
        if len > abi::CHUNK_SIZE {
            return false;
        }
        if let Some(c) = self.chunk.take() {
            p.chunk(c).state.store(abi::CHUNK_FULL, Ordering::Release);
        }
        self.no_chunk();
        match p.claim_chunk(self.tid) {
            Some(c) => {
                self.chunk = Some(c);
                self.data = p.chunk_data(c);
                self.cur = self.data;
                // SAFETY: the chunk's data is CHUNK_SIZE bytes of the mapping.
                self.end = unsafe { self.data.add(abi::CHUNK_SIZE) };
                self.committed = &p.chunk(c).committed;
                true
            }
            None => false,
        }
    }

    fn finish(&mut self, p: &Process) {
        if !core::ptr::eq(self.process, p) {
            return;
        }
        self.write(abi::KIND_THREAD_EXIT, 0, 0, &[], &[], true);
        if let Some(c) = self.chunk.take() {
            p.chunk(c).state.store(abi::CHUNK_FULL, Ordering::Release);
        }
        self.no_chunk();
        if let Some(s) = self.slot_idx.take() {
            p.slot(s).tid.store(0, Ordering::Release);
        }
        self.slot = core::ptr::null();
    }
}

/// A record's time and busy flag, when the flag needs a fence or the
/// clock is not the counter.
#[cold]
#[inline(never)]
fn slow_time(p: &Process, slot: &ThreadSlot) -> u64 {
    if p.fenceless {
        slot.busy.store(1, Ordering::Relaxed);
        if !p.multi_threaded() {
            sys::now_unordered()
        } else {
            sys::now()
        }
    } else {
        slot.busy.store(1, Ordering::SeqCst);
        sys::now()
    }
}

/// pthread key destructor: the thread is exiting.
unsafe extern "C" fn thread_exit(ptr: *mut libc::c_void) {
    let Some(g) = Guard::acquire() else {
        return;
    };
    let ts = ptr.cast::<ThreadState>();
    if let Some(p) = process::get(&g) {
        // SAFETY: `ptr` is this thread's leaked state (set by `create`).
        unsafe { (*ts).finish(p) };
    }
    g.tls().state.set(core::ptr::null_mut());
    // SAFETY: reclaiming the Box leaked in `create`; no other reference exists.
    drop(unsafe { Box::from_raw(ts) });
}
