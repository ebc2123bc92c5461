//! What hooks call to record an event: enter the guard, find the process and
//! thread state, capture the stack, write one record. Every function here is
//! a no-op when recording is off or the thread is already inside a hook.

use alloctrace_abi as abi;

use crate::guard::Guard;
use crate::process;
use crate::thread::{Clock, ThreadState};
use crate::unwind;

/// Allocation function numbers (the trace format's `AllocFn`).
pub mod alloc_fn {
    pub const MALLOC: u8 = 0;
    pub const CALLOC: u8 = 1;
    pub const REALLOC: u8 = 2;
    pub const REALLOCARRAY: u8 = 3;
    pub const POSIX_MEMALIGN: u8 = 4;
    pub const ALIGNED_ALLOC: u8 = 5;
    pub const MEMALIGN: u8 = 6;
    pub const VALLOC: u8 = 7;
    pub const PVALLOC: u8 = 8;
    pub const NEW: u8 = 9;
    pub const NEW_ARRAY: u8 = 10;
    pub const NEW_NOTHROW: u8 = 11;
    pub const NEW_ARRAY_NOTHROW: u8 = 12;
    pub const NEW_ALIGNED: u8 = 13;
    pub const NEW_ARRAY_ALIGNED: u8 = 14;
    pub const NEW_ALIGNED_NOTHROW: u8 = 15;
    pub const NEW_ARRAY_ALIGNED_NOTHROW: u8 = 16;
}

/// Release function numbers (the trace format's `FreeFn`).
pub mod free_fn {
    pub const FREE: u8 = 0;
    pub const DELETE: u8 = 1;
    pub const DELETE_ARRAY: u8 = 2;
    pub const DELETE_SIZED: u8 = 3;
    pub const DELETE_ARRAY_SIZED: u8 = 4;
    pub const DELETE_ALIGNED: u8 = 5;
    pub const DELETE_ARRAY_ALIGNED: u8 = 6;
    pub const DELETE_SIZED_ALIGNED: u8 = 7;
    pub const DELETE_ARRAY_SIZED_ALIGNED: u8 = 8;
    pub const DELETE_NOTHROW: u8 = 9;
    pub const DELETE_ARRAY_NOTHROW: u8 = 10;
    pub const DELETE_ALIGNED_NOTHROW: u8 = 11;
    pub const DELETE_ARRAY_ALIGNED_NOTHROW: u8 = 12;
}

#[inline(always)]
fn event<const N: usize>(kind: u8, func: u8, words: &[u64; N], trim: bool, with_stack: bool) {
    let Some(g) = Guard::acquire() else { return };
    let Some(ts) = ThreadState::current(&g) else {
        return;
    };
    let stack = if with_stack { unwind::capture(ts) } else { 0 };
    ts.write_words(kind, func, stack, words, trim, Clock::Late);
}

/// An allocation returned `addr` (0: failed).
#[inline(always)]
pub fn alloc(func: u8, addr: *mut libc::c_void, size: usize, align: usize) {
    // Without an alignment (a constant 0 in most hooks), two words are
    // stored instead of three (the record is the same), and both are
    // published: a zero size or address is rare, and the collector reads
    // it the same either way.
    if align == 0 {
        event(
            abi::KIND_ALLOC,
            func,
            &[addr as u64, size as u64],
            false,
            true,
        );
    } else {
        event(
            abi::KIND_ALLOC,
            func,
            &[addr as u64, size as u64, align as u64],
            true,
            true,
        );
    }
}

/// A block is about to be released (called before the real release).
#[inline(always)]
pub fn free(func: u8, addr: *mut libc::c_void, size: usize, align: usize) {
    if addr.is_null() {
        return;
    }
    // Without a size and an alignment (constants 0 in most hooks), one
    // word is stored instead of three (the record is the same).
    if size == 0 && align == 0 {
        event(abi::KIND_FREE, func, &[addr as u64], false, true);
    } else {
        event(
            abi::KIND_FREE,
            func,
            &[addr as u64, size as u64, align as u64],
            true,
            true,
        );
    }
}

/// realloc/reallocarray of `old` to `size` bytes: runs the real one (`real`)
/// and records it, under one guard. A call with a block is recorded first,
/// with the stack and untimed (a begin record), so the evidence survives
/// the real realloc aborting; a realloc that never returns is placed after
/// the thread's previous event. The end record is timed after `real`
/// returned (or, while the process has one thread, dated by the collector
/// no later than that: `abi::FLAG_LATE_TIMES`) and carries the stack only
/// when the call acted as malloc.
///
/// The guard is held across `real`: anything it allocates through the hooks
/// passes through untraced, as part of the realloc.
#[inline(always)]
pub fn realloc(
    func: u8,
    old: *mut libc::c_void,
    size: usize,
    real: impl FnOnce() -> *mut libc::c_void,
) -> *mut libc::c_void {
    let Some(g) = Guard::acquire() else {
        return real();
    };
    let Some(ts) = ThreadState::current(&g) else {
        return real();
    };
    let stack = unwind::capture(ts);
    if !old.is_null() {
        let words = [old as u64, size as u64];
        ts.write_words(
            abi::KIND_REALLOC_BEGIN,
            func,
            stack,
            &words,
            true,
            Clock::None,
        );
    }
    let new = real();
    let words = [old as u64, new as u64, size as u64];
    let stack = if old.is_null() { stack } else { 0 };
    ts.write_words(abi::KIND_REALLOC, func, stack, &words, true, Clock::Late);
    new
}

/// `mmap` succeeded.
pub fn mmap(addr: *mut libc::c_void, len: usize, prot: i32, flags: i32, fd: i32) {
    let pf = prot as u32 as u64 | (flags as u32 as u64) << 32;
    event(
        abi::KIND_MMAP,
        0,
        &[addr as u64, len as u64, pf, fd as i64 as u64],
        true,
        true,
    );
}

/// `munmap` succeeded.
pub fn munmap(addr: *mut libc::c_void, len: usize) {
    event(abi::KIND_MUNMAP, 0, &[addr as u64, len as u64], true, true);
}

/// `mremap` succeeded.
pub fn mremap(old: *mut libc::c_void, old_len: usize, new: *mut libc::c_void, new_len: usize) {
    event(
        abi::KIND_MREMAP,
        0,
        &[old as u64, old_len as u64, new as u64, new_len as u64],
        true,
        true,
    );
}

/// The break moved.
pub fn brk(old: u64, new: u64) {
    if old != new {
        event(abi::KIND_BRK, 0, &[old, new], true, true);
    }
}

/// This process forked `child` (recorded in the parent).
pub fn fork(child: i32) {
    event(abi::KIND_FORK, 0, &[child as u64], true, false);
}

/// The image is about to exec `path` (or an exec just failed: `failed`).
pub fn exec(path: *const libc::c_char, failed: bool) {
    let Some(g) = Guard::acquire() else { return };
    let Some(p) = process::get(&g) else { return };
    if failed {
        p.set_execing(false);
        return;
    }
    let bytes = if path.is_null() {
        &[][..]
    } else {
        // SAFETY: exec's path argument is a NUL-terminated string.
        unsafe { core::ffi::CStr::from_ptr(path) }.to_bytes()
    };
    let bytes = &bytes[..bytes.len().min(4000)];
    if let Some(ts) = ThreadState::get(&g, p) {
        ts.write(abi::KIND_EXEC, 0, 0, &[bytes.len() as u64], bytes, true);
    }
    p.set_execing(true);
}

/// Makes sure recording has started (called from the library constructor).
pub fn start() {
    let Some(g) = Guard::acquire() else { return };
    if let Some(p) = process::get(&g) {
        let _ = ThreadState::get(&g, p);
    }
}
