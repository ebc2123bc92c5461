//! Replays a [`Plan`] against a [`Backend`]: one thread per recorded thread, each
//! running its ops in program order. A free or realloc of a block allocated on
//! another thread waits (spin, then yield) until that block's slot is filled.
//!
//! The calling thread is the conductor: it starts the replay threads together,
//! samples memory while they run, and frees whatever the trace leaked once they
//! are done (outside the measured span).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::{touch, Backend, OsCalls, Touch};
use crate::measure::{self, Hist, Sample};
use crate::plan::{Op, OpKind, Plan, NO_SLOT};
use crate::sys;

/// How to replay.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplayOptions {
    /// How blocks are written to.
    pub touch: Touch,
    /// Time every allocator call (two clock reads per op) for the latency figures.
    pub op_timing: bool,
    /// Interval between memory samples.
    pub sample_interval: Duration,
    /// Follow the recorded timing: an op does not start before its recorded time
    /// divided by `pace` (so 1.0 is recorded speed, 2.0 twice as fast). 0 (the
    /// default) replays as fast as possible; threads then interleave differently
    /// from the recording, which changes how many blocks are live at once.
    #[serde(default)]
    pub pace: f64,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            touch: Touch::Page,
            op_timing: true,
            sample_interval: Duration::from_millis(1),
            pace: 0.0,
        }
    }
}

/// What one replay of a plan measured. Field names are part of the JSON output.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunResult {
    /// Ops replayed (allocations, reallocs, frees).
    pub ops: u64,
    /// Replay threads.
    pub threads: usize,
    /// Wall time from the common start to the last thread's end.
    pub wall_ns: u64,
    /// User plus system CPU time of the process during the replay.
    pub cpu_ns: u64,
    /// User CPU time.
    pub user_ns: u64,
    /// System CPU time.
    pub sys_ns: u64,
    /// Minor page faults during the replay.
    pub minor_faults: u64,
    /// Mean time of one allocator call (0 without op timing).
    pub op_mean_ns: f64,
    /// 99th percentile time of one allocator call (0 without op timing).
    pub op_p99_ns: u64,
    /// Peak resident set size of the replaying process during the replay.
    pub peak_rss_bytes: u64,
    /// Resident set size just before the replay (the replayer itself and the plan).
    pub rss_baseline_bytes: u64,
    /// Whether the peak could be reset at the start (else it may include earlier peaks).
    pub peak_rss_reset: bool,
    /// Highest footprint sampled.
    pub footprint_peak_bytes: u64,
    /// Footprint at the end of the replay, before leaked blocks are freed.
    pub footprint_end_bytes: u64,
    /// How the footprint is measured: `allocator-stats`, `mallinfo2` or `rss`.
    pub footprint_source: String,
    /// Peak of live requested bytes in the trace's global order.
    pub trace_live_peak_bytes: u64,
    /// Highest live requested bytes sampled during the replay (threads replayed
    /// as fast as possible can hold more blocks at once than the recording did).
    pub live_peak_bytes: u64,
    /// Footprint over live bytes at the sample with the most live bytes.
    pub fragmentation_at_peak: f64,
    /// Sum of sampled footprints over sum of sampled live bytes.
    pub fragmentation_over_time: f64,
    /// Kernel calls for memory during the replay, when known.
    pub os_calls: Option<OsCalls>,
    /// Where `os_calls` comes from: `allocator-stats` or `strace`.
    pub os_calls_source: Option<String>,
    /// Allocations the replayed allocator failed (their frees are skipped).
    pub failed_allocs: u64,
    /// Memory over time.
    pub samples: Vec<Sample>,
}

thread_local! {
    static REPLAY_THREAD: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The plan thread index the calling thread replays, `None` outside a replay
/// thread (used by the checking backend).
pub fn replay_thread_index() -> Option<usize> {
    REPLAY_THREAD.with(|c| c.get())
}

/// Slot value of a block the allocator failed to give, or that was freed.
const GONE: usize = 1;

/// Where a block of the plan lives during a replay.
struct Slot {
    /// 0: not allocated yet; [`GONE`]; else the block's address (the ready flag).
    ptr: AtomicUsize,
    /// Requested size, written before `ptr` is published.
    size: AtomicU64,
}

/// Shared state of one replay.
struct Shared<'a> {
    slots: Vec<Slot>,
    backend: &'a dyn Backend,
    opts: &'a ReplayOptions,
    start: AtomicBool,
    done: AtomicUsize,
    ops_done: AtomicU64,
    live: Vec<AtomicI64>,
}

/// What one replay thread reports.
struct ThreadOut {
    hist: Hist,
    failed: u64,
    end: Instant,
}

fn wait_ready(slot: &Slot) -> usize {
    let mut spins = 0u32;
    loop {
        let p = slot.ptr.load(Ordering::Acquire);
        if p != 0 {
            return p;
        }
        if spins < 100 {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Waits until `us` microseconds after `t0` (sleeping when far, then yielding).
fn wait_until(t0: Instant, us: f64) {
    let target = t0 + Duration::from_nanos((us * 1000.0) as u64);
    loop {
        let now = Instant::now();
        if now >= target {
            return;
        }
        let left = target - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        } else {
            std::thread::yield_now();
        }
    }
}

/// Address of the block in `slot` for a free/realloc (waiting for another thread's
/// allocation when `waits`), or `None` when it was never obtained.
fn take(slot: &Slot, waits: bool) -> Option<(*mut u8, u64)> {
    let p = if waits {
        wait_ready(slot)
    } else {
        slot.ptr.load(Ordering::Acquire)
    };
    if p <= GONE {
        return None;
    }
    slot.ptr.store(GONE, Ordering::Relaxed);
    Some((p as *mut u8, slot.size.load(Ordering::Relaxed)))
}

fn publish(slot: &Slot, p: *mut u8, size: u64) {
    slot.size.store(size, Ordering::Relaxed);
    let v = if p.is_null() { GONE } else { p as usize };
    slot.ptr.store(v, Ordering::Release);
}

#[inline]
fn timed<T>(on: bool, hist: &mut Hist, f: impl FnOnce() -> T) -> T {
    if !on {
        return f();
    }
    let t0 = Instant::now();
    let r = f();
    hist.add(t0.elapsed().as_nanos() as u64);
    r
}

fn run_thread(index: usize, ops: &[Op], sh: &Shared) -> ThreadOut {
    REPLAY_THREAD.with(|c| c.set(Some(index)));
    let mut out = ThreadOut {
        hist: Hist::default(),
        failed: 0,
        end: Instant::now(),
    };
    while !sh.start.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    let (b, timing, mode) = (sh.backend, sh.opts.op_timing, sh.opts.touch);
    let live = &sh.live[index];
    let mut batch = 0u64;
    let t0 = Instant::now();
    let pace = sh.opts.pace;
    for op in ops {
        if pace > 0.0 {
            wait_until(t0, op.time_us as f64 / pace);
        }
        let slot = &sh.slots[op.slot as usize];
        match op.kind {
            OpKind::Free => {
                let Some((p, size)) = take(slot, op.waits) else {
                    continue;
                };
                // SAFETY: `p` came from this backend and is freed once (slots are
                // taken once, by the plan's construction).
                timed(timing, &mut out.hist, || unsafe { b.free(p) });
                live.fetch_sub(size as i64, Ordering::Relaxed);
            }
            OpKind::Realloc => {
                let (old, old_size) = if op.aux == NO_SLOT {
                    (core::ptr::null_mut(), 0)
                } else {
                    take(&sh.slots[op.aux as usize], op.waits).unwrap_or((core::ptr::null_mut(), 0))
                };
                let size = op.size as usize;
                // SAFETY: `old` is null or a live block of this backend, taken once.
                let q = timed(timing, &mut out.hist, || unsafe { b.realloc(old, size) });
                if q.is_null() {
                    out.failed += 1;
                } else {
                    let kept = (old_size as usize).min(size);
                    // SAFETY: `q` is a fresh block of at least `size` bytes.
                    unsafe { touch(q, kept, size, mode) };
                    live.fetch_add(op.size as i64 - old_size as i64, Ordering::Relaxed);
                }
                publish(slot, q, op.size);
            }
            kind => {
                let size = op.size as usize;
                let p = timed(timing, &mut out.hist, || {
                    b.alloc(kind, size, op.aux as usize)
                });
                if p.is_null() {
                    out.failed += 1;
                } else {
                    // SAFETY: `p` is a fresh block of at least `size` bytes.
                    unsafe { touch(p, 0, size, mode) };
                    live.fetch_add(op.size as i64, Ordering::Relaxed);
                }
                publish(slot, p, op.size);
            }
        }
        batch += 1;
        if batch == 1024 {
            sh.ops_done.fetch_add(batch, Ordering::Relaxed);
            batch = 0;
        }
    }
    sh.ops_done.fetch_add(batch, Ordering::Relaxed);
    out.end = Instant::now();
    sh.done.fetch_add(1, Ordering::Release);
    out
}

fn sample(sh: &Shared, t0: Instant) -> Sample {
    let live: i64 = sh.live.iter().map(|l| l.load(Ordering::Relaxed)).sum();
    Sample {
        t_ns: t0.elapsed().as_nanos() as u64,
        live_bytes: live.max(0) as u64,
        footprint_bytes: sh.backend.footprint().unwrap_or(0),
        rss_bytes: measure::rss_bytes().unwrap_or(0),
    }
}

fn diff_calls(a: Option<OsCalls>, b: Option<OsCalls>) -> Option<OsCalls> {
    let (a, b) = (a?, b?);
    Some(OsCalls {
        brk: b.brk - a.brk,
        mmap: b.mmap - a.mmap,
        munmap: b.munmap - a.munmap,
        madvise: b.madvise - a.madvise,
    })
}

/// Replays `plan` against `backend`. `progress` is called now and then with the
/// number of ops done so far.
pub fn replay(
    plan: &Plan,
    backend: &dyn Backend,
    opts: &ReplayOptions,
    progress: &dyn Fn(u64),
) -> RunResult {
    let sh = Shared {
        slots: (0..plan.slots)
            .map(|_| Slot {
                ptr: AtomicUsize::new(0),
                size: AtomicU64::new(0),
            })
            .collect(),
        backend,
        opts,
        start: AtomicBool::new(false),
        done: AtomicUsize::new(0),
        ops_done: AtomicU64::new(0),
        live: plan.threads.iter().map(|_| AtomicI64::new(0)).collect(),
    };
    let n = plan.threads.len();
    let mut r = RunResult {
        ops: plan.ops(),
        threads: n,
        footprint_source: backend.footprint_source().to_string(),
        trace_live_peak_bytes: plan.peak_live_bytes,
        ..Default::default()
    };
    let outs: Vec<ThreadOut> = std::thread::scope(|s| {
        let handles: Vec<_> = plan
            .threads
            .iter()
            .enumerate()
            .map(|(i, ops)| {
                let sh = &sh;
                s.spawn(move || run_thread(i, ops, sh))
            })
            .collect();
        // Baselines, then go.
        r.rss_baseline_bytes = measure::rss_bytes().unwrap_or(0);
        r.peak_rss_reset = measure::reset_peak_rss();
        let calls0 = backend.os_calls();
        let u0 = sys::usage();
        sys::strace_marker();
        let t0 = Instant::now();
        sh.start.store(true, Ordering::Release);
        r.samples.push(sample(&sh, t0));
        conduct(&sh, n, t0, &mut r.samples, progress);
        sys::strace_marker();
        let u1 = sys::usage();
        r.samples.push(sample(&sh, t0));
        r.os_calls = diff_calls(calls0, backend.os_calls());
        r.os_calls_source = r.os_calls.map(|_| "allocator-stats".to_string());
        r.peak_rss_bytes = measure::peak_rss_bytes().unwrap_or(0);
        r.user_ns = u1.user_ns - u0.user_ns;
        r.sys_ns = u1.sys_ns - u0.sys_ns;
        r.cpu_ns = r.user_ns + r.sys_ns;
        r.minor_faults = u1.minor_faults - u0.minor_faults;
        let outs: Vec<ThreadOut> = handles
            .into_iter()
            .map(|h| h.join().expect("replay thread panicked"))
            .collect();
        let end = outs.iter().map(|o| o.end).max().unwrap_or(t0);
        r.wall_ns = end.saturating_duration_since(t0).as_nanos() as u64;
        outs
    });
    progress(r.ops);
    let mut hist = Hist::default();
    for o in &outs {
        hist.merge(&o.hist);
        r.failed_allocs += o.failed;
    }
    r.op_mean_ns = hist.mean_ns();
    r.op_p99_ns = hist.quantile_ns(0.99);
    summarize_samples(&mut r);
    free_leftovers(&sh);
    backend.after_run();
    r
}

/// Waits for the replay threads, sampling memory and reporting progress.
fn conduct(sh: &Shared, n: usize, t0: Instant, samples: &mut Vec<Sample>, progress: &dyn Fn(u64)) {
    let poll = sh.opts.sample_interval.min(Duration::from_millis(1));
    let mut next = t0 + sh.opts.sample_interval;
    while sh.done.load(Ordering::Acquire) < n {
        std::thread::sleep(poll);
        if Instant::now() >= next {
            samples.push(sample(sh, t0));
            progress(sh.ops_done.load(Ordering::Relaxed));
            next += sh.opts.sample_interval;
        }
    }
}

fn summarize_samples(r: &mut RunResult) {
    r.footprint_peak_bytes = r
        .samples
        .iter()
        .map(|s| s.footprint_bytes)
        .max()
        .unwrap_or(0);
    r.footprint_end_bytes = r.samples.last().map_or(0, |s| s.footprint_bytes);
    if let Some(peak) = r.samples.iter().max_by_key(|s| s.live_bytes) {
        r.live_peak_bytes = peak.live_bytes;
        r.fragmentation_at_peak = peak.fragmentation().unwrap_or(0.0);
    }
    let (f, l) = r.samples.iter().fold((0u128, 0u128), |(f, l), s| {
        (f + s.footprint_bytes as u128, l + s.live_bytes as u128)
    });
    if l > 0 {
        r.fragmentation_over_time = f as f64 / l as f64;
    }
}

/// Frees the blocks the trace never freed, so the next run starts clean.
fn free_leftovers(sh: &Shared) {
    for slot in &sh.slots {
        if let Some((p, _)) = take(slot, false) {
            // SAFETY: a live block of this backend, taken once.
            unsafe { sh.backend.free(p) };
        }
    }
}
