//! The process's own C `malloc`: glibc, or the library a replay driver process
//! was started with under `LD_PRELOAD` (the dynamic linker then resolves our
//! `malloc` calls to it).

use core::ffi::c_void;

use super::{Backend, OsCalls};
use crate::measure;
use crate::plan::OpKind;

extern "C" {
    fn valloc(size: libc::size_t) -> *mut c_void;
    fn pvalloc(size: libc::size_t) -> *mut c_void;
}

fn mallinfo2() -> libc::mallinfo2 {
    // SAFETY: mallinfo2 only reads glibc's allocator statistics (all arenas).
    unsafe { libc::mallinfo2() }
}

/// Which malloc the process links, which decides how footprint is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// glibc: footprint from `mallinfo2` (arenas plus mmapped chunks, minus what
    /// the replayer itself had in use when the backend was made).
    Glibc,
    /// A preloaded library: footprint is resident memory above the baseline.
    Preloaded,
}

/// The C malloc family of this process. Footprint is measured relative to the
/// moment the backend was created (the replayer's own data is not counted).
pub struct LibcMalloc {
    which: Which,
    baseline: u64,
}

impl LibcMalloc {
    /// The process malloc, with footprint measured from now.
    pub fn new(which: Which) -> LibcMalloc {
        let baseline = match which {
            // What the replayer itself has in use: the rest of what glibc holds
            // (including free memory it kept) is the replay's footprint.
            Which::Glibc => {
                let m = mallinfo2();
                (m.uordblks + m.hblkhd) as u64
            }
            Which::Preloaded => measure::rss_bytes().unwrap_or(0),
        };
        LibcMalloc { which, baseline }
    }

    fn raw_footprint(&self) -> u64 {
        match self.which {
            Which::Glibc => {
                let m = mallinfo2();
                (m.arena + m.hblkhd) as u64
            }
            Which::Preloaded => measure::rss_bytes().unwrap_or(0),
        }
    }
}

impl Backend for LibcMalloc {
    fn alloc(&self, kind: OpKind, size: usize, align: usize) -> *mut u8 {
        // SAFETY: the C allocation functions accept any sizes and alignments and
        // report failure with null (or an error code for posix_memalign).
        unsafe {
            match kind {
                OpKind::Calloc => libc::calloc(1, size) as *mut u8,
                OpKind::PosixMemalign => {
                    let mut p: *mut c_void = core::ptr::null_mut();
                    let align = align.max(core::mem::size_of::<usize>());
                    if libc::posix_memalign(&mut p, align, size) != 0 {
                        return core::ptr::null_mut();
                    }
                    p as *mut u8
                }
                OpKind::AlignedAlloc => libc::aligned_alloc(align.max(1), size) as *mut u8,
                OpKind::Memalign => libc::memalign(align.max(1), size) as *mut u8,
                OpKind::Valloc => valloc(size) as *mut u8,
                OpKind::Pvalloc => pvalloc(size) as *mut u8,
                _ => libc::malloc(size) as *mut u8,
            }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: caller's promise: `p` is null or a live block of this malloc.
        unsafe { libc::realloc(p as *mut c_void, size) as *mut u8 }
    }

    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: caller's promise: `p` is a live block of this malloc.
        unsafe { libc::free(p as *mut c_void) }
    }

    fn footprint(&self) -> Option<u64> {
        Some(self.raw_footprint().saturating_sub(self.baseline))
    }

    fn footprint_source(&self) -> &'static str {
        match self.which {
            Which::Glibc => "mallinfo2",
            Which::Preloaded => "rss",
        }
    }

    fn os_calls(&self) -> Option<OsCalls> {
        None
    }

    fn after_run(&self) {
        if self.which == Which::Glibc {
            // SAFETY: malloc_trim only returns free memory to the OS.
            unsafe { libc::malloc_trim(0) };
        }
    }
}
