//! Turns one process image's shared event file into a trace: drains its
//! chunks in claim order, decodes records, and feeds the trace writer with a
//! safe watermark each round.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use alloctrace_abi as abi;
use anyhow::Context;
use traces::{
    AllocFn, Clock, Event, ExitStatus, FreeFn, Header, Module, Record, Trailer, Writer,
    WriterOptions,
};

use crate::clock::{self, TimeMap};
use crate::shm::{self, ProcMap};

/// A realloc's begin record: `(time, func, old, size, stack)`.
type PendingRealloc = (u64, u8, u64, u64, u32);

/// One process image being collected.
pub struct ProcTrace {
    /// Process id.
    pub pid: u32,
    /// Image number for this pid (0 = first, then one per exec).
    pub image: u32,
    /// Trace path.
    pub path: PathBuf,
    map: ProcMap,
    writer: Writer<BufWriter<File>>,
    drained: Vec<usize>,
    last_time: HashMap<u32, u64>,
    advanced: u64,
    max_time: u64,
    /// The process's start, rounded down: the earliest date of an untimed
    /// record (`abi::FLAG_LATE_TIMES`).
    origin: u64,
    /// Records decoded so far.
    pub events: u64,
    frames: Vec<u64>,
    /// Per thread, a realloc whose begin record was seen but not its end.
    /// At most one per thread, and rarely more than one at a time (a begin
    /// and its end are usually next to each other in a chunk): a short list
    /// searched linearly costs less than a hash map insert and remove.
    pending_realloc: Vec<(u32, PendingRealloc)>,
    /// Record times are counter ticks ([`abi::FLAG_TSC`]).
    tsc: bool,
    /// Busy flags are set without a fence ([`abi::FLAG_MEMBARRIER`]).
    fenceless: bool,
    /// Times of records from before the process had a second thread are
    /// rounded down to a multiple of this many ns (1: kept as read).
    resolution: u64,
}

impl ProcTrace {
    /// Starts the trace for a mapped, ready process file. `root` says whether
    /// this is the recorded command's own first image; `resolution` (ns, at
    /// least 1) is the time resolution of events from while the process had
    /// one thread (see [`abi::Threads::multi_since`]).
    pub fn new(
        pid: u32,
        image: u32,
        map: ProcMap,
        path: PathBuf,
        root: bool,
        resolution: u64,
    ) -> anyhow::Result<ProcTrace> {
        let h = map.header();
        let (cmdline, exe) = map.strings();
        let mut flags = 0;
        if h.flags & abi::FLAG_FORKED != 0 {
            flags |= traces::flags::FORKED;
        } else if !root {
            flags |= traces::flags::EXECED;
        }
        if h.flags & abi::FLAG_NO_BACKTRACES != 0 {
            flags |= traces::flags::NO_BACKTRACES;
        }
        let header = Header {
            pointer_size: std::mem::size_of::<usize>() as u8,
            little_endian: cfg!(target_endian = "little"),
            pid: h.pid,
            ppid: h.ppid,
            cmdline,
            exe,
            start_unix_ns: h.start_unix_ns,
            start_time: h.start_time,
            clock: Clock::Monotonic,
            page_size: h.page_size,
            flags,
            tool: concat!("alloctrace ", env!("CARGO_PKG_VERSION")).to_string(),
        };
        let start = h.start_time;
        let tsc = h.flags & abi::FLAG_TSC != 0;
        let fenceless = h.flags & abi::FLAG_MEMBARRIER != 0;
        // A replaced trace of a child process is closed at once: this
        // thread is not the program's.
        let (file, _replaced) = crate::session::create_trace_file(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        let opts = WriterOptions {
            compression_level: 1,
            // A thread's events are written out at least every second: a
            // block of its own per 50 ms (the default) cost a short-lived
            // or slow process's trace a block header, a literals table and
            // a stacks block each time (python3's workload: 62 blocks of
            // about 100 events). The lag only delays what a reader of
            // several threads may release.
            max_lag: 1_000_000_000,
            ..WriterOptions::default()
        };
        // Blocks are compressed and written on a thread of the trace's own:
        // the collector's thread is what a fast-allocating program waits for
        // (churn: zstd and writing were ~50 of its ~390 instructions per
        // record), and the program's core is free while it waits.
        let writer = Writer::with_thread(BufWriter::with_capacity(1 << 20, file), &header, opts)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(ProcTrace {
            pid,
            image,
            path,
            map,
            writer,
            drained: vec![0; abi::NCHUNKS],
            last_time: HashMap::new(),
            advanced: 0,
            // Rounded like the times of the process's first events: with
            // millisecond times, a program that runs within the millisecond
            // it started in has every event before `start`, and an end time
            // of `start` itself would not be a whole millisecond.
            max_time: floor_to(start, resolution.max(1)),
            origin: floor_to(start, resolution.max(1)),
            events: 0,
            frames: Vec::new(),
            pending_realloc: Vec::new(),
            tsc,
            fenceless,
            resolution: resolution.max(1),
        })
    }

    /// One collection round: drains every committed record and advances the
    /// watermark. Returns the number of records decoded. `clock` maps counter
    /// ticks (calibrated by the caller for this round).
    pub fn drain(&mut self, clock: &TimeMap) -> anyhow::Result<u64> {
        // Watermark first: no thread can still produce a record older than
        // this, once the chunks are drained below.
        let mut wm = if self.tsc { clock::tsc() } else { shm::now() };
        if self.fenceless {
            // SAFETY: membarrier with integer arguments only.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_membarrier,
                    abi::MEMBARRIER_CMD_GLOBAL_EXPEDITED,
                    0,
                    0,
                )
            };
            if r != 0 {
                wm = 0; // busy flags unordered: no watermark this round
            }
        }
        // Slots and chunks past the highest ever claimed were never used
        // (read after the barrier or the busy flags' loads: see
        // `abi::ProcHeader::slots_used`).
        let header = self.map.header();
        let slots = (header.slots_used.load(Ordering::SeqCst) as usize).min(abi::NSLOTS);
        for i in 0..slots {
            let s = self.map.slot(i);
            if s.tid.load(Ordering::Acquire) != 0 && s.busy.load(Ordering::SeqCst) != 0 {
                wm = wm.min(s.last_time.load(Ordering::Acquire));
            }
        }
        let wm = if self.tsc && wm != 0 {
            clock.to_ns(wm)
        } else {
            wm
        };
        // Records still to come may have their times rounded down: so is
        // the watermark (rounding is monotonic, so they stay above it).
        let wm = floor_to(wm, self.resolution);
        let mut order: Vec<(u64, usize, bool)> = Vec::new();
        let chunks = (header.chunks_used.load(Ordering::Acquire) as usize).min(abi::NCHUNKS);
        for i in 0..chunks {
            let c = self.map.chunk(i);
            let st = c.state.load(Ordering::Acquire);
            if st == abi::CHUNK_OWNED || st == abi::CHUNK_FULL {
                order.push((c.seq.load(Ordering::Relaxed), i, st == abi::CHUNK_FULL));
            }
        }
        order.sort_unstable();
        let before = self.events;
        for (_, i, full) in order {
            let c = self.map.chunk(i);
            let tid = c.tid.load(Ordering::Relaxed);
            let committed = (c.committed.load(Ordering::Acquire) as usize).min(abi::CHUNK_SIZE);
            let from = self.drained[i];
            if committed > from {
                let n = self.decode(clock, i, tid, from, committed)?;
                self.drained[i] = from + n;
            }
            if full && self.drained[i] >= committed {
                self.drained[i] = 0;
                self.map
                    .chunk(i)
                    .state
                    .store(abi::CHUNK_FREE, Ordering::Release);
            }
        }
        if wm > self.advanced {
            self.writer.advance(wm)?;
            self.advanced = wm;
        }
        self.map.header().heartbeat.fetch_add(1, Ordering::Relaxed);
        Ok(self.events - before)
    }

    /// Decodes records of chunk `i` in `[from, to)`; returns bytes consumed.
    fn decode(
        &mut self,
        clock: &TimeMap,
        i: usize,
        tid: u32,
        from: usize,
        to: usize,
    ) -> anyhow::Result<usize> {
        // SAFETY: the bytes lie in the mapping, which lives as long as `self`
        // and is never unmapped while decoding; the writer only appends past
        // its published `committed` (`to`), so they do not change meanwhile.
        // Reading them in place (not through `self.map`) lets the decoder
        // borrow `self` mutably.
        let bytes: &[u8] = unsafe {
            let b = self.map.chunk_bytes(i, from, to);
            std::slice::from_raw_parts(b.as_ptr(), b.len())
        };
        // Loaded after the chunk's `committed` (Acquire, in `drain`): every
        // record below it that comes after a second thread's registration
        // sees the word that registration lowered (see `abi::Threads`).
        let since = match self
            .map
            .header()
            .threads
            .multi_since
            .load(Ordering::Acquire)
        {
            0 => u64::MAX,
            t => t,
        };
        let coarse_below = if self.resolution > 1 { since } else { 0 };
        self.decode_bytes(clock, tid, bytes, coarse_below)
    }

    /// Decodes `bytes`, rounding down the times of records whose clock
    /// reading is below `coarse_below`.
    fn decode_bytes(
        &mut self,
        clock: &TimeMap,
        tid: u32,
        bytes: &[u8],
        coarse_below: u64,
    ) -> anyhow::Result<usize> {
        let mut at = 0;
        // One chunk holds one thread's records: its last time is looked up
        // once per chunk, not once per record.
        let mut last = self.last_time.get(&tid).copied().unwrap_or(0);
        let mut exited = false;
        let r = self.decode_records(
            clock,
            tid,
            bytes,
            coarse_below,
            &mut at,
            &mut last,
            &mut exited,
        );
        // A thread's times only grow: its last is the chunk's latest time
        // (an exit's is taken before `last` restarts).
        self.max_time = self.max_time.max(last);
        if exited {
            self.last_time.remove(&tid);
        } else {
            self.last_time.insert(tid, last);
        }
        r.map(|()| at)
    }

    #[allow(clippy::too_many_arguments)] // the decoding state, kept in registers
    fn decode_records(
        &mut self,
        clock: &TimeMap,
        tid: u32,
        bytes: &[u8],
        coarse_below: u64,
        at: &mut usize,
        last: &mut u64,
        exited: &mut bool,
    ) -> anyhow::Result<()> {
        let tsc = self.tsc;
        let ns = |t: u64| if tsc { clock.to_ns(t) } else { t };
        // The hot path maps ticks with the map's newest piece (records are
        // mostly newer than its start) and tells the map the highest tick it
        // mapped once, at the end.
        let newest = if tsc { clock.newest() } else { None };
        let mut max_tick = 0u64;
        let floor = self.advanced;
        let res = self.resolution;
        let origin = self.origin;
        // Start of the last rounded time's interval (a multiple of `res`).
        let mut bucket = 0u64;
        let step_limit = res.saturating_mul(8);
        let mut events = 0u64;
        // The address index's entries for the records a few on are fetched
        // ahead: the index is read at random, and its lines were most of the
        // cache misses of the loop (churn, perf: 15-18 % of its samples on
        // the two loads of the index).
        // A small index stays cached: then nothing is fetched.
        let hint = Some(self.writer.index_hint(tid)).filter(|h| h.is_large());
        let mut ahead = *at;
        if let Some(hint) = &hint {
            for _ in 0..LOOKAHEAD {
                ahead = fetch_ahead(bytes, ahead, hint);
            }
        }
        let r = loop {
            if *at + abi::RECORD_HEADER > bytes.len() {
                break Ok(());
            }
            if let Some(hint) = &hint {
                ahead = fetch_ahead(bytes, ahead, hint);
            }
            let a = *at;
            // The chunk was written a while ago, often by another CPU:
            // start fetching what the next few dozen records hold.
            shm::prefetch(bytes.as_ptr().wrapping_add(a + 1024));
            // A malloc or free record (at most 40 bytes) with all its words
            // in `bytes`: one bounds check, then fixed-offset reads.
            if let Some(rec) = bytes.get(a..a + 40) {
                let w = |k: usize| {
                    u64::from_le_bytes(rec[8 * k..8 * k + 8].try_into().unwrap_or([0; 8]))
                };
                let h = w(1);
                let kind = h as u8;
                let func = (h >> 8) as u8;
                let stack = (h >> 32) as u32;
                // Plain malloc and free records as hooks write them (no
                // function number; address and size, address alone) are
                // told by one compare of kind, function and length.
                let heap = match h as u32 {
                    PLAIN_MALLOC => Some((PLAIN_MALLOC_LEN, w(2), w(3), 0)),
                    PLAIN_FREE => Some((PLAIN_FREE_LEN, w(2), 0, 0)),
                    _ => {
                        let len = (h >> 16) as u16 as usize;
                        ((kind == abi::KIND_ALLOC || kind == abi::KIND_FREE)
                            && (abi::RECORD_HEADER..=40).contains(&len))
                        .then(|| {
                            // Trailing zero words may be left out by the writer.
                            let nw = (len - abi::RECORD_HEADER) / 8;
                            (
                                len,
                                if nw > 0 { w(2) } else { 0 },
                                if nw > 1 { w(3) } else { 0 },
                                if nw > 2 { w(4) } else { 0 },
                            )
                        })
                    }
                };
                if let Some((len, addr, size, align)) = heap {
                    *at += len;
                    let time = w(0);
                    let t = if time == 0 {
                        // Untimed: dated below, at the thread's last time or
                        // the watermark (`abi::FLAG_LATE_TIMES`), and not
                        // before the process started.
                        origin
                    } else {
                        let t = match newest {
                            Some(p) if time >= p.tsc => {
                                max_tick = max_tick.max(time);
                                p.at(time)
                            }
                            _ => ns(time),
                        };
                        if time < coarse_below {
                            // Most records fall in the previous one's
                            // microsecond: no division for them.
                            let d = t.wrapping_sub(bucket);
                            if d >= res {
                                bucket = if d < step_limit {
                                    // A few intervals on (times grow): steps,
                                    // not a 64-bit division (~40 cycles).
                                    let mut b = bucket + res;
                                    while t - b >= res {
                                        b += res;
                                    }
                                    b
                                } else {
                                    floor_to(t, res)
                                };
                            }
                            bucket
                        } else {
                            t
                        }
                    };
                    let t = t.max(*last).max(floor);
                    *last = t;
                    let written = if func == 0 {
                        // Plain malloc or free: no `Event` built.
                        self.writer
                            .write_heap(tid, t, kind == abi::KIND_ALLOC, addr, size, stack)
                    } else {
                        let event = heap_event(kind, func, addr, size, align, stack);
                        // No heap data in the event, nothing to drop.
                        let rec = std::mem::ManuallyDrop::new(Record {
                            time: t,
                            thread: tid,
                            event,
                        });
                        self.writer.write(&rec)
                    };
                    if let Err(e) = written {
                        break Err(e.into());
                    }
                    events += 1;
                    continue;
                }
            }
            match self.decode_other(clock, tid, bytes, coarse_below, at, last, exited) {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.events += events;
        clock.seen(max_tick);
        r
    }

    /// Decodes the record at `at` on the general path; false when no whole
    /// record is left.
    #[allow(clippy::too_many_arguments)] // as `decode_records`
    fn decode_other(
        &mut self,
        clock: &TimeMap,
        tid: u32,
        bytes: &[u8],
        coarse_below: u64,
        at: &mut usize,
        last: &mut u64,
        exited: &mut bool,
    ) -> anyhow::Result<bool> {
        let word = |k: usize| u64::from_le_bytes(bytes[k..k + 8].try_into().unwrap_or([0; 8]));
        let tsc = self.tsc;
        let ns = |t: u64| if tsc { clock.to_ns(t) } else { t };
        let a = *at;
        let time = word(a);
        // kind, func, len (u16) and stack (u32), little-endian.
        let h = word(a + 8);
        let kind = h as u8;
        let func = (h >> 8) as u8;
        let len = (h >> 16) as u16 as usize;
        let stack = (h >> 32) as u32;
        if len < abi::RECORD_HEADER || a + len > bytes.len() {
            return Ok(false);
        }
        let nw = (len - abi::RECORD_HEADER) / 8;
        let body = a + abi::RECORD_HEADER;
        let tail = &bytes[body..a + len];
        // Trailing zero words may be left out by the writer.
        let arg = |k: usize| if k < nw { word(body + 8 * k) } else { 0 };
        *at += len;
        let event = match kind {
            abi::KIND_STACK => {
                self.frames.clear();
                self.frames.extend((0..nw).map(|k| word(body + 8 * k)));
                self.writer.define_stack(stack, &self.frames)?;
                return Ok(true);
            }
            abi::KIND_ALLOC | abi::KIND_FREE => {
                heap_event(kind, func, arg(0), arg(1), arg(2), stack)
            }
            abi::KIND_REALLOC_BEGIN => {
                let begin = (*last, func, arg(0), arg(1), stack);
                match self.pending_realloc.iter_mut().find(|p| p.0 == tid) {
                    Some(p) => p.1 = begin,
                    None => self.pending_realloc.push((tid, begin)),
                }
                return Ok(true);
            }
            abi::KIND_REALLOC => {
                // The begin record carried the stack (when the call had a block).
                let begin = self
                    .pending_realloc
                    .iter()
                    .position(|p| p.0 == tid)
                    .map(|i| self.pending_realloc.swap_remove(i).1);
                Event::Realloc {
                    func: AllocFn::from_u8(func).unwrap_or(AllocFn::Realloc),
                    old_addr: arg(0),
                    new_addr: arg(1),
                    size: arg(2),
                    stack: begin.map_or(stack, |b| b.4),
                }
            }
            abi::KIND_MMAP => Event::Mmap {
                addr: arg(0),
                len: arg(1),
                prot: arg(2) as u32,
                flags: (arg(2) >> 32) as u32,
                fd: arg(3) as i64 as i32,
                stack,
            },
            abi::KIND_MUNMAP => Event::Munmap {
                addr: arg(0),
                len: arg(1),
                stack,
            },
            abi::KIND_MREMAP => Event::Mremap {
                old_addr: arg(0),
                old_len: arg(1),
                new_addr: arg(2),
                new_len: arg(3),
                stack,
            },
            abi::KIND_BRK => Event::Brk {
                old_break: arg(0),
                new_break: arg(1),
                stack,
            },
            abi::KIND_THREAD_START => Event::ThreadStart {
                parent: arg(0) as u32,
            },
            abi::KIND_THREAD_EXIT => Event::ThreadExit,
            abi::KIND_FORK => Event::Fork {
                child_pid: arg(0) as u32,
            },
            abi::KIND_EXEC => {
                let n = (arg(0) as usize).min(tail.len().saturating_sub(8));
                Event::Exec {
                    path: String::from_utf8_lossy(&tail[8..8 + n]).into_owned(),
                }
            }
            abi::KIND_MODULE_LOAD => {
                let lens = arg(3);
                let (bl, pl) = ((lens & 0xffff_ffff) as usize, (lens >> 32) as usize);
                let rest = tail.get(32..).unwrap_or(&[]);
                let build_id = rest.get(..bl).unwrap_or(&[]).to_vec();
                let path = rest.get(bl..bl + pl).unwrap_or(&[]);
                Event::ModuleLoad(Box::new(Module {
                    path: String::from_utf8_lossy(path).into_owned(),
                    base: arg(0),
                    start: arg(1),
                    end: arg(2),
                    build_id,
                }))
            }
            abi::KIND_MODULE_UNLOAD => Event::ModuleUnload { base: arg(0) },
            _ => return Ok(true),
        };
        // Keep each thread's records in time order and above the watermark
        // (an untimed record gets the later of the two, or the start).
        let t = if time == 0 {
            self.origin
        } else if time < coarse_below {
            floor_to(ns(time), self.resolution)
        } else {
            ns(time)
        };
        let t = t.max(*last).max(self.advanced);
        *last = t;
        let exit = matches!(event, Event::ThreadExit);
        self.writer.write(&Record {
            time: t,
            thread: tid,
            event,
        })?;
        self.events += 1;
        if exit {
            self.max_time = self.max_time.max(t);
            self.writer.flush_thread(tid)?;
            *exited = true;
            *last = 0;
        }
        Ok(true)
    }

    /// Drains what is left and writes the trailer.
    pub fn finish(mut self, clock: &TimeMap, exit: ExitStatus) -> anyhow::Result<PathBuf> {
        self.drain(clock)?;
        // A realloc that never returned: the process died inside it (glibc
        // aborts on a realloc of freed memory). Record it as a realloc that
        // produced nothing, at the time it started.
        let mut pending = std::mem::take(&mut self.pending_realloc);
        pending.sort_unstable();
        for (tid, (time, func, old, size, stack)) in pending {
            let t = time
                .max(self.last_time.get(&tid).copied().unwrap_or(0))
                .max(self.advanced);
            self.max_time = self.max_time.max(t);
            let event = Event::Realloc {
                func: AllocFn::from_u8(func).unwrap_or(AllocFn::Realloc),
                old_addr: old,
                new_addr: 0,
                size,
                stack,
            };
            self.writer.write(&Record {
                time: t,
                thread: tid,
                event,
            })?;
            self.events += 1;
        }
        let dropped = self.map.header().dropped.load(Ordering::Relaxed);
        let trailer = Trailer {
            end_time: self.max_time.max(self.advanced),
            exit,
            dropped_events: dropped,
        };
        self.writer
            .finish(&trailer)
            .with_context(|| format!("finishing {}", self.path.display()))?;
        Ok(self.path)
    }
}

/// Records between the one decoded and the one whose address index entry
/// is fetched ([`fetch_ahead`]).
const LOOKAHEAD: usize = 8;

/// Has the address index's entry fetched for the address of the record at
/// `ahead` in `bytes` (its third word: a heap record's address; for another
/// record, a useless line), and returns where the next record starts.
#[inline(always)]
fn fetch_ahead(bytes: &[u8], ahead: usize, hint: &traces::codec::IndexHint) -> usize {
    match bytes.get(ahead + 8..ahead + 24) {
        Some(r) => {
            let w = |k: usize| u64::from_le_bytes(r[k..k + 8].try_into().unwrap_or([0; 8]));
            shm::prefetch(hint.entry(w(8)));
            // A bad length (under a header: no record has one) stops the
            // lookahead at worst, never the decoding.
            ahead + ((w(0) >> 16) as u16 as usize)
        }
        None => ahead,
    }
}

/// Length of a plain malloc record: header, address and size.
const PLAIN_MALLOC_LEN: usize = abi::RECORD_HEADER + 16;
/// Length of a plain free record: header and address.
const PLAIN_FREE_LEN: usize = abi::RECORD_HEADER + 8;
/// The low half of a plain malloc record's header word: kind, function 0
/// and length.
const PLAIN_MALLOC: u32 = abi::KIND_ALLOC as u32 | (PLAIN_MALLOC_LEN as u32) << 16;
/// The low half of a plain free record's header word.
const PLAIN_FREE: u32 = abi::KIND_FREE as u32 | (PLAIN_FREE_LEN as u32) << 16;

/// `t` rounded down to a multiple of `res` (at least 1); the default
/// resolutions divide by a constant (a multiply, not a division).
#[inline(always)]
fn floor_to(t: u64, res: u64) -> u64 {
    if res == 1_000_000 {
        floor_ms(t)
    } else if res == 1000 {
        floor_us(t)
    } else {
        t - t % res
    }
}

/// `t` rounded down to a multiple of 1,000,000 (out of line: see
/// [`floor_us`]).
#[inline(never)]
fn floor_ms(t: u64) -> u64 {
    t - t % 1_000_000
}

/// `t` rounded down to a multiple of 1000. Out of line: inlined, LLVM sees
/// it equals the general case when `res` is 1000 and merges the two into
/// one variable division (~40 cycles).
#[inline(never)]
fn floor_us(t: u64) -> u64 {
    t - t % 1000
}

/// The event of a malloc-family (`KIND_ALLOC`) or free-family (`KIND_FREE`)
/// record; an unknown function number reads as plain malloc or free.
#[inline(always)]
fn heap_event(kind: u8, func: u8, addr: u64, size: u64, align: u64, stack: u32) -> Event {
    if kind == abi::KIND_ALLOC {
        Event::Alloc {
            func: AllocFn::from_u8(func).unwrap_or(AllocFn::Malloc),
            addr,
            size,
            align,
            stack,
        }
    } else {
        Event::Free {
            func: FreeFn::from_u8(func).unwrap_or(FreeFn::Free),
            addr,
            size,
            align,
            stack,
        }
    }
}
