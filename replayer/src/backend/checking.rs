//! A backend for tests: serves blocks from the C malloc and records every call
//! it was asked to make, with the replay thread and a global sequence number, so
//! a test can compare what was replayed with what the trace recorded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::libc_malloc::{LibcMalloc, Which};
use super::Backend;
use crate::plan::OpKind;

/// One call the checking backend received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// Global order in which calls were made (taken under the log lock).
    pub seq: u64,
    /// Replay thread index (the plan's thread index), `None` outside a replay.
    pub thread: Option<usize>,
    /// Op kind: allocation kinds, `Realloc` or `Free`.
    pub kind: OpKind,
    /// Requested size (0 for free).
    pub size: u64,
    /// Requested alignment of aligned kinds, otherwise 0.
    pub align: u64,
    /// Block id this call released (free, realloc of a block), if any: the `seq`
    /// of the call that allocated it.
    pub released: Option<u64>,
}

/// Records calls; blocks come from the C malloc.
pub struct Checking {
    inner: LibcMalloc,
    log: Mutex<(Vec<Call>, HashMap<usize, u64>)>,
    jitter: u64,
    counter: AtomicU64,
}

impl Checking {
    /// A checking backend; with `jitter` n > 0, every n-th call yields the CPU
    /// first, to shuffle how threads interleave.
    pub fn new(jitter: u64) -> Checking {
        Checking {
            inner: LibcMalloc::new(Which::Glibc),
            log: Mutex::new((Vec::new(), HashMap::new())),
            jitter,
            counter: AtomicU64::new(0),
        }
    }

    /// The calls made so far, in `seq` order.
    pub fn calls(&self) -> Vec<Call> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    fn maybe_yield(&self) {
        if self.jitter > 0 && self.counter.fetch_add(1, Ordering::Relaxed) % self.jitter == 0 {
            std::thread::yield_now();
        }
    }

    /// Logs a call: `released` is the block given back, `made` the block returned.
    fn record(&self, kind: OpKind, size: u64, align: u64, released: *mut u8, made: *mut u8) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let (calls, blocks) = &mut *log;
        let seq = calls.len() as u64;
        let released = if released.is_null() {
            None
        } else {
            blocks.remove(&(released as usize))
        };
        if !made.is_null() {
            blocks.insert(made as usize, seq);
        }
        calls.push(Call {
            seq,
            thread: crate::driver::replay_thread_index(),
            kind,
            size,
            align,
            released,
        });
    }
}

impl Backend for Checking {
    fn alloc(&self, kind: OpKind, size: usize, align: usize) -> *mut u8 {
        self.maybe_yield();
        let p = self.inner.alloc(kind, size, align);
        let a = match kind {
            OpKind::PosixMemalign | OpKind::AlignedAlloc | OpKind::Memalign => align as u64,
            _ => 0,
        };
        self.record(kind, size as u64, a, core::ptr::null_mut(), p);
        p
    }

    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        self.maybe_yield();
        // Log under the lock before the block can be reused by another thread.
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: forwarded caller's promise.
        let q = unsafe { self.inner.realloc(p, size) };
        let (calls, blocks) = &mut *log;
        let seq = calls.len() as u64;
        let released = if p.is_null() {
            None
        } else {
            blocks.remove(&(p as usize))
        };
        if !q.is_null() {
            blocks.insert(q as usize, seq);
        }
        calls.push(Call {
            seq,
            thread: crate::driver::replay_thread_index(),
            kind: OpKind::Realloc,
            size: size as u64,
            align: 0,
            released,
        });
        q
    }

    unsafe fn free(&self, p: *mut u8) {
        self.maybe_yield();
        // Record first: once freed, another thread may get the same address.
        self.record(OpKind::Free, 0, 0, p, core::ptr::null_mut());
        // SAFETY: forwarded caller's promise.
        unsafe { self.inner.free(p) }
    }

    fn footprint(&self) -> Option<u64> {
        self.inner.footprint()
    }

    fn footprint_source(&self) -> &'static str {
        self.inner.footprint_source()
    }
}
