//! Link flags of `liballoctrace_malloc.so`.

use std::process::Command;

fn main() {
    // Every page the library's segments span is resident in every process it is
    // preloaded into (fault-around maps the whole file-backed segment on its first
    // touch, and the writable ones are copied on write), so the flags keep the
    // segments few and few pages long.
    //
    // By default the linker starts each segment at the file offset where the
    // previous one ended, so a segment can straddle one page more than its size
    // needs (the library spanned 15 pages for 13 pages of contents). Page-aligned
    // segments pad the file instead of memory. (lld's option; ld.bfd ignores it
    // with a warning.)
    println!("cargo:rustc-link-arg-cdylib=-Wl,-z,separate-loadable-segments");
    // One segment for the read-only data (symbol tables, relocations, lookup
    // tables) and the code: apart, each ends in a part-used page (2 + 4 pages for
    // 5.5 pages of contents). The price: the read-only data is executable too.
    // lld (rustc's default linker on x86-64 Linux since 1.90) spells it
    // `--no-rosegment`; ld.bfd, which older toolchains use through `cc`, rejects
    // that option and spells it `-z noseparate-code`.
    if uses_rust_lld() {
        println!("cargo:rustc-link-arg-cdylib=-Wl,--no-rosegment");
    } else {
        println!("cargo:rustc-link-arg-cdylib=-Wl,-z,noseparate-code");
    }
    // No RELRO: the GOT (its entries for libc's functions), the dynamic section and
    // the heap's static data share one page of writable data instead of two (a
    // RELRO segment is page-granular, made read-only after relocation). The price:
    // the GOT stays writable, as in a library linked without `-z relro`.
    println!("cargo:rustc-link-arg-cdylib=-Wl,-z,norelro");
    // No C runtime start files: they only bring an init and a fini function that do
    // nothing in this library (frame_dummy, __do_global_dtors_aux), four weak
    // imports and their relocations (`__dso_handle`, which `pthread_atfork` passes
    // to libc, is defined in lib.rs).
    println!("cargo:rustc-link-arg-cdylib=-nostartfiles");
    // No unwind tables (see discard-unwind.ld): 3.5 KiB less read-only data.
    // Backtraces (a debugger, `perf --call-graph=dwarf`) stop at the library's frames.
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=discard-unwind.ld");
    println!("cargo:rustc-link-arg-cdylib=-Wl,-T,{dir}/discard-unwind.ld");
    println!("cargo:rustc-link-arg-cdylib=-Wl,--no-eh-frame-hdr");
    // No build ID: its note and the program header naming it were 96 bytes of the
    // first segment (nothing reads them: debuggers find the library by its path).
    println!("cargo:rustc-link-arg-cdylib=-Wl,--build-id=none");
}

/// Whether rustc links with its own lld (`-fuse-ld=lld` through `cc`): the default
/// for x86_64-unknown-linux-gnu from Rust 1.90 on, unless the build names a linker
/// or linker flavour of its own (then the portable spelling is used: a page more,
/// but it links).
fn uses_rust_lld() -> bool {
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if std::env::var_os("RUSTC_LINKER").is_some()
        || flags.contains("linker")
        || flags.contains("fuse-ld")
        || flags.contains("link-self-contained")
    {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let text = String::from_utf8_lossy(&out.stdout);
    let mut version = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
