//! Replays in driver processes (the `driver` example stands in for the
//! `alloctrace` binary): preloaded libraries, strace counts, the CLI.

use std::process::Command;

use replayer::backend::Touch;
use replayer::preload_driver::{count_strace_log, spawn, DriverBackend, Request, DRIVER_EXE_ENV};
use replayer::ReplayOptions;

use crate::common::{driver_example, random_trace, tmp, write_trace};

const JEMALLOC: &str = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";

fn set_driver() {
    std::env::set_var(DRIVER_EXE_ENV, driver_example());
}

#[test]
fn preloaded_library_replays_in_a_driver_process() {
    set_driver();
    let dir = tmp();
    let path = dir.path().join("t.atrace");
    write_trace(&path, &random_trace(3, 2, 2000).0);
    let req = Request {
        trace: path.clone(),
        backend: DriverBackend::Preloaded,
        options: ReplayOptions {
            touch: Touch::Page,
            ..Default::default()
        },
    };
    let lib = std::path::Path::new(JEMALLOC);
    let preload = lib.exists().then_some(lib);
    let r = spawn(&req, preload, None).unwrap();
    assert_eq!(r.ops, 2000);
    assert_eq!(r.footprint_source, "rss");
    if which_strace() {
        let log = dir.path().join("strace.log");
        let r = spawn(&req, preload, Some(&log)).unwrap();
        assert_eq!(r.ops, 2000);
        let calls = count_strace_log(&std::fs::read_to_string(&log).unwrap());
        assert!(calls.is_some(), "markers found");
    }
}

fn which_strace() -> bool {
    Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn strace_log_counting() {
    let log = "10 mmap(NULL, 4096) = 0x1\n10 getppid() = 1\n11 mmap(NULL, 8192 <unfinished ...>\n10 brk(NULL) = 0x5\n11 <... mmap resumed>) = 0x2\n11 madvise(0x2, 4096, MADV_DONTNEED) = 0\n10 munmap(0x2, 8192) = 0\n10 getppid() = 1\n10 mmap(NULL, 1) = 0x3\n";
    let c = count_strace_log(log).unwrap();
    assert_eq!((c.brk, c.mmap, c.munmap, c.madvise), (1, 1, 1, 1));
    assert!(count_strace_log("10 getppid() = 1\n").is_none());
}

#[test]
fn cli_compares_allocators_and_gates() {
    let dir = tmp();
    let path = dir.path().join("t.atrace");
    write_trace(&path, &random_trace(5, 3, 3000).0);
    let samples = dir.path().join("samples.csv");
    let mut allocs = vec!["glibc".to_string(), "alloctrace".into()];
    if std::path::Path::new(JEMALLOC).exists() {
        allocs.push(JEMALLOC.into());
    }
    let out = Command::new(driver_example())
        .arg(&path)
        .args(allocs.iter().flat_map(|a| ["-a", a]))
        .args(["--runs", "2", "--json", "--samples"])
        .arg(&samples)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &v["traces"][0];
    assert_eq!(t["ops"], 3000);
    let a = t["allocators"].as_array().unwrap();
    assert_eq!(a.len(), allocs.len());
    for x in a {
        assert_eq!(x["runs"], 2);
        for f in [
            "wall_ns",
            "cpu_ns",
            "op_mean_ns",
            "op_p99_ns",
            "peak_rss_bytes",
            "footprint_peak_bytes",
            "fragmentation_at_peak",
        ] {
            assert!(x[f]["median"].is_number(), "{f} in {x}");
        }
    }
    assert_eq!(a[1]["os_calls_source"], "allocator-stats");
    let csv = std::fs::read_to_string(&samples).unwrap();
    assert!(csv.starts_with("trace,allocator,run,t_ns,live_bytes"));

    // The gate: the same allocator against itself passes.
    let out = Command::new(driver_example())
        .arg(&path)
        .args([
            "--baseline",
            "alloctrace",
            "--candidate",
            "alloctrace",
            "--max-regression",
            "50%",
            "--no-strace",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("gate passed"));
}
