//! The reentrancy guard: a thread inside a hook holds a [`Guard`]; allocations
//! it makes meanwhile (from libc, dlsym, the unwinder) pass through untraced.
//!
//! The flag is a const-initialised thread-local without `Drop`: lazily
//! initialised Rust thread-locals register destructors, which run at thread
//! exit and can abort the target.

use core::cell::Cell;

thread_local! {
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Proof that this thread is inside a hook; released on drop.
pub struct Guard(());

impl Guard {
    /// Enters a hook; `None` when this thread already is in one.
    #[inline(always)]
    pub fn acquire() -> Option<Guard> {
        IN_HOOK.with(|f| {
            if f.get() {
                None
            } else {
                f.set(true);
                Some(Guard(()))
            }
        })
    }
}

impl Drop for Guard {
    #[inline(always)]
    fn drop(&mut self) {
        IN_HOOK.with(|f| f.set(false));
    }
}
