//! Stress workloads modelled on the public mimalloc-bench suite (larson, xmalloc,
//! cache-scratch, realloc growth, large alignments, short-lived threads, fork while
//! threads allocate) and the C face's calloc / usable-size contract, each run under
//! `LD_PRELOAD=liballoctrace_malloc.so` and under glibc: both must succeed with the
//! same output. The programs check their own blocks' contents.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use crate::preload::preload_lib;
use std::time::{Duration, Instant};

/// Compiles `tests/programs/<name>.c` with `cc -O2 -pthread` (once per name).
fn compile(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "alloctrace-allocator-workloads-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/programs/{name}.c"));
    let status = Command::new("cc")
        .args(["-O2", "-pthread", "-w", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc {} failed", src.display());
    out
}

/// Runs `exe args` with our allocator preloaded if `preload` (and the given backend),
/// killing it if it has not finished after a generous limit (a hang, not a timing).
fn run(exe: &Path, args: &[&str], preload: bool, backend: Option<&str>) -> Output {
    let mut cmd = Command::new(exe);
    cmd.args(args);
    if preload {
        cmd.env("LD_PRELOAD", preload_lib());
    } else {
        cmd.env_remove("LD_PRELOAD");
    }
    match backend {
        Some(b) => cmd.env("ALLOCTRACE_MALLOC_BACKEND", b),
        None => cmd.env_remove("ALLOCTRACE_MALLOC_BACKEND"),
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let limit = Duration::from_secs(120);
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().ok();
            panic!("{exe:?} {args:?} (preload: {preload}) did not finish: hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

/// The output without its `calls=` count (in fork mode the churning threads' count
/// depends on how long the forks take).
fn deterministic(out: &str) -> String {
    out.split_whitespace()
        .filter(|w| !w.starts_with("calls="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Asserts `exe args` succeeds with the same stdout under glibc and under our
/// allocator with each backend.
fn same_everywhere(exe: &Path, args: &[&str]) {
    let plain = run(exe, args, false, None);
    let text = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        plain.status.success(),
        "{args:?} under glibc: {}",
        String::from_utf8_lossy(&plain.stderr)
    );
    assert!(text(&plain).starts_with("ok "), "{}", text(&plain));
    for backend in [None, Some("brk"), Some("reserved")] {
        let ours = run(exe, args, true, backend);
        assert!(
            ours.status.success(),
            "{args:?} under our allocator ({backend:?}): {:?}: {}",
            ours.status,
            String::from_utf8_lossy(&ours.stderr)
        );
        assert_eq!(
            deterministic(&text(&ours)),
            deterministic(&text(&plain)),
            "{args:?} ({backend:?})"
        );
    }
}

fn bench(mode: &str) {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    let exe = EXE.get_or_init(|| compile("bench_workloads"));
    same_everywhere(exe, &[mode]);
}

#[test]
fn larson_blocks_handed_between_threads() {
    bench("larson");
}

#[test]
fn xmalloc_producers_and_consumers() {
    bench("xmalloc");
}

#[test]
fn cache_scratch() {
    bench("cache-scratch");
}

#[test]
fn realloc_growth_and_shrink() {
    bench("realloc");
}

#[test]
fn aligned_allocation_up_to_16_mib() {
    bench("aligned");
}

#[test]
fn many_short_lived_threads() {
    bench("threads");
}

#[test]
fn fork_while_threads_allocate() {
    bench("fork");
}

#[test]
fn calloc_of_recycled_memory_is_zero_and_usable_size_is_usable() {
    let exe = compile("calloc_usable");
    same_everywhere(&exe, &[]);
}

#[test]
fn trimming_a_full_span_of_the_smallest_class() {
    let exe = compile("span_full_trim");
    same_everywhere(&exe, &[]);
}
