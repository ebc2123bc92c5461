//! Link flags of `liballoctrace_malloc.so`.

fn main() {
    // Every page the library's segments span is resident in every process it is
    // preloaded into (fault-around maps the whole file-backed segment on its first
    // touch, and the writable ones are copied on write), so the flags keep the
    // segments few pages long. (lld's options; other linkers ignore them with a
    // warning.)
    //
    // By default the linker starts each segment at the file offset where the
    // previous one ended, so a segment can straddle one page more than its size
    // needs (the library spanned 15 pages for 13 pages of contents). Page-aligned
    // segments pad the file instead of memory.
    println!("cargo:rustc-link-arg-cdylib=-Wl,-z,separate-loadable-segments");
    // Relative relocations (the GOT's entries for the library's own functions) as a
    // bitmap (DT_RELR, glibc 2.36 and later) instead of 24 bytes each: the read-only
    // segment 4 -> 3 pages.
    println!("cargo:rustc-link-arg-cdylib=-Wl,-z,pack-relative-relocs");
    // No unwind tables (see discard-unwind.ld): the read-only segment 3 -> 2 pages.
    // Backtraces (a debugger, `perf --call-graph=dwarf`) stop at the library's frames.
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=discard-unwind.ld");
    println!("cargo:rustc-link-arg-cdylib=-Wl,-T,{dir}/discard-unwind.ld");
    println!("cargo:rustc-link-arg-cdylib=-Wl,--no-eh-frame-hdr");
}
