//! End to end: C and C++ programs compiled by the test (-O0 -g), recorded
//! with the recorder's library API, analysed. Leaks at the right function and
//! line with exact counts and bytes; each error kind with all its stacks; no
//! error on correct programs. Skipped (with a message) when no compiler is
//! found or the recorder could not record.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use analyzer::suppressions::{Suppressions, DEFAULT};
use analyzer::symbols::{Frame, Symbols};
use analyzer::{analyze, cmd_errors, cmd_leaks};

fn programs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs")
}

/// Compiles `programs/FILE` with `compiler` into `dir`.
fn compile(compiler: &str, file: &str, dir: &Path) -> PathBuf {
    let out = dir.join(file.split('.').next().unwrap());
    let st = Command::new(compiler)
        .args(["-O0", "-g", "-o"])
        .arg(&out)
        .arg(programs().join(file))
        .status()
        .unwrap_or_else(|e| panic!("running {compiler}: {e} (install gcc/g++)"));
    assert!(st.success(), "{compiler} {file} failed");
    out
}

/// One recording at a time: each is CPU-heavy, and on 2 cores parallel ones
/// only slow each other down.
static RECORDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Records `cmd`; returns the traces (root first). A recording that produces
/// no trace fails the test.
fn record(dir: &Path, cmd: &[&str]) -> Vec<PathBuf> {
    let _one = RECORDING.lock().unwrap_or_else(|e| e.into_inner());
    let opts = recorder::RecordOptions {
        output: dir.join("run.atrace"),
        command: cmd.iter().map(OsString::from).collect(),
        max_depth: 64,
        quiet: true,
        time_resolution: recorder::DEFAULT_TIME_RESOLUTION,
    };
    let out = recorder::record(&opts).expect("record");
    assert!(
        !out.traces.is_empty(),
        "recorder produced no trace for {cmd:?}"
    );
    out.traces
}

/// 1-based line of the comment tag `/* TAG */` in `programs/FILE`.
fn line_of(file: &str, tag: &str) -> u32 {
    let src = std::fs::read_to_string(programs().join(file)).unwrap();
    let tag = format!("/* {tag} */");
    src.lines().position(|l| l.contains(&tag)).unwrap() as u32 + 1
}

fn at(frames: &[Frame], function: &str, file: &str, line: u32) {
    let f = frames
        .first()
        .unwrap_or_else(|| panic!("empty stack, wanted {function}"));
    assert_eq!(f.function.as_deref(), Some(function), "{frames:#?}");
    assert!(
        f.file.as_deref().is_some_and(|p| p.ends_with(file)),
        "{f:?}"
    );
    assert_eq!(f.line, Some(line), "{f:?}");
}

#[test]
fn recorded_leak_at_function_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bin = compile("cc", "leak.c", dir.path());
    let traces = record(dir.path(), &[bin.to_str().unwrap()]);
    let a = analyze(&traces[0]).unwrap();
    let mut syms = Symbols::new(&a.result.modules);
    let r = cmd_leaks::leak_report(&a, &mut syms, &Suppressions::parse(DEFAULT)).unwrap();
    // Exactly the three 24-byte blocks of make_leak; churn's block was freed.
    assert_eq!(r.leaks.len(), 1, "{:#?}", r.leaks);
    assert_eq!((r.leaks[0].count, r.leaks[0].bytes), (3, 72));
    at(
        &r.leaks[0].stack,
        "make_leak",
        "leak.c",
        line_of("leak.c", "LEAK-LINE"),
    );
    assert_eq!(r.leaks[0].stack[1].function.as_deref(), Some("main"));
    assert!(a.result.errors.is_empty(), "{:?}", a.result.errors);
}

/// Records `errors MODE` and returns its only error, as JSON would show it.
fn only_error(mode: &str) -> cmd_errors::ErrorEntry {
    let dir = tempfile::tempdir().unwrap();
    let bin = compile("c++", "errors.cpp", dir.path());
    let traces = record(dir.path(), &[bin.to_str().unwrap(), mode]);
    let a = analyze(&traces[0]).unwrap();
    let mut syms = Symbols::new(&a.result.modules);
    let r = cmd_errors::error_report(&a, &mut syms);
    assert_eq!(r.errors.len(), 1, "{mode}: {:#?}", r.errors);
    r.errors.into_iter().next().unwrap()
}

const SRC: &str = "errors.cpp";

#[test]
fn recorded_double_free_with_its_three_stacks() {
    let e = only_error("double");
    assert_eq!((e.kind, e.size), ("double-free", 32));
    at(
        &e.stacks["alloc"],
        "alloc_block()",
        SRC,
        line_of(SRC, "ALLOC-LINE"),
    );
    at(
        &e.stacks["first_free"],
        "first_free(void*)",
        SRC,
        line_of(SRC, "FIRST-FREE-LINE"),
    );
    at(
        &e.stacks["free"],
        "second_free(void*)",
        SRC,
        line_of(SRC, "SECOND-FREE-LINE"),
    );
    assert_eq!(e.stacks["free"][1].function.as_deref(), Some("main"));
}

/// glibc stops the program at the interior free (SIGABRT, or SIGSEGV when it
/// reads a garbage chunk header): the reports say so, and the leak table,
/// which lists the block still in use, says why.
#[test]
fn a_program_killed_by_a_signal_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let bin = compile("c++", "errors.cpp", dir.path());
    let traces = record(dir.path(), &[bin.to_str().unwrap(), "interior"]);
    let a = analyze(&traces[0]).unwrap();
    let ended = a.ended().unwrap();
    assert!(
        [
            "killed by signal 6 (SIGABRT)",
            "killed by signal 11 (SIGSEGV)"
        ]
        .contains(&&*ended),
        "{ended}"
    );
    assert!(a.cut_short());
    let mut syms = Symbols::new(&a.result.modules);
    let r = cmd_leaks::leak_report(&a, &mut syms, &Suppressions::parse(DEFAULT)).unwrap();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["ended"], *ended);
    let mut text = Vec::new();
    cmd_leaks::print_table(&mut text, &r, 0).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert_eq!((r.leaks.len(), r.leaks[0].bytes), (1, 32), "{text}");
    at(
        &r.leaks[0].stack,
        "alloc_block()",
        SRC,
        line_of(SRC, "ALLOC-LINE"),
    );
    let note = format!("Note: the program was {ended}; blocks still in use at that moment");
    assert!(text.contains(&note), "{text}");
}

#[test]
fn recorded_invalid_free_of_a_stack_address() {
    let e = only_error("invalid");
    assert_eq!((e.kind, e.size), ("invalid-free", 0));
    at(
        &e.stacks["free"],
        "second_free(void*)",
        SRC,
        line_of(SRC, "SECOND-FREE-LINE"),
    );
    assert!(!e.stacks.contains_key("alloc"));
}

#[test]
fn recorded_interior_free_names_block_and_offset() {
    let e = only_error("interior");
    assert_eq!((e.kind, e.size, e.offset), ("interior-free", 32, Some(8)));
    at(
        &e.stacks["alloc"],
        "alloc_block()",
        SRC,
        line_of(SRC, "ALLOC-LINE"),
    );
    at(
        &e.stacks["free"],
        "second_free(void*)",
        SRC,
        line_of(SRC, "SECOND-FREE-LINE"),
    );
}

#[test]
fn recorded_new_array_released_by_free() {
    let e = only_error("mismatch");
    assert_eq!((e.kind, e.size), ("mismatched-free", 40));
    assert_eq!(e.alloc_function, Some("operator new[]"));
    assert_eq!(e.function.as_deref(), Some("free"));
    at(
        &e.stacks["alloc"],
        "new_array()",
        SRC,
        line_of(SRC, "NEW-ARRAY-LINE"),
    );
    at(
        &e.stacks["free"],
        "second_free(void*)",
        SRC,
        line_of(SRC, "SECOND-FREE-LINE"),
    );
}

/// glibc aborts inside the real realloc here; the recorder wrote the call's
/// start before it, so the trace still shows the realloc of the freed block.
#[test]
fn recorded_realloc_of_freed_pointer() {
    let e = only_error("realloc");
    assert_eq!((e.kind, e.size), ("realloc-of-freed", 32));
    at(
        &e.stacks["alloc"],
        "alloc_block()",
        SRC,
        line_of(SRC, "ALLOC-LINE"),
    );
    at(
        &e.stacks["first_free"],
        "first_free(void*)",
        SRC,
        line_of(SRC, "FIRST-FREE-LINE"),
    );
    at(
        &e.stacks["free"],
        "grow(void*)",
        SRC,
        line_of(SRC, "REALLOC-LINE"),
    );
}

/// Real programs that are correct: no heap error in any of their traces.
#[test]
fn no_errors_on_correct_programs() {
    let sql = "create table t(x); insert into t values (1),(2),(3); select sum(x) from t;";
    let runs: [&[&str]; 3] = [
        &[
            "python3",
            "-c",
            "import json; print(json.dumps({'a': list(range(100))})[:10])",
        ],
        &["sqlite3", ":memory:", sql],
        &["git", "--version"],
    ];
    for cmd in runs {
        if Command::new(cmd[0]).arg("--version").output().is_err() {
            eprintln!("{} not installed; skipped", cmd[0]);
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let traces = record(dir.path(), cmd);
        for t in &traces {
            let a = analyze(t).unwrap();
            let mut syms = Symbols::new(&a.result.modules);
            let r = cmd_errors::error_report(&a, &mut syms);
            assert_eq!(
                r.total,
                0,
                "{cmd:?} {}: {:#?}",
                t.display(),
                &r.errors[..r.errors.len().min(3)]
            );
            assert!(a.result.totals.allocations > 0, "{cmd:?}: nothing recorded");
        }
    }
}
