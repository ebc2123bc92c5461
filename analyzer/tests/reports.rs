//! Reports and their JSON shapes (a public interface), on synthetic traces.

use analyzer::suppressions::{Suppressions, DEFAULT};
use analyzer::symbols::{Frame, Symbols};
use analyzer::{analyze, cmd_errors, cmd_leaks, cmd_summary};
use serde_json::Value;
use traces::{AllocFn, FreeFn};

use crate::util::Trace;

fn sample() -> (tempfile::TempDir, std::path::PathBuf) {
    let mut t = Trace::new(0);
    let (sa, sf, s2) = (t.stack(&[0xa1, 0xa2]), t.stack(&[0xb1]), t.stack(&[0xc1]));
    t.alloc(AllocFn::Malloc, 0x1000, 40, sa);
    t.free(FreeFn::Free, 0x1000, sf);
    t.free(FreeFn::Free, 0x1000, s2);
    t.alloc(AllocFn::Malloc, 0x2000, 7, sa);
    t.alloc(AllocFn::Malloc, 0x3000, 9, sa);
    t.alloc(AllocFn::NewArray, 0x4000, 1000, s2);
    t.ev(2, traces::Event::ThreadStart { parent: 1 });
    t.finish()
}

#[test]
fn leaks_json_shape() {
    let (_d, p) = sample();
    let a = analyze(&p).unwrap();
    let mut syms = Symbols::new(&a.result.modules);
    let r = cmd_leaks::leak_report(&a, &mut syms, &Suppressions::parse(DEFAULT)).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    let leaks = v["leaks"].as_array().unwrap();
    assert_eq!(leaks.len(), 2);
    assert_eq!(
        (leaks[0]["count"].as_u64(), leaks[0]["bytes"].as_u64()),
        (Some(1), Some(1000))
    );
    assert_eq!(
        (leaks[1]["count"].as_u64(), leaks[1]["bytes"].as_u64()),
        (Some(2), Some(16))
    );
    // No module recorded: frames degrade to bare addresses, innermost first.
    let st = leaks[1]["stack"].as_array().unwrap();
    assert_eq!(st.len(), 2);
    assert_eq!(st[0]["address"].as_u64(), Some(0xa1));
    for k in ["function", "file", "line", "module"] {
        assert!(st[0].get(k).unwrap().is_null(), "{k}");
    }
    assert_eq!(v["leaked_bytes"].as_u64(), Some(1016));
}

#[test]
fn errors_json_shape() {
    let (_d, p) = sample();
    let a = analyze(&p).unwrap();
    let mut syms = Symbols::new(&a.result.modules);
    let r = cmd_errors::error_report(&a, &mut syms);
    let v = serde_json::to_value(&r).unwrap();
    let errs = v["errors"].as_array().unwrap();
    assert_eq!(errs.len(), 1);
    let e = &errs[0];
    assert_eq!(e["kind"], "double-free");
    assert_eq!(e["address"], "0x1000");
    assert_eq!(e["size"].as_u64(), Some(40));
    let addr = |k: &str| e["stacks"][k][0]["address"].as_u64();
    assert_eq!(
        (addr("alloc"), addr("first_free"), addr("free")),
        (Some(0xa1), Some(0xb1), Some(0xc1))
    );
    assert_eq!(v["counts"]["double-free"].as_u64(), Some(1));
    assert_eq!(v["total"].as_u64(), Some(1));
}

#[test]
fn summary_json_has_the_documented_fields() {
    let (_d, p) = sample();
    let a = analyze(&p).unwrap();
    let mut syms = Symbols::new(&a.result.modules);
    let leaks = cmd_leaks::leak_report(&a, &mut syms, &Suppressions::default()).unwrap();
    let s = cmd_summary::summary_report(&a, &mut syms, &leaks, 5).unwrap();
    let v: Value = serde_json::to_value(&s).unwrap();
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("missing {k}"));
    assert_eq!(n("allocations"), 4);
    assert_eq!(n("frees"), 1);
    assert_eq!(n("bytes_allocated"), 40 + 7 + 9 + 1000);
    assert_eq!(n("peak_live_bytes"), 1016);
    assert_eq!(n("leaked_allocations"), 3);
    assert_eq!(n("leaked_bytes"), 1016);
    assert_eq!(n("threads"), 2);
    assert_eq!(n("errors"), 1);
    assert_eq!(v["allocations_by_function"]["malloc"].as_u64(), Some(3));
    assert_eq!(v["top_by_count"][0]["allocations"].as_u64(), Some(3));
    assert_eq!(v["top_by_bytes"][0]["bytes"].as_u64(), Some(1000));
    let hist: u64 = v["size_histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(hist, 4);
}

fn frame(function: &str, file: &str, module: &str) -> Frame {
    Frame {
        function: Some(function.into()),
        file: Some(file.into()),
        line: Some(1),
        module: Some(module.into()),
        address: 1,
        offset: 1,
        inlined: false,
    }
}

#[test]
fn default_suppressions_hide_stdio_buffers_only() {
    let s = Suppressions::parse(DEFAULT);
    let stdio = [
        frame("malloc", "malloc.c", "/lib/libc.so.6"),
        frame("_IO_file_doallocate", "filedoalloc.c", "/lib/libc.so.6"),
        frame("main", "prog.c", "/tmp/prog"),
    ];
    assert!(s.matching(&stdio).is_some());
    let mine = [
        frame("make_leak", "leak.c", "/tmp/prog"),
        frame("main", "leak.c", "/tmp/prog"),
    ];
    assert_eq!(s.matching(&mine), None);
    let user = Suppressions::parse("# mine\nleak:make_*\n");
    assert_eq!(user.matching(&mine), Some("make_*"));
}

#[test]
fn truncated_trace_still_reports() {
    let (_d, p) = sample();
    let bytes = std::fs::read(&p).unwrap();
    let cut = p.with_extension("cut");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let a = analyze(&cut).unwrap();
    assert!(a.truncation.is_some() || a.trailer.is_none());
}

#[test]
fn corrupt_trace_is_a_one_line_error() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bad.atrace");
    std::fs::write(&p, b"not a trace at all").unwrap();
    let e = analyze(&p).err().expect("error");
    let msg = format!("{e:#}");
    assert!(msg.contains("bad.atrace"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn exit_codes_and_the_cache() {
    use analyzer::cli::{self, ErrorsArgs, LeaksArgs, SuppressionArgs};
    let (_d, p) = sample();
    let errors = |code, no_cache| ErrorsArgs {
        trace: p.clone(),
        json: false,
        no_cache,
        error_exitcode: code,
    };
    // Errors found: the requested exit code; 0 by default.
    assert_eq!(cli::errors(&errors(3, true)).unwrap(), 3);
    assert_eq!(cli::errors(&errors(0, true)).unwrap(), 0);
    assert!(!analyzer::cache::path_for(&p).exists());
    // First cached run writes TRACE.analysis; the second reads it, same answer.
    assert_eq!(cli::errors(&errors(3, false)).unwrap(), 3);
    assert!(analyzer::cache::path_for(&p).exists());
    let cached = analyzer::cache::load(&p).expect("fresh cache");
    let fresh = analyze(&p).unwrap();
    assert_eq!(cached.result.errors, fresh.result.errors);
    assert_eq!(cached.result.live.len(), fresh.result.live.len());
    assert_eq!(cached.stacks.frames(1), fresh.stacks.frames(1));
    let leaks = LeaksArgs {
        trace: p.clone(),
        json: false,
        no_cache: false,
        limit: 20,
        error_exitcode: 7,
        suppress: SuppressionArgs::default(),
    };
    assert_eq!(cli::leaks(&leaks).unwrap(), 7);
}

#[test]
fn after_record_never_fails() {
    let (_d, p) = sample();
    analyzer::cli::after_record(std::slice::from_ref(&p)).unwrap();
    assert!(analyzer::cache::path_for(&p).exists());
    let missing = p.with_file_name("missing.atrace");
    analyzer::cli::after_record(&[missing]).unwrap();
}
