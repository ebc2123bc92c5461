//! Replays through the checking backend: exactly the recorded calls per thread,
//! cross-thread frees after their allocation, heap errors survived.

use std::collections::HashMap;

use replayer::backend::checking::Checking;
use replayer::backend::ours::Ours;
use replayer::backend::Touch;
use replayer::{replay, OpKind, Plan, ReplayOptions};

use crate::common::{alloc, free, random_trace, tmp, write_trace, Expected};

fn opts() -> ReplayOptions {
    ReplayOptions {
        touch: Touch::Page,
        ..Default::default()
    }
}

/// Runs `plan` on a checking backend and returns, per recorded thread id, the
/// calls it received in the shape of [`Expected`].
fn checked(plan: &Plan, jitter: u64) -> HashMap<u32, Vec<Expected>> {
    let b = Checking::new(jitter);
    let r = replay(plan, &b, &opts(), &|_| {});
    assert_eq!(r.failed_allocs, 0);
    let calls = b.calls();
    let mut out: HashMap<u32, Vec<Expected>> = HashMap::new();
    for c in &calls {
        let Some(t) = c.thread else { continue }; // leftovers freed after the replay
                                                  // A released block was allocated by an earlier call (never before its allocation).
        if let Some(s) = c.released {
            assert!(s < c.seq, "call {} released block allocated at {s}", c.seq);
        }
        out.entry(plan.thread_ids[t]).or_default().push(Expected {
            kind: c.kind,
            size: c.size,
            align: c.align,
            released: c.released.map(|s| calls[s as usize].size),
        });
    }
    out
}

#[test]
fn replay_performs_exactly_the_recorded_sequence_per_thread() {
    let dir = tmp();
    let path = dir.path().join("random.atrace");
    let (recs, expected) = random_trace(42, 4, 4000);
    write_trace(&path, &recs);
    let plan = Plan::from_trace(&path).unwrap();
    assert_eq!(plan.skipped.total(), 0);
    let got = checked(&plan, 0);
    for (tid, exp) in &expected {
        let g = got.get(tid).cloned().unwrap_or_default();
        assert_eq!(g.len(), exp.len(), "thread {tid}: number of calls");
        for (i, (g, e)) in g.iter().zip(exp).enumerate() {
            assert_eq!(g, e, "thread {tid}, call {i}");
        }
    }
}

#[test]
fn cross_thread_frees_never_run_before_their_allocation() {
    // Thread 1 allocates slowly (the backend yields often); thread 2 frees every
    // block right after it was recorded. Repeat with several seeds of jitter.
    let mut recs = Vec::new();
    for i in 0..500u64 {
        recs.push(alloc(10 * i, 1, 0x1000 + i * 16, 8 + i));
        recs.push(free(10 * i + 5, 2, 0x1000 + i * 16));
    }
    let plan = Plan::from_records(recs.into_iter().map(Ok)).unwrap();
    for jitter in [1, 2, 3] {
        let got = checked(&plan, jitter);
        let frees = &got[&2];
        assert_eq!(frees.len(), 500);
        for (i, f) in frees.iter().enumerate() {
            // `released` is Some only if the block was allocated when freed.
            assert_eq!(
                f.released,
                Some(8 + i as u64),
                "free {i} with jitter {jitter}"
            );
        }
    }
    let random = random_trace(7, 3, 3000);
    let plan = Plan::from_records(random.0.into_iter().map(Ok)).unwrap();
    checked(&plan, 2);
}

#[test]
fn heap_errors_in_the_trace_do_not_crash_the_driver() {
    // Replayed against our real allocator, a double or invalid free would corrupt
    // it; the plan skips them and says how many.
    let recs = vec![
        alloc(1, 1, 0x10, 100),
        free(2, 2, 0x10),
        free(3, 1, 0x10),      // double free, other thread
        free(4, 2, 0x10),      // and again
        free(5, 1, 0xdead0),   // invalid free
        alloc(6, 1, 0x10, 50), // address reused
        free(7, 1, 0x10),
    ];
    let plan = Plan::from_records(recs.into_iter().map(Ok)).unwrap();
    assert_eq!(plan.skipped.double_frees, 2);
    assert_eq!(plan.skipped.invalid_frees, 1);
    let ours = Ours::new().unwrap();
    let r = replay(&plan, &ours, &opts(), &|_| {});
    assert_eq!(r.ops, 4);
    assert_eq!(ours.stats().live_blocks, 0);
}

#[test]
fn measures_a_churn_replay_with_our_allocator() {
    let churn = traces::synthetic::Churn::new(traces::synthetic::ChurnConfig {
        events: 200_000,
        working_set: 2000,
        sizes: (8, 4096),
        ..Default::default()
    });
    let plan = Plan::from_records(churn.map(Ok)).unwrap();
    let ours = Ours::new().unwrap();
    let r = replay(&plan, &ours, &opts(), &|_| {});
    assert_eq!(r.ops, 200_000);
    assert!(r.wall_ns > 0 && r.op_mean_ns > 0.0 && r.op_p99_ns as f64 >= r.op_mean_ns * 0.5);
    assert!(r.footprint_peak_bytes >= r.live_peak_bytes, "{r:?}");
    assert!(r.fragmentation_at_peak >= 1.0);
    let calls = r.os_calls.unwrap();
    assert!(calls.brk > 0, "the arena grew: {calls:?}");
    assert!(r.samples.len() >= 2);
    assert!(r.peak_rss_bytes >= r.rss_baseline_bytes);
    // Every block is freed after the run (leftovers included).
    assert_eq!(ours.stats().live_blocks, 0);
}

#[test]
fn touch_modes_change_rss() {
    // 64 blocks of 1 MiB, all live at the peak: touched, they are resident.
    let recs: Vec<_> = (0..64u64)
        .map(|i| alloc(i, 1, 0x100_0000 * (i + 1), 1 << 20))
        .collect();
    let plan = Plan::from_records(recs.into_iter().map(Ok)).unwrap();
    let run = |touch| {
        let ours = Ours::new().unwrap();
        let r = replay(
            &plan,
            &ours,
            &ReplayOptions {
                touch,
                ..Default::default()
            },
            &|_| {},
        );
        r.peak_rss_bytes - r.rss_baseline_bytes
    };
    let none = run(Touch::None);
    let full = run(Touch::Full);
    // 64 MiB touched; the peak is sampled, and other tests running in this
    // process move the baseline (a CI run measured 59.8 MiB): three quarters.
    assert!(full >= 48 << 20, "full touch: {full}");
    // Other tests run in this process at the same time: compare loosely.
    assert!(none < full / 2, "no touch: {none}, full: {full}");
    let _ = OpKind::Malloc;
}
