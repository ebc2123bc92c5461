//! Signals that would stop `record` before the program it records.
//!
//! Ctrl-C at a terminal sends SIGINT to the whole foreground process group:
//! the program, which decides what to do with it, and `record`, which must
//! not die before the program does, or the trace is lost. So while a session
//! runs, `record` catches SIGINT, SIGQUIT, SIGTERM and SIGHUP (those it does
//! not ignore already: a program started under `nohup` keeps ignoring
//! SIGHUP) and keeps collecting until the program ends. A caught signal is
//! passed on to the program unless the program got it already: not when the
//! kernel sent it (a terminal's Ctrl-C, Ctrl-\ or hang-up goes to the whole
//! group), nor when a process of our own process group sent it. So
//! `kill -TERM <record's pid>` and `timeout` stop the program, which is then
//! recorded to its end. (A signal sent from outside to the whole process
//! group reaches the program twice.)
//!
//! Once the program has ended, `record` may still wait for descendants that
//! outlive it (a daemon, a background job that ignores SIGINT): a caught
//! signal then stops that wait ([`Guard::take`]), and their traces end
//! there, instead of `record` answering only to SIGKILL.
//!
//! The handler only stores what arrived; [`Guard::forward`] acts on it from
//! the session loop. Handlers are reset to the default by `exec`, so the
//! program starts with the dispositions `record` was started with. Between
//! `fork` and `exec`, though, the child would still run the handler, and
//! swallow a Ctrl-C meant for it: so the caught signals are blocked around
//! the spawn ([`Guard::block`]), and the child resets them to the default
//! and restores the mask before `exec` ([`Spawn::in_child`]); one that came
//! meanwhile then acts on the child as on the program.

use std::sync::atomic::{AtomicU64, Ordering};

/// The signals caught.
const CAUGHT: [libc::c_int; 4] = [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP];

/// Per caught signal (same order as [`CAUGHT`]): 0 when none is pending, else
/// `1 << 63 | si_code << 32 | sender pid` of the last one that arrived.
static PENDING: [AtomicU64; 4] = [
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
];

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let Some(i) = CAUGHT.iter().position(|&s| s == sig) else {
        return;
    };
    let (code, pid) = if info.is_null() {
        (libc::SI_KERNEL, 0)
    } else {
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler;
        // si_pid is meaningful for the SI_USER/SI_QUEUE/SI_TKILL codes it is
        // used for, and a plain read otherwise.
        unsafe { ((*info).si_code, (*info).si_pid()) }
    };
    let v = 1 << 63 | u64::from(code as u32) << 32 | u64::from(pid as u32);
    PENDING[i].store(v, Ordering::Relaxed);
}

/// Catches the signals of [`CAUGHT`] while it lives; restores the previous
/// dispositions when dropped.
pub(crate) struct Guard {
    old: Vec<(libc::c_int, libc::sigaction)>,
}

impl Guard {
    /// Installs the handler for each signal of [`CAUGHT`] that is not ignored.
    pub(crate) fn install() -> Guard {
        let mut old = Vec::new();
        for (i, &sig) in CAUGHT.iter().enumerate() {
            PENDING[i].store(0, Ordering::Relaxed);
            // SAFETY: zeroed sigaction structs are valid; sigaction only
            // reads `new` and writes `prev`.
            unsafe {
                let mut prev: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut prev) != 0
                    || prev.sa_sigaction == libc::SIG_IGN
                {
                    continue;
                }
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut new.sa_mask);
                if libc::sigaction(sig, &new, &mut prev) == 0 {
                    old.push((sig, prev));
                }
            }
        }
        Guard { old }
    }

    /// Blocks the caught signals until [`Spawn::restore`]; returns what the
    /// child must undo before `exec`.
    pub(crate) fn block(&self) -> Spawn {
        let mut sigs = [0; 4];
        for (to, (sig, _)) in sigs.iter_mut().zip(&self.old) {
            *to = *sig;
        }
        // SAFETY: sigset_t is plain data, filled by sigemptyset/sigaddset;
        // pthread_sigmask writes the previous mask to `mask`.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut mask: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &sig in sigs.iter().filter(|&&s| s != 0) {
                libc::sigaddset(&mut set, sig);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut mask);
            Spawn { sigs, mask }
        }
    }

    /// Passes the signals that arrived since the last call on to `pid`,
    /// except those the program got itself (see the module's notes).
    pub(crate) fn forward(&self, pid: u32) {
        for (i, &sig) in CAUGHT.iter().enumerate() {
            let v = PENDING[i].swap(0, Ordering::Relaxed);
            if v == 0 {
                continue;
            }
            let code = (v >> 32) as u32 as i32;
            let sender = v as u32 as libc::pid_t;
            if code > 0 {
                continue; // sent by the kernel: the terminal's whole group got it
            }
            // SAFETY: getpgid and kill take plain integers.
            unsafe {
                if sender > 0 && libc::getpgid(sender) == libc::getpgrp() {
                    continue; // sent by our own group, which the program is in
                }
                libc::kill(pid as libc::pid_t, sig);
            }
        }
    }
}

impl Guard {
    /// Forgets the signals that arrived so far (those of the program's
    /// lifetime, once it has ended).
    pub(crate) fn clear(&self) {
        for p in &PENDING {
            p.store(0, Ordering::Relaxed);
        }
    }

    /// Whether any caught signal arrived since the last call (or
    /// [`Guard::clear`]); forgets them.
    pub(crate) fn take(&self) -> bool {
        let mut any = false;
        for p in &PENDING {
            any |= p.swap(0, Ordering::Relaxed) != 0;
        }
        any
    }
}

/// The caught signals blocked around a spawn, and the mask before.
#[derive(Clone, Copy)]
pub(crate) struct Spawn {
    sigs: [libc::c_int; 4],
    mask: libc::sigset_t,
}

impl Spawn {
    /// In the child, between `fork` and `exec` (async-signal-safe calls
    /// only): the caught signals back to their default, and the mask
    /// `record` had.
    pub(crate) fn in_child(&self) {
        for &sig in self.sigs.iter().filter(|&&s| s != 0) {
            // SAFETY: signal(2) with a valid signal and SIG_DFL.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
        // SAFETY: a mask read by pthread_sigmask.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.mask, std::ptr::null_mut()) };
    }

    /// In `record`, once the child is spawned (or not): the mask before.
    pub(crate) fn restore(&self) {
        // SAFETY: a mask read by pthread_sigmask.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.mask, std::ptr::null_mut()) };
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for (sig, prev) in &self.old {
            // SAFETY: restores a disposition read by sigaction above.
            unsafe { libc::sigaction(*sig, prev, std::ptr::null_mut()) };
        }
    }
}
