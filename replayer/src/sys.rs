//! The few libc calls of the measurement code (the backends have their own).

/// CPU time and page faults of this process so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// User CPU time, nanoseconds.
    pub user_ns: u64,
    /// System CPU time, nanoseconds.
    pub sys_ns: u64,
    /// Minor page faults.
    pub minor_faults: u64,
}

/// `getrusage(RUSAGE_SELF)`.
pub fn usage() -> Usage {
    // SAFETY: rusage is plain data; zero is a valid value of it.
    let mut ru: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Usage::default();
    }
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    Usage {
        user_ns: ns(ru.ru_utime),
        sys_ns: ns(ru.ru_stime),
        minor_faults: ru.ru_minflt as u64,
    }
}

/// A `getppid` system call that marks the start and end of the measured replay
/// in an `strace` log (the replayer makes no other `getppid` call).
pub fn strace_marker() {
    // SAFETY: getppid has no arguments and no side effects.
    unsafe { libc::syscall(libc::SYS_getppid) };
}
