//! Time resolution: events recorded while a process has one thread have
//! whole-microsecond times by default; events from when it has more keep
//! nanoseconds, and cross-thread order stays exact.

use std::collections::{BTreeMap, HashSet};

use traces::Event;

use crate::common::{compile, read, record, record_with, Trace};

const US: u64 = 1000;

fn whole_us(t: &Trace) -> usize {
    t.records.iter().filter(|r| r.time % US == 0).count()
}

/// Heap events by kind and function: what the program did, whatever the times.
fn heap_counts(t: &Trace) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in &t.records {
        let key = match &r.event {
            Event::Alloc { func, .. } => format!("alloc {func:?}"),
            Event::Free { func, .. } => format!("free {func:?}"),
            Event::Realloc { func, .. } => format!("realloc {func:?}"),
            _ => continue,
        };
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

#[test]
fn single_thread_times_are_whole_microseconds() {
    let d = tempfile::tempdir().expect("tempdir");
    let exe = compile("counts.c", d.path());
    let coarse = read(&record(d.path(), &[exe.to_str().unwrap()]).traces[0]);
    let fine = read(&record_with(d.path(), &[exe.to_str().unwrap()], 1).traces[0]);
    assert!(coarse.records.len() > 20);
    // By default every time is a whole microsecond, the watermarks' and the
    // end time too; the events are the same.
    assert_eq!(whole_us(&coarse), coarse.records.len());
    assert_eq!(coarse.trailer.as_ref().expect("trailer").end_time % US, 0);
    assert_eq!(heap_counts(&coarse), heap_counts(&fine));
    assert!(heap_counts(&coarse).values().sum::<usize>() >= 20);
    // `--time-resolution ns` keeps nanoseconds.
    assert!(whole_us(&fine) < fine.records.len());
    // Each thread's times still never decrease.
    assert!(coarse.records.windows(2).all(|w| w[0].time <= w[1].time));
}

#[test]
fn times_stay_exact_once_a_second_thread_starts() {
    let d = tempfile::tempdir().expect("tempdir");
    let exe = compile("late_threads.c", d.path());
    let run = record(d.path(), &[exe.to_str().unwrap()]);
    assert_eq!(run.exit_code, 0);
    let t = read(&run.traces[0]);
    assert_eq!(t.trailer.as_ref().expect("trailer").dropped_events, 0);
    let main = t.header.pid;
    let phase = |size: u64| -> Vec<u64> {
        t.records
            .iter()
            .filter(|r| matches!(r.event, Event::Alloc { size: s, .. } if s / 100 == size / 100))
            .map(|r| r.time)
            .collect()
    };
    let (alone, shared, after) = (phase(7400), phase(7600), phase(7500));
    assert_eq!(
        (alone.len(), shared.len(), after.len()),
        (2000, 80_000, 2000)
    );
    // Alone: whole microseconds. With other threads, and after them (the
    // process stays multi-threaded): nanoseconds (a whole microsecond one
    // time in a thousand).
    assert!(alone.iter().all(|&x| x % US == 0));
    let whole = |v: &[u64]| v.iter().filter(|&&x| x % US == 0).count();
    assert!(whole(&shared) < shared.len() / 50, "{}", whole(&shared));
    assert!(whole(&after) < after.len() / 50, "{}", whole(&after));
    // Every record of the other threads is later than every coarse one.
    let first_other = t
        .records
        .iter()
        .filter(|r| r.thread != main)
        .map(|r| r.time)
        .min()
        .expect("other threads");
    assert!(alone.iter().all(|&x| x <= first_other));
    // Cross-thread order: no block freed before its allocation, none
    // allocated twice without a free between.
    let test_addrs: HashSet<u64> = t
        .records
        .iter()
        .filter_map(|r| match r.event {
            Event::Alloc { addr, size, .. } if (7400..7700).contains(&size) => Some(addr),
            _ => None,
        })
        .collect();
    let mut live = HashSet::new();
    let (mut early_frees, mut double_allocs, mut frees) = (0, 0, 0);
    for r in &t.records {
        match r.event {
            Event::Alloc { addr, size, .. }
                if (7400..7700).contains(&size) && !live.insert(addr) =>
            {
                double_allocs += 1;
            }
            Event::Free { addr, .. } if test_addrs.contains(&addr) => {
                if live.remove(&addr) {
                    frees += 1;
                } else {
                    early_frees += 1;
                }
            }
            _ => {}
        }
    }
    assert_eq!((early_frees, double_allocs), (0, 0));
    assert_eq!(frees, 84_000);
}

#[test]
fn forked_child_starts_coarse_again() {
    let d = tempfile::tempdir().expect("tempdir");
    let exe = compile("fork.c", d.path());
    let run = record(d.path(), &[exe.to_str().unwrap()]);
    assert_eq!(run.traces.len(), 2, "{:?}", run.traces);
    for p in &run.traces {
        let t = read(p);
        assert!(t.records.len() > 3);
        assert_eq!(whole_us(&t), t.records.len(), "{}", p.display());
    }
}

/// Times of the allocations with sizes `base..base + 100`.
fn alloc_times(t: &Trace, base: u64) -> Vec<u64> {
    t.records
        .iter()
        .filter(
            |r| matches!(r.event, Event::Alloc { size, .. } if (base..base + 100).contains(&size)),
        )
        .map(|r| r.time)
        .collect()
}

#[test]
fn single_thread_events_dated_by_the_collector_keep_the_pauses() {
    // By default the hooks of a single-threaded process leave their events
    // untimed and the collector dates them (at most a round early): the
    // bursts 200 ms apart must still be that far apart in the trace, and
    // never before the process started or after it ended.
    let d = tempfile::tempdir().expect("tempdir");
    let exe = compile("pauses.c", d.path());
    let run = record(d.path(), &[exe.to_str().unwrap()]);
    assert_eq!(run.exit_code, 0);
    let t = read(&run.traces[0]);
    let bursts: Vec<Vec<u64>> = [3100, 3200, 3300]
        .iter()
        .map(|&b| alloc_times(&t, b))
        .collect();
    for b in &bursts {
        assert_eq!(b.len(), 100);
    }
    let ms = 1_000_000;
    let end = t.trailer.as_ref().expect("trailer").end_time;
    assert!(bursts[0][0] >= t.header.start_time / ms * ms);
    assert!(*bursts[2].last().unwrap() <= end);
    // Each pause is 200 ms; a date is at most a collector round (5 ms
    // apart when idle) early, and never late. Rounds can be held up on a
    // loaded machine, so only half of each pause is required.
    for w in bursts.windows(2) {
        let gap = w[1][0] - w[0].last().unwrap();
        assert!(gap >= 100 * ms, "{} ms", gap / ms);
        assert!(gap <= 400 * ms, "{} ms", gap / ms);
    }
    // `--time-resolution ns` keeps the hooks' own times.
    let fine = read(&record_with(d.path(), &[exe.to_str().unwrap()], 1).traces[0]);
    let b = alloc_times(&fine, 3100);
    assert_eq!(b.len(), 100);
    assert!(b.windows(2).filter(|w| w[0] < w[1]).count() >= 10);
}

#[test]
fn blocks_handed_to_a_starting_thread_stay_in_order() {
    // The race of dated single-threaded events: a thread allocating alone
    // (its events dated by the collector, early) while a second thread
    // starts and frees what it publishes. In each child's trace, no block
    // may be freed (or reallocated) before its allocation, and none
    // allocated twice without a release between.
    let d = tempfile::tempdir().expect("tempdir");
    let exe = compile("handoff.c", d.path());
    let run = record(d.path(), &[exe.to_str().unwrap()]);
    assert_eq!(run.exit_code, 0);
    assert_eq!(run.traces.len(), 41, "{:?}", run.traces);
    let mut children = 0;
    for p in &run.traces {
        let t = read(p);
        assert_eq!(t.trailer.as_ref().expect("trailer").dropped_events, 0);
        // Addresses of the test's blocks, then the liveness of every block
        // at those addresses, whatever its size.
        let ours: HashSet<u64> = t
            .records
            .iter()
            .filter_map(|r| match r.event {
                Event::Alloc { addr, size, .. } if (9000..9064).contains(&size) => Some(addr),
                Event::Realloc { new_addr, size, .. } if (9100..9164).contains(&size) => {
                    Some(new_addr)
                }
                _ => None,
            })
            .collect();
        if ours.is_empty() {
            continue; // the parent
        }
        children += 1;
        let mut live = HashSet::new();
        let (mut early, mut twice, mut released) = (0, 0, 0);
        for r in &t.records {
            let (gone, made) = match r.event {
                Event::Alloc { addr, .. } => (None, Some(addr)),
                Event::Free { addr, .. } => (Some(addr), None),
                Event::Realloc {
                    old_addr, new_addr, ..
                } => (
                    Some(old_addr).filter(|&a| a != 0),
                    Some(new_addr).filter(|&a| a != 0),
                ),
                _ => (None, None),
            };
            if let Some(a) = gone.filter(|a| ours.contains(a)) {
                if live.remove(&a) {
                    released += 1;
                } else {
                    early += 1;
                }
            }
            if let Some(a) = made.filter(|a| ours.contains(a)) {
                if !live.insert(a) {
                    twice += 1;
                }
            }
        }
        assert_eq!((early, twice), (0, 0), "{}", p.display());
        assert!(released >= 5000, "{} in {}", released, p.display());
    }
    assert_eq!(children, 40);
}
