//! This process image's shared file: creation at start and after fork, and
//! claiming thread slots and chunks in it.

use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use abi::{ChunkHeader, ProcHeader, ThreadSlot};
use alloctrace_abi as abi;

use crate::guard::Guard;
use crate::sys;

/// The mapping of one process image's shared file.
pub struct Process {
    base: *mut u8,
    /// Process id that created the file.
    #[allow(dead_code)] // kept for debugging: which process a mapping belongs to
    pub pid: u32,
    /// Backtrace depth cap; 0 = no backtraces.
    pub max_depth: usize,
    collector: i32,
    /// Busy flags are set without a fence ([`abi::FLAG_MEMBARRIER`]).
    pub fenceless: bool,
    /// Hooks leave their records untimed while the process has a single
    /// thread ([`abi::FLAG_LATE_TIMES`]).
    pub late_times: bool,
    /// Every unwind memo hit is checked against a full unwind
    /// ([`abi::ENV_CHECK_MEMO`]).
    pub check_memo: bool,
    /// A bit per chunk whose data is backed by memory ([`Process::back_chunk`]).
    backed: [AtomicU64; abi::NCHUNKS / 64],
    /// Until this time (monotonic ns), no chunk is backed: the recording
    /// directory's file system had no room ([`Process::back_chunk`]).
    no_room_until: AtomicU64,
    /// A wait for a free chunk timed out, and none was claimed since: claims
    /// do not wait ([`Process::claim_chunk`]).
    starved: AtomicU32,
}

/// Backs `len` bytes of the shared mapping at `addr` with memory now
/// (`MADV_POPULATE_WRITE`, Linux 5.14). False if the file system has no
/// room: the file is sparse, and a first write to such a page would have
/// been a SIGBUS in the program. On older kernels (`EINVAL`) nothing can be
/// checked, and pages are backed when first written, as before.
fn populate(addr: *mut libc::c_void, len: usize) -> bool {
    for _ in 0..8 {
        // SAFETY: `addr..addr + len` lies in our shared mapping.
        if unsafe { libc::madvise(addr, len, libc::MADV_POPULATE_WRITE) } == 0 {
            return true;
        }
        // SAFETY: reading errno after a failed call.
        match unsafe { *libc::__errno_location() } {
            libc::EINTR | libc::EAGAIN => continue,
            libc::EINVAL => return true,
            _ => return false,
        }
    }
    false
}

// SAFETY: the mapping is shared memory accessed through atomics and by the
// owning thread of each chunk only.
unsafe impl Sync for Process {}
// SAFETY: as above.
unsafe impl Send for Process {}

const UNINIT: u32 = 0;
const BUSY: u32 = 1;
const READY: u32 = 2;
const DISABLED: u32 = 3;

static STATE: AtomicU32 = AtomicU32::new(UNINIT);
static PROCESS: AtomicPtr<Process> = AtomicPtr::new(core::ptr::null_mut());
static COLLECTOR_GONE: AtomicU32 = AtomicU32::new(0);

/// The current process, initialising on first use; `None` while recording is
/// off (not started yet on another thread, or disabled).
#[inline(always)]
pub fn get(g: &Guard) -> Option<&'static Process> {
    if STATE.load(Ordering::Acquire) == READY {
        // SAFETY: set before READY was published and never freed.
        return unsafe { PROCESS.load(Ordering::Acquire).as_ref() };
    }
    init(g)
}

/// The current process (null while recording is off): what a thread
/// state's process is compared with.
#[inline(always)]
pub fn current() -> *const Process {
    PROCESS.load(Ordering::Acquire)
}

#[cold]
fn init(_g: &Guard) -> Option<&'static Process> {
    if STATE
        .compare_exchange(UNINIT, BUSY, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return None;
    }
    let Some(dir) = sys::getenv(b"ALLOCTRACE_DIR\0") else {
        STATE.store(DISABLED, Ordering::Release);
        return None;
    };
    match Process::create(dir, 0) {
        Ok(p) => {
            PROCESS.store(Box::into_raw(Box::new(p)), Ordering::Release);
            // SAFETY: the handler functions are `extern "C" fn()` with static lifetime.
            unsafe { libc::pthread_atfork(None, None, Some(atfork_child)) };
            crate::thread::init_key();
            STATE.store(READY, Ordering::Release);
            // SAFETY: just stored.
            unsafe { PROCESS.load(Ordering::Acquire).as_ref() }
        }
        Err(why) => {
            sys::warn_once(why);
            STATE.store(DISABLED, Ordering::Release);
            None
        }
    }
}

/// Runs in the child after `fork`: give it its own file and a fresh stack table.
extern "C" fn atfork_child() {
    if STATE.load(Ordering::Acquire) != READY {
        return;
    }
    let _g = Guard::acquire();
    // The child's thread starts a new trace: no creating thread in it.
    crate::guard::set_parent(0);
    let Some(dir) = sys::getenv(b"ALLOCTRACE_DIR\0") else {
        STATE.store(DISABLED, Ordering::Release);
        // Thread states compare their process with this one.
        PROCESS.store(core::ptr::null_mut(), Ordering::Release);
        return;
    };
    let old = PROCESS.load(Ordering::Acquire);
    match Process::create(dir, abi::FLAG_FORKED) {
        Ok(p) => {
            crate::stacks::reset();
            crate::modules::forget_emitted();
            PROCESS.store(Box::into_raw(Box::new(p)), Ordering::Release);
            // SAFETY: the parent's mapping is no longer used by this process:
            // the only thread (this one) sees the new process before writing
            // (thread states compare theirs with it).
            if let Some(o) = unsafe { old.as_ref() } {
                // SAFETY: unmapping our own mapping of the parent's file.
                unsafe { crate::real::munmap(o.base.cast(), abi::FILE_SIZE) };
                // The old `Process` itself is never freed: a thread state is
                // current when its process pointer equals `PROCESS`, so a
                // freed one could come back at the same address (a
                // grandchild's) and make a stale state look current.
            }
        }
        Err(why) => {
            sys::warn_once(why);
            STATE.store(DISABLED, Ordering::Release);
            // Thread states compare their process with this one.
            PROCESS.store(core::ptr::null_mut(), Ordering::Release);
        }
    }
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    if s.is_empty() {
        return None;
    }
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some(v)
}

impl Process {
    fn create(dir: &[u8], flags: u32) -> Result<Process, &'static str> {
        let pid = sys::getpid();
        let max_depth = sys::getenv(b"ALLOCTRACE_MAX_DEPTH\0")
            .and_then(parse_u64)
            .unwrap_or(64)
            .min(crate::unwind::MAX_DEPTH as u64) as usize;
        let collector = sys::getenv(b"ALLOCTRACE_COLLECTOR\0")
            .and_then(parse_u64)
            .unwrap_or(0) as i32;
        let check_memo = sys::getenv(b"ALLOCTRACE_CHECK_MEMO\0") == Some(b"1".as_slice());
        let tsc = sys::use_tsc(sys::getenv(b"ALLOCTRACE_CLOCK\0") == Some(b"tsc".as_slice()));
        // Registration belongs to the address space: made again after fork.
        // SAFETY: membarrier with integer arguments only.
        let fenceless = unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                abi::MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
                0,
                0,
            )
        } == 0;
        // Untimed records rely on the counter's cheap reads staying exact
        // once a second thread registers, and on the collector's barrier.
        let late_times =
            tsc && fenceless && sys::getenv(b"ALLOCTRACE_LATE_TIMES\0") == Some(b"1".as_slice());
        let mut path = [0u8; 512];
        if dir.len() + 48 > path.len() {
            return Err("recording directory path too long");
        }
        path[..dir.len()].copy_from_slice(dir);
        path[dir.len()] = b'/';
        let at = dir.len() + 1;
        let mut fd = -1;
        for n in 0..1000 {
            let mut name = [0u8; 40];
            let len = abi::proc_file_name(pid, n, &mut name);
            path[at..at + len].copy_from_slice(&name[..len]);
            path[at + len] = 0;
            // SAFETY: `path` is NUL-terminated.
            fd = unsafe {
                libc::open(
                    path.as_ptr().cast(),
                    libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                    0o600,
                )
            };
            // SAFETY: reading errno after a failed call.
            if fd >= 0 || unsafe { *libc::__errno_location() } != libc::EEXIST {
                break;
            }
        }
        if fd < 0 {
            return Err("cannot create the shared event file in the recording directory");
        }
        // SAFETY: `fd` is ours; the size fits in off_t.
        let ok = unsafe { libc::ftruncate(fd, abi::FILE_SIZE as libc::off_t) } == 0;
        let base = if ok {
            // SAFETY: mapping a file we just sized.
            unsafe {
                crate::real::mmap(
                    core::ptr::null_mut(),
                    abi::FILE_SIZE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0,
                )
            }
        } else {
            libc::MAP_FAILED
        };
        // SAFETY: `fd` is ours; the mapping keeps the file.
        unsafe { libc::close(fd) };
        if base == libc::MAP_FAILED || (base as isize) < 0 && (base as isize) > -4096 {
            return Err("cannot size or map the shared event file (no space in /dev/shm?)");
        }
        // The file is sparse: a page touched when its file system is full
        // would be a SIGBUS in the program. Its header part is backed now.
        if !populate(base.cast(), abi::DATA_OFFSET) {
            // SAFETY: our mapping, unused; `path` is NUL-terminated.
            unsafe {
                crate::real::munmap(base, abi::FILE_SIZE);
                libc::unlink(path.as_ptr().cast());
            }
            return Err("no space for the shared event file in the recording directory");
        }
        let base = base.cast::<u8>();
        // SAFETY: the page size query has no preconditions.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u32;
        // SAFETY: `base` maps FILE_SIZE bytes; the strings fit their reserved areas.
        unsafe {
            let cmd =
                core::slice::from_raw_parts_mut(base.add(abi::CMDLINE_OFFSET), abi::CMDLINE_MAX);
            let cmdline_len = sys::read_file(b"/proc/self/cmdline\0", cmd).unwrap_or(0);
            let exe = core::slice::from_raw_parts_mut(base.add(abi::EXE_OFFSET), abi::EXE_MAX);
            let r = libc::readlink(
                c"/proc/self/exe".as_ptr(),
                exe.as_mut_ptr().cast(),
                exe.len(),
            );
            let h = &mut *base.cast::<ProcHeader>();
            h.version = abi::VERSION;
            h.pid = pid;
            h.ppid = libc::getppid() as u32;
            h.flags = flags
                | if max_depth == 0 {
                    abi::FLAG_NO_BACKTRACES
                } else {
                    0
                }
                | if tsc { abi::FLAG_TSC } else { 0 }
                | if fenceless { abi::FLAG_MEMBARRIER } else { 0 }
                | if late_times { abi::FLAG_LATE_TIMES } else { 0 };
            h.start_time = sys::monotonic();
            h.start_unix_ns = sys::clock(libc::CLOCK_REALTIME);
            h.page_size = page_size;
            h.cmdline_len = cmdline_len as u32;
            h.exe_len = r.max(0) as u32;
            h.next_stack.store(1, Ordering::Relaxed);
            core::ptr::write_volatile(&mut h.magic, abi::MAGIC);
            h.state.store(abi::PROC_READY_BIT, Ordering::Release);
        }
        Ok(Process {
            base,
            pid,
            max_depth,
            collector,
            fenceless,
            late_times,
            check_memo,
            backed: [const { AtomicU64::new(0) }; abi::NCHUNKS / 64],
            no_room_until: AtomicU64::new(0),
            starved: AtomicU32::new(0),
        })
    }

    /// The file header.
    pub fn header(&self) -> &ProcHeader {
        // SAFETY: the mapping starts with a ProcHeader and lives forever.
        unsafe { &*self.base.cast::<ProcHeader>() }
    }

    /// Thread slot `i`.
    pub fn slot(&self, i: usize) -> &ThreadSlot {
        // SAFETY: `i < NSLOTS` (callers); slots are atomics in the mapping.
        unsafe { &*self.base.add(abi::SLOTS_OFFSET).cast::<ThreadSlot>().add(i) }
    }

    /// Chunk header `i`.
    pub fn chunk(&self, i: usize) -> &ChunkHeader {
        // SAFETY: `i < NCHUNKS` (callers); headers are atomics in the mapping.
        unsafe {
            &*self
                .base
                .add(abi::CHUNK_HEADERS_OFFSET)
                .cast::<ChunkHeader>()
                .add(i)
        }
    }

    /// Start of chunk `i`'s data.
    pub fn chunk_data(&self, i: usize) -> *mut u8 {
        // SAFETY: within the mapping for `i < NCHUNKS`.
        unsafe { self.base.add(abi::DATA_OFFSET + i * abi::CHUNK_SIZE) }
    }

    /// Claims a free thread slot for `tid`.
    pub fn claim_slot(&self, tid: u32) -> Option<usize> {
        (0..abi::NSLOTS).find(|&i| {
            let s = self.slot(i);
            if s.tid.load(Ordering::Relaxed) != 0 {
                return false;
            }
            if s.tid
                .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                s.busy.store(0, Ordering::Relaxed);
                s.last_time.store(0, Ordering::Release);
                self.header()
                    .slots_used
                    .fetch_max(i as u32 + 1, Ordering::SeqCst);
                true
            } else {
                false
            }
        })
    }

    /// Counts a thread that starts recording (before its first record); from
    /// the second thread on, lowers [`abi::Threads::multi_since`] to the
    /// records' clock now, so that every record this thread writes has a
    /// time at or above the word. Each thread keeps the minimum (not the
    /// first value stored): two threads registering at once could otherwise
    /// leave the later reading there, above records of the other.
    pub fn register_thread(&self) {
        let t = &self.header().threads;
        if t.registered.fetch_add(1, Ordering::AcqRel) == 0 {
            return;
        }
        // Read with a fence after every earlier instruction; the records this
        // thread writes next read the clock after it (the first of them, its
        // thread start, with a fence of its own, see `ThreadState::reset`).
        let now = sys::now().max(1);
        let mut cur = t.multi_since.load(Ordering::Acquire);
        while cur == 0 || cur > now {
            match t
                .multi_since
                .compare_exchange_weak(cur, now, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(c) => cur = c,
            }
        }
    }

    /// Whether a second thread has registered, as far as this thread can
    /// tell: [`abi::Threads::multi_since`] is set. A thread that reads it
    /// unset after an event cannot have an event of another thread before
    /// that event (such an event comes after the other thread's
    /// registration, which set the word, so this read would see it).
    #[inline(always)]
    pub fn multi_threaded(&self) -> bool {
        self.header().threads.multi_since.load(Ordering::Relaxed) != 0
    }

    /// Claims a free chunk for `tid`, waiting for the collector to free one
    /// when all are in use; `None` if the collector is gone or too slow.
    /// Once a wait has timed out, claims only look for a free chunk, without
    /// waiting, until one is found: a file the collector gave up on (its
    /// trace could not be made, or another build's library wrote it) would
    /// otherwise cost the program 10 s per event once its chunks are full.
    pub fn claim_chunk(&self, tid: u32) -> Option<usize> {
        let start = sys::monotonic();
        let mut spins = 0u64;
        loop {
            for i in 0..abi::NCHUNKS {
                let c = self.chunk(i);
                if c.state.load(Ordering::Relaxed) != abi::CHUNK_FREE {
                    continue;
                }
                if c.state
                    .compare_exchange(
                        abi::CHUNK_FREE,
                        abi::CHUNK_CLAIMING,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    if !self.back_chunk(i) {
                        c.state.store(abi::CHUNK_FREE, Ordering::Release);
                        return None;
                    }
                    c.committed.store(0, Ordering::Relaxed);
                    c.tid.store(tid, Ordering::Relaxed);
                    self.header()
                        .chunks_used
                        .fetch_max(i as u32 + 1, Ordering::SeqCst);
                    c.seq.store(
                        self.header().chunk_seq.fetch_add(1, Ordering::Relaxed),
                        Ordering::Relaxed,
                    );
                    c.state.store(abi::CHUNK_OWNED, Ordering::Release);
                    if self.starved.load(Ordering::Relaxed) != 0 {
                        self.starved.store(0, Ordering::Relaxed);
                    }
                    return Some(i);
                }
            }
            if COLLECTOR_GONE.load(Ordering::Relaxed) != 0
                || self.starved.load(Ordering::Relaxed) != 0
            {
                return None;
            }
            spins += 1;
            if spins % 64 == 0 && !self.collector_alive() {
                COLLECTOR_GONE.store(1, Ordering::Relaxed);
                return None;
            }
            if sys::monotonic().saturating_sub(start) > 10_000_000_000 {
                self.starved.store(1, Ordering::Relaxed);
                return None;
            }
            sys::sleep_us(50);
        }
    }

    /// Backs chunk `i`'s data with memory before its first use (see
    /// [`populate`]); false, and the event is dropped (counted), when the
    /// file system has no room: then no chunk is tried again for 50 ms.
    fn back_chunk(&self, i: usize) -> bool {
        let bit = 1u64 << (i % 64);
        let word = &self.backed[i / 64];
        if word.load(Ordering::Relaxed) & bit != 0 {
            return true;
        }
        let now = sys::monotonic();
        if now < self.no_room_until.load(Ordering::Relaxed) {
            return false;
        }
        if !populate(self.chunk_data(i).cast(), abi::CHUNK_SIZE) {
            self.no_room_until
                .store(now + 50_000_000, Ordering::Relaxed);
            return false;
        }
        word.fetch_or(bit, Ordering::Relaxed);
        true
    }

    fn collector_alive(&self) -> bool {
        if self.collector <= 0 {
            return true;
        }
        // SAFETY: signal 0 only checks existence.
        unsafe { libc::kill(self.collector, 0) == 0 }
    }

    /// Counts an event that could not be recorded.
    pub fn drop_event(&self) {
        self.header().dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Hands out a new stack id.
    pub fn next_stack_id(&self) -> u32 {
        self.header().next_stack.fetch_add(1, Ordering::Relaxed)
    }

    /// Marks the image as about to exec.
    pub fn set_execing(&self, on: bool) {
        let st = if on {
            abi::PROC_EXECING
        } else {
            abi::PROC_RUNNING
        };
        self.header()
            .state
            .store(abi::PROC_READY_BIT | st, Ordering::Release);
    }
}
