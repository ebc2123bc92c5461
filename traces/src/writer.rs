//! The trace writer: buffers each thread's events into blocks, interns stacks,
//! and writes watermarks so a reader can merge threads in bounded memory.

use rustc_hash::FxHashMap as HashMap;
use std::io::Write;

use crate::block::{write_block, write_block_parts, BlockCompressor, BlockType};
use crate::codec::BlockEncoder;
use crate::error::{Error, Result};
use crate::event::{Record, StackId, ThreadId};
use crate::stacks::TrieBuilder;
use crate::{Header, Trailer, MAGIC, VERSION};

/// Stack definitions are written in blocks of at least this many bytes
/// (before compression) until the trace's end: a reader has every stack once
/// the file is read, and small blocks compress poorly (python3's workload:
/// stacks in 33 blocks were 37 KB of its 86 KB trace).
const STACKS_BATCH: usize = 64 << 10;

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
    out: W,
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
    last_time: u64,
    bytes: u64,
    events: u64,
    /// Reused across blocks: the payload buffer and the zstd context.
    payload: Vec<u8>,
    zstd: BlockCompressor,
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
            out,
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
            last_time: 0,
            bytes: 12 + n,
            events: 0,
            payload: Vec::new(),
            zstd: BlockCompressor::default(),
        })
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
        self.events += 1;
        self.last_time = self.last_time.max(rec.time);
        if enc.is_full(self.opts.block_bytes) {
            self.block_full(rec.thread)?;
        }
        Ok(())
    }

    /// A thread's block is full: write it (and, when ordered, a watermark).
    #[cold]
    #[inline(never)]
    fn block_full(&mut self, thread: ThreadId) -> Result<()> {
        self.flush_thread(thread)?;
        if self.opts.ordered {
            self.advance(self.last_time)?;
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
            self.bytes += write_block(&mut self.out, BlockType::Watermark, &raw, 0).map_err(io)?;
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
        let mut payload = std::mem::take(&mut self.payload);
        // Column 6, sizes: whole when they compressed well last time.
        enc.whole_sizes(self.zstd.dense(6));
        let cuts = enc.finish_cuts(&mut payload);
        // Stacks first (once enough are pending), so a reader usually knows
        // a stack before its use.
        self.flush_stacks_if(false)?;
        let n = write_block_parts(
            &mut self.out,
            BlockType::Events,
            &payload,
            &cuts[1..],
            self.opts.compression_level,
            &mut self.zstd,
        );
        self.payload = payload;
        self.bytes += n.map_err(io)?;
        self.unmarked = true;
        Ok(())
    }

    /// Writes the pending stack definitions once they reach
    /// [`STACKS_BATCH`] bytes (`all`: whatever their size).
    fn flush_stacks_if(&mut self, all: bool) -> Result<()> {
        let n = self.trie.pending_len();
        if n > 0 && (all || n >= STACKS_BATCH) {
            let raw = self.trie.take();
            let level = match self.opts.compression_level {
                0 => 0,
                l => l.max(STACKS_LEVEL),
            };
            self.bytes += write_block(&mut self.out, BlockType::Stacks, &raw, level).map_err(io)?;
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
        self.out.flush().map_err(io)
    }

    /// Events written so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Bytes written to the output so far (buffered events not included).
    pub fn bytes_written(&self) -> u64 {
        self.bytes
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
        self.bytes += write_block(&mut self.out, BlockType::Trailer, &raw, 0).map_err(io)?;
        self.out.flush().map_err(io)?;
        Ok(self.out)
    }
}
