//! The allocator's mimalloc-bench-style workloads
//! (`allocator/tests/programs/bench_workloads.c`: larson, xmalloc, cache-scratch,
//! realloc growth, large alignments, 1600 short-lived threads, fork while threads
//! allocate) under `record`: each runs to its end with its own checks passing, and
//! its trace holds the allocation events the program counted (plus the C library's
//! few of its own), from every thread it started, with none dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use traces::Event;

use crate::common;

/// Compiles the allocator's workload program once (`cc -O2`: the blocks the program
/// checks are real; every counted call stays a call).
fn program() -> &'static Path {
    static EXE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &EXE.get_or_init(|| {
        let d = tempfile::tempdir().expect("tempdir");
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../allocator/tests/programs/bench_workloads.c");
        let exe = d.path().join("bench_workloads");
        let st = Command::new("cc")
            .args(["-O2", "-g", "-pthread", "-w", "-o"])
            .arg(&exe)
            .arg(&src)
            .status()
            .expect("run cc");
        assert!(st.success(), "compiling {}", src.display());
        (d, exe)
    })
    .1
}

/// `ok MODE calls=N threads=T children=C` from the program's stdout file.
fn counts(line: &str) -> (usize, usize, usize) {
    let field = |k: &str| -> usize {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or_else(|| panic!("{k} in {line:?}"))
            .parse()
            .unwrap()
    };
    (field("calls="), field("threads="), field("children="))
}

/// Allocation events (allocations, frees, reallocs) and distinct threads of a trace.
fn events(path: &Path) -> (usize, usize, u64) {
    let t = common::read(path);
    let n = t
        .records
        .iter()
        .filter(|r| {
            matches!(
                r.event,
                Event::Alloc { .. } | Event::Free { .. } | Event::Realloc { .. }
            )
        })
        .count();
    let threads: std::collections::HashSet<_> = t.records.iter().map(|r| r.thread).collect();
    (
        n,
        threads.len(),
        t.trailer.map_or(u64::MAX, |t| t.dropped_events),
    )
}

fn workload(mode: &str) {
    let d = tempfile::tempdir().expect("tempdir");
    let out = d.path().join("stdout");
    let exe = program().to_str().unwrap();
    let run = common::record(d.path(), &[exe, mode, "1", out.to_str().unwrap()]);
    assert_eq!(run.exit_code, 0, "{mode}: the program failed under record");
    let line = std::fs::read_to_string(&out).expect("the program's output");
    assert!(line.starts_with(&format!("ok {mode} ")), "{line}");
    let (calls, threads, children) = counts(&line);
    let main = d.path().join("out.atrace");
    let (n, seen, dropped) = events(&main);
    assert_eq!(dropped, 0, "{mode}: events dropped");
    assert_eq!(seen, threads + 1, "{mode}: threads in the trace");
    // At least every counted call (a few slack for failed calls such as a rejected
    // alignment); the C library adds a few per thread (its stack cache, stdio).
    assert!(n + 8 >= calls, "{mode}: {n} events < {calls} calls");
    assert!(
        n <= calls + 8 * (threads + 1) + 300,
        "{mode}: {n} events for {calls} calls"
    );
    // Each forked child: its 100 blocks, a thread's 1000 pairs, its own trace.
    let kids: Vec<_> = run.traces.iter().filter(|p| **p != main).collect();
    assert_eq!(kids.len(), children, "{mode}: child traces");
    for k in kids {
        let (n, seen, dropped) = events(k);
        assert_eq!(dropped, 0);
        assert_eq!(seen, 2, "{}", k.display());
        assert!((2200..2300).contains(&n), "{}: {n} events", k.display());
    }
}

#[test]
fn larson_under_record() {
    workload("larson");
}

#[test]
fn xmalloc_under_record() {
    workload("xmalloc");
}

#[test]
fn cache_scratch_under_record() {
    workload("cache-scratch");
}

#[test]
fn realloc_growth_under_record() {
    workload("realloc");
}

#[test]
fn aligned_allocation_under_record() {
    workload("aligned");
}

#[test]
fn short_lived_threads_under_record() {
    workload("threads");
}

#[test]
fn fork_while_threads_allocate_under_record() {
    workload("fork");
}
