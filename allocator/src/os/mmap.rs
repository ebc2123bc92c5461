//! Anonymous mappings: `mmap`, `munmap`, `mremap`, `mprotect` and `madvise`.
//!
//! Every function takes and returns plain addresses; the caller keeps track of what
//! it mapped. Failures come back as `None`/`false`, never as a panic.

use core::ptr;
#[cfg(not(target_arch = "x86_64"))]
use core::sync::atomic::{AtomicUsize, Ordering};

#[cfg(not(target_arch = "x86_64"))]
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The system page size: 4 KiB on x86-64 (the only base page size it has), else
/// queried once and cached.
///
/// Not asking on x86-64 matters for memory: `sysconf` dispatches through a jump
/// table in libc's read-only data, and that one read faulted in (with fault-around)
/// 64 KiB or more of it in every process the preload library is loaded into.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn page_size() -> usize {
    4096
}

/// The system page size (queried once, then cached).
#[cfg(not(target_arch = "x86_64"))]
pub fn page_size() -> usize {
    let cached = PAGE_SIZE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions.
    let raw = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let size = if raw > 0 { raw as usize } else { 4096 };
    PAGE_SIZE.store(size, Ordering::Relaxed);
    size
}

fn map_raw(len: usize, prot: libc::c_int, extra: libc::c_int) -> Option<usize> {
    if len == 0 {
        return None;
    }
    // SAFETY: an anonymous private mapping at a kernel-chosen address cannot alias
    // any existing Rust object.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p as usize)
}

/// Maps `len` bytes of zero-filled read-write memory. `len` should be a multiple of
/// the page size.
pub fn map(len: usize) -> Option<usize> {
    map_raw(len, libc::PROT_READ | libc::PROT_WRITE, 0)
}

/// Reserves `len` bytes of address space with no access and no swap reservation.
/// Make parts usable with [`commit`].
pub fn reserve(len: usize) -> Option<usize> {
    map_raw(len, libc::PROT_NONE, libc::MAP_NORESERVE)
}

/// Maps `len` bytes of zero-filled read-write memory without reserving swap, for
/// large sparse tables that are touched lazily.
pub fn map_sparse(len: usize) -> Option<usize> {
    map_raw(len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_NORESERVE)
}

/// Reserves `len` bytes of address space aligned to `align` (a power of two at least
/// the page size) by over-reserving and trimming the ends.
pub fn reserve_aligned(len: usize, align: usize) -> Option<usize> {
    let total = len.checked_add(align)?;
    let raw = reserve(total)?;
    let start = (raw + align - 1) & !(align - 1);
    // SAFETY: both trimmed pieces lie inside the reservation just made and are not
    // used by anyone.
    unsafe {
        if start > raw {
            unmap(raw, start - raw);
        }
        let end = start + len;
        if raw + total > end {
            unmap(end, raw + total - end);
        }
    }
    Some(start)
}

/// Maps `len` bytes of zero-filled read-write memory exactly at `addr` (page
/// aligned), only if nothing is mapped anywhere in `[addr, addr + len)`
/// (`MAP_FIXED_NOREPLACE`; on kernels older than 4.17, which treat the flag as a
/// hint, a mapping placed elsewhere is undone). Returns whether it succeeded.
pub fn map_at(addr: usize, len: usize) -> bool {
    if len == 0 || addr == 0 {
        return false;
    }
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so no live
    // object can be affected; a fresh anonymous mapping aliases nothing.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return false;
    }
    if p as usize != addr {
        // SAFETY: the mapping was just made for us at `p` and nobody has seen it.
        unsafe { unmap(p as usize, len) };
        return false;
    }
    true
}

/// Makes `[addr, addr + len)` of a reservation readable and writable.
///
/// # Safety
/// The range must lie inside a reservation owned by the caller.
pub unsafe fn commit(addr: usize, len: usize) -> bool {
    // SAFETY: the caller owns the range; changing protection of unused memory cannot
    // invalidate Rust references.
    unsafe {
        libc::mprotect(
            addr as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
        ) == 0
    }
}

/// Unmaps `[addr, addr + len)`.
///
/// # Safety
/// The range must be a mapping (or part of one) owned by the caller, with no live
/// references into it.
pub unsafe fn unmap(addr: usize, len: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        libc::munmap(addr as *mut libc::c_void, len);
    }
}

/// Resizes the mapping at `addr` from `old_len` to `new_len` bytes. Without
/// `may_move` it only succeeds in place; with it the kernel may move the pages.
/// Returns the (possibly new) address.
///
/// # Safety
/// `[addr, addr + old_len)` must be a whole mapping owned by the caller; if it moves,
/// the old addresses become invalid.
pub unsafe fn remap(addr: usize, old_len: usize, new_len: usize, may_move: bool) -> Option<usize> {
    let flags = if may_move { libc::MREMAP_MAYMOVE } else { 0 };
    // SAFETY: guaranteed by the caller.
    let p = unsafe { libc::mremap(addr as *mut libc::c_void, old_len, new_len, flags) };
    (p != libc::MAP_FAILED).then_some(p as usize)
}

/// Gives the physical pages of `[addr, addr + len)` back to the kernel with
/// `MADV_DONTNEED`; the range stays mapped and reads back as zeros.
///
/// # Safety
/// The range must be owned by the caller and hold no data anyone still needs.
pub unsafe fn advise_free(addr: usize, len: usize) -> bool {
    // SAFETY: guaranteed by the caller.
    unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_is_the_systems() {
        // SAFETY: sysconf has no preconditions.
        let sys = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        assert_eq!(page_size() as libc::c_long, sys);
    }

    #[test]
    fn map_write_remap_unmap() {
        let ps = page_size();
        assert!(ps.is_power_of_two());
        let a = map(ps).expect("map");
        // SAFETY: `a` is a fresh read-write page we own.
        unsafe {
            *(a as *mut u64) = 42;
            let b = remap(a, ps, 4 * ps, true).expect("remap");
            assert_eq!(*(b as *const u64), 42);
            assert!(advise_free(b, 4 * ps));
            assert_eq!(*(b as *const u64), 0, "MADV_DONTNEED zero-fills");
            unmap(b, 4 * ps);
        }
    }

    #[test]
    fn aligned_reservation() {
        let r = reserve_aligned(1 << 20, 1 << 20).expect("reserve");
        assert_eq!(r % (1 << 20), 0);
        // SAFETY: the range is our own reservation.
        unsafe {
            assert!(commit(r, page_size()));
            *(r as *mut u8) = 1;
            unmap(r, 1 << 20);
        }
    }
}
