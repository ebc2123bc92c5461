//! The collector's mapping of one process image's shared event file (layout
//! in `alloctrace-abi`). The only unsafe code of the collector.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::Ordering;

use abi::{ChunkHeader, ProcHeader, ThreadSlot};
use alloctrace_abi as abi;

/// A `MAP_SHARED` mapping of a process file.
pub struct ProcMap {
    base: *mut u8,
}

impl ProcMap {
    /// Maps the file at `path`; fails if it is not (yet) a complete file.
    pub fn open(path: &Path) -> std::io::Result<ProcMap> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        let len = f.metadata()?.len();
        if len < abi::FILE_SIZE as u64 {
            return Err(std::io::Error::other("process file not sized yet"));
        }
        // The file is sparse, and on a tmpfs even a read through a mapping
        // makes a page: with no room left, that is a SIGBUS here. Its header
        // part is backed before the writer marks it ready, so the mark is
        // read first with `pread`, which reads holes as zeros.
        if !header_ready(&f)? {
            return Err(std::io::Error::other("process file not ready yet"));
        }
        // SAFETY: mapping an open file of at least FILE_SIZE bytes; the
        // mapping outlives the descriptor.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                abi::FILE_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(ProcMap { base: p.cast() })
    }

    /// The header.
    pub fn header(&self) -> &ProcHeader {
        // SAFETY: the mapping starts with a ProcHeader.
        unsafe { &*self.base.cast::<ProcHeader>() }
    }

    /// Whether the writer finished the header.
    pub fn ready(&self) -> bool {
        self.header().state.load(Ordering::Acquire) & abi::PROC_READY_BIT != 0
            && self.header().magic == abi::MAGIC
    }

    /// The command line and executable path.
    pub fn strings(&self) -> (Vec<String>, String) {
        let h = self.header();
        // SAFETY: both areas lie inside the mapping; lengths are clamped to them.
        let (cmd, exe) = unsafe {
            (
                std::slice::from_raw_parts(
                    self.base.add(abi::CMDLINE_OFFSET),
                    (h.cmdline_len as usize).min(abi::CMDLINE_MAX),
                ),
                std::slice::from_raw_parts(
                    self.base.add(abi::EXE_OFFSET),
                    (h.exe_len as usize).min(abi::EXE_MAX),
                ),
            )
        };
        let cmdline = cmd
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        (cmdline, String::from_utf8_lossy(exe).into_owned())
    }

    /// Thread slot `i` (`i < NSLOTS`).
    pub fn slot(&self, i: usize) -> &ThreadSlot {
        assert!(i < abi::NSLOTS);
        // SAFETY: in bounds (checked); atomics in shared memory.
        unsafe { &*self.base.add(abi::SLOTS_OFFSET).cast::<ThreadSlot>().add(i) }
    }

    /// Chunk header `i` (`i < NCHUNKS`).
    pub fn chunk(&self, i: usize) -> &ChunkHeader {
        assert!(i < abi::NCHUNKS);
        // SAFETY: in bounds (checked); atomics in shared memory.
        unsafe {
            &*self
                .base
                .add(abi::CHUNK_HEADERS_OFFSET)
                .cast::<ChunkHeader>()
                .add(i)
        }
    }

    /// Bytes `[from, to)` of chunk `i`'s data (`to <= CHUNK_SIZE`). The writer
    /// only appends past its published `committed`, so these bytes are stable.
    pub fn chunk_bytes(&self, i: usize, from: usize, to: usize) -> &[u8] {
        assert!(i < abi::NCHUNKS && from <= to && to <= abi::CHUNK_SIZE);
        // SAFETY: in bounds (checked); published with Release and read after an Acquire load.
        unsafe {
            std::slice::from_raw_parts(
                self.base.add(abi::DATA_OFFSET + i * abi::CHUNK_SIZE + from),
                to - from,
            )
        }
    }
}

/// Whether the header of the process file `f` is marked ready (read with
/// `pread`, not through a mapping: see [`ProcMap::open`]).
fn header_ready(f: &std::fs::File) -> std::io::Result<bool> {
    use std::mem::offset_of;
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; std::mem::size_of::<ProcHeader>()];
    f.read_exact_at(&mut head, 0)?;
    let at = |o: usize, n: usize| &head[o..o + n];
    let magic = u64::from_ne_bytes(at(offset_of!(ProcHeader, magic), 8).try_into().unwrap());
    let state = u32::from_ne_bytes(at(offset_of!(ProcHeader, state), 4).try_into().unwrap());
    Ok(magic == abi::MAGIC && state & abi::PROC_READY_BIT != 0)
}

impl Drop for ProcMap {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no references outlive `self`.
        unsafe { libc::munmap(self.base.cast(), abi::FILE_SIZE) };
    }
}

/// Starts loading the cache line at `p` (any address: a prefetch cannot fault).
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch has no architectural effect and never faults.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// `CLOCK_MONOTONIC` in ns (the clock the preload uses).
pub fn now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
