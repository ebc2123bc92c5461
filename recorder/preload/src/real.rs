//! The real functions behind the hooks: glibc's `__libc_*` entry points by
//! name (no recursion, no dlsym), and `dlsym(RTLD_NEXT)` for the rest.

use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

extern "C" {
    #[link_name = "__libc_malloc"]
    pub fn malloc(size: usize) -> *mut c_void;
    #[link_name = "__libc_free"]
    pub fn free(ptr: *mut c_void);
    #[link_name = "__libc_calloc"]
    pub fn calloc(n: usize, size: usize) -> *mut c_void;
    #[link_name = "__libc_realloc"]
    pub fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    #[link_name = "__libc_memalign"]
    pub fn memalign(align: usize, size: usize) -> *mut c_void;
    #[link_name = "__libc_valloc"]
    pub fn valloc(size: usize) -> *mut c_void;
    #[link_name = "__libc_pvalloc"]
    pub fn pvalloc(size: usize) -> *mut c_void;
    #[link_name = "__sbrk"]
    pub fn sbrk(incr: isize) -> *mut c_void;
    /// glibc's current program break (kept up to date by its `brk`/`sbrk`).
    pub static __curbrk: *mut c_void;
}

/// A lazily resolved `dlsym(RTLD_NEXT, name)` pointer.
pub struct Next {
    name: &'static [u8],
    addr: AtomicUsize,
}

impl Next {
    /// `name` must end with a NUL byte.
    pub const fn new(name: &'static [u8]) -> Next {
        Next {
            name,
            addr: AtomicUsize::new(0),
        }
    }

    /// The address of the next definition, 0 if there is none.
    pub fn get(&self) -> usize {
        let a = self.addr.load(Ordering::Relaxed);
        if a != 0 {
            return a;
        }
        // SAFETY: `name` is NUL-terminated (checked by the constructor's callers,
        // all in this file); dlsym is thread safe. Allocations it makes re-enter
        // the hooks, which pass them through when the caller holds a guard, and
        // record them harmlessly otherwise.
        let a = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr().cast()) } as usize;
        self.addr.store(a, Ordering::Relaxed);
        a
    }
}

pub static BRK: Next = Next::new(b"brk\0");
pub static PTHREAD_CREATE: Next = Next::new(b"pthread_create\0");
pub static FORK: Next = Next::new(b"fork\0");
pub static EXECVE: Next = Next::new(b"execve\0");
pub static EXECV: Next = Next::new(b"execv\0");
pub static EXECVP: Next = Next::new(b"execvp\0");
pub static EXECVPE: Next = Next::new(b"execvpe\0");
pub static NEW: Next = Next::new(b"_Znwm\0");
pub static NEW_ARRAY: Next = Next::new(b"_Znam\0");
pub static NEW_ALIGNED: Next = Next::new(b"_ZnwmSt11align_val_t\0");
pub static NEW_ARRAY_ALIGNED: Next = Next::new(b"_ZnamSt11align_val_t\0");

/// Resolves the C library's [`Next`]s now, at startup, rather than at the
/// first call of each: `dlsym` allocates with glibc's malloc (which a signal
/// handler's `malloc` must not find in use because of us). The C++
/// operators, absent from C programs, stay lazy: a symbol not found leaves
/// an error message that glibc frees later, at the program's next `dlerror`
/// or `dlsym`, and a block our guard kept out of the trace would then show
/// as an invalid free. Any error state is cleared here all the same (the
/// second `dlerror` frees what the first returned), inside the guard.
pub fn resolve_all() {
    let _g = crate::guard::Guard::acquire();
    for n in [
        &BRK,
        &PTHREAD_CREATE,
        &FORK,
        &EXECVE,
        &EXECV,
        &EXECVP,
        &EXECVPE,
    ] {
        n.get();
    }
    // SAFETY: dlerror has no preconditions; its strings are not used.
    unsafe {
        libc::dlerror();
        libc::dlerror();
    }
}

pub type ExecveFn =
    unsafe extern "C" fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;
pub type ExecvFn = unsafe extern "C" fn(*const c_char, *const *const c_char) -> c_int;
pub type NewFn = unsafe extern "C" fn(usize) -> *mut c_void;
pub type StartFn = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
pub type PthreadCreateFn = unsafe extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    StartFn,
    *mut c_void,
) -> c_int;
pub type NewAlignedFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;

/// `mmap` by system call: glibc's is a thin wrapper and ours must not recurse.
///
/// # Safety
/// As `mmap(2)`.
pub unsafe fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    // SAFETY: forwarded contract of mmap(2).
    unsafe { libc::syscall(libc::SYS_mmap, addr, len, prot, flags, fd, off) as *mut c_void }
}

/// `munmap` by system call.
///
/// # Safety
/// As `munmap(2)`.
pub unsafe fn munmap(addr: *mut c_void, len: usize) -> c_int {
    // SAFETY: forwarded contract of munmap(2).
    unsafe { libc::syscall(libc::SYS_munmap, addr, len) as c_int }
}

/// `mprotect` by system call.
///
/// # Safety
/// As `mprotect(2)`.
pub unsafe fn mprotect(addr: *mut c_void, len: usize, prot: c_int) -> c_int {
    // SAFETY: forwarded contract of mprotect(2).
    unsafe { libc::syscall(libc::SYS_mprotect, addr, len, prot) as c_int }
}

/// `mremap` by system call (the optional fifth argument is passed through).
///
/// # Safety
/// As `mremap(2)`.
pub unsafe fn mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    // SAFETY: forwarded contract of mremap(2).
    unsafe {
        libc::syscall(libc::SYS_mremap, old, old_len, new_len, flags, new_addr) as *mut c_void
    }
}
