//! End-to-end tests of the `alloctrace` binary on the committed golden traces
//! (`traces/samples/golden/`, made by `cargo run -p traces --example make_golden`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_alloctrace"))
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("traces/samples/golden")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run alloctrace")
}

/// Compares `actual` with the expected file; on mismatch writes
/// `<expected>.actual` beside it (or rewrites the expected file when
/// `ALLOCTRACE_BLESS=1`) and fails.
fn compare_snapshot(expected: &Path, actual: &str) {
    if std::env::var_os("ALLOCTRACE_BLESS").is_some() {
        std::fs::write(expected, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(expected).unwrap_or_default();
    if want != actual {
        let out = expected.with_extension("actual");
        std::fs::write(&out, actual).unwrap();
        panic!(
            "{} differs from the expected output; actual output written to {}",
            expected.display(),
            out.display()
        );
    }
}

#[test]
fn golden_dump_outputs() {
    for name in ["basic", "threads", "truncated"] {
        let trace = golden(&format!("{name}.atrace"));
        let o = run(&["dump", trace.to_str().unwrap()]);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        compare_snapshot(
            &golden(&format!("{name}.dump")),
            &String::from_utf8(o.stdout).unwrap(),
        );
        let o = run(&["dump", "--json", trace.to_str().unwrap()]);
        assert!(o.status.success());
        compare_snapshot(
            &golden(&format!("{name}.dump.jsonl")),
            &String::from_utf8(o.stdout).unwrap(),
        );
    }
}

#[test]
fn golden_info_json() {
    for name in ["basic", "threads", "truncated"] {
        let trace = golden(&format!("{name}.atrace"));
        let o = run(&["info", "--json", trace.to_str().unwrap()]);
        assert!(o.status.success());
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        // The file name depends on the checkout; everything else is fixed.
        let mut v = v;
        v["file"] = serde_json::Value::Null;
        compare_snapshot(
            &golden(&format!("{name}.info.json")),
            &(serde_json::to_string_pretty(&v).unwrap() + "\n"),
        );
    }
}

#[test]
fn truncated_trace_is_read_with_a_warning() {
    let trace = golden("truncated.atrace");
    let o = run(&["info", "--json", trace.to_str().unwrap()]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["integrity"]["status"], "truncated");
    // 21 events were written; the cut drops the last block (thread 102's tail).
    assert_eq!(v["events"], 19);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "one warning line: {err}");
    assert!(
        err.starts_with("alloctrace: warning: ") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn complete_trace_reports_exit_and_drops() {
    let o = run(&["info", "--json", golden("threads.atrace").to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["integrity"]["status"], "complete");
    assert_eq!(v["integrity"]["exit"], "Signal(9)");
    assert_eq!(v["integrity"]["dropped_events"], 2);
    assert_eq!(v["threads"], 3);
    assert_eq!(v["events_by_kind"]["alloc"], 9);
    assert_eq!(v["events_by_kind"]["free"], 11);
    assert!(o.stderr.is_empty());
}

/// `info` names the file's own format version: the samples are version 1.
#[test]
fn info_names_the_files_format_version() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("traces/samples/sqlite3.atrace");
    let o = run(&["info", "--json", sample.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["format_version"], 1);
    let o = run(&["info", "--json", golden("threads.atrace").to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["format_version"], traces::VERSION);
}

/// Bad input: one line on stderr naming the problem, exit status 2, no panic.
#[test]
fn bad_input_gives_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.atrace");
    std::fs::write(&empty, b"").unwrap();
    let elf = dir.path().join("prog");
    std::fs::write(&elf, b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0").unwrap();
    let future = dir.path().join("future.atrace");
    let mut bytes = std::fs::read(golden("basic.atrace")).unwrap();
    bytes[8] = 99;
    std::fs::write(&future, &bytes).unwrap();
    let flipped = dir.path().join("flipped.atrace");
    let mut bytes = std::fs::read(golden("threads.atrace")).unwrap();
    let n = bytes.len();
    bytes[n - 60] ^= 0x40;
    std::fs::write(&flipped, &bytes).unwrap();
    let missing = dir.path().join("missing.atrace");
    let cases: [(&Path, &str); 5] = [
        (&empty, "empty file"),
        (&elf, "not an alloctrace trace"),
        (
            &future,
            "format version 99 is newer than this alloctrace supports (version 2)",
        ),
        (&flipped, ": block "),
        (&missing, "No such file"),
    ];
    for cmd in ["info", "dump"] {
        for (path, what) in cases {
            let o = run(&[cmd, path.to_str().unwrap()]);
            assert_eq!(o.status.code(), Some(2), "{cmd} {}", path.display());
            let err = String::from_utf8_lossy(&o.stderr);
            let last = err.lines().last().unwrap_or("");
            assert!(
                last.starts_with("alloctrace: ") && last.contains(what),
                "{cmd} {}: {err}",
                path.display()
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}

/// A reader that goes away (`alloctrace summary --json T | head -1`) ends
/// the command quietly: no message, no panic, success.
#[test]
fn closed_stdout_ends_quietly() {
    let t = golden("threads.atrace");
    let t = t.to_str().unwrap();
    for args in [
        vec!["summary", t],
        vec!["summary", "--json", t],
        vec!["leaks", "--json", t],
        vec!["errors", "--json", t],
        vec!["info", "--json", t],
        vec!["dump", "--json", t],
    ] {
        let dir = tempfile::tempdir().unwrap();
        // A copy per command: no analysis cache is shared between them.
        let copy = dir.path().join("t.atrace");
        std::fs::copy(t, &copy).unwrap();
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == t { copy.to_str().unwrap() } else { a })
            .collect();
        let mut child = bin()
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Closing the read end first makes every write fail with EPIPE.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        // Warnings about the trace itself (this one lost 2 events) are fine.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines().all(|l| l.starts_with("alloctrace: warning: ")),
            "{args:?}: {err}"
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}");
    }
}
