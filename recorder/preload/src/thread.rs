//! Per-thread recording state: the thread's slot and current chunk, and the
//! record writer. The state is reached through a const thread-local raw
//! pointer (no `Drop`) and torn down by a pthread key destructor, which also
//! survives the thread-exit ordering problems of Rust thread-locals.

use core::sync::atomic::{AtomicU32, Ordering};

use alloctrace_abi as abi;

use crate::guard::Guard;
use crate::process::{self, Process};
use crate::sys;
use crate::unwind::Unwinder;

static KEY: AtomicU32 = AtomicU32::new(u32::MAX);

/// Creates the pthread key whose destructor ends a thread's recording.
pub fn init_key() {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: valid out pointer and a destructor with the right signature.
    if unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } == 0 {
        KEY.store(key, Ordering::Release);
    }
}

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

/// A thread's recording state.
pub struct ThreadState {
    /// Kernel thread id.
    pub tid: u32,
    epoch: u32,
    slot: Option<usize>,
    chunk: Option<usize>,
    data: *mut u8,
    off: usize,
    /// Unwinder, created on first backtrace.
    pub unwinder: Option<Box<Unwinder>>,
}

impl ThreadState {
    /// This thread's state for process `p`, created (or reset after fork) on demand.
    // The guard is the proof of exclusive access: one per thread at a time.
    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    pub fn get<'a>(g: &'a Guard, p: &Process) -> Option<&'a mut ThreadState> {
        let ptr = g.tls().state.get();
        // SAFETY: the pointer is only ever set to a leaked Box owned by this
        // thread, and `_g` proves no other reference to it is live here.
        match unsafe { ptr.as_mut() } {
            Some(ts) if ts.epoch == p.epoch => Some(ts),
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
            tid: sys::gettid(),
            epoch: 0,
            slot: None,
            chunk: None,
            data: core::ptr::null_mut(),
            off: 0,
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
        self.epoch = p.epoch;
        self.slot = p.claim_slot(self.tid);
        if self.slot.is_some() {
            // Before this thread's first record (the module records and the
            // thread start below, both read the clock with a fence).
            p.register_thread();
        }
        self.chunk = None;
        self.off = 0;
        if let Some(u) = self.unwinder.as_mut() {
            u.forget_stacks();
        }
        crate::modules::emit_if_needed(self, p);
        self.write(p, abi::KIND_THREAD_START, 0, 0, &[parent as u64], &[], true);
    }

    /// Appends one record; `timed` records take the clock inside the busy
    /// window (see the crate docs of `alloctrace-abi`). Returns false if the
    /// event was dropped.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // the hot path: one call, no record struct to build
    pub fn write(
        &mut self,
        p: &Process,
        kind: u8,
        func: u8,
        stack: u32,
        words: &[u64],
        bytes: &[u8],
        timed: bool,
    ) -> bool {
        let len = abi::RECORD_HEADER + words.len() * 8 + abi::round8(bytes.len());
        self.write_with(p, kind, func, stack, len, len, timed, |w| {
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
    /// record is 32 bytes instead of 40, a free's 24). All `N` words are
    /// stored, a fixed-size copy, but only the kept ones published.
    #[inline(always)]
    pub fn write_words<const N: usize>(
        &mut self,
        p: &Process,
        kind: u8,
        func: u8,
        stack: u32,
        words: &[u64; N],
        timed: bool,
    ) -> bool {
        let mut n = N;
        while n > 0 && words[n - 1] == 0 {
            n -= 1;
        }
        let len = abi::RECORD_HEADER + n * 8;
        let room = abi::RECORD_HEADER + N * 8;
        self.write_with(p, kind, func, stack, len, room, timed, |w| {
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
        p: &Process,
        kind: u8,
        func: u8,
        stack: u32,
        len: usize,
        room: usize,
        timed: bool,
        body: impl FnOnce(*mut u8),
    ) -> bool {
        let Some(slot) = self.slot else {
            p.drop_event();
            return false;
        };
        if (self.chunk.is_none() || self.off + room > abi::CHUNK_SIZE) && !self.next_chunk(p, room)
        {
            p.drop_event();
            return false;
        }
        let Some(chunk) = self.chunk else {
            return false;
        };
        let slot = p.slot(slot);
        let time = if timed {
            // The flag must be visible before the clock is read (see
            // `abi::ThreadSlot::busy`); `sys::now` is a compiler barrier.
            if p.fenceless {
                slot.busy.store(1, Ordering::Relaxed);
                // A release's time only has to come before the real release,
                // which it does without waiting for earlier instructions. An
                // allocation's time has to come after the real allocation
                // only when the block may have been released by another
                // thread: while no second thread has registered, no event
                // of another thread can come before it, and its order in
                // this thread is kept by the collector.
                if kind == abi::KIND_FREE || !p.multi_threaded() {
                    sys::now_unordered()
                } else {
                    sys::now()
                }
            } else {
                slot.busy.store(1, Ordering::SeqCst);
                sys::now()
            }
        } else {
            0
        };
        let hdr = abi::RecordHeader {
            time,
            kind,
            func,
            len: len as u16,
            stack,
        };
        // SAFETY: `off + room <= CHUNK_SIZE` was ensured above; this thread
        // owns the chunk; unaligned-safe writes of plain data. Bytes past
        // `len` are not published (`committed` ends at `off + len`).
        unsafe {
            let at = self.data.add(self.off);
            prefetch_for_write(at.wrapping_add(PREFETCH_AHEAD));
            core::ptr::write_unaligned(at.cast::<abi::RecordHeader>(), hdr);
            body(at.add(abi::RECORD_HEADER));
        }
        self.off += len;
        p.chunk(chunk)
            .committed
            .store(self.off as u32, Ordering::Release);
        if timed {
            slot.last_time.store(time, Ordering::Release);
            slot.busy.store(0, Ordering::Release);
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
        match p.claim_chunk(self.tid) {
            Some(c) => {
                self.chunk = Some(c);
                self.data = p.chunk_data(c);
                self.off = 0;
                true
            }
            None => false,
        }
    }

    fn finish(&mut self, p: &Process) {
        if self.epoch != p.epoch {
            return;
        }
        self.write(p, abi::KIND_THREAD_EXIT, 0, 0, &[], &[], true);
        if let Some(c) = self.chunk.take() {
            p.chunk(c).state.store(abi::CHUNK_FULL, Ordering::Release);
        }
        if let Some(s) = self.slot.take() {
            p.slot(s).tid.store(0, Ordering::Release);
        }
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
