//! Link flags of `liballoctrace_malloc.so`.

fn main() {
    // Every page the library's segments span is resident in every process it is
    // preloaded into (fault-around maps the whole file-backed segment on its first
    // touch, and the writable ones are copied on write). By default the linker starts
    // each segment at the file offset where the previous one ended, so a segment can
    // straddle one page more than its size needs (the library spanned 15 pages for
    // 13 pages of contents). Page-aligned segments pad the file instead of memory.
    // (lld's option; other linkers ignore it with a warning.)
    println!("cargo:rustc-link-arg-cdylib=-Wl,-z,separate-loadable-segments");
}
