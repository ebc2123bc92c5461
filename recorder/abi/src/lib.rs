//! The shared-memory layout between the preload library (writer, inside the
//! traced process) and the collector (`alloctrace record`, reader).
//!
//! Each traced process image creates one file `<dir>/<pid>.<n>.proc` in the
//! recording directory named by [`ENV_DIR`] (a directory under `/dev/shm`) and
//! maps it `MAP_SHARED`. The file is laid out as:
//!
//! | offset | size | content |
//! | --- | --- | --- |
//! | 0 | [`PROC_HEADER_SIZE`] | [`ProcHeader`], then the command line and executable path |
//! | [`SLOTS_OFFSET`] | [`NSLOTS`] × 16 | [`ThreadSlot`]: per-thread busy flag and last committed timed record's time |
//! | [`CHUNK_HEADERS_OFFSET`] | [`NCHUNKS`] × 64 | [`ChunkHeader`] |
//! | [`DATA_OFFSET`] | [`NCHUNKS`] × [`CHUNK_SIZE`] | chunk data: records |
//!
//! A thread owns one chunk at a time and appends records to it, publishing
//! each with a `Release` store of [`ChunkHeader::committed`]; when a chunk is
//! full it marks it [`CHUNK_FULL`] and claims a [`CHUNK_FREE`] one. The
//! collector drains chunks in [`ChunkHeader::seq`] order (a per-process
//! counter, so one thread's chunks are read in program order) and frees full
//! chunks it has drained. The pages are file pages: they outlive the process,
//! so the collector still reads every committed record after a crash.
//!
//! Records are a 16-byte [`RecordHeader`] followed by `len - 16` payload bytes
//! (`len` is a multiple of 8); payloads are little-endian `u64` words as
//! documented on each `KIND_*` constant. Trailing zero words of a payload
//! without bytes may be left out: a reader takes missing words as 0.
#![no_std]

use core::sync::atomic::{AtomicU32, AtomicU64};

/// Environment variable naming the recording directory.
pub const ENV_DIR: &str = "ALLOCTRACE_DIR";
/// Environment variable with the backtrace depth cap; `0` disables backtraces.
pub const ENV_MAX_DEPTH: &str = "ALLOCTRACE_MAX_DEPTH";
/// Environment variable with the collector's pid (backpressure gives up when it is gone).
pub const ENV_COLLECTOR: &str = "ALLOCTRACE_COLLECTOR";
/// Environment variable naming the event clock: `tsc` makes the preload time
/// records with the time-stamp counter ([`FLAG_TSC`]), set by the collector
/// only where the counter is invariant and the kernel's clock source; anything
/// else means `CLOCK_MONOTONIC`.
pub const ENV_CLOCK: &str = "ALLOCTRACE_CLOCK";
/// Environment variable that, set to `1`, makes the preload verify every
/// unwind memo hit against a full unwind and abort the program on the first
/// difference (tests; slow).
pub const ENV_CHECK_MEMO: &str = "ALLOCTRACE_CHECK_MEMO";
/// Environment variable that, set to `1` with the counter clock and
/// [`FLAG_MEMBARRIER`], lets the hooks leave their records untimed (time 0)
/// while the process has a single thread ([`FLAG_LATE_TIMES`]). Set by the
/// collector when single-threaded times are kept to a millisecond or coarser.
pub const ENV_LATE_TIMES: &str = "ALLOCTRACE_LATE_TIMES";

/// `ProcHeader::magic`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"ATRCSHM1");
/// `ProcHeader::version`; bumped on any layout change.
pub const VERSION: u32 = 5;

/// Bytes reserved for the process header and its strings.
pub const PROC_HEADER_SIZE: usize = 64 << 10;
/// Offset of the command line (NUL-separated, as in `/proc/self/cmdline`).
pub const CMDLINE_OFFSET: usize = 4 << 10;
/// Room for the command line.
pub const CMDLINE_MAX: usize = 28 << 10;
/// Offset of the executable path.
pub const EXE_OFFSET: usize = 32 << 10;
/// Room for the executable path.
pub const EXE_MAX: usize = 4 << 10;
/// Thread slots.
pub const NSLOTS: usize = 4096;
/// Offset of the thread slots.
pub const SLOTS_OFFSET: usize = PROC_HEADER_SIZE;
/// Number of chunks: a thread holds one while it records, so this many
/// threads can record at once (more wait for a chunk to be drained, and drop
/// their events when none comes).
pub const NCHUNKS: usize = 2048;
/// Offset of the chunk headers.
pub const CHUNK_HEADERS_OFFSET: usize = SLOTS_OFFSET + NSLOTS * 16;
/// Offset of the first chunk's data.
pub const DATA_OFFSET: usize = CHUNK_HEADERS_OFFSET + NCHUNKS * 64;
/// Bytes of one chunk: what each recording thread holds of the file (and
/// of `/dev/shm`) at least.
pub const CHUNK_SIZE: usize = 64 << 10;
/// Size of the whole file.
pub const FILE_SIZE: usize = DATA_OFFSET + NCHUNKS * CHUNK_SIZE;

/// Process state: running.
pub const PROC_RUNNING: u32 = 0;
/// Process state: the image called exec (a new file follows if it succeeded).
pub const PROC_EXECING: u32 = 1;
/// Process state: the image is ready (header complete).
pub const PROC_READY_BIT: u32 = 0x100;

/// Header flag: the process is a forked child of a traced process.
pub const FLAG_FORKED: u32 = 2;
/// Header flag: the image was started by exec from a traced process.
pub const FLAG_EXECED: u32 = 4;
/// Header flag: no backtraces.
pub const FLAG_NO_BACKTRACES: u32 = 8;
/// Header flag: record times and [`ThreadSlot::last_time`] are time-stamp
/// counter ticks (x86-64 `rdtsc`), which the collector maps to
/// `CLOCK_MONOTONIC` ns; without it they are `CLOCK_MONOTONIC` ns.
/// [`ProcHeader::start_time`] is `CLOCK_MONOTONIC` ns either way.
pub const FLAG_TSC: u32 = 16;
/// Header flag: the process registered for `membarrier(2)`'s global
/// expedited barrier, and its threads set [`ThreadSlot::busy`] with a plain
/// store instead of a full fence: the collector runs
/// [`MEMBARRIER_CMD_GLOBAL_EXPEDITED`] between reading its clock and reading
/// the busy flags, which orders them the same way for the price of one system
/// call per round instead of a locked instruction per event.
pub const FLAG_MEMBARRIER: u32 = 32;
/// Header flag: a hook's record (allocation, release, realloc, mapping,
/// brk, fork) written while [`Threads::multi_since`] reads 0 may have time 0,
/// "untimed": the collector dates it with the latest time it can vouch
/// for, the thread's previous record or the watermark it advanced to in
/// its previous round, whichever is later (and not before the process
/// started). That is at or before the record's real time (the record was
/// committed after that round read its clock, or that round would have
/// drained it), and no other thread's record can come before it (see
/// [`Threads::multi_since`]), so dating it earlier orders it against no
/// record differently. (Dating it with the current round's watermark
/// would not be safe: a reviewer's stress test misordered blocks handed
/// to a new thread in 96 of 201 traces.) It saves the hooks a counter read
/// (9 ns here) and the busy flag's two stores per event. The hooks still
/// time one record in each 2 KiB of a chunk, so a date lags the record by
/// at most the time the thread took to write 2 KiB of records or, when
/// slower, by up to about two collector rounds (1 to 5 ms each when the
/// collector keeps up).
pub const FLAG_LATE_TIMES: u32 = 64;
/// `membarrier(2)` command: a barrier on every running thread of registered processes.
pub const MEMBARRIER_CMD_GLOBAL_EXPEDITED: i32 = 1 << 1;
/// `membarrier(2)` command: register this process for [`MEMBARRIER_CMD_GLOBAL_EXPEDITED`].
pub const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: i32 = 1 << 2;

/// The start of every process file.
#[repr(C)]
pub struct ProcHeader {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`VERSION`].
    pub version: u32,
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// `CLOCK_MONOTONIC` at start, ns.
    pub start_time: u64,
    /// `CLOCK_REALTIME` at start, ns since the epoch.
    pub start_unix_ns: u64,
    /// Page size.
    pub page_size: u32,
    /// Bytes of command line at [`CMDLINE_OFFSET`].
    pub cmdline_len: u32,
    /// Bytes of executable path at [`EXE_OFFSET`].
    pub exe_len: u32,
    /// `PROC_*` state; [`PROC_READY_BIT`] is set once the header is complete.
    pub state: AtomicU32,
    /// Next chunk sequence number.
    pub chunk_seq: AtomicU64,
    /// Events dropped because no chunk was free and the collector was gone.
    pub dropped: AtomicU64,
    /// Next stack id to hand out.
    pub next_stack: AtomicU32,
    /// Collector round counter (written by the collector; a liveness hint).
    pub heartbeat: AtomicU32,
    /// One more than the highest thread slot index ever claimed (raised by
    /// the claiming thread before its first record): the collector reads
    /// the busy flags of these slots only. Raised before the slot's first
    /// busy flag, so a thread whose raise the collector does not see after
    /// its barrier (or busy-flag loads) reads the clock after the
    /// collector's watermark reading, like a thread not yet started.
    pub slots_used: AtomicU32,
    /// One more than the highest chunk index ever claimed (raised by the
    /// claiming thread before it writes to the chunk): the collector reads
    /// the headers of these chunks only. Threads claim the lowest free
    /// chunk, so this is the most chunks ever in use at once.
    pub chunks_used: AtomicU32,
    /// When the process became multi-threaded (on a cache line of its own:
    /// the collector writes `heartbeat` every round).
    pub threads: Threads,
}

/// The process's thread count and when a second thread appeared: the
/// collector may coarsen the times of records that come before that
/// ([`Threads::multi_since`]), since their order against other threads
/// cannot matter.
#[repr(C, align(64))]
pub struct Threads {
    /// Threads that have registered (claimed a slot) in this image.
    pub registered: AtomicU32,
    /// `_pad` keeps `multi_since` 8-byte aligned.
    pub _pad: u32,
    /// 0 while only one thread has registered. Every later thread, before
    /// it writes its first record, reads the records' clock and lowers this
    /// word to that value (a compare-exchange loop keeping the minimum of all
    /// such readings): every record of a thread but the first then has a
    /// time at or above it, and any record that comes after (happens after)
    /// a later thread's registration, on any thread, is written after the
    /// word was lowered. A collector that loads the word after the
    /// `Acquire` load of a chunk's `committed` thus sees, for each record
    /// below that, a value at or below the record's time whenever the
    /// record could be ordered against another thread's; records below the
    /// value it sees are the first thread's and came before every other
    /// thread's records, and may have their times rounded down. Same clock
    /// as the records. (An untimed record, [`FLAG_LATE_TIMES`], may be
    /// written after the word was lowered, by a first thread that read it
    /// as 0 just before; no record of another thread comes before it.)
    pub multi_since: AtomicU64,
}

/// Per-thread watermark state.
#[repr(C)]
pub struct ThreadSlot {
    /// Owner tid, 0 when free.
    pub tid: AtomicU32,
    /// Non-zero while the thread is between reading the clock and committing
    /// (set before the clock is read: with a full fence, or with a plain
    /// store under [`FLAG_MEMBARRIER`]).
    pub busy: AtomicU32,
    /// Time of the thread's last committed timed record (the records'
    /// clock; untimed records, [`FLAG_LATE_TIMES`], leave it as it is).
    pub last_time: AtomicU64,
}

/// Chunk is free for any thread to claim.
pub const CHUNK_FREE: u32 = 0;
/// Chunk is owned by thread `tid` and being appended to.
pub const CHUNK_OWNED: u32 = 1;
/// Chunk is complete: `committed` is final; the collector frees it after draining.
pub const CHUNK_FULL: u32 = 2;
/// Chunk is being claimed (its fields are not yet valid).
pub const CHUNK_CLAIMING: u32 = 3;

/// State of one chunk.
#[repr(C)]
pub struct ChunkHeader {
    /// `CHUNK_*`.
    pub state: AtomicU32,
    /// Owner tid.
    pub tid: AtomicU32,
    /// Claim order within the process.
    pub seq: AtomicU64,
    /// Bytes of complete records (published with `Release`).
    pub committed: AtomicU32,
    /// Padding to 64 bytes (one cache line).
    pub _pad: [u32; 11],
}

/// Header of one record in a chunk.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RecordHeader {
    /// `CLOCK_MONOTONIC` ns, or counter ticks with [`FLAG_TSC`]; 0 for an
    /// untimed record (never a reading of either clock; see
    /// [`FLAG_LATE_TIMES`]).
    pub time: u64,
    /// `KIND_*`.
    pub kind: u8,
    /// Allocation or release function number (the trace format's `AllocFn`/`FreeFn`).
    pub func: u8,
    /// Total bytes of the record, header included, a multiple of 8.
    pub len: u16,
    /// Stack id (0: none); for [`KIND_STACK`], the id being defined.
    pub stack: u32,
}

/// Bytes of a [`RecordHeader`].
pub const RECORD_HEADER: usize = 16;

/// Allocation: `addr, size, align`.
pub const KIND_ALLOC: u8 = 1;
/// Release: `addr, size, align`.
pub const KIND_FREE: u8 = 2;
/// Realloc: `old_addr, new_addr, size`.
pub const KIND_REALLOC: u8 = 3;
/// mmap: `addr, len, prot | flags << 32, fd as i64`.
pub const KIND_MMAP: u8 = 4;
/// munmap: `addr, len`.
pub const KIND_MUNMAP: u8 = 5;
/// mremap: `old_addr, old_len, new_addr, new_len`.
pub const KIND_MREMAP: u8 = 6;
/// brk/sbrk: `old_break, new_break`.
pub const KIND_BRK: u8 = 7;
/// Thread start: `parent tid`.
pub const KIND_THREAD_START: u8 = 8;
/// Thread exit: no payload.
pub const KIND_THREAD_EXIT: u8 = 9;
/// fork (in the parent): `child pid`.
pub const KIND_FORK: u8 = 10;
/// exec: `path_len`, then the path bytes.
pub const KIND_EXEC: u8 = 11;
/// Module load: `base, start, end, build_id_len | path_len << 32`, then build id bytes, then path bytes.
pub const KIND_MODULE_LOAD: u8 = 12;
/// Module unload: `base`.
pub const KIND_MODULE_UNLOAD: u8 = 13;
/// Stack definition of id `stack`: frames, innermost first (call-site addresses).
pub const KIND_STACK: u8 = 14;
/// A realloc of a non-null block is about to run: `old_addr, size`, with the
/// call's stack. Written before the real realloc (which may abort on a freed
/// block); the [`KIND_REALLOC`] that follows on the same thread completes it
/// (and then carries no stack of its own). Untimed (time 0): the realloc
/// happens at its end record's time.
pub const KIND_REALLOC_BEGIN: u8 = 15;

/// Rounds `n` up to a multiple of 8.
pub const fn round8(n: usize) -> usize {
    (n + 7) & !7
}

/// File name of process image `n` (0 for the first image of a pid) in the recording directory.
pub fn proc_file_name(pid: u32, n: u32, out: &mut [u8; 40]) -> usize {
    let mut len = 0;
    len += write_dec(&mut out[len..], pid as u64);
    out[len] = b'.';
    len += 1;
    len += write_dec(&mut out[len..], n as u64);
    for b in b".proc" {
        out[len] = *b;
        len += 1;
    }
    len
}

/// Parses a name made by [`proc_file_name`] into `(pid, n)`.
pub fn parse_proc_file_name(name: &str) -> Option<(u32, u32)> {
    let stem = name.strip_suffix(".proc")?;
    let (pid, n) = stem.split_once('.')?;
    Some((pid.parse().ok()?, n.parse().ok()?))
}

fn write_dec(out: &mut [u8], mut v: u64) -> usize {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let n = tmp.len() - i;
    out[..n].copy_from_slice(&tmp[i..]);
    n
}

const _: () = assert!(core::mem::size_of::<ChunkHeader>() == 64);
const _: () = assert!(core::mem::size_of::<ThreadSlot>() == 16);
const _: () = assert!(core::mem::size_of::<RecordHeader>() == RECORD_HEADER);
const _: () = assert!(core::mem::size_of::<ProcHeader>() <= CMDLINE_OFFSET);
const _: () = assert!(DATA_OFFSET % 4096 == 0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let mut buf = [0u8; 40];
        let n = proc_file_name(1234, 2, &mut buf);
        let s = core::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(s, "1234.2.proc");
        assert_eq!(parse_proc_file_name(s), Some((1234, 2)));
    }
}
