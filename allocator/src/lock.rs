//! A test-and-test-and-set spin lock that yields the CPU when contended.
//!
//! The allocator cannot use `std::sync::Mutex` in every configuration (it must work
//! before libc's threading is set up, inside fork handlers, and without allocating),
//! and its critical sections are short, so a spin lock is the right tool.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::os::thread::yield_now;

/// A spin lock guarding data stored elsewhere (in an `UnsafeCell` next to it).
#[derive(Debug)]
pub struct SpinLock {
    locked: AtomicBool,
}

/// Releases the lock when dropped.
#[must_use]
pub struct Guard<'a> {
    lock: &'a SpinLock,
}

impl SpinLock {
    /// An unlocked lock.
    pub const fn new() -> SpinLock {
        SpinLock {
            locked: AtomicBool::new(false),
        }
    }

    /// Takes the lock, spinning (then yielding) while someone else holds it.
    #[inline]
    pub fn lock(&self) -> Guard<'_> {
        self.acquire();
        Guard { lock: self }
    }

    /// Takes the lock without a guard; pair with [`SpinLock::release`]. Used by the
    /// fork handlers, which lock in one function and unlock in another.
    #[inline]
    pub fn acquire(&self) {
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.acquire_contended();
        }
    }

    /// The spinning part of [`SpinLock::acquire`], out of line: the library's text
    /// is a few pages, all resident in every process, and the lock is taken in many
    /// places.
    #[cold]
    #[inline(never)]
    fn acquire_contended(&self) {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.locked.load(Ordering::Relaxed) {
                spins += 1;
                if spins < 64 {
                    core::hint::spin_loop();
                } else {
                    yield_now();
                }
            }
        }
    }

    /// Releases a lock taken with [`SpinLock::acquire`]; in a forked child, also
    /// resets a lock that the (now gone) parent threads held.
    #[inline]
    pub fn release(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Whether the lock is currently held (for assertions).
    #[cfg(test)]
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

impl Default for SpinLock {
    fn default() -> Self {
        SpinLock::new()
    }
}

impl Drop for Guard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.lock.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::vec::Vec;

    #[test]
    fn excludes_other_threads() {
        struct Shared(SpinLock, core::cell::UnsafeCell<u64>);
        // SAFETY: the counter is only touched with the lock held.
        unsafe impl Sync for Shared {}
        let s = Arc::new(Shared(SpinLock::new(), core::cell::UnsafeCell::new(0)));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        let _g = s.0.lock();
                        // SAFETY: we hold the lock.
                        unsafe { *s.1.get() += 1 };
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(!s.0.is_locked());
        // SAFETY: all writers have finished.
        assert_eq!(unsafe { *s.1.get() }, 40_000);
    }
}
