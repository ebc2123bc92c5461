//! The preload's own heap, on anonymous mappings made by system call: the
//! recorder's memory never goes through the hooked `malloc` (so it is never
//! recorded), and never through glibc's allocator either.
//!
//! Why not glibc's: a hook allocates for itself (a thread's unwinder, the
//! module list after a `dlopen`) while the program's signal handler may
//! interrupt it, and a handler that calls `malloc` then reaches glibc's
//! allocator (the hook passes it through) in the middle of the recorder's
//! own glibc call. glibc's allocator is not reentrant: a program that
//! allocates in a 20 kHz timer handler aborted with "malloc assertion failure
//! in sysmalloc" in 2 of 3 traced runs, the handler's `malloc(4000)` stacked
//! on the hook's allocation of a new thread's unwinder. Untraced, the same
//! program never was inside glibc's allocator at such a point. This heap is
//! lock-free and makes only system calls, so it is async-signal-safe, and the
//! program's own `malloc` calls are the only ones that reach glibc.
//!
//! Layout: small blocks (up to [`MAX_SMALL`] bytes, by power-of-two class)
//! come from one region of address space reserved on first use, refilled a
//! slab at a time by an atomic bump and kept on a lock-free free list per
//! class (a Treiber stack whose head carries a tag against ABA). Larger
//! blocks, and small ones once the region is full, are their own mappings.
//! Small blocks are never returned to the system; the recorder frees few.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::real;

/// `GlobalAlloc` on anonymous mappings (see the module's documentation).
pub struct MapAlloc;

const PAGE: usize = 4096;
/// Small classes: blocks of `16 << c` bytes for `c` in `0..CLASSES`.
const CLASSES: usize = 8;
/// The largest small block.
const MAX_SMALL: usize = 16 << (CLASSES - 1);
/// Address space reserved for small blocks.
const REGION: usize = 32 << 20;

/// The region's start; 0 before it is reserved, [`NO_REGION`] if that failed.
static REGION_BASE: AtomicUsize = AtomicUsize::new(0);
const NO_REGION: usize = 1;
/// Bytes of the region handed out to slabs so far.
static REGION_USED: AtomicUsize = AtomicUsize::new(0);
/// Per class, the free list's head: a tag (bumped at every change) in the
/// high 40 bits, and the first free block's [`index`] in the low
/// [`INDEX_BITS`] (0: empty). A free block's first word holds the next
/// block's index.
///
/// The tag keeps a pop that read the head, then stalled while the list
/// changed, from installing a next link read meanwhile from a block that
/// has another owner: its exchange fails unless the tag came round to the
/// same value, after 2^40 changes of the list (2^32 took 82 s of one
/// thread allocating and freeing in a loop, on a loaded 2-vCPU machine).
static HEADS: [AtomicU64; CLASSES] = [const { AtomicU64::new(0) }; CLASSES];
/// The low bits of a free-list word: a block's index.
const INDEX_BITS: u32 = 24;
const INDEX: u64 = (1 << INDEX_BITS) - 1;
const _: () = assert!(REGION / 16 < INDEX as usize);

/// The free-list name of the block at offset `off` of the region: its
/// 16-byte unit + 1 (0 names none).
#[inline]
fn index(off: u64) -> u64 {
    off / 16 + 1
}

/// The offset in the region of the block with [`index`] `i` (not 0).
#[inline]
fn offset(i: u64) -> u64 {
    (i - 1) * 16
}

/// The head that follows `h` with block index `i` on top: the tag bumped.
#[inline]
fn next_head(h: u64, i: u64) -> u64 {
    (h & !INDEX).wrapping_add(INDEX + 1) | i
}

/// The class of a block of `layout`, if small.
#[inline]
fn class_of(layout: Layout) -> Option<usize> {
    let n = layout.size().max(layout.align()).max(16);
    if n > MAX_SMALL {
        return None;
    }
    Some((n.next_power_of_two().trailing_zeros() - 4) as usize)
}

/// A fresh anonymous read-write mapping of `len` bytes, or null.
fn map(len: usize) -> *mut u8 {
    map_with(len, libc::PROT_READ | libc::PROT_WRITE, 0)
}

/// A fresh anonymous mapping of `len` bytes with `prot` and extra `flags`, or null.
fn map_with(len: usize, prot: i32, flags: i32) -> *mut u8 {
    // SAFETY: a new private anonymous mapping; no existing memory is touched.
    let p = unsafe {
        real::mmap(
            core::ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED || p.is_null() {
        core::ptr::null_mut()
    } else {
        p.cast()
    }
}

/// Unmaps `len` bytes at `p` (a mapping, or a page-aligned part of one, of ours).
fn unmap(p: *mut u8, len: usize) {
    if len > 0 {
        // SAFETY: the caller's range is a mapping (part) no one uses any more.
        unsafe { real::munmap(p.cast(), len) };
    }
}

/// The small-block region's start, reserving it on first use; `None` if it
/// cannot be.
fn region() -> Option<usize> {
    match REGION_BASE.load(Ordering::Acquire) {
        0 => {}
        NO_REGION => return None,
        base => return Some(base),
    }
    // Address space only: no access, so no commit charge (which
    // `vm.overcommit_memory = 2` would make for all of it, `MAP_NORESERVE`
    // or not); `refill` opens a slab at a time.
    let p = map_with(REGION, libc::PROT_NONE, libc::MAP_NORESERVE) as usize;
    let mine = if p == 0 { NO_REGION } else { p };
    match REGION_BASE.compare_exchange(0, mine, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => (mine != NO_REGION).then_some(mine),
        Err(theirs) => {
            // Another thread (or a signal handler) reserved it first.
            if p != 0 {
                unmap(p as *mut u8, REGION);
            }
            (theirs != NO_REGION).then_some(theirs)
        }
    }
}

/// The free-list word of the block at `off` in the region at `base`.
///
/// # Safety
/// `off` is a block of the region (16-byte aligned, inside it).
#[inline]
unsafe fn link(base: usize, off: u64) -> &'static AtomicU64 {
    // SAFETY: the region stays mapped for the life of the process, and the
    // block is 8-aligned and at least 8 bytes.
    unsafe { &*((base + off as usize) as *const AtomicU64) }
}

/// Pushes the chain of blocks `first..=last` (linked through their first
/// words, `last`'s to be set here) on class `c`'s free list.
///
/// # Safety
/// The blocks are free blocks of class `c` in the region at `base`, owned by
/// the caller.
unsafe fn push(c: usize, base: usize, first: u64, last: u64) {
    let head = &HEADS[c];
    let mut h = head.load(Ordering::Acquire);
    loop {
        // SAFETY: `last` is the caller's block.
        unsafe { link(base, last) }.store(h & INDEX, Ordering::Relaxed);
        let new = next_head(h, index(first));
        match head.compare_exchange_weak(h, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(now) => h = now,
        }
    }
}

/// Pops a block of class `c` from its free list, refilling the list from a
/// new slab when empty; null if the region is full or missing.
fn pop(c: usize) -> *mut u8 {
    let Some(base) = region() else {
        return core::ptr::null_mut();
    };
    let head = &HEADS[c];
    let mut h = head.load(Ordering::Acquire);
    loop {
        let top = h & INDEX;
        if top == 0 {
            return refill(c, base);
        }
        let off = offset(top);
        // The next link of a block that another thread may pop (and start
        // using) meanwhile: then the tag has moved on and the exchange fails,
        // whatever was read.
        // SAFETY: `off` is a block of the region (only pushes set heads).
        let next = unsafe { link(base, off) }.load(Ordering::Relaxed) & INDEX;
        let new = next_head(h, next);
        match head.compare_exchange_weak(h, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return (base + off as usize) as *mut u8,
            Err(now) => h = now,
        }
    }
}

/// Carves a new slab of class `c`: returns its first block and pushes the
/// others on the class's free list; null if the region is full.
fn refill(c: usize, base: usize) -> *mut u8 {
    let size = 16usize << c;
    // At least a page, and 16 blocks of the larger classes.
    let slab = (size * 16).max(PAGE);
    let off = REGION_USED.fetch_add(slab, Ordering::Relaxed);
    if off + slab > REGION {
        return core::ptr::null_mut();
    }
    let at = (base + off) as *mut libc::c_void;
    // SAFETY: the slab is part of the region, which only this call uses.
    if unsafe { real::mprotect(at, slab, libc::PROT_READ | libc::PROT_WRITE) } != 0 {
        // No memory for it: the large path serves this class from now on.
        return core::ptr::null_mut();
    }
    let blocks = slab / size;
    let (first, last) = ((off + size) as u64, (off + slab - size) as u64);
    for i in 1..blocks - 1 {
        let at = (off + i * size) as u64;
        // SAFETY: blocks of the new slab, which only this call knows.
        unsafe { link(base, at) }.store(index(at + size as u64), Ordering::Relaxed);
    }
    // SAFETY: blocks 1.. of the new slab are free blocks of class `c`.
    unsafe { push(c, base, first, last) };
    (base + off) as *mut u8
}

/// Freed large blocks of up to [`CACHE_PAGES`] pages kept for reuse, so a
/// program that starts and ends threads by the thousand does not map and
/// unmap a thread's recorder blocks every time: 0, or a block's address
/// (page-aligned) plus its length in pages.
static CACHE: [AtomicUsize; 16] = [const { AtomicUsize::new(0) }; 16];
const CACHE_PAGES: usize = 16;

/// A cached block of exactly `pages` pages, taken off the cache; or null.
fn cache_take(pages: usize) -> *mut u8 {
    for slot in &CACHE {
        let v = slot.load(Ordering::Relaxed);
        if v != 0
            && v & (PAGE - 1) == pages
            && slot
                .compare_exchange(v, 0, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return (v & !(PAGE - 1)) as *mut u8;
        }
    }
    core::ptr::null_mut()
}

/// Keeps the freed mapping `p` of `pages` pages for reuse; false if the
/// cache is full (or the block too large for it).
fn cache_put(p: *mut u8, pages: usize) -> bool {
    if pages > CACHE_PAGES {
        return false;
    }
    let v = p as usize | pages;
    CACHE.iter().any(|slot| {
        slot.load(Ordering::Relaxed) == 0
            && slot
                .compare_exchange(0, v, Ordering::Release, Ordering::Relaxed)
                .is_ok()
    })
}

/// A large block: `size` rounded up to pages, aligned to `align`; null on failure.
fn map_large(size: usize, align: usize) -> *mut u8 {
    let Some(len) = size.checked_next_multiple_of(PAGE) else {
        return core::ptr::null_mut();
    };
    if align <= PAGE {
        return map(len);
    }
    // Over-map by the alignment and trim both ends.
    let Some(total) = len.checked_add(align) else {
        return core::ptr::null_mut();
    };
    let p = map(total);
    if p.is_null() {
        return p;
    }
    let start = (p as usize).next_multiple_of(align);
    let head = start - p as usize;
    unmap(p, head);
    // SAFETY: `start + len <= p + total`, inside the mapping.
    unmap(unsafe { (start as *mut u8).add(len) }, total - head - len);
    start as *mut u8
}

/// Whether `p` is a block of the small-block region.
#[inline]
fn in_region(p: *mut u8) -> Option<usize> {
    let base = REGION_BASE.load(Ordering::Acquire);
    let a = p as usize;
    (base > NO_REGION && a >= base && a < base + REGION).then_some(base)
}

// SAFETY: small blocks are distinct blocks of at least the layout's size,
// aligned to their power-of-two size (slabs start at page multiples of the
// region, which is page-aligned, and hold whole blocks), and at least the
// layout's alignment; large blocks are whole mappings of rounded-up size and
// the layout's alignment. A block is freed by the class or length its layout
// gives, as `alloc` chose them.
unsafe impl GlobalAlloc for MapAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(c) = class_of(layout) {
            let p = pop(c);
            if !p.is_null() {
                return p;
            }
        } else if layout.align() <= PAGE {
            // (Not for `alloc_zeroed`: a reused block is not zero.)
            let p = cache_take(layout.size().div_ceil(PAGE));
            if !p.is_null() {
                return p;
            }
        }
        map_large(layout.size(), layout.align())
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if let Some(c) = class_of(layout) {
            let p = pop(c);
            if !p.is_null() {
                // SAFETY: a block of `16 << c >= size` bytes, ours now.
                unsafe { p.write_bytes(0, layout.size()) };
                return p;
            }
        }
        // New mappings are zero-filled (and untouched until used).
        map_large(layout.size(), layout.align())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let (Some(c), Some(base)) = (class_of(layout), in_region(ptr)) {
            let off = (ptr as usize - base) as u64;
            // SAFETY: a block of class `c` allocated by `pop`, freed by its owner.
            unsafe { push(c, base, off, off) };
            return;
        }
        let pages = layout.size().div_ceil(PAGE);
        if layout.align() > PAGE || !cache_put(ptr, pages) {
            unmap(ptr, pages * PAGE);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align(new_size, layout.align());
        let (Ok(new_layout), None) = (new_layout, in_region(ptr)) else {
            // SAFETY: caller's contract (`GlobalAlloc::realloc`'s default).
            return unsafe { default_realloc(self, ptr, layout, new_size) };
        };
        if class_of(new_layout).is_some() || layout.align() > PAGE {
            // SAFETY: as above.
            return unsafe { default_realloc(self, ptr, layout, new_size) };
        }
        // A large block staying large: the kernel moves the pages.
        let (old_len, new_len) = (
            layout.size().next_multiple_of(PAGE),
            new_size.next_multiple_of(PAGE),
        );
        if old_len == new_len {
            return ptr;
        }
        // SAFETY: `ptr` is a whole mapping of `old_len` bytes (a large block).
        let p = unsafe {
            real::mremap(
                ptr.cast(),
                old_len,
                new_len,
                libc::MREMAP_MAYMOVE,
                core::ptr::null_mut(),
            )
        };
        if p == libc::MAP_FAILED {
            core::ptr::null_mut()
        } else {
            p.cast()
        }
    }
}

/// Allocate, copy, free: `GlobalAlloc::realloc`'s default behaviour.
///
/// # Safety
/// As `GlobalAlloc::realloc`.
unsafe fn default_realloc(a: &MapAlloc, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    // SAFETY: the caller's contract: `new_size` is valid for the alignment.
    let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
    // SAFETY: as `alloc`, `dealloc`; both blocks are valid for the smaller size.
    unsafe {
        let new = a.alloc(new_layout);
        if !new.is_null() {
            core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            a.dealloc(ptr, layout);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::thread::JoinHandleExt;

    use super::*;

    #[test]
    fn blocks_are_distinct_aligned_and_reused() {
        let a = MapAlloc;
        for (size, align) in [
            (1, 1),
            (24, 8),
            (100, 64),
            (2048, 16),
            (3000, 8),
            (5000, 8192),
        ] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero sizes; blocks written within their size and freed once.
            unsafe {
                let ps: Vec<*mut u8> = (0..300).map(|_| a.alloc_zeroed(l)).collect();
                for (i, &p) in ps.iter().enumerate() {
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0);
                    assert!((0..size).all(|k| *p.add(k) == 0));
                    p.write_bytes(i as u8, size);
                }
                for (i, &p) in ps.iter().enumerate() {
                    assert!(
                        (0..size).all(|k| *p.add(k) == i as u8),
                        "block {i} overwritten"
                    );
                    a.dealloc(p, l);
                }
                let p = a.alloc(l);
                assert_eq!(in_region(p).is_some(), class_of(l).is_some());
                let q = a.realloc(p, l, size * 3);
                assert!(!q.is_null());
                a.dealloc(q, Layout::from_size_align(size * 3, align).unwrap());
            }
        }
    }

    #[test]
    fn threads_share_the_lists() {
        let l = Layout::from_size_align(48, 16).unwrap();
        let ts: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    let a = MapAlloc;
                    for round in 0..2000 {
                        // SAFETY: as above.
                        unsafe {
                            let ps: Vec<*mut u8> = (0..8).map(|_| a.alloc(l)).collect();
                            for &p in &ps {
                                p.write_bytes((t * 31 + round) as u8, 48);
                            }
                            for &p in &ps {
                                assert!((0..48).all(|k| *p.add(k) == (t * 31 + round) as u8));
                                a.dealloc(p, l);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
    }

    /// Layouts the stress tests cycle through: every small class, a
    /// small layout aligned beyond its size, large ones, one aligned beyond
    /// a page.
    const STRESS: [(usize, usize); 8] = [
        (8, 8),
        (40, 8),
        (200, 16),
        (1000, 8),
        (2048, 2048),
        (16, 4096),
        (6000, 8),
        (9000, 8192),
    ];

    /// Allocates, fills, reallocates, checks and frees a block of each
    /// [`STRESS`] layout, with a fill byte of its own per call; false if a
    /// block was not as written (another owner wrote it).
    fn cycle(fill: u8) -> bool {
        let a = MapAlloc;
        let mut ok = true;
        for (i, (size, align)) in STRESS.into_iter().enumerate() {
            let l = Layout::from_size_align(size, align).unwrap();
            let v = fill.wrapping_add(i as u8);
            // SAFETY: blocks written within their size, freed once with their layout.
            unsafe {
                let p = if i % 2 == 0 {
                    a.alloc(l)
                } else {
                    a.alloc_zeroed(l)
                };
                if p.is_null() || p as usize % align != 0 {
                    return false;
                }
                if i % 2 == 1 {
                    ok &= (0..size).all(|k| *p.add(k) == 0);
                }
                p.write_bytes(v, size);
                let grown = size * 3;
                let q = a.realloc(p, l, grown);
                if q.is_null() || q as usize % align != 0 {
                    return false;
                }
                ok &= (0..size).all(|k| *q.add(k) == v);
                q.write_bytes(v, grown);
                std::hint::spin_loop();
                ok &= (0..grown).all(|k| *q.add(k) == v);
                a.dealloc(q, Layout::from_size_align(grown, align).unwrap());
            }
        }
        // Mostly list operations: small blocks of every class at once.
        let mut ps = [core::ptr::null_mut::<u8>(); 32];
        for (k, p) in ps.iter_mut().enumerate() {
            let l = Layout::from_size_align(16 << (k % CLASSES), 8).unwrap();
            // SAFETY: as above.
            unsafe {
                *p = a.alloc(l);
                if p.is_null() {
                    return false;
                }
                p.write_bytes(fill ^ k as u8, l.size());
            }
        }
        for (k, &p) in ps.iter().enumerate() {
            let l = Layout::from_size_align(16 << (k % CLASSES), 8).unwrap();
            // SAFETY: as above.
            unsafe {
                ok &= (0..l.size()).all(|i| *p.add(i) == fill ^ k as u8);
                a.dealloc(p, l);
            }
        }
        ok
    }

    static HANDLED: AtomicUsize = AtomicUsize::new(0);
    static HANDLER_FAILED: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn on_signal(_: libc::c_int) {
        let n = HANDLED.fetch_add(1, Ordering::Relaxed);
        if !cycle(n as u8 | 0x80) {
            HANDLER_FAILED.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Threads allocate while signals interrupt them, their handlers
    /// allocating too (from the middle of a push, a pop, a refill, the
    /// region's reservation), and the main thread forks children that
    /// allocate from the state the others left mid-operation.
    #[test]
    fn signal_handlers_threads_and_forks_share_the_lists() {
        // Take the tags to where 32 bits would wrap.
        let tag = |h: u64| h >> INDEX_BITS;
        for h in &HEADS {
            h.fetch_add((u32::MAX as u64 - 8) << INDEX_BITS, Ordering::Relaxed);
        }
        // SAFETY: a handler that only uses this allocator and atomics.
        unsafe {
            let mut sa: libc::sigaction = core::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(
                libc::sigaction(libc::SIGRTMIN(), &sa, core::ptr::null_mut()),
                0
            );
        }
        let stop = std::sync::Arc::new(core::sync::atomic::AtomicBool::new(false));
        let workers: Vec<_> = (0..3)
            .map(|t| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut bad = 0;
                    let mut round = 0usize;
                    while !stop.load(Ordering::Relaxed) || round < 200 {
                        if !cycle((t * 40 + round) as u8 & 0x7f) {
                            bad += 1;
                        }
                        round += 1;
                    }
                    bad
                })
            })
            .collect();
        let ids: Vec<libc::pthread_t> = workers.iter().map(|w| w.as_pthread_t()).collect();
        // SAFETY: always safe to call.
        let main_id = unsafe { libc::pthread_self() };
        let kicker = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut sent = 0;
                let round = ids.len() + 1;
                while !stop.load(Ordering::Relaxed) {
                    for &id in ids.iter().chain([&main_id]) {
                        // SAFETY: the threads live until `stop` (joined after).
                        unsafe { libc::pthread_kill(id, libc::SIGRTMIN()) };
                        sent += 1;
                    }
                    // Real-time signals queue: at most two rounds pending,
                    // or the threads would run nothing but their handlers.
                    while HANDLED.load(Ordering::Relaxed) + 2 * round < sent
                        && !stop.load(Ordering::Relaxed)
                    {
                        std::thread::yield_now();
                    }
                }
                sent
            })
        };
        let mut children_failed = 0;
        for i in 0..16 {
            // SAFETY: the child only allocates with this allocator and exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let ok = (0..20).all(|r| cycle((i + r) as u8));
                // SAFETY: leaving the child without running the parent's exit code.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            assert!(pid > 0);
            let mut status = 0;
            // SAFETY: our child.
            while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {}
            if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                children_failed += 1;
            }
            assert!(cycle(i as u8));
        }
        stop.store(true, Ordering::Relaxed);
        let sent = kicker.join().unwrap();
        let bad: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        assert_eq!(bad, 0, "workers' blocks overwritten");
        assert_eq!(HANDLER_FAILED.load(Ordering::Relaxed), 0);
        assert_eq!(children_failed, 0);
        assert!(HANDLED.load(Ordering::Relaxed) > 0, "{sent} signals sent");
        // Tags did not wrap at 32 bits.
        for h in &HEADS {
            assert!(tag(h.load(Ordering::Relaxed)) >= u32::MAX as u64 - 8);
        }
    }
}
