//! The preload's own heap: glibc's `__libc_malloc` family called directly, so
//! the recorder's memory never goes through (and is never recorded by) the
//! hooked `malloc`.

use core::alloc::{GlobalAlloc, Layout};

use crate::real;

/// `GlobalAlloc` on `__libc_malloc`/`__libc_memalign`/`__libc_free`.
pub struct LibcAlloc;

// SAFETY: glibc's allocator returns blocks of at least the requested size and
// alignment (malloc: 16 bytes on x86_64/aarch64; memalign for larger).
unsafe impl GlobalAlloc for LibcAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= 16 {
            // SAFETY: plain allocation.
            unsafe { real::malloc(layout.size()).cast() }
        } else {
            // SAFETY: align is a power of two.
            unsafe { real::memalign(layout.align(), layout.size()).cast() }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above (caller's contract).
        unsafe { real::free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= 16 {
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
