//! The preload's own heap: glibc's `__libc_malloc` family called directly, so
//! the recorder's memory never goes through (and is never recorded by) the
//! hooked `malloc`.

use core::alloc::{GlobalAlloc, Layout};

use crate::real;

/// `GlobalAlloc` on `__libc_malloc`/`__libc_calloc`/`__libc_free`.
///
/// Blocks aligned beyond malloc's 16 bytes are carved from a larger malloc or
/// calloc block, the start of which is stored in the word before the aligned
/// block: glibc has no aligned calloc, and calloc is what leaves a large
/// zeroed block (the unwinder's 200 KB memo) untouched until used.
pub struct LibcAlloc;

/// malloc's alignment on x86-64.
const MALLOC_ALIGN: usize = 16;

/// The aligned block inside `raw` (of `size + align` bytes, `align` >= 32),
/// with `raw` stored in the word before it; null if `raw` is.
///
/// # Safety
/// `raw` is null or a block of at least `size + align` bytes.
unsafe fn carve(raw: *mut u8, align: usize) -> *mut u8 {
    if raw.is_null() {
        return raw;
    }
    // At least one word (malloc aligns to 16, `align` >= 32) before the
    // aligned block, which ends within `raw + size + align`.
    let aligned = (raw as usize + 8).next_multiple_of(align);
    let at = aligned as *mut u8;
    // SAFETY: `at - 8 >= raw`, inside the block, and 8-aligned.
    unsafe { at.cast::<*mut u8>().sub(1).write(raw) };
    at
}

/// The block [`carve`] cut `ptr` from.
///
/// # Safety
/// `ptr` came from [`carve`].
unsafe fn uncarve(ptr: *mut u8) -> *mut u8 {
    // SAFETY: `carve` wrote the start in the word before `ptr`.
    unsafe { ptr.cast::<*mut u8>().sub(1).read() }
}

// SAFETY: glibc's allocator returns blocks of at least the requested size,
// 16-byte aligned; larger alignments are carved from blocks with `align`
// bytes to spare, and freed through the start stored before them.
unsafe impl GlobalAlloc for LibcAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: plain allocation.
            return unsafe { real::malloc(layout.size()).cast() };
        }
        let Some(n) = layout.size().checked_add(layout.align()) else {
            return core::ptr::null_mut();
        };
        // SAFETY: a block of `size + align` bytes, or null.
        unsafe { carve(real::malloc(n).cast(), layout.align()) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: plain allocation.
            return unsafe { real::calloc(1, layout.size()).cast() };
        }
        let Some(n) = layout.size().checked_add(layout.align()) else {
            return core::ptr::null_mut();
        };
        // SAFETY: a zeroed block of `size + align` bytes, or null.
        unsafe { carve(real::calloc(1, n).cast(), layout.align()) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let raw = if layout.align() <= MALLOC_ALIGN {
            ptr
        } else {
            // SAFETY: allocated with this alignment, so carved (caller's contract).
            unsafe { uncarve(ptr) }
        };
        // SAFETY: `raw` came from malloc or calloc.
        unsafe { real::free(raw.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: `ptr` came from `alloc` with malloc alignment.
            return unsafe { real::realloc(ptr.cast(), new_size).cast() };
        }
        // SAFETY: caller's contract; copy the smaller size and free the old block.
        unsafe {
            let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}
