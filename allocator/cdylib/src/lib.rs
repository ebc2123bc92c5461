//! `liballoctrace_malloc.so`: the alloctrace allocator as a drop-in C malloc.
//!
//! `LD_PRELOAD=liballoctrace_malloc.so program` puts it under any dynamically linked
//! program. Each export is a one-line shim over `allocator::c_api`, which holds the C
//! semantics (errno, alignment rules) and is tested there. The backend is the real
//! program break unless `ALLOCTRACE_MALLOC_BACKEND=reserved`.

use core::ffi::c_void;

use allocator::c_api;

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
