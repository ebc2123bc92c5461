//! The allocators a plan is replayed against, behind one trait.
//!
//! - [`ours::Ours`]: an independent [`allocator::Heap`] in this process, backed by a
//!   reserved region so it never fights glibc over the program break.
//! - [`libc_malloc::LibcMalloc`]: whatever `malloc` this process links: glibc, or
//!   the library a replay driver process was started with under `LD_PRELOAD`.
//! - [`checking::Checking`]: records every call, for tests.
//!
//! This folder is where the replayer's `unsafe` lives: raw allocator calls and
//! touching the blocks they return.

pub mod checking;
pub mod libc_malloc;
pub mod ours;

use serde::{Deserialize, Serialize};

use crate::plan::OpKind;

/// Counts of the calls an allocator made to the kernel for its memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsCalls {
    /// `brk`/`sbrk` (for our reserved arena: the `mprotect` that grows it).
    pub brk: u64,
    /// `mmap`.
    pub mmap: u64,
    /// `munmap`.
    pub munmap: u64,
    /// `madvise`.
    pub madvise: u64,
}

/// An allocator the driver can replay against. Methods are called from many
/// threads at once.
pub trait Backend: Sync {
    /// Allocates with a non-realloc allocation op (`kind` is never
    /// [`OpKind::Realloc`] or [`OpKind::Free`]); `align` is the recorded
    /// alignment of aligned ops. Null when the allocator fails.
    fn alloc(&self, kind: OpKind, size: usize, align: usize) -> *mut u8;

    /// `realloc(p, size)`; `p` may be null.
    ///
    /// # Safety
    /// `p` is null or a live block of this backend, not used afterwards when the
    /// result is not null.
    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8;

    /// `free(p)`.
    ///
    /// # Safety
    /// `p` is a live block of this backend, not used afterwards.
    unsafe fn free(&self, p: *mut u8);

    /// Bytes the allocator holds from the OS now, if it can tell, and how it
    /// knows (`"allocator-stats"`, `"mallinfo2"`, `"rss"`).
    fn footprint(&self) -> Option<u64>;

    /// Where [`Backend::footprint`] comes from, for reports.
    fn footprint_source(&self) -> &'static str;

    /// Kernel calls made so far, if the allocator counts them itself.
    fn os_calls(&self) -> Option<OsCalls> {
        None
    }

    /// Called after a run has freed every block: give memory back if the
    /// allocator needs to be asked (glibc's `malloc_trim`).
    fn after_run(&self) {}
}

/// How replayed blocks are written to, as a program would (RSS depends on it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Touch {
    /// Never touch a block.
    None,
    /// Write the first byte of each page of a block (and its first byte).
    #[default]
    Page,
    /// Write every byte of a block.
    Full,
}

const PAGE: usize = 4096;

/// Writes to a fresh block of `size` bytes at `p` as `mode` says; `from` bytes at
/// the start are skipped (realloc: the allocator copied them already).
///
/// # Safety
/// `p` is a live block of at least `size` writable bytes.
pub unsafe fn touch(p: *mut u8, from: usize, size: usize, mode: Touch) {
    if p.is_null() || from >= size {
        return;
    }
    match mode {
        Touch::None => {}
        Touch::Page => {
            let mut off = from;
            while off < size {
                // SAFETY: `off < size`, inside the block (caller's promise).
                unsafe { p.add(off).write_volatile(1) };
                // Next page boundary of the address, not of the offset.
                let addr = p as usize + off;
                off = (addr / PAGE + 1) * PAGE - p as usize;
            }
        }
        Touch::Full => {
            // SAFETY: `from..size` is inside the block (caller's promise).
            unsafe { core::ptr::write_bytes(p.add(from), 0xa5, size - from) };
        }
    }
}
