//! The records' clock. Where the time-stamp counter is invariant and the
//! kernel itself keeps time with it, the preload times records with `rdtsc`
//! (a third of the cost of `clock_gettime` here) and the collector maps the
//! ticks to `CLOCK_MONOTONIC` nanoseconds with [`TimeMap`].
//!
//! The map is piecewise linear and only ever extended: a new piece starts at
//! a tick count above every tick already mapped, where the previous piece
//! ends, so every record is mapped by the same function whenever it is
//! drained, and the map is non-decreasing (counter order, hence the
//! cross-thread order of events, is kept). The slope of each new piece is
//! the rate measured from the first sample to the newest; pieces double in
//! length, so a long recording has a few dozen.

use std::cell::Cell;
use std::time::Duration;

use crate::shm;

/// Whether records may be timed with the time-stamp counter on this machine:
/// x86-64 with an invariant counter (`constant_tsc` and `nonstop_tsc`) that
/// the kernel uses as its clock source (so it found the counters of all CPUs
/// in step).
pub fn tsc_usable() -> bool {
    if !cfg!(target_arch = "x86_64") {
        return false;
    }
    let source =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .unwrap_or_default();
    if source.trim() != "tsc" {
        return false;
    }
    // The processor's invariant-counter bit is where the kernel takes both
    // flags from (x86 CPU setup); asking it costs a few hundred cycles where
    // /proc/cpuinfo takes ~0.5 ms to read here. Without the bit, the
    // kernel may still have set them (some hypervisors): cpuinfo decides.
    if invariant_tsc_bit() {
        return true;
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let Some(flags) = cpuinfo.lines().find(|l| l.starts_with("flags")) else {
        return false;
    };
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    has("constant_tsc") && has("nonstop_tsc")
}

/// CPUID leaf 0x8000_0007, EDX bit 8: the time-stamp counter runs at a
/// constant rate in every power state (what the kernel shows as
/// `constant_tsc` and `nonstop_tsc`).
fn invariant_tsc_bit() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::__cpuid;
        // SAFETY: cpuid exists on every x86-64 processor; leaves above the
        // maximum reported by leaf 0x8000_0000 are not asked. (`__cpuid` is
        // a safe function from Rust 1.87 on, unsafe in the 1.85 we support.)
        #[allow(unused_unsafe)]
        let (max, edx) = unsafe {
            let max = __cpuid(0x8000_0000).eax;
            let edx = if max >= 0x8000_0007 {
                __cpuid(0x8000_0007).edx
            } else {
                0
            };
            (max, edx)
        };
        max >= 0x8000_0007 && edx & (1 << 8) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The time-stamp counter, read after every earlier instruction completed
/// and before any later one starts (the watermark is read before the threads'
/// busy flags, see `ProcTrace::drain`).
pub fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: lfence and rdtsc have no memory effects or preconditions on x86-64.
    unsafe {
        core::arch::x86_64::_mm_lfence();
        let t = core::arch::x86_64::_rdtsc();
        core::arch::x86_64::_mm_lfence();
        t
    }
    #[cfg(not(target_arch = "x86_64"))]
    0
}

/// One piece of the map: from tick `tsc` on, `ns + (t - tsc) * rate`, with
/// `rate` in ns per tick as a 32.32 fixed-point number (an integer multiply
/// per record, monotonic like the exact map).
#[derive(Clone, Copy, Debug)]
pub struct Piece {
    /// First tick of the piece.
    pub tsc: u64,
    ns: u64,
    rate: u64,
}

impl Piece {
    /// Maps tick `t >= self.tsc`.
    #[inline]
    pub fn at(&self, t: u64) -> u64 {
        let d = ((t - self.tsc) as u128 * self.rate as u128) >> 32;
        self.ns.saturating_add(d.min(u64::MAX as u128) as u64)
    }
}

/// Counter ticks to `CLOCK_MONOTONIC` ns.
#[derive(Debug)]
pub struct TimeMap {
    anchor: (u64, u64),
    pieces: Vec<Piece>,
    /// Highest tick mapped so far: the next piece starts above it.
    max_seen: Cell<u64>,
}

/// Shortest first piece (and measuring time for the first rate).
const FIRST_NS: u64 = 2_000_000;

/// A (ticks, ns) pair taken close together: the best of three tries.
fn sample() -> (u64, u64) {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..3 {
        let a = tsc();
        let ns = shm::now();
        let b = tsc();
        let width = b.wrapping_sub(a);
        if width < best.0 {
            best = (width, a + width / 2, ns);
        }
    }
    (best.1, best.2)
}

impl TimeMap {
    /// Takes the first sample; [`TimeMap::calibrate`] must run before mapping.
    pub fn new() -> TimeMap {
        TimeMap {
            anchor: sample(),
            pieces: Vec::new(),
            max_seen: Cell::new(0),
        }
    }

    /// Takes a sample and starts a new piece when the current one is long
    /// enough (the first call waits until 2 ms have passed since
    /// [`TimeMap::new`], to measure a first rate).
    pub fn calibrate(&mut self) {
        let (t, ns) = sample();
        let Some(last) = self.pieces.last().copied() else {
            let elapsed = ns.saturating_sub(self.anchor.1);
            if elapsed < FIRST_NS {
                std::thread::sleep(Duration::from_nanos(FIRST_NS - elapsed));
            }
            let (t, ns) = sample();
            let rate = self.rate(t, ns).unwrap_or(1 << 32);
            self.pieces.push(Piece {
                tsc: self.anchor.0,
                ns: self.anchor.1,
                rate,
            });
            return;
        };
        let since = ns.saturating_sub(self.map_ns(last.tsc));
        let total = ns.saturating_sub(self.anchor.1);
        if since < FIRST_NS.max(total / 2) {
            return;
        }
        let Some(rate) = self.rate(t, ns) else {
            return;
        };
        let start = t.max(self.max_seen.get().saturating_add(1));
        let at = self.map_ns(start);
        self.pieces.push(Piece {
            tsc: start,
            ns: at,
            rate,
        });
    }

    /// ns per tick since the first sample, 32.32 fixed point.
    fn rate(&self, t: u64, ns: u64) -> Option<u64> {
        let dt = t.checked_sub(self.anchor.0).filter(|&d| d > 0)?;
        let r = ((ns.saturating_sub(self.anchor.1) as u128) << 32) / dt as u128;
        (r > 0 && r <= u64::MAX as u128).then_some(r as u64)
    }

    /// Maps ticks to ns (non-decreasing in `t`).
    #[inline]
    pub fn to_ns(&self, t: u64) -> u64 {
        if t > self.max_seen.get() {
            self.max_seen.set(t);
        }
        self.map_ns(t)
    }

    /// The newest piece: it maps every tick from its start on, as
    /// [`TimeMap::to_ns`] does, if the ticks are then passed to
    /// [`TimeMap::seen`] (before the next [`TimeMap::calibrate`]).
    #[inline]
    pub fn newest(&self) -> Option<Piece> {
        self.pieces.last().copied()
    }

    /// Notes that ticks up to `t` were mapped (see [`TimeMap::newest`]).
    #[inline]
    pub fn seen(&self, t: u64) {
        if t > self.max_seen.get() {
            self.max_seen.set(t);
        }
    }

    fn map_ns(&self, t: u64) -> u64 {
        let Some(first) = self.pieces.first() else {
            return self.anchor.1;
        };
        match self.pieces.iter().rev().find(|p| p.tsc <= t) {
            Some(p) => p.at(t),
            None => {
                let d = ((first.tsc - t) as u128 * first.rate as u128) >> 32;
                first.ns.saturating_sub(d.min(u64::MAX as u128) as u64)
            }
        }
    }
}

impl Default for TimeMap {
    fn default() -> Self {
        TimeMap::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_is_monotonic_and_near_the_clock() {
        let mut m = TimeMap::new();
        m.calibrate();
        let mut last = 0;
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(3));
            m.calibrate();
            let (t, ns) = sample();
            let got = m.to_ns(t);
            assert!(got >= last);
            last = got;
            if tsc_usable() {
                // Within 100 µs of CLOCK_MONOTONIC.
                assert!(got.abs_diff(ns) < 100_000, "{got} vs {ns}");
            }
        }
        // Ticks below the newest piece keep their mapping.
        let before: Vec<u64> = (0..50).map(|k| m.to_ns(m.anchor.0 + k * 1000)).collect();
        std::thread::sleep(Duration::from_millis(20));
        m.calibrate();
        let after: Vec<u64> = (0..50).map(|k| m.to_ns(m.anchor.0 + k * 1000)).collect();
        assert_eq!(before, after);
        assert!(before.windows(2).all(|w| w[0] <= w[1]));
    }
}
