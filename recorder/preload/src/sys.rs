//! Small system helpers that take no lock a target might hold: clocks, ids,
//! and a one-shot message to stderr.

use core::sync::atomic::{AtomicBool, Ordering};

static TSC: AtomicBool = AtomicBool::new(false);

/// Makes [`now`] read the time-stamp counter (`on`, x86-64 only) or
/// `CLOCK_MONOTONIC`; returns whether the counter is used.
pub fn use_tsc(on: bool) -> bool {
    let on = on && cfg!(target_arch = "x86_64");
    TSC.store(on, Ordering::Relaxed);
    on
}

/// The records' clock: the time-stamp counter when [`use_tsc`] enabled it
/// (about 12 ns here against 28 ns for the vDSO `clock_gettime`), else
/// `CLOCK_MONOTONIC` in nanoseconds (vDSO, no lock).
///
/// The counter is read after every earlier instruction has completed
/// (`lfence`), so an allocation's time is taken after the real allocation
/// returned, as with `clock_gettime`; a release's time is taken before the
/// real release because `rdtsc` completes before later stores become visible.
#[inline(always)]
pub fn now() -> u64 {
    read_clock::<true>()
}

/// [`now`] without waiting for earlier instructions to complete (no
/// `lfence`, 9 ns a read here against 15.5): for any event while the
/// process has had a single thread (see `ThreadState::write_with`; with
/// more, a release's time must also come after the load that handed this
/// thread the block). `rdtsc` still executes before any later store
/// becomes visible (it completes before it retires, and stores become
/// visible after they retire, in order), and after an interrupt that comes
/// before it in program order (the collector's `membarrier`).
#[inline(always)]
pub fn now_unordered() -> u64 {
    read_clock::<false>()
}

/// Whether the records' clock is the time-stamp counter ([`use_tsc`]).
pub fn tsc_on() -> bool {
    TSC.load(Ordering::Relaxed)
}

/// [`now`] when [`tsc_on`]: the counter after every earlier instruction
/// completed.
#[inline(always)]
pub fn tsc_ordered() -> u64 {
    read_tsc::<true>()
}

/// [`now_unordered`] when [`tsc_on`]: the counter, without a fence.
#[inline(always)]
pub fn tsc_unordered() -> u64 {
    read_tsc::<false>()
}

/// The time-stamp counter, with or without an `lfence` before it (0 on
/// other architectures, where [`use_tsc`] never turns it on).
#[inline(always)]
fn read_tsc<const FENCE: bool>() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        let (lo, hi): (u32, u32);
        // SAFETY: lfence and rdtsc have no preconditions on x86-64. The asm
        // is not `nomem`, so the compiler keeps earlier stores (the busy
        // flag) before it.
        unsafe {
            if FENCE {
                core::arch::asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi,
                    options(nostack, preserves_flags));
            } else {
                core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi,
                    options(nostack, preserves_flags));
            }
        }
        (hi as u64) << 32 | lo as u64
    }
    #[cfg(not(target_arch = "x86_64"))]
    0
}

/// The records' clock, with or without an `lfence` before the counter read.
#[inline(always)]
fn read_clock<const FENCE: bool>() -> u64 {
    if TSC.load(Ordering::Relaxed) {
        return read_tsc::<FENCE>();
    }
    clock(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_MONOTONIC` in nanoseconds, whatever the records' clock.
pub fn monotonic() -> u64 {
    clock(libc::CLOCK_MONOTONIC)
}

/// Reads clock `id` in nanoseconds.
pub fn clock(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// Kernel thread id.
pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// Process id.
pub fn getpid() -> u32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() as u32 }
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// Writes `alloctrace: <msg>` to stderr, once per process.
pub fn warn_once(msg: &str) {
    if WARNED.swap(true, Ordering::Relaxed) {
        return;
    }
    let mut buf = [0u8; 256];
    let mut n = 0;
    for part in [
        b"alloctrace: ".as_slice(),
        msg.as_bytes(),
        b"; the program runs untraced\n",
    ] {
        let take = part.len().min(buf.len() - n);
        buf[n..n + take].copy_from_slice(&part[..take]);
        n += take;
    }
    // SAFETY: writes `n` initialised bytes of `buf` to fd 2.
    unsafe { libc::write(2, buf.as_ptr().cast(), n) };
}

/// Sleeps about `us` microseconds.
pub fn sleep_us(us: u64) {
    let ts = libc::timespec {
        tv_sec: (us / 1_000_000) as libc::time_t,
        tv_nsec: ((us % 1_000_000) * 1000) as libc::c_long,
    };
    // SAFETY: valid timespec; a null remainder pointer is allowed.
    unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) };
}

/// Reads the value of environment variable `name` (NUL-terminated) without
/// allocating; `None` when unset.
pub fn getenv(name: &[u8]) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated; getenv takes no lock and returns a
    // pointer into the environment, valid until the variable changes.
    let p = unsafe { libc::getenv(name.as_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: getenv returned a NUL-terminated string.
    Some(unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes())
}

/// Reads a whole small file into `buf` by path (NUL-terminated), returning the length.
pub fn read_file(path: &[u8], buf: &mut [u8]) -> Option<usize> {
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut n = 0;
    while n < buf.len() {
        // SAFETY: writes at most `buf.len() - n` bytes into `buf[n..]`.
        let r = unsafe { libc::read(fd, buf[n..].as_mut_ptr().cast(), buf.len() - n) };
        if r <= 0 {
            break;
        }
        n += r as usize;
    }
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    Some(n)
}
