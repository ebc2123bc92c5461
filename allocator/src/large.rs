//! Large blocks: one private anonymous mapping each, returned with `munmap` on free.
//!
//! The block's header sits in the 64 bytes just below the user pointer (the mapping
//! starts at least that far below it), so `free` finds it without a table. Live
//! large blocks are linked in a list, under the heap lock, so a heap can release them
//! when dropped and the invariant checker can walk them.

use core::ptr;

use crate::os::mmap;
use crate::stats::{add, sub, Counters};

/// Bytes reserved below a large block's user pointer for its header.
pub(crate) const LARGE_HEADER: usize = 64;
const MAGIC: usize = 0xA110_C7AC_E1A7_6E00;

/// The header of a large block.
#[repr(C)]
pub(crate) struct LargeHeader {
    magic: usize,
    pub base: usize,
    pub len: usize,
    pub prev: *mut LargeHeader,
    pub next: *mut LargeHeader,
}

const _: () = assert!(core::mem::size_of::<LargeHeader>() <= LARGE_HEADER);

/// The live large blocks of one heap.
#[derive(Debug)]
pub(crate) struct LargeList {
    pub head: *mut LargeHeader,
    pub count: usize,
}

impl LargeList {
    /// No blocks.
    pub const fn new() -> LargeList {
        LargeList {
            head: ptr::null_mut(),
            count: 0,
        }
    }

    /// Links `h` in.
    ///
    /// # Safety
    /// `h` must be a valid header on no list; heap lock held.
    pub unsafe fn insert(&mut self, h: *mut LargeHeader) {
        // SAFETY: `h` and the current head are valid headers.
        unsafe {
            (*h).prev = ptr::null_mut();
            (*h).next = self.head;
            if !self.head.is_null() {
                (*self.head).prev = h;
            }
        }
        self.head = h;
        self.count += 1;
    }

    /// Unlinks `h`.
    ///
    /// # Safety
    /// `h` must be on this list; heap lock held.
    pub unsafe fn remove(&mut self, h: *mut LargeHeader) {
        // SAFETY: `h` and its neighbours are valid headers on this list.
        unsafe {
            let (p, n) = ((*h).prev, (*h).next);
            if p.is_null() {
                self.head = n;
            } else {
                (*p).next = n;
            }
            if !n.is_null() {
                (*n).prev = p;
            }
        }
        self.count -= 1;
    }
}

/// The mapping length and user offset for `size` bytes aligned to `align`.
fn layout(size: usize, align: usize) -> Option<(usize, usize)> {
    let page = mmap::page_size();
    let off = if align <= page {
        align.max(LARGE_HEADER)
    } else {
        align
    };
    let len = off.checked_add(size)?.checked_next_multiple_of(page)?;
    (len <= isize::MAX as usize).then_some((len, off))
}

/// Maps a large block; returns its header (not yet on any list) and user pointer.
/// The caller counts the mapping in `large_mapped_bytes` when it links the block.
pub(crate) fn map_block(
    size: usize,
    align: usize,
    c: &Counters,
) -> Option<(*mut LargeHeader, usize)> {
    let (len, _) = layout(size, align)?;
    add(&c.mmap_calls, 1);
    let base = mmap::map(len)?;
    let p = (base + LARGE_HEADER).next_multiple_of(align);
    let h = (p - LARGE_HEADER) as *mut LargeHeader;
    // SAFETY: the header lies inside the fresh mapping, below `p`.
    unsafe {
        h.write(LargeHeader {
            magic: MAGIC ^ base,
            base,
            len,
            prev: ptr::null_mut(),
            next: ptr::null_mut(),
        });
    }
    Some((h, p))
}

/// The header of large block `p`, or `None` if `p` does not look like one.
///
/// # Safety
/// `p` must be a block pointer this heap handed out and not in the brk arena.
pub(crate) unsafe fn header_of(p: usize) -> Option<*mut LargeHeader> {
    let h = (p - LARGE_HEADER) as *mut LargeHeader;
    // SAFETY: large blocks have their header just below the user pointer.
    let ok = unsafe { (*h).magic == MAGIC ^ (*h).base };
    ok.then_some(h)
}

/// Usable bytes of large block `p` with header `h`.
///
/// # Safety
/// `h` must be the valid header of `p`.
pub(crate) unsafe fn usable(h: *mut LargeHeader, p: usize) -> usize {
    // SAFETY: guaranteed by the caller.
    unsafe { (*h).base + (*h).len - p }
}

/// Unmaps a large block. The caller uncounts it from `large_mapped_bytes` when it
/// unlinks the block.
///
/// # Safety
/// `h` must be a valid header on no list; the block must be dead.
pub(crate) unsafe fn unmap_block(h: *mut LargeHeader, c: &Counters) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let (base, len) = ((*h).base, (*h).len);
        (*h).magic = 0;
        add(&c.munmap_calls, 1);
        mmap::unmap(base, len);
    }
}

/// Resizes large block `p` to hold `size` bytes with `mremap`, in place if the kernel
/// can, else moving its pages (not its bytes) when `align` allows. Returns the new
/// header and user pointer; `None` leaves the block untouched.
///
/// # Safety
/// `h` must be the valid header of live block `p`, on no list.
pub(crate) unsafe fn remap_block(
    h: *mut LargeHeader,
    p: usize,
    size: usize,
    align: usize,
    c: &Counters,
) -> Option<(*mut LargeHeader, usize)> {
    // SAFETY: guaranteed by the caller.
    let (base, len) = unsafe { ((*h).base, (*h).len) };
    let off = p - base;
    let new_len = off
        .checked_add(size)?
        .checked_next_multiple_of(mmap::page_size())?;
    if new_len > isize::MAX as usize {
        return None;
    }
    add(&c.mremap_calls, 1);
    // SAFETY: the mapping is ours and whole.
    let mut new_base = unsafe { mmap::remap(base, len, new_len, false) };
    if new_base.is_none() && align <= mmap::page_size() {
        add(&c.mremap_calls, 1);
        // SAFETY: as above; the caller re-links the moved header.
        new_base = unsafe { mmap::remap(base, len, new_len, true) };
    }
    let new_base = new_base?;
    let h = (new_base + off - LARGE_HEADER) as *mut LargeHeader;
    // SAFETY: the header moved with the pages.
    unsafe {
        (*h).magic = MAGIC ^ new_base;
        (*h).base = new_base;
        (*h).len = new_len;
    }
    sub(&c.large_mapped_bytes, len as u64);
    add(&c.large_mapped_bytes, new_len as u64);
    Some((h, new_base + off))
}
