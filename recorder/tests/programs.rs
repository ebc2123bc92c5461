//! The small programs under `tests/programs/`, one test each.

use std::collections::HashMap;

use traces::{AllocFn, Event, ExitStatus, Family, FreeFn};

use crate::common::{compile, read, record, symbols, Trace};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Allocations with a test size (7000..7300) by function, and their addresses.
fn test_allocs(t: &Trace) -> (HashMap<AllocFn, usize>, HashMap<u64, AllocFn>) {
    let mut by_fn = HashMap::new();
    let mut addrs = HashMap::new();
    for r in &t.records {
        match &r.event {
            Event::Alloc {
                func, addr, size, ..
            } if (7000..7300).contains(size) => {
                *by_fn.entry(*func).or_insert(0) += 1;
                addrs.insert(*addr, *func);
            }
            Event::Realloc {
                func,
                new_addr,
                size,
                ..
            } if (7000..7300).contains(size) => {
                *by_fn.entry(*func).or_insert(0) += 1;
                addrs.insert(*new_addr, *func);
            }
            _ => {}
        }
    }
    (by_fn, addrs)
}

/// A block still live at the end: (address, size, stack).
type LiveBlock = (u64, u64, u32);

/// Replays the address history: (alloc fn, free fn) pairs of test blocks in
/// order, and the test blocks still live at the end.
fn simulate(t: &Trace) -> (Vec<(AllocFn, FreeFn)>, Vec<LiveBlock>) {
    let mut live: HashMap<u64, (AllocFn, u64, u32)> = HashMap::new();
    let mut pairs = Vec::new();
    for r in &t.records {
        match &r.event {
            Event::Alloc {
                func,
                addr,
                size,
                stack,
                ..
            } if (7000..7300).contains(size) => {
                live.insert(*addr, (*func, *size, *stack));
            }
            Event::Realloc {
                func,
                old_addr,
                new_addr,
                size,
                stack,
            } => {
                live.remove(old_addr);
                if (7000..7300).contains(size) {
                    live.insert(*new_addr, (*func, *size, *stack));
                }
            }
            Event::Free { func, addr, .. } => {
                if let Some((a, _, _)) = live.remove(addr) {
                    pairs.push((a, *func));
                }
            }
            _ => {}
        }
    }
    let mut rest: Vec<(u64, u64, u32)> =
        live.into_iter().map(|(a, (_, s, st))| (a, s, st)).collect();
    rest.sort();
    (pairs, rest)
}

fn frees_of(t: &Trace, addrs: &HashMap<u64, AllocFn>) -> Vec<(FreeFn, u64)> {
    t.records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Free { func, addr, .. } if addrs.contains_key(addr) => Some((*func, *addr)),
            _ => None,
        })
        .collect()
}

#[test]
fn counts_by_function_and_leaks() {
    let d = tmp();
    let exe = compile("counts.c", d.path());
    let run = record(d.path(), &[exe.to_str().unwrap()]);
    assert_eq!(run.exit_code, 0);
    let t = read(&run.traces[0]);
    let (by_fn, addrs) = test_allocs(&t);
    // Exactly the calls the program makes, one per function (two for malloc, calloc, realloc).
    let expect = [
        (AllocFn::Malloc, 4), // 3 in main + leaky_one
        (AllocFn::Calloc, 3), // 2 in main + leaky_two
        (AllocFn::Realloc, 2),
        (AllocFn::Reallocarray, 1),
        (AllocFn::PosixMemalign, 1),
        (AllocFn::AlignedAlloc, 1),
        (AllocFn::Memalign, 1),
        (AllocFn::Valloc, 1),
        (AllocFn::Pvalloc, 1),
    ];
    for (f, n) in expect {
        assert_eq!(by_fn.get(&f).copied().unwrap_or(0), n, "{f:?}");
    }
    // Ten frees, all with `free` (the two realloc'd blocks count once each).
    let (pairs, live) = simulate(&t);
    assert_eq!(pairs.len(), 10);
    assert!(pairs.iter().all(|(_, f)| *f == FreeFn::Free));
    let _ = &addrs;
    // The two leaked blocks were allocated in leaky_one and leaky_two.
    let base = t
        .records
        .iter()
        .find_map(|r| match &r.event {
            Event::ModuleLoad(m) if m.path == exe.to_str().unwrap() => Some(m.base),
            _ => None,
        })
        .expect("executable module recorded");
    let syms = symbols(&exe);
    let mut leak_sites = Vec::new();
    for (_, _, stack) in &live {
        let frames = t.stacks.frames(*stack);
        let inner = frames.first().copied().expect("leak has a stack") - base;
        let name = syms
            .iter()
            .find(|s| inner >= s.0 && inner < s.1)
            .map(|s| s.2.clone());
        leak_sites.push(name.unwrap_or_default());
    }
    leak_sites.sort();
    assert_eq!(leak_sites, ["leaky_one", "leaky_two"]);
    // A clean exit, nothing dropped.
    let tr = t.trailer.expect("trailer");
    assert_eq!(tr.exit, ExitStatus::Code(0));
    assert_eq!(tr.dropped_events, 0);
}

#[test]
fn double_free_survives_abort() {
    let d = tmp();
    let exe = compile("double_free.c", d.path());
    let run = record(d.path(), &[exe.to_str().unwrap()]);
    // glibc aborts: SIGABRT, exit code 128 + 6.
    assert_eq!(run.exit_code, 134);
    let t = read(&run.traces[0]);
    let (by_fn, addrs) = test_allocs(&t);
    // The allocation and both frees are in the trace.
    assert_eq!(by_fn.get(&AllocFn::Malloc), Some(&1));
    let frees = frees_of(&t, &addrs);
    assert_eq!(frees.len(), 2);
    assert_eq!(frees[0].1, frees[1].1);
    assert_eq!(t.trailer.expect("trailer").exit, ExitStatus::Signal(6));
}

#[test]
fn mismatched_families_keep_their_functions() {
    let d = tmp();
    let exe = compile("mismatch.cpp", d.path());
    let run = record(d.path(), &[exe.to_str().unwrap()]);
    assert_eq!(run.exit_code, 0);
    let t = read(&run.traces[0]);
    let (pairs, _) = simulate(&t);
    // new[] released by free.
    assert!(pairs
        .iter()
        .any(|(a, f)| *a == AllocFn::NewArray && *f == FreeFn::Free));
    // malloc released by (sized) delete.
    assert!(pairs
        .iter()
        .any(|(a, f)| *a == AllocFn::Malloc && f.family() == Family::New));
    // new[] released by delete[].
    assert!(pairs
        .iter()
        .any(|(a, f)| *a == AllocFn::NewArray && f.family() == Family::NewArray));
    assert_eq!(pairs.len(), 3);
}

#[test]
fn fork_child_has_its_own_trace() {
    let d = tmp();
    let exe = compile("fork.c", d.path());
    let run = record(d.path(), &[exe.to_str().unwrap()]);
    assert_eq!(run.exit_code, 0);
    // Two traces: the parent's (root) and the child's.
    assert_eq!(run.traces.len(), 2, "{:?}", run.traces);
    let parent = read(&run.traces[0]);
    let child = read(&run.traces[1]);
    assert!(child.header.flags & traces::flags::FORKED != 0);
    // The file is named after the root trace and the child's pid.
    assert_eq!(
        run.traces[1],
        d.path().join(format!("out.{}.atrace", child.header.pid))
    );
    let sizes = |t: &Trace, s: u64| {
        t.records
            .iter()
            .filter(|r| matches!(r.event, Event::Alloc { size, .. } if size == s))
            .count()
    };
    // The child's three allocations are in the child's trace only.
    assert_eq!(sizes(&child, 7002), 3);
    assert_eq!(sizes(&parent, 7002), 0);
    // The parent's trace records the fork with the child's pid.
    assert!(parent.records.iter().any(|r| r.event
        == Event::Fork {
            child_pid: child.header.pid
        }));
}

#[test]
fn exec_starts_a_new_trace() {
    let d = tmp();
    let exe = compile("exec.c", d.path());
    let run = record(d.path(), &[exe.to_str().unwrap()]);
    // The exec'd image's exit code is the program's.
    assert_eq!(run.exit_code, 7);
    assert_eq!(run.traces.len(), 2, "{:?}", run.traces);
    let first = read(&run.traces[0]);
    let second = read(&run.traces[1]);
    // The first image ends with exec, and says where to.
    assert_eq!(first.trailer.expect("trailer").exit, ExitStatus::Exec);
    assert!(first
        .records
        .iter()
        .any(|r| matches!(&r.event, Event::Exec { path } if path == "/proc/self/exe")));
    // The second image is flagged as exec'd, allocated 7002 once, exited 7.
    assert!(second.header.flags & traces::flags::EXECED != 0);
    let n = second
        .records
        .iter()
        .filter(|r| matches!(r.event, Event::Alloc { size: 7002, .. }))
        .count();
    assert_eq!(n, 1);
    assert_eq!(second.trailer.expect("trailer").exit, ExitStatus::Code(7));
}

#[test]
fn eight_threads_lose_nothing() {
    let d = tmp();
    let exe = compile("threads.c", d.path());
    let run = record(d.path(), &[exe.to_str().unwrap()]);
    assert_eq!(run.exit_code, 0);
    let t = read(&run.traces[0]);
    let (by_fn, addrs) = test_allocs(&t);
    // 8 x 200,000 allocations, every one recorded.
    assert_eq!(by_fn.get(&AllocFn::Malloc), Some(&1_600_000));
    // Every block is freed (cross-thread or at the end): 1.6 million frees.
    let frees = t
        .records
        .iter()
        .filter(|r| matches!(&r.event, Event::Free { addr, .. } if addrs.contains_key(addr)))
        .count();
    assert_eq!(frees, 1_600_000);
    // Times order events across threads: in the merged trace, no block is
    // freed before (or allocated again before the free of) its allocation
    // in another thread.
    let mut live = std::collections::HashSet::new();
    let (mut early_frees, mut double_allocs) = (0, 0);
    for r in &t.records {
        match &r.event {
            Event::Alloc { addr, .. } if addrs.contains_key(addr) && !live.insert(*addr) => {
                double_allocs += 1;
            }
            Event::Free { addr, .. } if addrs.contains_key(addr) && !live.remove(addr) => {
                early_frees += 1;
            }
            _ => {}
        }
    }
    assert_eq!((early_frees, double_allocs), (0, 0));
    // Nine threads seen (main + 8), nothing dropped.
    let threads: std::collections::HashSet<u32> = t.records.iter().map(|r| r.thread).collect();
    assert_eq!(threads.len(), 9);
    assert_eq!(t.trailer.expect("trailer").dropped_events, 0);
}

#[test]
fn sigkill_and_exit_keep_every_event() {
    let d = tmp();
    let exe = compile("kill.c", d.path());
    for (arg, code, exit) in [
        ("kill", 137, ExitStatus::Signal(9)),
        ("exit", 5, ExitStatus::Code(5)),
    ] {
        let run = record(d.path(), &[exe.to_str().unwrap(), arg]);
        assert_eq!(run.exit_code, code);
        let t = read(&run.traces[0]);
        // All 2000 allocations made before SIGKILL / _exit are in the trace.
        let n = t
            .records
            .iter()
            .filter(|r| matches!(r.event, Event::Alloc { size: 7001, .. }))
            .count();
        assert_eq!(n, 2000, "{arg}");
        assert_eq!(t.trailer.expect("trailer").exit, exit);
    }
}

#[test]
fn threads_know_their_parent() {
    let d = tmp();
    let exe = compile("thread_parents.c", d.path());
    let run = record(d.path(), &[exe.to_str().unwrap()]);
    // Threads that return, call pthread_exit or are cancelled end as they would untraced.
    assert_eq!(run.exit_code, 0);
    let t = read(&run.traces[0]);
    let main = t.header.pid;
    let mut parent = HashMap::new();
    let mut size_thread = HashMap::new();
    for r in &t.records {
        match r.event {
            Event::ThreadStart { parent: p } => {
                parent.insert(r.thread, p);
            }
            Event::Alloc { size, .. } if (7101..=7104).contains(&size) => {
                size_thread
                    .entry(size)
                    .or_insert_with(Vec::new)
                    .push(r.thread);
            }
            _ => {}
        }
    }
    assert_eq!(parent.get(&main), Some(&0));
    // Threads made by main: one each for 7102 (exits), 7103 (cancelled), 7104 (spawner).
    for size in [7102, 7103, 7104] {
        let th = size_thread[&size][0];
        assert_eq!(parent.get(&th), Some(&main), "size {size}");
    }
    // 7101: one thread made by main, one made by the spawner thread.
    let spawner = size_thread[&7104][0];
    let mut parents: Vec<u32> = size_thread[&7101].iter().map(|th| parent[th]).collect();
    parents.sort_unstable();
    let mut want = vec![main, spawner];
    want.sort_unstable();
    assert_eq!(parents, want);
}

#[test]
fn a_second_recording_replaces_the_first_trace() {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let d = tmp();
    let exe = compile("counts.c", d.path());
    let first = record(d.path(), &[exe.to_str().unwrap()]);
    let path = first.traces[0].clone();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut held = std::fs::File::open(&path).unwrap();
    let mut old = Vec::new();
    held.read_to_end(&mut old).unwrap();
    assert!(!old.is_empty());
    // /bin/true allocates nothing of its own: a different, smaller trace.
    let second = record(d.path(), &["/bin/true"]);
    assert_eq!(second.traces[0], path);
    let t = read(&path);
    assert!(
        test_allocs(&t).0.is_empty(),
        "the first trace's events are gone"
    );
    assert_eq!(t.trailer.expect("trailer").exit, ExitStatus::Code(0));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    // The first file was replaced, not truncated under a reader.
    let mut again = Vec::new();
    std::io::Seek::rewind(&mut held).unwrap();
    held.read_to_end(&mut again).unwrap();
    assert_eq!(again, old);
}

#[test]
fn an_image_whose_file_the_collector_gave_up_on_runs_to_its_end() {
    let d = tmp();
    let exe = compile("abandoned.c", d.path());
    let dir = d.path().to_str().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(record(
            std::path::Path::new(&dir),
            &[exe.to_str().unwrap(), &dir],
        ));
    });
    // One 10 s wait for a chunk, then the events are dropped without
    // waiting (was 10 s per event: the test fails instead of hanging).
    let run = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the program still runs after two minutes");
    assert_eq!(run.exit_code, 0);
    // The first image's trace only: the second one's could not be made.
    assert_eq!(run.traces.len(), 1, "{:?}", run.traces);
}

/// A realloc's one time stands for its release of the old block too, but
/// is read after the real realloc returned, and another thread may have
/// taken the old block in between (`realloc_race.c`: one shared arena; with
/// glibc's default arenas too, less often). The merged trace then has that
/// thread allocate a block still live, and the realloc release it after.
/// Reviewer h10-rev, at 1cbd730, 2 vCPUs: 6 to 1594 such pairs in each of
/// 6 runs of 800,000 reallocs (270,000 moved); 73 in one run with glibc's
/// default arenas. Ignored: a known race, not fixed (one time cannot be
/// both before the release and after the allocation).
#[test]
#[ignore = "known race: a moved realloc is dated after another thread reuses its old block"]
fn realloc_moves_keep_cross_thread_order() {
    let d = tmp();
    let exe = compile("realloc_race.c", d.path());
    let run = record(d.path(), &[exe.to_str().unwrap()]);
    assert_eq!(run.exit_code, 0);
    let t = read(&run.traces[0]);
    let (_, ours) = test_allocs(&t);
    let mut live = std::collections::HashSet::new();
    let (mut early_frees, mut double_allocs, mut reallocs, mut moved) = (0, 0, 0, 0);
    let mut first_bad = None;
    for (i, r) in t.records.iter().enumerate() {
        let bad = match &r.event {
            Event::Alloc { addr, size, .. } if (7000..7300).contains(size) => {
                let b = !live.insert(*addr);
                double_allocs += b as u32;
                b
            }
            Event::Free { addr, .. } if ours.contains_key(addr) => {
                let b = !live.remove(addr);
                early_frees += b as u32;
                b
            }
            Event::Realloc {
                old_addr,
                new_addr,
                size,
                ..
            } if (7000..7300).contains(size) => {
                reallocs += 1;
                moved += (old_addr != new_addr) as u32;
                let b1 = ours.contains_key(old_addr) && !live.remove(old_addr);
                early_frees += b1 as u32;
                let b2 = !live.insert(*new_addr);
                double_allocs += b2 as u32;
                b1 || b2
            }
            _ => false,
        };
        if bad && first_bad.is_none() {
            first_bad = Some(i);
        }
    }
    let around = first_bad.map(|i| &t.records[i.saturating_sub(4)..(i + 3).min(t.records.len())]);
    assert_eq!(
        (early_frees, double_allocs),
        (0, 0),
        "{reallocs} reallocs, {moved} moved; around the first: {around:#?}"
    );
}
