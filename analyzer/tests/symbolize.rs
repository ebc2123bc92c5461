//! Symbolization against a real binary: a C program compiled by the test
//! (cc -O0 -g); the synthetic trace's frames are real return addresses in it
//! (found with objdump), relocated by a made-up load bias.

use std::path::{Path, PathBuf};
use std::process::Command;

use analyzer::suppressions::Suppressions;
use analyzer::symbols::Symbols;
use analyzer::{analyze, cmd_leaks};
use traces::AllocFn;

use crate::util::Trace;

const BIAS: u64 = 0x5555_0000_0000;

/// Compiles `programs/NAME.c` into `dir`; `None` when no C compiler is found.
fn compile(name: &str, dir: &Path) -> PathBuf {
    compile_with(name, dir, &["-O0"])
}

fn compile_with(name: &str, dir: &Path, flags: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/programs/{name}.c"));
    let out = dir.join(name);
    let ok = Command::new("cc")
        .args(flags)
        .args(["-g", "-fno-omit-frame-pointer", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("running cc: {e} (install gcc)"))
        .success();
    assert!(ok, "cc failed for {}", src.display());
    out
}

/// Return address of the first call to `callee` inside `function`.
fn return_address_of_call(bin: &Path, function: &str, callee: &str) -> u64 {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(bin)
        .output()
        .expect("objdump");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut in_fn = false;
    let mut found = false;
    for line in text.lines() {
        if line.ends_with(&format!("<{function}>:")) {
            in_fn = true;
            continue;
        }
        if in_fn && line.trim().is_empty() {
            break;
        }
        let addr = line
            .split(':')
            .next()
            .map(str::trim)
            .and_then(|a| u64::from_str_radix(a, 16).ok());
        if in_fn && found {
            return addr.expect("instruction after the call");
        }
        if in_fn && line.contains("call") && line.contains(&format!("<{callee}")) {
            found = true;
        }
    }
    panic!("no call to {callee} in {function}");
}

fn line_of(marker: &str) -> u32 {
    line_in(include_str!("programs/leak.c"), marker)
}

fn line_in(src: &str, marker: &str) -> u32 {
    src.lines()
        .position(|l| l.contains(&format!("/* {marker} */")))
        .unwrap() as u32
        + 1
}

/// `(start, end)` of the binary's address range (vaddr 0 to file size is
/// enough for a small PIE).
fn range(bin: &Path) -> (u64, u64) {
    (BIAS, BIAS + std::fs::metadata(bin).unwrap().len() + 0x10000)
}

fn leak_trace(module_path: &str, bin: &Path) -> (tempfile::TempDir, PathBuf) {
    let leak_ra = return_address_of_call(bin, "make_leak", "malloc");
    let main_ra = return_address_of_call(bin, "main", "make_leak");
    let mut t = Trace::new(0);
    let (start, end) = range(bin);
    t.module(module_path, BIAS, start, end);
    t.module(
        "/nonexistent/liballoctrace_preload.so",
        0x7000_0000_0000,
        0x7000_0000_0000,
        0x7000_0010_0000,
    );
    // Innermost first: a recorder frame (removed), make_leak, main.
    let s = t.stack(&[0x7000_0000_1234, BIAS + leak_ra, BIAS + main_ra]);
    for i in 0..3 {
        t.alloc(AllocFn::Malloc, 0x1000 + 0x20 * i, 24, s);
    }
    t.finish()
}

#[test]
fn leak_is_found_at_function_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bin = compile("leak", dir.path());
    let (_d, p) = leak_trace(bin.to_str().unwrap(), &bin);
    let a = analyze(&p).unwrap();
    let mut syms = Symbols::new(&a.result.modules);
    let r = cmd_leaks::leak_report(&a, &mut syms, &Suppressions::default()).unwrap();
    assert_eq!(r.leaks.len(), 1);
    let g = &r.leaks[0];
    assert_eq!((g.count, g.bytes), (3, 72));
    // The recorder's frame is gone; make_leak is innermost, at the malloc line.
    let f = &g.stack[0];
    assert_eq!(f.function.as_deref(), Some("make_leak"));
    assert!(f.file.as_deref().unwrap().ends_with("leak.c"), "{f:?}");
    assert_eq!(f.line, Some(line_of("LEAK-LINE")));
    assert_eq!(f.module.as_deref(), bin.to_str());
    assert_eq!(g.stack[1].function.as_deref(), Some("main"));
}

#[test]
fn warmed_symbolizer_resolves_the_same_frames() {
    let dir = tempfile::tempdir().unwrap();
    let bin = compile("leak", dir.path());
    let (_d, p) = leak_trace(bin.to_str().unwrap(), &bin);
    let a = analyze(&p).unwrap();
    let mut here = Symbols::new(&a.result.modules);
    let warmup = analyzer::symbols::Warmup::start(&p);
    assert!(warmup.is_some());
    let mut warm = Symbols::warmed(&a.result.modules, warmup);
    let sup = Suppressions::default();
    let want = cmd_leaks::leak_report(&a, &mut here, &sup).unwrap();
    let got = cmd_leaks::leak_report(&a, &mut warm, &sup).unwrap();
    assert_eq!(got.leaks.len(), 1);
    assert_eq!(got.leaks[0].stack, want.leaks[0].stack);
    assert_eq!(got.leaks[0].stack[0].function.as_deref(), Some("make_leak"));
}

#[test]
fn stripped_or_missing_module_degrades_to_module_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let bin = compile("leak", dir.path());
    let stripped = dir.path().join("leak-stripped");
    std::fs::copy(&bin, &stripped).unwrap();
    assert!(Command::new("strip")
        .arg(&stripped)
        .status()
        .unwrap()
        .success());
    let leak_ra = return_address_of_call(&bin, "make_leak", "malloc");
    for path in [stripped.to_str().unwrap(), "/nonexistent/prog"] {
        let (_d, p) = leak_trace(path, &bin);
        let a = analyze(&p).unwrap();
        let mut syms = Symbols::new(&a.result.modules);
        let r = cmd_leaks::leak_report(&a, &mut syms, &Suppressions::default()).unwrap();
        let f = &r.leaks[0].stack[0];
        assert_eq!(f.function, None, "{path}");
        assert_eq!(f.module.as_deref(), Some(path));
        assert_eq!(f.offset, leak_ra);
        assert_eq!(
            f.display(),
            format!("{}+{:#x}", path.rsplit('/').next().unwrap(), leak_ra)
        );
    }
}

/// The GNU build id of `bin`, from `readelf -n`.
fn build_id(bin: &Path) -> Vec<u8> {
    let out = Command::new("readelf")
        .arg("-n")
        .arg(bin)
        .output()
        .expect("readelf");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .expect("cc links with a build id");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_module_rebuilt_since_the_recording_degrades_to_module_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let bin = compile("leak", dir.path());
    let leak_ra = return_address_of_call(&bin, "make_leak", "malloc");
    let main_ra = return_address_of_call(&bin, "main", "make_leak");
    let id = build_id(&bin);
    let mut other = id.clone();
    other[0] ^= 0xff;
    for (recorded, same) in [(id, true), (other, false)] {
        let mut t = Trace::new(0);
        let (start, end) = range(&bin);
        t.module_with_build_id(bin.to_str().unwrap(), BIAS, start, end, recorded);
        let s = t.stack(&[BIAS + leak_ra, BIAS + main_ra]);
        t.alloc(AllocFn::Malloc, 0x1000, 24, s);
        let (_d, p) = t.finish();
        let a = analyze(&p).unwrap();
        let mut syms = Symbols::new(&a.result.modules);
        let st = syms.stack(&a.stacks, s);
        if same {
            assert_eq!(st[0].function.as_deref(), Some("make_leak"));
            assert_eq!(st[0].line, Some(line_of("LEAK-LINE")));
        } else {
            assert_eq!(st[0].function, None, "{st:?}");
            assert_eq!(st[0].offset, leak_ra);
            assert_eq!(st[1].function, None);
        }
    }
}

#[test]
fn inlined_frames_are_expanded_innermost_first() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["-O1", "-fno-optimize-sibling-calls"];
    let bin = compile_with("inline", dir.path(), &flags);
    let ra = return_address_of_call(&bin, "outer", "malloc");
    let mut t = Trace::new(0);
    let (start, end) = range(&bin);
    t.module(bin.to_str().unwrap(), BIAS, start, end);
    let s = t.stack(&[BIAS + ra]);
    t.alloc(AllocFn::Malloc, 0x1000, 16, s);
    let (_d, p) = t.finish();
    let a = analyze(&p).unwrap();
    let mut syms = Symbols::new(&a.result.modules);
    let st = syms.stack(&a.stacks, s);
    let src = include_str!("programs/inline.c");
    // One address, two frames: inner (inlined into outer) at the malloc line,
    // then outer at the line of the inlined call.
    assert_eq!(st.len(), 2, "{st:#?}");
    assert_eq!(st[0].function.as_deref(), Some("inner"));
    assert!(st[0].inlined);
    assert_eq!(st[0].line, Some(line_in(src, "INLINE-LINE")));
    assert_eq!(st[1].function.as_deref(), Some("outer"));
    assert!(!st[1].inlined);
    assert_eq!(st[1].line, Some(line_in(src, "OUTER-LINE")));
    assert_eq!(st[0].address, st[1].address);
}
