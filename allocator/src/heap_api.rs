//! The public, lock-taking face of a [`Heap`]: malloc, free, realloc and friends.
//!
//! These calls go straight to the central lists (one short lock per call) and keep
//! the statistics exact. The process-global instance adds per-thread caches on top
//! (see [`crate::global`]) and shares the large-block and realloc paths below.

use core::ptr;

use crate::heap::Heap;
use crate::large;
use crate::size_class::{class_of, span_capacity};
use crate::span::FreeBlock;
use crate::stats::{add, sub, Stats};

/// Requests above this are refused outright (no mapping can be that large).
pub(crate) const MAX_REQUEST: usize = isize::MAX as usize / 2;

/// Where an in-place realloc attempt ended.
pub(crate) enum Resize {
    /// The block now holds the new size at this address.
    Done(*mut u8),
    /// The block must move; it holds this many usable bytes.
    Move(usize),
}

impl Heap {
    /// Allocates `size` bytes aligned to 16 (a zero size yields a minimal block).
    /// Returns null when out of memory.
    pub fn malloc(&self, size: usize) -> *mut u8 {
        self.malloc_aligned(size, 16)
    }

    /// Allocates `size` bytes aligned to `align` (a power of two). Returns null when
    /// out of memory or when `align` is not a power of two.
    pub fn malloc_aligned(&self, size: usize, align: usize) -> *mut u8 {
        if !align.is_power_of_two() || size > MAX_REQUEST || align > MAX_REQUEST {
            return ptr::null_mut();
        }
        let align = align.max(16);
        // At least one byte: an aligned pointer at the very end of a zero-size block
        // would be the start of its neighbour.
        let size = size.max(1);
        let padded = size + (align - 16);
        if padded <= self.large_threshold {
            let mut b: *mut FreeBlock = ptr::null_mut();
            let (got, class) = self.refill(class_of(padded), 1, &mut b);
            if got == 0 {
                return ptr::null_mut();
            }
            self.counters.on_alloc(Heap::class_bytes(class), size);
            let p = (b as usize).next_multiple_of(align);
            if p != b as usize {
                // Frees of this span must now compute block starts: off the fast path.
                let s = self.map.lookup(p);
                // SAFETY: `s` is the formatted span of the live block `b`.
                let chunks = unsafe { (*s).chunks } as usize;
                self.map.clear_tag(s, chunks, &self.lock);
            }
            return p as *mut u8;
        }
        self.alloc_large(size, align)
    }

    /// Allocates zeroed memory for `n` items of `size` bytes; null on overflow or
    /// when out of memory.
    pub fn calloc(&self, n: usize, size: usize) -> *mut u8 {
        let Some(total) = n.checked_mul(size) else {
            return ptr::null_mut();
        };
        let p = self.malloc(total);
        if !p.is_null() && total <= self.large_threshold {
            // SAFETY: `p` is a fresh block of at least `total` bytes. Large blocks are
            // fresh mappings, already zero.
            unsafe { ptr::write_bytes(p, 0, total) };
        }
        p
    }

    /// Frees a block (null is ignored).
    ///
    /// # Safety
    /// `p` must be null or a live block from this heap, not used afterwards.
    pub unsafe fn free(&self, p: *mut u8) {
        if p.is_null() {
            return;
        }
        let s = self.map.lookup(p as usize);
        if s.is_null() {
            // SAFETY: not in the arena, so a large block of ours (caller's promise).
            unsafe { self.free_large(p) };
            return;
        }
        let (start, _, class) = Heap::small_block(s, p as usize);
        self.counters.on_free(Heap::class_bytes(class));
        let b = start as *mut FreeBlock;
        // SAFETY: `b` is the dead block's start; one block.
        unsafe { self.flush(class, b, 1) };
    }

    /// Resizes block `p` to `size` bytes, in place when it can (small blocks within
    /// their class, large blocks with `mremap`), else by moving. `p` null behaves like
    /// `malloc`. On failure returns null and leaves `p` untouched.
    ///
    /// # Safety
    /// `p` must be null or a live block from this heap; if the result is not null, `p`
    /// must not be used afterwards.
    pub unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        if p.is_null() {
            return self.malloc(size);
        }
        // SAFETY: forwarded caller's promise.
        match unsafe { self.resize_in_place(p, size) } {
            Resize::Done(q) => q,
            Resize::Move(old) => {
                let q = self.malloc(size);
                if !q.is_null() {
                    // SAFETY: both blocks are live and distinct; `old` bytes are readable.
                    unsafe {
                        ptr::copy_nonoverlapping(p, q, old.min(size));
                        self.free(p);
                    }
                }
                q
            }
        }
    }

    /// How many bytes block `p` can hold (at least what was asked for).
    ///
    /// # Safety
    /// `p` must be a live block from this heap.
    pub unsafe fn usable_size(&self, p: *mut u8) -> usize {
        let s = self.map.lookup(p as usize);
        if s.is_null() {
            // SAFETY: a large block of ours.
            return unsafe {
                large::header_of(p as usize).map_or(0, |h| large::usable(h, p as usize))
            };
        }
        Heap::small_block(s, p as usize).1
    }

    /// Tries to resize `p` without moving its bytes.
    ///
    /// # Safety
    /// `p` must be a live block from this heap.
    pub(crate) unsafe fn resize_in_place(&self, p: *mut u8, size: usize) -> Resize {
        if size > MAX_REQUEST {
            return Resize::Done(ptr::null_mut());
        }
        let s = self.map.lookup(p as usize);
        if !s.is_null() {
            let (_, usable, class) = Heap::small_block(s, p as usize);
            // Stay put if it fits and would not fit a class half the size or smaller.
            if size <= usable && class_of(size.max(1)) + 4 > class {
                return Resize::Done(p);
            }
            return Resize::Move(usable);
        }
        // SAFETY: a large block of ours.
        let Some(h) = (unsafe { large::header_of(p as usize) }) else {
            return Resize::Done(ptr::null_mut());
        };
        // SAFETY: `h` is the valid header of `p`.
        let usable = unsafe { large::usable(h, p as usize) };
        if size <= self.large_threshold {
            return Resize::Move(usable);
        }
        let _g = self.lock.lock();
        // SAFETY: heap lock held; `h` is on the large list.
        unsafe {
            let inner = &mut *self.inner.get();
            inner.large.remove(h);
            match large::remap_block(h, p as usize, size, 16, &self.counters) {
                Some((nh, q)) => {
                    inner.large.insert(nh);
                    self.counters.on_free(usable);
                    self.counters.on_alloc(large::usable(nh, q), size);
                    Resize::Done(q as *mut u8)
                }
                None => {
                    inner.large.insert(h);
                    Resize::Move(usable)
                }
            }
        }
    }

    /// Maps a large block.
    pub(crate) fn alloc_large(&self, size: usize, align: usize) -> *mut u8 {
        let Some((h, p)) = large::map_block(size, align, &self.counters) else {
            return ptr::null_mut();
        };
        let _g = self.lock.lock();
        // SAFETY: heap lock held; `h` is a fresh header.
        unsafe {
            (*self.inner.get()).large.insert(h);
            add(&self.counters.large_mapped_bytes, (*h).len as u64);
            self.counters.on_alloc(large::usable(h, p), size);
        }
        p as *mut u8
    }

    /// Unmaps a large block (pointers that do not carry a large header are ignored).
    ///
    /// # Safety
    /// `p` must be a live large block from this heap.
    pub(crate) unsafe fn free_large(&self, p: *mut u8) {
        // SAFETY: caller's promise.
        let Some(h) = (unsafe { large::header_of(p as usize) }) else {
            return;
        };
        {
            let _g = self.lock.lock();
            // SAFETY: heap lock held; `h` is on the large list.
            unsafe {
                self.counters.on_free(large::usable(h, p as usize));
                sub(&self.counters.large_mapped_bytes, (*h).len as u64);
                (*self.inner.get()).large.remove(h);
            }
        }
        // SAFETY: unlinked and dead.
        unsafe { large::unmap_block(h, &self.counters) };
    }

    /// A snapshot of the statistics (see [`Stats`] for how exact it is).
    pub fn stats(&self) -> Stats {
        let mut out = Stats::default();
        self.counters.snapshot_into(&mut out);
        for (i, c) in self.classes.iter().enumerate() {
            let _g = c.lock.lock();
            // SAFETY: class lock held.
            let ci = unsafe { &*c.inner.get() };
            let cs = &mut out.classes[i];
            cs.block_size = Heap::class_bytes(i) as u32;
            cs.spans = c.spans.load(core::sync::atomic::Ordering::Relaxed) as u64;
            cs.capacity_blocks = cs.spans * span_capacity(i) as u64;
            cs.used_blocks = ci.used;
            cs.run_blocks = c.run_blocks.load(core::sync::atomic::Ordering::Relaxed) as u64;
        }
        out
    }
}
