//! C semantics for the malloc family over the global instance: `errno`, alignment
//! rules, overflow checks, `realloc(p, 0)`. The `alloctrace-malloc` cdylib exports
//! these under their C names; tests call them directly.
//!
//! Behaviour follows glibc: `malloc(0)` returns a unique minimal block,
//! `realloc(p, 0)` frees `p` and returns null, `memalign` rounds a non-power-of-two
//! alignment up, `aligned_alloc` and `posix_memalign` reject it with `EINVAL`.

use core::ffi::c_void;
use core::ptr;

use crate::global;
use crate::os::mmap::page_size;
use crate::os::thread::{set_errno, EINVAL, ENOMEM};

#[inline(always)]
fn enomem_if_null(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        set_errno(ENOMEM);
    }
    p.cast()
}

/// `malloc(3)`.
#[inline]
pub fn malloc(size: usize) -> *mut c_void {
    global::malloc_errno(size).cast()
}

/// `free(3)`.
///
/// # Safety
/// `p` must be null or a live block from this allocator.
#[inline]
pub unsafe fn free(p: *mut c_void) {
    // SAFETY: caller's promise.
    unsafe { global::free(p.cast()) }
}

/// `calloc(3)`: `ENOMEM` and null when `n * size` overflows.
pub fn calloc(n: usize, size: usize) -> *mut c_void {
    enomem_if_null(global::calloc(n, size))
}

/// `realloc(3)`.
///
/// # Safety
/// `p` must be null or a live block from this allocator.
pub unsafe fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if size == 0 && !p.is_null() {
        // SAFETY: caller's promise.
        unsafe { global::free_call(p.cast()) };
        return ptr::null_mut();
    }
    // SAFETY: caller's promise.
    enomem_if_null(unsafe { global::realloc(p.cast(), size) })
}

/// `reallocarray(3)`: `ENOMEM` and null (leaving `p` alone) on overflow.
///
/// # Safety
/// `p` must be null or a live block from this allocator.
pub unsafe fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: caller's promise.
        Some(total) => unsafe { realloc(p, total) },
        None => {
            set_errno(ENOMEM);
            ptr::null_mut()
        }
    }
}

/// `posix_memalign(3)`: returns 0, `EINVAL` or `ENOMEM`. On `ENOMEM`, `errno` may
/// be `ENOMEM` too (as with glibc's, whose failing paths set it).
///
/// # Safety
/// `out` must be valid for writing a pointer.
pub unsafe fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    if !align.is_power_of_two() || align % core::mem::size_of::<usize>() != 0 {
        return EINVAL;
    }
    let p = global::malloc_aligned(size, align);
    if p.is_null() {
        return ENOMEM;
    }
    // SAFETY: caller's promise.
    unsafe { *out = p.cast() };
    0
}

/// `aligned_alloc(3)`: `EINVAL` and null unless `align` is a power of two.
pub fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(EINVAL);
        return ptr::null_mut();
    }
    enomem_if_null(global::malloc_aligned(size, align))
}

/// `memalign(3)`: a non-power-of-two alignment is rounded up.
pub fn memalign(align: usize, size: usize) -> *mut c_void {
    let Some(align) = align.max(1).checked_next_power_of_two() else {
        set_errno(EINVAL);
        return ptr::null_mut();
    };
    enomem_if_null(global::malloc_aligned(size, align))
}

/// `valloc(3)`: page-aligned.
pub fn valloc(size: usize) -> *mut c_void {
    enomem_if_null(global::malloc_aligned(size, page_size()))
}

/// `pvalloc(3)`: page-aligned, size rounded up to whole pages (at least one).
pub fn pvalloc(size: usize) -> *mut c_void {
    let Some(rounded) = size.max(1).checked_next_multiple_of(page_size()) else {
        set_errno(ENOMEM);
        return ptr::null_mut();
    };
    enomem_if_null(global::malloc_aligned(rounded, page_size()))
}

/// `malloc_usable_size(3)`: 0 for null.
///
/// # Safety
/// `p` must be null or a live block from this allocator.
pub unsafe fn malloc_usable_size(p: *mut c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    // SAFETY: caller's promise.
    unsafe { global::usable_size(p.cast()) }
}
