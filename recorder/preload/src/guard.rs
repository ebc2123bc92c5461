//! The reentrancy guard: a thread inside a hook holds a [`Guard`]; allocations
//! it makes meanwhile (from libc, dlsym, the unwinder) pass through untraced.
//!
//! The flag lives with the thread's other recorder state in one
//! const-initialised thread-local without `Drop` (lazily initialised Rust
//! thread-locals register destructors, which run at thread exit and can abort
//! the target). In a shared library each thread-local access is a call to
//! `__tls_get_addr`, so a hook looks it up once and the guard keeps its
//! address.

use core::cell::Cell;

use crate::thread::ThreadState;

/// This thread's recorder state.
pub struct Tls {
    /// The thread is inside a hook.
    in_hook: Cell<bool>,
    /// The thread's recording state (a leaked Box), or null.
    pub state: Cell<*mut ThreadState>,
    /// Thread id of the thread that created this one (0: unknown).
    pub parent: Cell<u32>,
}

thread_local! {
    static TLS: Tls = const {
        Tls {
            in_hook: Cell::new(false),
            state: Cell::new(core::ptr::null_mut()),
            parent: Cell::new(0),
        }
    };
}

/// Proof that this thread is inside a hook; released on drop. Not `Send`.
pub struct Guard(*const Tls);

impl Guard {
    /// Enters a hook; `None` when this thread already is in one.
    #[inline(always)]
    pub fn acquire() -> Option<Guard> {
        TLS.with(|t| {
            if t.in_hook.get() {
                None
            } else {
                t.in_hook.set(true);
                Some(Guard(t as *const Tls))
            }
        })
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
    TLS.with(|t| t.parent.set(tid));
}

impl Drop for Guard {
    #[inline(always)]
    fn drop(&mut self) {
        self.tls().in_hook.set(false);
    }
}
