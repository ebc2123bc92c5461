//! `liballoctrace_malloc.so`: the alloctrace allocator as a drop-in C malloc.
//!
//! `LD_PRELOAD=liballoctrace_malloc.so program` puts it under any dynamically linked
//! program. Each export is a one-line shim over `allocator::c_api`, which holds the C
//! semantics (errno, alignment rules) and is tested there. The backend is the real
//! program break unless `ALLOCTRACE_MALLOC_BACKEND=reserved`.
//!
//! The library is `no_std` (outside its own unit tests): it is mapped into every
//! process it is preloaded into, and the standard library's runtime (argv
//! initialiser, panic and backtrace machinery, formatting) was 250 KiB of text of
//! which fault-around made a third resident. A panic (a bug: the allocator's code has
//! no panicking paths by design) aborts without printing.

#![cfg_attr(not(test), no_std)]

use core::ffi::c_void;

// The allocator's source, compiled as a module of this crate instead of linked as
// the `allocator` rlib: an item of another crate may be interposed at run time as
// far as the compiler knows, so every access to one (the heap, the chunk map, the
// lookup tables, each call) went through an entry of the GOT, which the linker
// cannot turn into a direct reference (rustc's code for x86-64 does not mark the
// loads as relaxable). Compiled here, all of them are this crate's own, hidden and
// addressed directly: 34 GOT entries and their relocations fewer, one load less on
// the fast paths, and text 350 bytes shorter. The imports below give the module's
// `crate::` paths what they name. Unit tests use the rlib.
#[cfg(not(test))]
#[allow(unused_attributes, dead_code, unused_imports)]
#[path = "../../src/lib.rs"]
mod allocator;
#[cfg(test)]
use allocator::c_api;
#[cfg(not(test))]
#[allow(unused_imports)]
use allocator::{
    at, at_mut, c_api, chunk_map, div, global, heap, heap_api, large, lock, os, pool, size_class,
    span, stats, thread_cache, Config, Heap,
};

// Without std nothing names the C library, and the library's `DT_NEEDED` would not
// list it: its symbols would then resolve only because the program loaded it first.
#[cfg(not(test))]
#[link(name = "c")]
extern "C" {}

/// `malloc(3)`.
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    c_api::malloc(size)
}

/// `free(3)`.
///
/// # Safety
/// `p` must be null or a live block from this allocator.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: forwarded C contract.
    unsafe { c_api::free(p) }
}

/// `cfree`: an old alias of `free` some programs still call.
///
/// # Safety
/// `p` must be null or a live block from this allocator.
#[no_mangle]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: forwarded C contract.
    unsafe { c_api::free(p) }
}

/// `calloc(3)`.
#[no_mangle]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    c_api::calloc(n, size)
}

/// `realloc(3)`.
///
/// # Safety
/// `p` must be null or a live block from this allocator.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded C contract.
    unsafe { c_api::realloc(p, size) }
}

/// `reallocarray(3)`.
///
/// # Safety
/// `p` must be null or a live block from this allocator.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded C contract.
    unsafe { c_api::reallocarray(p, n, size) }
}

/// `posix_memalign(3)`.
///
/// # Safety
/// `out` must be valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    // SAFETY: forwarded C contract.
    unsafe { c_api::posix_memalign(out, align, size) }
}

/// `aligned_alloc(3)`.
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    c_api::aligned_alloc(align, size)
}

/// `memalign(3)`.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    c_api::memalign(align, size)
}

/// `valloc(3)`.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    c_api::valloc(size)
}

/// `pvalloc(3)`.
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    c_api::pvalloc(size)
}

/// `malloc_usable_size(3)`.
///
/// # Safety
/// `p` must be null or a live block from this allocator.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: forwarded C contract.
    unsafe { c_api::malloc_usable_size(p) }
}

/// Aborts: unwinding out of `malloc` is undefined behaviour, and printing the message
/// would pull in formatting code (and could allocate).
#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    allocator::os::thread::abort()
}

// The unwinding personality routine. The library is built with `panic = "abort"`
// and never unwinds, but the precompiled `core` it links was built for unwinding and
// names `rust_eh_personality` in its exception tables. Defined here as a hidden
// alias of an aborting function: the name is resolved inside the library and not
// exported, so it cannot interpose on a Rust program's own personality routine.
#[cfg(not(test))]
core::arch::global_asm!(
    ".globl rust_eh_personality",
    ".hidden rust_eh_personality",
    ".set rust_eh_personality, {f}",
    f = sym eh_personality,
);

// `__dso_handle`, which `pthread_atfork` (a static stub from libc_nonshared.a)
// passes to libc as the library's identity, defined by the C runtime's start files
// in other libraries: this one is linked without them (see build.rs). Any address
// inside the library serves; libc compares it only when the library is unloaded,
// which a malloc library never is (nothing would call `__cxa_finalize` for it).
#[cfg(not(test))]
core::arch::global_asm!(
    ".globl __dso_handle",
    ".hidden __dso_handle",
    ".set __dso_handle, {f}",
    f = sym eh_personality,
);

#[cfg(not(test))]
extern "C" fn eh_personality() -> ! {
    allocator::os::thread::abort()
}
