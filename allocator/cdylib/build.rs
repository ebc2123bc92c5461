//! Links libgcc's unwinder statically (`libgcc_eh.a`) when the C compiler has one.
//!
//! The standard library refers to `_Unwind_*` (backtraces; we abort on panic), which
//! otherwise makes every preloaded process map `libgcc_s.so.1`: about 90 KiB of
//! resident pages for code that never runs. With the static archive, lld resolves
//! those symbols from it and `--as-needed` drops `libgcc_s` from the dependencies.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    order_symbols();
    println!("cargo:rerun-if-env-changed=CC");
    let target = std::env::var("TARGET").unwrap_or_default();
    if !target.ends_with("-linux-gnu") {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let Ok(out) = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    else {
        return;
    };
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let lib = Path::new(&path);
    if !out.status.success() || !lib.is_absolute() || !lib.exists() {
        return;
    }
    if let Some(dir) = lib.parent() {
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-lib=static=gcc_eh");
    }
}

/// Code run in every process that lies outside our own functions: the standard
/// library's argv initialiser (an `.init_array` entry), glibc's `pthread_atfork` stub,
/// and libgcc's frame registration (called by `frame_dummy` at load and unload). Placed first in `.text`, next to the allocator's functions, so that starting
/// up does not fault in (with fault-around, 64 KiB at a time) the pages of
/// standard-library code that never runs. The names are the v0-mangled ones of the
/// toolchain in use; a name that does not match is ignored.
const HOT_FOREIGN: &[&str] = &[
    "_RNvNvNtNtNtNtCsjrHSEGnQ3l9_3std3sys4args4unix3imp15ARGV_INIT_ARRAY12init_wrapper",
    "pthread_atfork",
    "__pthread_atfork",
    "__register_frame_info",
    "__register_frame_info_bases",
    "__deregister_frame_info",
    "__deregister_frame_info_bases",
];

/// Passes lld a symbol ordering file. rust-lld is the default linker of
/// `x86_64-unknown-linux-gnu` from Rust 1.90; skipped for any other target, older
/// compilers, or flags that may choose another linker.
fn order_symbols() {
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") || !default_lld() {
        return;
    }
    let Ok(out_dir) = std::env::var("OUT_DIR") else {
        return;
    };
    let file = Path::new(&out_dir).join("symbol-order.txt");
    if std::fs::write(&file, HOT_FOREIGN.join("\n") + "\n").is_err() {
        return;
    }
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--symbol-ordering-file={}",
        file.display()
    );
    println!("cargo:rustc-cdylib-link-arg=-Wl,--no-warn-symbol-ordering");
}

/// Whether rustc links with its bundled lld: version 1.90 or later, and no flags
/// about the linker.
fn default_lld() -> bool {
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if ["linker", "link-self-contained", "fuse-ld"]
        .iter()
        .any(|f| flags.contains(f))
    {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let Ok(out) = Command::new(rustc).arg("-V").output() else {
        return false;
    };
    // "rustc 1.91.0 (...)"
    let version = String::from_utf8_lossy(&out.stdout);
    let minor = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    matches!(minor, Some(m) if m >= 90)
}
