//! Every exported C symbol, each a few-line shim: call the real function and
//! record (allocation: after it returns; release: before it runs).
//!
//! Each function has exactly the contract of the C or C++ function it
//! replaces, hence no per-function `# Safety` sections here.
#![allow(clippy::missing_safety_doc)]

use core::ffi::{c_char, c_int, c_void};

use crate::real;
use crate::record::{self, alloc_fn as af, free_fn as ff};

// ---- C allocation functions -------------------------------------------------

/// Starts loading the malloc header of block `p` (the word before it), which
/// the real free reads first: the load then overlaps the recording instead
/// of waiting after it (the counter read before the real free holds back
/// later instructions). A prefetch never faults, whatever `p` is.
#[inline(always)]
fn prefetch_header(p: *mut c_void) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch has no architectural effect and cannot fault.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            (p as *const i8).wrapping_sub(8),
        )
    };
}

#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: the C contract of malloc.
    let p = unsafe { real::malloc(size) };
    record::alloc(af::MALLOC, p, size, 0);
    p
}

#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: the C contract of calloc.
    let p = unsafe { real::calloc(n, size) };
    record::alloc(af::CALLOC, p, n.wrapping_mul(size), 0);
    p
}

#[no_mangle]
pub unsafe extern "C" fn realloc(old: *mut c_void, size: usize) -> *mut c_void {
    prefetch_header(old);
    // SAFETY: the C contract of realloc.
    record::realloc(af::REALLOC, old, size, || unsafe {
        real::realloc(old, size)
    })
}

#[no_mangle]
pub unsafe extern "C" fn reallocarray(old: *mut c_void, n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        // SAFETY: setting errno of this thread.
        unsafe { *libc::__errno_location() = libc::ENOMEM };
        return core::ptr::null_mut();
    };
    // SAFETY: the C contract of realloc.
    record::realloc(af::REALLOCARRAY, old, total, || unsafe {
        real::realloc(old, total)
    })
}

#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    prefetch_header(p);
    record::free(ff::FREE, p, 0, 0);
    // SAFETY: the C contract of free.
    unsafe { real::free(p) }
}

#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align % core::mem::size_of::<usize>() != 0 {
        return libc::EINVAL;
    }
    // SAFETY: valid alignment.
    let p = unsafe { real::memalign(align, size) };
    record::alloc(af::POSIX_MEMALIGN, p, size, align);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: `out` is a valid out pointer (C contract).
    unsafe { *out = p };
    0
}

#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    // SAFETY: memalign accepts any alignment (glibc rounds it up).
    let p = unsafe { real::memalign(align, size) };
    record::alloc(af::ALIGNED_ALLOC, p, size, align);
    p
}

#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: the C contract of memalign.
    let p = unsafe { real::memalign(align, size) };
    record::alloc(af::MEMALIGN, p, size, align);
    p
}

#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    // SAFETY: the C contract of valloc.
    let p = unsafe { real::valloc(size) };
    record::alloc(af::VALLOC, p, size, 0);
    p
}

#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    // SAFETY: the C contract of pvalloc.
    let p = unsafe { real::pvalloc(size) };
    record::alloc(af::PVALLOC, p, size, 0);
    p
}

// ---- C++ operator new -------------------------------------------------------

/// The throwing forms: glibc's malloc, and on failure the real operator (new
/// handler, `std::bad_alloc`), whose inner malloc is then what gets recorded.
#[inline(always)]
unsafe fn new_impl(func: u8, size: usize, align: usize, next: &real::Next) -> *mut c_void {
    // SAFETY: plain allocation; memalign for the aligned forms.
    let p = unsafe {
        if align == 0 {
            real::malloc(size)
        } else {
            real::memalign(align, size)
        }
    };
    if !p.is_null() {
        record::alloc(func, p, size, align);
        return p;
    }
    let f = next.get();
    if f == 0 {
        // SAFETY: no real operator new: nothing else to try.
        unsafe { libc::abort() };
    }
    if align == 0 {
        // SAFETY: `f` is the next `operator new(size_t)`.
        unsafe { core::mem::transmute::<usize, real::NewFn>(f)(size) }
    } else {
        // SAFETY: `f` is the next `operator new(size_t, align_val_t)`.
        unsafe { core::mem::transmute::<usize, real::NewAlignedFn>(f)(size, align) }
    }
}

#[inline(always)]
unsafe fn new_nothrow(func: u8, size: usize, align: usize) -> *mut c_void {
    // SAFETY: plain allocation; memalign for the aligned forms.
    let p = unsafe {
        if align == 0 {
            real::malloc(size)
        } else {
            real::memalign(align, size)
        }
    };
    record::alloc(func, p, size, align);
    p
}

#[no_mangle]
pub unsafe extern "C-unwind" fn _Znwm(size: usize) -> *mut c_void {
    // SAFETY: operator new contract.
    unsafe { new_impl(af::NEW, size, 0, &real::NEW) }
}
#[no_mangle]
pub unsafe extern "C-unwind" fn _Znam(size: usize) -> *mut c_void {
    // SAFETY: operator new[] contract.
    unsafe { new_impl(af::NEW_ARRAY, size, 0, &real::NEW_ARRAY) }
}
#[no_mangle]
pub unsafe extern "C-unwind" fn _ZnwmSt11align_val_t(size: usize, align: usize) -> *mut c_void {
    // SAFETY: aligned operator new contract.
    unsafe { new_impl(af::NEW_ALIGNED, size, align, &real::NEW_ALIGNED) }
}
#[no_mangle]
pub unsafe extern "C-unwind" fn _ZnamSt11align_val_t(size: usize, align: usize) -> *mut c_void {
    // SAFETY: aligned operator new[] contract.
    unsafe { new_impl(af::NEW_ARRAY_ALIGNED, size, align, &real::NEW_ARRAY_ALIGNED) }
}
#[no_mangle]
pub unsafe extern "C" fn _ZnwmRKSt9nothrow_t(size: usize, _nt: *const c_void) -> *mut c_void {
    // SAFETY: nothrow operator new contract.
    unsafe { new_nothrow(af::NEW_NOTHROW, size, 0) }
}
#[no_mangle]
pub unsafe extern "C" fn _ZnamRKSt9nothrow_t(size: usize, _nt: *const c_void) -> *mut c_void {
    // SAFETY: nothrow operator new[] contract.
    unsafe { new_nothrow(af::NEW_ARRAY_NOTHROW, size, 0) }
}
#[no_mangle]
pub unsafe extern "C" fn _ZnwmSt11align_val_tRKSt9nothrow_t(
    size: usize,
    align: usize,
    _nt: *const c_void,
) -> *mut c_void {
    // SAFETY: aligned nothrow operator new contract.
    unsafe { new_nothrow(af::NEW_ALIGNED_NOTHROW, size, align) }
}
#[no_mangle]
pub unsafe extern "C" fn _ZnamSt11align_val_tRKSt9nothrow_t(
    size: usize,
    align: usize,
    _nt: *const c_void,
) -> *mut c_void {
    // SAFETY: aligned nothrow operator new[] contract.
    unsafe { new_nothrow(af::NEW_ARRAY_ALIGNED_NOTHROW, size, align) }
}

// ---- C++ operator delete ----------------------------------------------------

#[inline(always)]
unsafe fn delete(func: u8, p: *mut c_void, size: usize, align: usize) {
    prefetch_header(p);
    record::free(func, p, size, align);
    // SAFETY: operator delete releases blocks from operator new, i.e. from glibc.
    unsafe { real::free(p) }
}

#[no_mangle]
pub unsafe extern "C" fn _ZdlPv(p: *mut c_void) {
    // SAFETY: operator delete contract.
    unsafe { delete(ff::DELETE, p, 0, 0) }
}
#[no_mangle]
pub unsafe extern "C" fn _ZdaPv(p: *mut c_void) {
    // SAFETY: operator delete[] contract.
    unsafe { delete(ff::DELETE_ARRAY, p, 0, 0) }
}
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvm(p: *mut c_void, size: usize) {
    // SAFETY: sized operator delete contract.
    unsafe { delete(ff::DELETE_SIZED, p, size, 0) }
}
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvm(p: *mut c_void, size: usize) {
    // SAFETY: sized operator delete[] contract.
    unsafe { delete(ff::DELETE_ARRAY_SIZED, p, size, 0) }
}
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvSt11align_val_t(p: *mut c_void, align: usize) {
    // SAFETY: aligned operator delete contract.
    unsafe { delete(ff::DELETE_ALIGNED, p, 0, align) }
}
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvSt11align_val_t(p: *mut c_void, align: usize) {
    // SAFETY: aligned operator delete[] contract.
    unsafe { delete(ff::DELETE_ARRAY_ALIGNED, p, 0, align) }
}
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvmSt11align_val_t(p: *mut c_void, size: usize, align: usize) {
    // SAFETY: sized aligned operator delete contract.
    unsafe { delete(ff::DELETE_SIZED_ALIGNED, p, size, align) }
}
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvmSt11align_val_t(p: *mut c_void, size: usize, align: usize) {
    // SAFETY: sized aligned operator delete[] contract.
    unsafe { delete(ff::DELETE_ARRAY_SIZED_ALIGNED, p, size, align) }
}
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvRKSt9nothrow_t(p: *mut c_void, _nt: *const c_void) {
    // SAFETY: nothrow operator delete contract.
    unsafe { delete(ff::DELETE_NOTHROW, p, 0, 0) }
}
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvRKSt9nothrow_t(p: *mut c_void, _nt: *const c_void) {
    // SAFETY: nothrow operator delete[] contract.
    unsafe { delete(ff::DELETE_ARRAY_NOTHROW, p, 0, 0) }
}
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvSt11align_val_tRKSt9nothrow_t(
    p: *mut c_void,
    align: usize,
    _nt: *const c_void,
) {
    // SAFETY: aligned nothrow operator delete contract.
    unsafe { delete(ff::DELETE_ALIGNED_NOTHROW, p, 0, align) }
}
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvSt11align_val_tRKSt9nothrow_t(
    p: *mut c_void,
    align: usize,
    _nt: *const c_void,
) {
    // SAFETY: aligned nothrow operator delete[] contract.
    unsafe { delete(ff::DELETE_ARRAY_ALIGNED_NOTHROW, p, 0, align) }
}

// ---- OS memory --------------------------------------------------------------

#[no_mangle]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    // SAFETY: the C contract of mmap.
    let p = unsafe { real::mmap(addr, len, prot, flags, fd, off) };
    if (p as isize) < 0 && (p as isize) > -4096 {
        // SAFETY: the raw syscall returned -errno; report it the libc way.
        unsafe { *libc::__errno_location() = -(p as isize) as c_int };
        return libc::MAP_FAILED;
    }
    record::mmap(p, len, prot, flags, fd);
    p
}

#[no_mangle]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    // SAFETY: same contract as mmap on 64-bit.
    unsafe { mmap(addr, len, prot, flags, fd, off) }
}

#[no_mangle]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    // SAFETY: the C contract of munmap.
    let r = unsafe { real::munmap(addr, len) };
    if r < 0 {
        // SAFETY: as in mmap.
        unsafe { *libc::__errno_location() = -r };
        return -1;
    }
    record::munmap(addr, len);
    0
}

/// `mremap` is variadic in C; the optional new address arrives in the fifth
/// argument register, which a non-variadic definition reads the same way.
#[no_mangle]
pub unsafe extern "C" fn mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    // SAFETY: the C contract of mremap.
    let p = unsafe { real::mremap(old, old_len, new_len, flags, new_addr) };
    if (p as isize) < 0 && (p as isize) > -4096 {
        // SAFETY: as in mmap.
        unsafe { *libc::__errno_location() = -(p as isize) as c_int };
        return libc::MAP_FAILED;
    }
    record::mremap(old, old_len, p, new_len);
    p
}

#[no_mangle]
pub unsafe extern "C" fn brk(addr: *mut c_void) -> c_int {
    let f = real::BRK.get();
    if f == 0 {
        return -1;
    }
    // SAFETY: reading glibc's break variable.
    let old = unsafe { real::__curbrk } as u64;
    // SAFETY: `f` is glibc's `int brk(void *)`.
    let r = unsafe {
        core::mem::transmute::<usize, unsafe extern "C" fn(*mut c_void) -> c_int>(f)(addr)
    };
    if r == 0 {
        record::brk(old, addr as u64);
    }
    r
}

#[no_mangle]
pub unsafe extern "C" fn sbrk(incr: isize) -> *mut c_void {
    // SAFETY: the C contract of sbrk.
    let old = unsafe { real::sbrk(incr) };
    if old as isize != -1 {
        record::brk(old as u64, (old as u64).wrapping_add(incr as u64));
    }
    old
}

// ---- processes ----------------------------------------------------------------

#[no_mangle]
pub unsafe extern "C" fn fork() -> libc::pid_t {
    let f = real::FORK.get();
    if f == 0 {
        return -1;
    }
    // SAFETY: `f` is glibc's fork; the child's recorder is reset by our atfork handler.
    let pid = unsafe { core::mem::transmute::<usize, unsafe extern "C" fn() -> libc::pid_t>(f)() };
    if pid > 0 {
        record::fork(pid);
    }
    pid
}

#[no_mangle]
pub unsafe extern "C" fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    let f = real::EXECVE.get();
    record::exec(path, false);
    // SAFETY: `f` is the next execve.
    let r = unsafe { core::mem::transmute::<usize, real::ExecveFn>(f)(path, argv, envp) };
    record::exec(path, true);
    r
}

#[no_mangle]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
    let f = real::EXECV.get();
    record::exec(path, false);
    // SAFETY: `f` is the next execv.
    let r = unsafe { core::mem::transmute::<usize, real::ExecvFn>(f)(path, argv) };
    record::exec(path, true);
    r
}

#[no_mangle]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
    let f = real::EXECVP.get();
    record::exec(file, false);
    // SAFETY: `f` is the next execvp.
    let r = unsafe { core::mem::transmute::<usize, real::ExecvFn>(f)(file, argv) };
    record::exec(file, true);
    r
}

#[no_mangle]
pub unsafe extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    let f = real::EXECVPE.get();
    record::exec(file, false);
    // SAFETY: `f` is the next execvpe.
    let r = unsafe { core::mem::transmute::<usize, real::ExecveFn>(f)(file, argv, envp) };
    record::exec(file, true);
    r
}

// ---- threads ----------------------------------------------------------------------

/// What a new thread runs first: its creator's tid, then the real start routine.
struct Start {
    start: real::StartFn,
    arg: *mut c_void,
    parent: u32,
}

/// Called first by a new thread (from `alloctrace_thread_start`): notes its
/// creator for its `ThreadStart` event and hands back the real start routine
/// and argument in `out`.
unsafe extern "C" fn take_start(p: *mut c_void, out: *mut [usize; 2]) {
    // SAFETY: `p` is the boxed `Start` that `pthread_create` below gave
    // this thread, taken back once.
    let s = *unsafe { Box::from_raw(p.cast::<Start>()) };
    crate::guard::set_parent(s.parent);
    // The unwinder needs the stack's bounds. Asking for them here, before
    // the thread runs any code of its own, keeps it from asking later inside
    // a hook, which may have been called by `pthread_getattr_np` itself (it
    // reallocates while holding the thread's lock: the JVM's threads
    // deadlocked on their first allocation). Inside the guard, its own
    // allocations pass through untraced.
    if let Some(_g) = crate::guard::Guard::acquire() {
        crate::guard::set_stack_top(crate::unwind::pthread_stack_top());
    }
    // SAFETY: `out` points at two words on the caller's stack.
    unsafe { *out = [s.start as usize, s.arg as usize] };
}

// The new thread's first function, in assembly so that `pthread_exit` and
// cancellation (forced unwinding) pass through it: a Rust frame built with
// `panic = "abort"` stops them with an abort. It calls `take_start`, then the
// real start routine, and returns what that returns; the CFI describes its
// one stack adjustment.
core::arch::global_asm!(
    ".pushsection .text.alloctrace_thread_start,\"ax\",@progbits",
    ".p2align 4",
    ".globl alloctrace_thread_start",
    ".hidden alloctrace_thread_start",
    ".type alloctrace_thread_start,@function",
    "alloctrace_thread_start:",
    ".cfi_startproc",
    "endbr64",
    "sub rsp, 24",
    ".cfi_adjust_cfa_offset 24",
    "mov rsi, rsp",
    "call {take}",
    "mov rdi, [rsp + 8]",
    "mov rax, [rsp]",
    "call rax",
    "add rsp, 24",
    ".cfi_adjust_cfa_offset -24",
    "ret",
    ".cfi_endproc",
    ".size alloctrace_thread_start, . - alloctrace_thread_start",
    ".popsection",
    take = sym take_start,
);

extern "C" {
    fn alloctrace_thread_start(p: *mut c_void) -> *mut c_void;
}

#[no_mangle]
pub unsafe extern "C" fn pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    start: real::StartFn,
    arg: *mut c_void,
) -> c_int {
    let f = real::PTHREAD_CREATE.get();
    if f == 0 {
        return libc::EAGAIN;
    }
    // SAFETY: `f` is the next pthread_create.
    let create = unsafe { core::mem::transmute::<usize, real::PthreadCreateFn>(f) };
    // From the recorder's heap (see `alloc`): no glibc allocator call that a
    // signal handler's `malloc` could re-enter.
    let s = Box::into_raw(Box::new(Start {
        start,
        arg,
        parent: crate::sys::gettid(),
    }));
    // SAFETY: the caller's arguments, with our start routine wrapping theirs.
    let r = unsafe { create(thread, attr, alloctrace_thread_start_fn(), s.cast()) };
    if r != 0 {
        // SAFETY: the thread was not created: the box is still ours.
        drop(unsafe { Box::from_raw(s) });
    }
    r
}

/// `alloctrace_thread_start` as a start routine.
fn alloctrace_thread_start_fn() -> real::StartFn {
    alloctrace_thread_start
}

// ---- start ----------------------------------------------------------------------

extern "C" fn constructor() {
    real::resolve_all();
    record::start();
}

#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = constructor;
