//! Threads and process plumbing: a pthread key for thread-exit hooks, fork handlers,
//! whether the process is single-threaded, yielding, a coarse clock, `errno` and
//! reading the environment.

use core::ffi::{c_void, CStr};

/// A destructor run at thread exit for threads that set a non-null key value.
pub type KeyDestructor = unsafe extern "C" fn(*mut c_void);

/// A fork handler (`pthread_atfork` prepare, parent or child).
pub type ForkHandler = unsafe extern "C" fn();

/// Creates a pthread key whose destructor runs at exit of every thread that stored a
/// non-null value under it.
pub fn key_create(dtor: KeyDestructor) -> Option<libc::pthread_key_t> {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is a valid out-pointer; the destructor has the C ABI pthread wants.
    let rc = unsafe { libc::pthread_key_create(&mut key, Some(dtor)) };
    (rc == 0).then_some(key)
}

/// Stores a non-null marker under `key` for the calling thread so that the key's
/// destructor runs when the thread exits.
pub fn key_arm(key: libc::pthread_key_t) -> bool {
    // SAFETY: the key came from `key_create`; the value is a marker, never dereferenced.
    unsafe { libc::pthread_setspecific(key, core::ptr::dangling::<c_void>()) == 0 }
}

/// Registers fork handlers with `pthread_atfork`.
pub fn atfork(prepare: ForkHandler, parent: ForkHandler, child: ForkHandler) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's `pthread_atfork` is a static stub (libc_nonshared.a) calling
        // `__register_atfork` with the caller's `__dso_handle`, through the PLT. The
        // same call made here saves the preload library its PLT, the PLT's GOT and
        // four dynamic entries (part of its one page of writable data).
        // SAFETY: the handlers are plain C-ABI functions valid for the program's
        // lifetime; `__dso_handle` is the linked object's own (hidden) handle, whose
        // address libc keeps to drop the handlers if that object is unloaded.
        unsafe {
            __register_atfork(
                Some(prepare),
                Some(parent),
                Some(child),
                core::ptr::addr_of!(__dso_handle).cast(),
            ) == 0
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    // SAFETY: the handlers are plain C-ABI functions valid for the program's lifetime.
    unsafe {
        libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) == 0
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" {
    /// What glibc's `pthread_atfork` stub calls (exported since glibc 2.3.2).
    fn __register_atfork(
        prepare: Option<ForkHandler>,
        parent: Option<ForkHandler>,
        child: Option<ForkHandler>,
        dso_handle: *const c_void,
    ) -> core::ffi::c_int;
    /// The handle of the object being linked: defined (hidden) by the C runtime's
    /// start files, or by the preload library itself, which is linked without them.
    static __dso_handle: u8;
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" {
    /// glibc's flag (since 2.32): non-zero until the process creates its first
    /// thread (`pthread_create` clears it before the new thread runs).
    static __libc_single_threaded: u8;
}

/// Whether the process has never had a second thread, as far as the C library
/// says: glibc's `__libc_single_threaded`, one load and no libc code run (calling
/// into libc makes its pages resident: `pthread_atfork` alone cost a small program
/// 130 KiB of libc text). False where the C library does not tell.
#[inline(always)]
pub fn single_threaded() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: the flag is a byte of libc's data, valid for the process's life;
        // libc writes it (once, 1 to 0) while other threads may read it, so it is
        // read as an atomic byte.
        let flag = unsafe {
            &*core::ptr::addr_of!(__libc_single_threaded).cast::<core::sync::atomic::AtomicU8>()
        };
        flag.load(core::sync::atomic::Ordering::Acquire) != 0
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Gives up the CPU (used when a spin lock stays contended).
pub fn yield_now() {
    // SAFETY: sched_yield has no preconditions.
    unsafe {
        libc::sched_yield();
    }
}

/// Ends the process at once (`abort(3)`): what a panic in the preload library does.
pub fn abort() -> ! {
    // SAFETY: abort has no preconditions and does not return.
    unsafe { libc::abort() }
}

/// Milliseconds of a coarse monotonic clock (cheap: served by the vDSO).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts);
    }
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

/// Sets the calling thread's `errno`.
pub fn set_errno(value: i32) {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe {
        *libc::__errno_location() = value;
    }
}

/// `ENOMEM`, for callers that report allocation failure through `errno`.
pub const ENOMEM: i32 = libc::ENOMEM;
/// `EINVAL`, for bad alignment arguments.
pub const EINVAL: i32 = libc::EINVAL;

/// Whether environment variable `name` is set to exactly `value` (which holds no
/// NUL). Reads `environ` without allocating, and without `strlen`: the bytes are
/// compared up to the first difference (the value's NUL differs from any byte of
/// `value`), so the preload library imports one function fewer (its symbol, name,
/// version and relocation were 60 bytes of its first page).
pub fn env_is(name: &CStr, value: &[u8]) -> bool {
    // SAFETY: `name` is NUL-terminated; getenv returns null or a pointer into the
    // environment block, which lives as long as nobody calls setenv on the name.
    let p = unsafe { libc::getenv(name.as_ptr()) }.cast::<u8>();
    if p.is_null() {
        return false;
    }
    for (i, &b) in value.iter().enumerate() {
        // SAFETY: the bytes before index `i` matched `value`'s, none of them NUL, so
        // the string's NUL is at `i` or later.
        if unsafe { *p.add(i) } != b {
            return false;
        }
    }
    // SAFETY: as above, with `i = value.len()`.
    unsafe { *p.add(value.len()) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_moves_forward() {
        let a = now_ms();
        let b = now_ms();
        assert!(b >= a);
    }

    #[test]
    fn errno_round_trip() {
        set_errno(ENOMEM);
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(ENOMEM));
    }

    #[test]
    fn the_test_harness_has_threads() {
        let t = std::thread::spawn(|| ());
        t.join().unwrap();
        assert!(!single_threaded());
    }

    #[test]
    fn env_is_compares_whole_values() {
        // The test binary's own environment: set before any thread reads it.
        std::env::set_var("ALLOCTRACE_ENV_IS_TEST", "reserved");
        assert!(env_is(c"ALLOCTRACE_ENV_IS_TEST", b"reserved"));
        assert!(!env_is(c"ALLOCTRACE_ENV_IS_TEST", b"reserve"));
        assert!(!env_is(c"ALLOCTRACE_ENV_IS_TEST", b"reserved2"));
        assert!(!env_is(c"ALLOCTRACE_ENV_IS_TEST", b"brk"));
        assert!(!env_is(c"ALLOCTRACE_SURELY_UNSET_VARIABLE", b""));
    }
}
