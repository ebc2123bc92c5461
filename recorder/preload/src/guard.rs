//! The reentrancy guard: a thread inside a hook holds a [`Guard`]; allocations
//! it makes meanwhile (from libc, dlsym, the unwinder) pass through untraced.
//!
//! The flag lives with the thread's other recorder state in one zeroed
//! thread-local block without `Drop` (lazily initialised Rust thread-locals
//! register destructors, which run at thread exit and can abort the target).
//! The block uses the initial-exec TLS model: its address is the thread
//! pointer plus an offset the loader fixes, two instructions instead of a call
//! to `__tls_get_addr` per hook (the library is loaded at startup with
//! `LD_PRELOAD`, so its block is in the static TLS area). A hook looks it up
//! once and the guard keeps its address.

use core::cell::Cell;

use crate::thread::ThreadState;

/// This thread's recorder state (all zero bits: a new thread's state).
#[repr(C)]
pub struct Tls {
    /// The thread is inside a hook.
    in_hook: Cell<bool>,
    /// The thread's recording state (a leaked Box), or null.
    pub state: Cell<*mut ThreadState>,
    /// Thread id of the thread that created this one (0: unknown).
    pub parent: Cell<u32>,
    /// The top of this thread's stack, when noted at its start (0: unknown).
    stack_top: Cell<u64>,
}

// The block: `Tls`-sized, zero-initialised (`.tbss`).
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .tbss.alloctrace_tls,\"awT\",@nobits",
    ".p2align 3",
    // Global for the library's other object files, hidden from others.
    ".globl alloctrace_tls",
    ".hidden alloctrace_tls",
    ".type alloctrace_tls,@object",
    ".size alloctrace_tls, {size}",
    "alloctrace_tls:",
    ".zero {size}",
    ".popsection",
    size = const core::mem::size_of::<Tls>(),
);

const _: () = assert!(core::mem::align_of::<Tls>() <= 8);

/// This thread's block.
#[inline(always)]
fn tls() -> &'static Tls {
    let p: usize;
    // SAFETY: reads the block's offset from the GOT (initial-exec model) and
    // the thread pointer (`fs:0` holds its own address on x86-64 Linux).
    unsafe {
        core::arch::asm!(
            "mov {p}, qword ptr [rip + alloctrace_tls@GOTTPOFF]",
            "add {p}, qword ptr fs:0",
            p = out(reg) p,
            options(pure, readonly, nostack, preserves_flags),
        );
    }
    // SAFETY: the block is this thread's, `Tls`-sized and aligned, and all
    // zero bits are a valid `Tls`; it lives as long as the thread, which
    // outlives every use (hooks, the exit destructor), and `Tls` is only
    // accessed through `Cell`s on this thread.
    unsafe { &*(p as *const Tls) }
}

/// Proof that this thread is inside a hook; released on drop. Not `Send`.
pub struct Guard(*const Tls);

impl Guard {
    /// Enters a hook; `None` when this thread already is in one.
    #[inline(always)]
    pub fn acquire() -> Option<Guard> {
        let t = tls();
        if t.in_hook.get() {
            None
        } else {
            t.in_hook.set(true);
            Some(Guard(t as *const Tls))
        }
    }

    /// This thread's state.
    #[inline(always)]
    pub fn tls(&self) -> &Tls {
        // SAFETY: the thread-local outlives the guard (made and dropped on
        // this thread, which is running) and has no destructor.
        unsafe { &*self.0 }
    }
}

/// Records which thread created this one (for its `ThreadStart` event).
pub fn set_parent(tid: u32) {
    tls().parent.set(tid);
}

/// Records the top of this thread's stack (highest address + 1).
pub fn set_stack_top(top: u64) {
    tls().stack_top.set(top);
}

/// The top of this thread's stack noted by [`set_stack_top`], or 0.
pub fn stack_top() -> u64 {
    tls().stack_top.get()
}

impl Drop for Guard {
    #[inline(always)]
    fn drop(&mut self) {
        self.tls().in_hook.set(false);
    }
}
