//! The trace writer: buffers each thread's events into blocks, interns stacks,
//! and writes watermarks so a reader can merge threads in bounded memory.

use rustc_hash::FxHashMap as HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::block::{write_block, write_block_parts, BlockCompressor, BlockType};
use crate::codec::{BlockEncoder, COLUMNS};
use crate::error::{Error, Result};
use crate::event::{Record, StackId, ThreadId};
use crate::stacks::TrieBuilder;
use crate::{Header, Trailer, MAGIC, VERSION};

/// Stack definitions are written in blocks of at least this many bytes
/// (before compression) until the trace's end: a reader has every stack once
/// the file is read, and small blocks compress poorly (python3's workload:
/// stacks in 33 blocks were 37 KB of its 86 KB trace).
const STACKS_BATCH: usize = 64 << 10;

/// Pending stack definitions older than this (ns of event time since the
/// last stacks block) are written with the next events block or watermark
/// whatever their size: a trace cut short (its recorder killed) keeps the
/// stacks of all but its last second.
const STACKS_MAX_AGE: u64 = 1_000_000_000;

/// zstd level of stacks blocks (at least): they are a few per trace.
const STACKS_LEVEL: i32 = 9;

/// Tuning of a [`Writer`].
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// zstd level for blocks; 0 stores them uncompressed.
    pub compression_level: i32,
    /// A thread's block is written once its encoded columns reach this size.
    pub block_bytes: usize,
    /// Events are written in global time order (generators, tests): the writer
    /// then advances the watermark by itself.
    pub ordered: bool,
    /// [`Writer::advance`] writes out any thread buffer whose first event is
    /// older than `safe_time - max_lag`, so the watermark never lags further.
    pub max_lag: u64,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            compression_level: 1,
            block_bytes: 1 << 20,
            ordered: false,
            max_lag: 50_000_000,
        }
    }
}

/// Writes a trace to `W`. Call [`Writer::finish`] at the end; a writer that is
/// dropped leaves a trace without trailer, which readers accept as "ended early".
pub struct Writer<W: Write> {
    sink: Sink<W>,
    opts: WriterOptions,
    /// One encoder per thread seen; `thread_index` maps a thread to its slot
    /// and `last` caches the most recent lookup (threads write in runs).
    encoders: Vec<BlockEncoder>,
    thread_index: HashMap<ThreadId, usize>,
    /// The thread of the most recent lookup (`u64::MAX`, no thread, before
    /// the first) and its slot: one compare per record.
    last_thread: u64,
    last_index: usize,
    trie: TrieBuilder,
    next_stack: StackId,
    interned: HashMap<Vec<u64>, StackId>,
    watermark: u64,
    /// An events block was written since the last watermark: a watermark
    /// with none before it would tell a reader nothing it can act on sooner
    /// than the next one (it holds only the events of earlier blocks).
    unmarked: bool,
    /// `last_time` when the last stacks block was written.
    stacks_at: u64,
    /// An events block was written.
    blocks_written: bool,
    /// The latest time and the number of the events of the blocks written
    /// (the rest are counted by their encoders: a record's write does not
    /// update either, see [`Writer::last_time`] and [`Writer::events`]).
    last_time: u64,
    bytes: u64,
    events: u64,
}

/// Where blocks go: written (and compressed) here, or by a thread of their
/// own ([`Writer::with_thread`]).
enum Sink<W> {
    Direct {
        out: W,
        /// Reused across blocks: the payload buffer and the zstd context.
        payload: Vec<u8>,
        zstd: BlockCompressor,
    },
    Thread(Background<W>),
}

/// A block for the writing thread.
enum Job {
    /// An events payload, its column cuts and zstd level.
    Events(Vec<u8>, [usize; COLUMNS], i32),
    /// Any other block, its payload and zstd level.
    Block(BlockType, Vec<u8>, i32),
    /// Flush the output, then answer.
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// The writing thread's handles.
struct Background<W> {
    jobs: Option<std::sync::mpsc::SyncSender<Job>>,
    /// Spent events payloads, for reuse.
    spent: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<W>>>,
    /// Bytes written so far, and the sizes column's density (see
    /// [`BlockCompressor::dense`]) after the last events block.
    bytes: Arc<AtomicU64>,
    dense_sizes: Arc<AtomicBool>,
}

/// Blocks queued for the writing thread at most: a writer that gets this far
/// ahead waits.
const QUEUED: usize = 4;

impl<W> Background<W> {
    /// Ends the thread; its output, or the first error it met.
    fn join(&mut self) -> std::io::Result<W> {
        self.jobs = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            _ => Err(std::io::Error::other("trace writing thread gone")),
        }
    }
}

fn io(e: std::io::Error) -> Error {
    Error::io(e, "<trace output>")
}

impl<W: Write> Writer<W> {
    /// Writes the magic and `header`, and returns a writer for the events.
    pub fn new(mut out: W, header: &Header, opts: WriterOptions) -> Result<Self> {
        out.write_all(MAGIC).map_err(io)?;
        out.write_all(&VERSION.to_le_bytes()).map_err(io)?;
        out.write_all(&[0, 0]).map_err(io)?;
        let raw = postcard::to_stdvec(header).map_err(|e| {
            Error::new(
                crate::ErrorKind::Corrupt(format!("header: {e}")),
                "<trace output>",
                None,
                None,
            )
        })?;
        let n = write_block(&mut out, BlockType::Header, &raw, 0).map_err(io)?;
        Ok(Writer {
            sink: Sink::Direct {
                out,
                payload: Vec::new(),
                zstd: BlockCompressor::default(),
            },
            opts,
            encoders: Vec::new(),
            thread_index: HashMap::default(),
            last_thread: u64::MAX,
            last_index: 0,
            trie: TrieBuilder::default(),
            next_stack: 1,
            interned: HashMap::default(),
            watermark: 0,
            unmarked: false,
            stacks_at: 0,
            blocks_written: false,
            last_time: 0,
            bytes: 12 + n,
            events: 0,
        })
    }

    /// Like [`Writer::new`], but blocks are compressed and written by a
    /// thread of their own, so that a caller producing events (the
    /// recorder's collector) spends no time in zstd or in `write`. Errors of
    /// that thread come back from a later call.
    pub fn with_thread(out: W, header: &Header, opts: WriterOptions) -> Result<Self>
    where
        W: Send + 'static,
    {
        let mut w = Self::new(out, header, opts)?;
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(QUEUED);
        let (give_back, spent) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUED + 2);
        let bytes = Arc::new(AtomicU64::new(w.bytes));
        let dense_sizes = Arc::new(AtomicBool::new(false));
        let Sink::Direct { out, .. } = std::mem::replace(
            &mut w.sink,
            Sink::Thread(Background {
                jobs: Some(jobs),
                spent,
                thread: None,
                bytes: bytes.clone(),
                dense_sizes: dense_sizes.clone(),
            }),
        ) else {
            unreachable!("a new writer writes directly")
        };
        let thread = std::thread::Builder::new()
            .name("trace writer".into())
            .spawn(move || {
                let mut out = out;
                let mut zstd = BlockCompressor::default();
                for job in queue {
                    let n = match job {
                        Job::Events(payload, cuts, level) => {
                            let n = write_block_parts(
                                &mut out,
                                BlockType::Events,
                                &payload,
                                &cuts[1..],
                                level,
                                &mut zstd,
                            )?;
                            dense_sizes.store(zstd.dense(6), Ordering::Relaxed);
                            let _ = give_back.try_send(payload);
                            n
                        }
                        Job::Block(ty, raw, level) => write_block(&mut out, ty, &raw, level)?,
                        Job::Flush(done) => {
                            out.flush()?;
                            let _ = done.send(());
                            0
                        }
                    };
                    bytes.fetch_add(n, Ordering::Relaxed);
                }
                Ok(out)
            })
            .map_err(io)?;
        if let Sink::Thread(bg) = &mut w.sink {
            bg.thread = Some(thread);
        }
        Ok(w)
    }

    /// Writes a block other than events (directly or through the thread).
    fn put_block(&mut self, ty: BlockType, raw: Vec<u8>, level: i32) -> Result<()> {
        match &mut self.sink {
            Sink::Direct { out, .. } => {
                self.bytes += write_block(out, ty, &raw, level).map_err(io)?;
                Ok(())
            }
            Sink::Thread(bg) => Self::send(bg, Job::Block(ty, raw, level)),
        }
    }

    /// Queues `job`; the thread's error if it has stopped.
    fn send(bg: &mut Background<W>, job: Job) -> Result<()> {
        let sent = bg.jobs.as_ref().map(|j| j.send(job).is_ok());
        if sent == Some(true) {
            return Ok(());
        }
        Err(io(bg.join().err().unwrap_or_else(|| {
            std::io::Error::other("trace writing thread ended early")
        })))
    }

    /// Binds stack `id` (non-zero) to `frames`, innermost first. The binding may
    /// be written before or after events that use it. Rebinding an id is ignored.
    pub fn define_stack(&mut self, id: StackId, frames: &[u64]) -> Result<()> {
        self.trie.define(id, frames);
        self.next_stack = self.next_stack.max(id.saturating_add(1));
        if self.trie.pending_len() >= self.opts.block_bytes {
            self.flush_stacks()?;
        }
        Ok(())
    }

    /// Returns the id of `frames`, defining a new one the first time. Don't mix
    /// with [`Writer::define_stack`] ids chosen by the caller unless disjoint.
    pub fn intern_stack(&mut self, frames: &[u64]) -> Result<StackId> {
        if let Some(&id) = self.interned.get(frames) {
            return Ok(id);
        }
        let id = self.next_stack;
        self.interned.insert(frames.to_vec(), id);
        self.define_stack(id, frames)?;
        Ok(id)
    }

    /// Adds one record. Records of one thread must come in time order; across
    /// threads any order is fine, as long as no record is older than the last
    /// `safe_time` given to [`Writer::advance`].
    #[inline]
    pub fn write(&mut self, rec: &Record) -> Result<()> {
        let i = if rec.thread as u64 == self.last_thread {
            self.last_index
        } else {
            self.encoder_index(rec.thread)
        };
        let enc = &mut self.encoders[i];
        enc.push(rec.time, &rec.event);
        if enc.is_full(self.opts.block_bytes) {
            self.block_full(rec.thread)?;
        }
        Ok(())
    }

    /// [`Writer::write`] of a plain malloc (`alloc`: `Event::Alloc` with
    /// `AllocFn::Malloc`, alignment 0) or free (`Event::Free` with
    /// `FreeFn::Free`, size and alignment 0; `size` is ignored), without an
    /// [`Event`](crate::Event) to build and match: the recorder's
    /// collector's hot path.
    #[inline]
    pub fn write_heap(
        &mut self,
        thread: ThreadId,
        time: u64,
        alloc: bool,
        addr: u64,
        size: u64,
        stack: StackId,
    ) -> Result<()> {
        let i = if thread as u64 == self.last_thread {
            self.last_index
        } else {
            self.encoder_index(thread)
        };
        let enc = &mut self.encoders[i];
        if alloc {
            enc.push_malloc(time, addr, size, stack);
        } else {
            enc.push_free(time, addr, stack);
        }
        if enc.is_full(self.opts.block_bytes) {
            self.block_full(thread)?;
        }
        Ok(())
    }

    /// Where the encoder of `thread` (created if new) looks addresses up
    /// (see [`IndexHint`](crate::codec::IndexHint)): a caller about to write
    /// records whose addresses it knows can have those entries fetched.
    pub fn index_hint(&mut self, thread: ThreadId) -> crate::codec::IndexHint {
        let i = self.encoder_index(thread);
        self.encoders[i].index_hint()
    }

    /// A thread's block is full: write it (and, when ordered, a watermark).
    #[cold]
    #[inline(never)]
    fn block_full(&mut self, thread: ThreadId) -> Result<()> {
        self.flush_thread(thread)?;
        if self.opts.ordered {
            self.advance(self.last_time())?;
        }
        Ok(())
    }

    /// The encoder of `thread`, created the first time (out of line: an
    /// encoder's initial state is large).
    #[inline(never)]
    fn encoder_index(&mut self, thread: ThreadId) -> usize {
        let encoders = &mut self.encoders;
        let i = *self.thread_index.entry(thread).or_insert_with(|| {
            encoders.push(BlockEncoder::new(thread));
            encoders.len() - 1
        });
        self.last_thread = thread as u64;
        self.last_index = i;
        i
    }

    /// Declares that no record older than `safe_time` will be written from now
    /// on; writes lagging thread buffers and a watermark block.
    pub fn advance(&mut self, safe_time: u64) -> Result<()> {
        let lag_limit = safe_time.saturating_sub(self.opts.max_lag);
        let lagging: Vec<ThreadId> = self
            .encoders
            .iter()
            .filter(|e| !e.is_empty() && e.first_time < lag_limit.max(1))
            .map(|e| e.thread)
            .collect();
        for t in lagging {
            self.flush_thread(t)?;
        }
        let held = self
            .encoders
            .iter()
            .filter(|e| !e.is_empty())
            .map(|e| e.first_time)
            .min();
        let w = held.map_or(safe_time, |h| h.min(safe_time));
        if w > self.watermark && self.unmarked {
            self.unmarked = false;
            self.flush_stacks_if(false)?;
            let mut raw = Vec::new();
            crate::varint::put(&mut raw, w);
            self.put_block(BlockType::Watermark, raw, 0)?;
            self.watermark = w;
        }
        Ok(())
    }

    /// Writes out everything buffered for `thread` (for example at thread exit).
    pub fn flush_thread(&mut self, thread: ThreadId) -> Result<()> {
        let Some(&i) = self.thread_index.get(&thread) else {
            return Ok(());
        };
        let enc = &mut self.encoders[i];
        if enc.is_empty() {
            return Ok(());
        }
        // Column 6, sizes: whole when they compressed well last time.
        let (mut payload, dense) = match &mut self.sink {
            Sink::Direct { payload, zstd, .. } => (std::mem::take(payload), zstd.dense(6)),
            Sink::Thread(bg) => (
                bg.spent.try_recv().unwrap_or_default(),
                bg.dense_sizes.load(Ordering::Relaxed),
            ),
        };
        enc.whole_sizes(dense);
        self.events += enc.count;
        self.last_time = self.last_time.max(enc.last_time());
        let cuts = enc.finish_cuts(&mut payload);
        // Stacks first (once enough are pending), so a reader usually knows
        // a stack before its use.
        self.flush_stacks_if(false)?;
        let level = self.opts.compression_level;
        match &mut self.sink {
            Sink::Direct {
                out,
                payload: keep,
                zstd,
            } => {
                let n =
                    write_block_parts(out, BlockType::Events, &payload, &cuts[1..], level, zstd);
                *keep = payload;
                self.bytes += n.map_err(io)?;
            }
            Sink::Thread(bg) => Self::send(bg, Job::Events(payload, cuts, level))?,
        }
        self.unmarked = true;
        self.blocks_written = true;
        Ok(())
    }

    /// Writes the pending stack definitions once they reach
    /// [`STACKS_BATCH`] bytes (`all`: whatever their size).
    fn flush_stacks_if(&mut self, all: bool) -> Result<()> {
        let n = self.trie.pending_len();
        let last_time = self.last_time();
        if self.stacks_at == 0 {
            // Age counts from the first check (event times are not from 0).
            self.stacks_at = last_time;
        }
        // The first events block's stacks go before it whatever their size:
        // a short trace cut short keeps them.
        let first = !self.blocks_written;
        let old = last_time >= self.stacks_at.saturating_add(STACKS_MAX_AGE);
        if n > 0 && (all || first || old || n >= STACKS_BATCH) {
            self.stacks_at = last_time;
            let raw = self.trie.take();
            let level = match self.opts.compression_level {
                0 => 0,
                l => l.max(STACKS_LEVEL),
            };
            self.put_block(BlockType::Stacks, raw, level)?;
        }
        Ok(())
    }

    fn flush_stacks(&mut self) -> Result<()> {
        self.flush_stacks_if(true)
    }

    /// Writes every buffer out and flushes the output, without ending the trace.
    pub fn flush(&mut self) -> Result<()> {
        let mut ts: Vec<ThreadId> = self.thread_index.keys().copied().collect();
        ts.sort_unstable();
        for t in ts {
            self.flush_thread(t)?;
        }
        self.flush_stacks()?;
        match &mut self.sink {
            Sink::Direct { out, .. } => out.flush().map_err(io),
            Sink::Thread(bg) => {
                let (done, wait) = std::sync::mpsc::sync_channel(1);
                Self::send(bg, Job::Flush(done))?;
                if wait.recv().is_err() {
                    // The thread stopped before flushing: its error.
                    return Err(io(bg.join().err().unwrap_or_else(|| {
                        std::io::Error::other("trace writing thread ended early")
                    })));
                }
                Ok(())
            }
        }
    }

    /// Events written so far.
    pub fn events(&self) -> u64 {
        self.events + self.encoders.iter().map(|e| e.count).sum::<u64>()
    }

    /// The latest time of the events written so far (0 before any).
    fn last_time(&self) -> u64 {
        self.encoders
            .iter()
            .map(|e| e.last_time())
            .fold(self.last_time, u64::max)
    }

    /// Bytes written to the output so far (buffered events not included).
    pub fn bytes_written(&self) -> u64 {
        match &self.sink {
            Sink::Direct { .. } => self.bytes,
            Sink::Thread(bg) => bg.bytes.load(Ordering::Relaxed),
        }
    }

    /// Writes all buffers and the trailer; returns the output.
    pub fn finish(mut self, trailer: &Trailer) -> Result<W> {
        self.flush()?;
        let raw = postcard::to_stdvec(trailer).map_err(|e| {
            Error::new(
                crate::ErrorKind::Corrupt(format!("trailer: {e}")),
                "<trace output>",
                None,
                None,
            )
        })?;
        self.put_block(BlockType::Trailer, raw, 0)?;
        match self.sink {
            Sink::Direct { mut out, .. } => {
                out.flush().map_err(io)?;
                Ok(out)
            }
            Sink::Thread(mut bg) => {
                let mut out = bg.join().map_err(io)?;
                out.flush().map_err(io)?;
                Ok(out)
            }
        }
    }
}
