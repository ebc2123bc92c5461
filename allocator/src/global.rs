//! The process-global instance, with per-thread caches: what the Rust
//! [`GlobalAlloc`] face ([`AllocTrace`]) and the C face ([`crate::c_api`]) call.
//!
//! The instance sets itself up on first use. Its backend is, in order of precedence:
//! the environment variable `ALLOCTRACE_MALLOC_BACKEND` (`brk` or `reserved`), the
//! backend of the [`AllocTrace`] that first allocates, [`set_backend`] called before
//! any allocation, and the real program break otherwise.
//!
//! Thread exit: a pthread key destructor flushes the exiting thread's cache; later
//! calls from that thread (other destructors) go straight to the heap.
//! Fork: `pthread_atfork` handlers take every heap lock before `fork` and release
//! them in parent and child, so the child never inherits a lock held mid-update.
//! They are registered once the process has a second thread, before the next lock
//! is taken (`fork_guard`): a single-threaded process cannot fork with a lock held
//! by someone else, and registering costs resident libc text.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use crate::heap::{Config, Heap};
use crate::heap_api::{Resize, MAX_REQUEST};
use crate::os::brk::Backend;
use crate::os::thread::{self, set_errno, ENOMEM};
use crate::size_class::MAX_SMALL;
use crate::stats::Stats;
use crate::thread_cache::{
    large_tag, small_tag, ThreadCache, ACTIVE, DEAD, INACTIVE, SMALL_TAG_MAX,
};

static HEAP: Heap = Heap::new_lazy_with_map_prefix(Config::DEFAULT, &MAP_PREFIX);

/// The first entries of the global heap's chunk map, used alone while the arena is
/// at most 8 MiB: a static, so the map of a small program's arena shares the page of
/// the library's data, resident anyway, instead of keeping a page of its own (1 KiB:
/// it fits in what that page has left). The module's other small statics are put in
/// `.data`, so none of them lands after it, on a page of its own.
static MAP_PREFIX: [AtomicUsize; 128] = [const { AtomicUsize::new(0) }; 128];

const _: () = assert!(
    core::mem::size_of::<ThreadCache>() <= crate::os::tls::SIZE
        && core::mem::align_of::<ThreadCache>() <= 64
);

/// This thread's cache: the zero-initialised thread area is a valid inactive
/// `ThreadCache` (null lists, zero counts, state `INACTIVE`).
#[inline(always)]
fn cache() -> *mut ThreadCache {
    crate::os::tls::area().cast()
}

#[link_section = ".data.alloctrace"]
static CONFIGURED: AtomicBool = AtomicBool::new(false);
/// 0: no key yet, 1: being created, 2: ready, 3: failed.
#[link_section = ".data.alloctrace"]
static KEY_STATE: AtomicU8 = AtomicU8::new(0);
#[link_section = ".data.alloctrace"]
static KEY: AtomicUsize = AtomicUsize::new(0);

/// The process-global heap (for statistics and checks).
pub fn heap() -> &'static Heap {
    &HEAP
}

/// Chooses the global instance's backend; false if it is already set up.
pub fn set_backend(backend: Backend) -> bool {
    HEAP.set_backend_if_unused(backend)
}

#[cold]
fn configure() {
    if CONFIGURED.swap(true, Ordering::Relaxed) {
        return;
    }
    let name = c"ALLOCTRACE_MALLOC_BACKEND";
    if thread::env_is(name, b"reserved") {
        set_backend(Backend::Reserved);
    } else if thread::env_is(name, b"brk") {
        set_backend(Backend::Brk);
    }
}

unsafe extern "C" fn thread_exit(_: *mut c_void) {
    // SAFETY: this thread's cache; no other borrow is live in a key destructor.
    let tc = unsafe { &mut *cache() };
    tc.forget_map();
    if tc.state == ACTIVE {
        tc.flush_all(&HEAP);
    }
    tc.state = DEAD;
}

unsafe extern "C" fn fork_prepare() {
    HEAP.lock_all();
}

unsafe extern "C" fn fork_release() {
    HEAP.unlock_all();
}

/// 0: no fork handlers yet, 1: being registered, 2: registered.
#[link_section = ".data.alloctrace"]
static FORK_STATE: AtomicU8 = AtomicU8::new(0);
/// The thread area of the thread registering them: its own allocations inside
/// `pthread_atfork` must not wait for it.
#[link_section = ".data.alloctrace"]
static FORK_REGISTRAR: AtomicUsize = AtomicUsize::new(0);

/// Makes `fork` safe before the global instance takes a lock: once the process has
/// a second thread, the fork handlers are registered (one load while they are).
///
/// While the process has one thread, no lock can be held by another thread when it
/// forks, so the handlers are not needed; a thread is created before it runs (and
/// before it can fork or allocate), so every lock taken after that is taken after
/// this check sees it. Registering costs a small program 130 KiB of resident libc
/// text (`pthread_atfork` and what it calls), more than the allocator's own.
#[inline(always)]
pub(crate) fn fork_guard() {
    if FORK_STATE.load(Ordering::Acquire) != 2 && !thread::single_threaded() {
        fork_guard_slow();
    }
}

#[cold]
fn fork_guard_slow() {
    let me = crate::os::tls::area() as usize;
    loop {
        match FORK_STATE.compare_exchange(0, 1, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                FORK_REGISTRAR.store(me, Ordering::Relaxed);
                // May allocate, re-entering here (see the registrar check below).
                thread::atfork(fork_prepare, fork_release, fork_release);
                FORK_STATE.store(2, Ordering::Release);
                return;
            }
            Err(2) => return,
            Err(_) if FORK_REGISTRAR.load(Ordering::Relaxed) == me => return,
            Err(_) => thread::yield_now(),
        }
    }
}

/// Creates the thread-exit key once per process.
fn process_hooks() -> Option<libc::pthread_key_t> {
    loop {
        match KEY_STATE.compare_exchange(0, 1, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                // May allocate; this thread's cache is already active.
                let key = thread::key_create(thread_exit);
                if let Some(k) = key {
                    KEY.store(k as usize, Ordering::Relaxed);
                }
                KEY_STATE.store(if key.is_some() { 2 } else { 3 }, Ordering::Release);
            }
            Err(2) => return Some(KEY.load(Ordering::Relaxed) as libc::pthread_key_t),
            Err(3) => return None,
            Err(_) => thread::yield_now(),
        }
    }
}

/// Turns this thread's cache on. No borrow of the cache may be live: the pthread
/// calls below may allocate, re-entering the allocator.
#[cold]
fn activate() {
    configure();
    // SAFETY: this thread's cache; no borrow is live (caller's contract).
    unsafe { (*cache()).state = ACTIVE };
    if let Some(key) = process_hooks() {
        thread::key_arm(key);
    }
}

/// The global instance's large threshold (its configuration is a constant).
const THRESHOLD: usize = Config::DEFAULT.large_threshold;
const _: () = assert!(THRESHOLD <= MAX_SMALL && THRESHOLD > SMALL_TAG_MAX);

/// Allocates `size` bytes aligned to 16; null when out of memory.
#[inline]
pub fn malloc(size: usize) -> *mut u8 {
    malloc_with::<false>(size)
}

/// [`malloc`] setting `errno` to `ENOMEM` when it returns null (the C face: only the
/// slow paths can fail, so the fast path carries no check).
#[inline]
pub(crate) fn malloc_errno(size: usize) -> *mut u8 {
    malloc_with::<true>(size)
}

#[inline(always)]
fn malloc_with<const ERRNO: bool>(size: usize) -> *mut u8 {
    if size > SMALL_TAG_MAX {
        return malloc_mid::<ERRNO>(size);
    }
    malloc_tag::<ERRNO>(small_tag(size), size)
}

/// Requests above [`SMALL_TAG_MAX`]: out of line, so the compiler does not merge
/// the two table lookups into one with more instructions for the common sizes.
#[inline(never)]
fn malloc_mid<const ERRNO: bool>(size: usize) -> *mut u8 {
    if size > THRESHOLD {
        return malloc_large::<ERRNO>(size);
    }
    malloc_tag::<ERRNO>(large_tag(size), size)
}

#[inline(always)]
fn malloc_tag<const ERRNO: bool>(tag: usize, size: usize) -> *mut u8 {
    // SAFETY: this thread's cache; the borrow ends before anything re-entrant runs.
    let p = unsafe { (*cache()).try_pop_tag(tag, size) };
    if !p.is_null() {
        return p;
    }
    malloc_slow::<ERRNO>(size)
}

#[inline(never)]
fn malloc_slow<const ERRNO: bool>(size: usize) -> *mut u8 {
    fork_guard();
    // SAFETY: reading this thread's cache state; no borrow is live.
    let state = unsafe { (*cache()).state };
    let p = if state == DEAD {
        HEAP.malloc(size)
    } else {
        if state == INACTIVE {
            activate();
        }
        // SAFETY: active cache of this thread; refilling does not re-enter the
        // allocator.
        unsafe { (*cache()).refill_pop(&HEAP, size) }
    };
    if ERRNO && p.is_null() {
        set_errno(ENOMEM);
    }
    p
}

/// [`malloc_errno`] out of line, for the functions that are not the hot `malloc`
/// itself (`realloc`, `calloc`, small aligned requests): each inlined copy of the
/// fast path was a hundred bytes of library text, which every process it is
/// preloaded into keeps resident. The `errno` variant, as the C `malloc` uses: the
/// preload library then carries one copy of the slow paths, not two (the C callers
/// set `ENOMEM` on failure anyway, and `errno` is free to change in Rust's).
#[inline(never)]
fn malloc_call(size: usize) -> *mut u8 {
    malloc_errno(size)
}

/// [`free`] out of line, for `realloc` (as [`malloc_call`]).
///
/// # Safety
/// As for [`free`].
#[inline(never)]
pub(crate) unsafe fn free_call(p: *mut u8) {
    // SAFETY: caller's promise.
    unsafe { free(p) }
}

#[cold]
fn malloc_large<const ERRNO: bool>(size: usize) -> *mut u8 {
    configure();
    fork_guard();
    let p = if size > MAX_REQUEST {
        ptr::null_mut()
    } else {
        HEAP.malloc_aligned(size, 16)
    };
    if ERRNO && p.is_null() {
        set_errno(ENOMEM);
    }
    p
}

/// Allocates `size` bytes aligned to `align` (a power of two); null when out of
/// memory or for a bad alignment.
pub fn malloc_aligned(size: usize, align: usize) -> *mut u8 {
    if align <= 16 {
        return malloc_call(size);
    }
    configure();
    fork_guard();
    HEAP.malloc_aligned(size, align)
}

/// Allocates zeroed memory for `n` items of `size` bytes; null on overflow or when
/// out of memory.
pub fn calloc(n: usize, size: usize) -> *mut u8 {
    let Some(total) = n.checked_mul(size) else {
        return ptr::null_mut();
    };
    let p = malloc_call(total);
    if !p.is_null() && total <= HEAP.large_threshold {
        // SAFETY: a fresh block of at least `total` bytes (large ones are fresh
        // mappings, already zero).
        unsafe { ptr::write_bytes(p, 0, total) };
    }
    p
}

/// Frees a block (null is ignored).
///
/// # Safety
/// `p` must be null or a live block from the global instance, not used afterwards.
#[inline]
pub unsafe fn free(p: *mut u8) {
    // SAFETY: this thread's cache, borrowed for the call only; `p` is null or live
    // and ours (caller's promise). Caching does not re-enter the allocator.
    if unsafe { (*cache()).try_free(&HEAP, p as usize) } {
        return;
    }
    // SAFETY: caller's promise.
    unsafe { free_slow(p) }
}

/// What the cache's fast path left: null, large blocks, blocks of spans with offset
/// (aligned) blocks, and frees by threads whose cache is not active.
///
/// # Safety
/// As for [`free`].
#[inline(never)]
unsafe fn free_slow(p: *mut u8) {
    // SAFETY: this thread's cache, borrowed for the call only; `p` is null or live
    // and ours (caller's promise). Caching does not re-enter the allocator.
    if unsafe { (*cache()).try_free_mixed(&HEAP, p as usize) } {
        return;
    }
    // SAFETY: caller's promise.
    unsafe { free_slower(p) }
}

/// What [`free_slow`] leaves: out of line, so the blocks of mixed spans (the most
/// common slow frees) do not pay for its stack frame.
///
/// # Safety
/// As for [`free`].
#[inline(never)]
unsafe fn free_slower(p: *mut u8) {
    fork_guard();
    let s = HEAP.map.lookup(p as usize);
    if s.is_null() {
        if !p.is_null() {
            // SAFETY: not in the arena: a large block (caller's promise).
            unsafe { HEAP.free_large(p) };
        }
        return;
    }
    // SAFETY: reading this thread's cache state; no borrow is live.
    match unsafe { (*cache()).state } {
        ACTIVE => {
            let (start, _, class) = Heap::small_block(s, p as usize);
            // SAFETY: this thread's cache; pushing does not re-enter the allocator.
            let tc = unsafe { &mut *cache() };
            tc.sync_map(&HEAP);
            tc.push(&HEAP, class, start);
        }
        INACTIVE => {
            activate();
            // SAFETY: caller's promise; the cache is active now.
            unsafe { free_slower(p) };
        }
        // SAFETY: caller's promise; an exiting thread's frees go to the heap.
        _ => unsafe { HEAP.free(p) },
    }
}

/// Resizes block `p` (null: allocate), in place when possible; null on failure,
/// leaving `p` untouched.
///
/// # Safety
/// `p` must be null or a live block from the global instance; if the result is not
/// null, `p` must not be used afterwards.
pub unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    if p.is_null() {
        return malloc_call(size);
    }
    fork_guard();
    // SAFETY: caller's promise.
    match unsafe { HEAP.resize_in_place(p, size) } {
        Resize::Done(q) => q,
        Resize::Move(old) => {
            let q = malloc_call(size);
            if !q.is_null() {
                // SAFETY: distinct live blocks; `old.min(size)` bytes are valid in both.
                unsafe {
                    ptr::copy_nonoverlapping(p, q, old.min(size));
                    free_call(p);
                }
            }
            q
        }
    }
}

/// Usable bytes of block `p`.
///
/// # Safety
/// `p` must be a live block from the global instance.
pub unsafe fn usable_size(p: *mut u8) -> usize {
    // SAFETY: caller's promise.
    unsafe { HEAP.usable_size(p) }
}

/// Returns the calling thread's cached blocks to the heap and publishes its counts.
pub fn flush_thread_cache() {
    // SAFETY: this thread's cache; flushing does not re-enter the allocator.
    let tc = unsafe { &mut *cache() };
    if tc.state == ACTIVE {
        tc.flush_all(&HEAP);
    }
}

/// Statistics of the global instance (the calling thread's counts published first).
pub fn stats() -> Stats {
    fork_guard();
    flush_thread_cache();
    HEAP.stats()
}

/// The Rust face: `#[global_allocator] static A: AllocTrace = AllocTrace::RESERVED;`
///
/// Use [`AllocTrace::RESERVED`] in ordinary Rust programs: C libraries in the same
/// process may still use glibc's malloc, which grows the real program break.
#[derive(Clone, Copy, Debug)]
pub struct AllocTrace {
    backend: Backend,
}

impl AllocTrace {
    /// The global instance on a reserved region of its own.
    pub const RESERVED: AllocTrace = AllocTrace {
        backend: Backend::Reserved,
    };

    /// The global instance on the given backend (if it is the first to set it up).
    pub const fn new(backend: Backend) -> AllocTrace {
        AllocTrace { backend }
    }

    #[inline]
    fn prepare(&self) {
        if !CONFIGURED.load(Ordering::Relaxed) {
            set_backend(self.backend);
            configure();
        }
    }
}

// SAFETY: blocks are at least `layout.size()` bytes, aligned to `layout.align()`,
// exclusively owned until freed; nothing here unwinds.
unsafe impl GlobalAlloc for AllocTrace {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.prepare();
        malloc_aligned(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        // SAFETY: GlobalAlloc contract: `p` is live and ours.
        unsafe { free(p) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.prepare();
        if layout.align() <= 16 {
            return calloc(1, layout.size());
        }
        let p = malloc_aligned(layout.size(), layout.align());
        if !p.is_null() {
            // SAFETY: a fresh block of `layout.size()` bytes.
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= 16 {
            // SAFETY: GlobalAlloc contract: `p` is live and ours.
            return unsafe { realloc(p, new_size) };
        }
        let q = malloc_aligned(new_size, layout.align());
        if !q.is_null() {
            // SAFETY: distinct live blocks, each at least `min` bytes.
            unsafe {
                ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                free(p);
            }
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_handlers_are_registered_once_the_process_has_threads() {
        std::thread::spawn(|| ()).join().unwrap();
        assert!(!thread::single_threaded());
        fork_guard();
        assert_eq!(FORK_STATE.load(Ordering::Acquire), 2);
        fork_guard();
        assert_eq!(FORK_STATE.load(Ordering::Acquire), 2);
    }
}
