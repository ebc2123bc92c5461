//! The streaming reader: yields records in global time order by merging the
//! per-thread blocks, holding only blocks not yet passed by a watermark.

use rustc_hash::FxHashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::batch::EventBatch;
use crate::block::{BlockReader, BlockType, Next};
use crate::error::{Error, ErrorKind, Result};
use crate::event::{Record, ThreadId};
use crate::merge::{Head, Heads, Queue, SHORT_RUN};
use crate::prefetch::Prefetcher;
use crate::stacks::StackTable;
use crate::{codec, Header, Trailer, MAGIC, VERSION};

/// What a reader dropped because the file ends inside a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// Index of the cut block.
    pub block: u64,
    /// Byte offset where the cut block starts.
    pub offset: u64,
    /// Bytes of the cut block present in the file (all dropped).
    pub dropped_bytes: u64,
}

impl std::fmt::Display for Truncation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "trace is truncated: block {} at byte {} is incomplete ({} bytes dropped); analysed up to the last complete block",
            self.block, self.offset, self.dropped_bytes
        )
    }
}

/// Most payload bytes a reader holds waiting for a watermark before it calls
/// the trace corrupt; bounds memory on damaged or hostile input.
pub const MAX_BUFFERED: usize = 1 << 30;

/// Reads a trace. Iterate it for records in global time order; stack frames
/// are in [`Reader::stacks`] (complete once iteration has ended).
pub struct Reader<R: Read> {
    blocks: Source<R>,
    file: String,
    header: Header,
    stacks: StackTable,
    trailer: Option<Trailer>,
    /// One queue per thread seen; `thread_queue` maps a thread to its index.
    queues: Vec<Queue>,
    thread_queue: FxHashMap<ThreadId, usize>,
    /// Next event of every non-empty queue.
    heads: Heads,
    /// Runs shorter than this make a queue decode ahead (a knob for tests).
    short_run: usize,
    /// Events decoded for the iterator, and its position in them.
    /// (Allocated on first use; reused, never rebuilt.)
    pending: Option<Box<EventBatch>>,
    pending_pos: usize,
    pending_other: usize,
    watermark: u64,
    /// The file's format version (events blocks of version 1 have no
    /// `sizes_lo` column).
    version: u16,
    eof: bool,
    error: Option<Error>,
    truncation: Option<Truncation>,
    buffered: usize,
    max_buffered: usize,
}

/// Where blocks come from: read on this thread, or on a block thread.
enum Source<R> {
    Direct(BlockReader<R>),
    Prefetch(Prefetcher),
}

impl<R: Read> Source<R> {
    fn next(&mut self) -> Result<Next> {
        match self {
            Source::Direct(b) => b.next(),
            Source::Prefetch(p) => p.next(),
        }
    }

    /// Index of the next block.
    fn index(&self) -> u64 {
        match self {
            Source::Direct(b) => b.index,
            Source::Prefetch(p) => p.index,
        }
    }

    /// Offset of the next block.
    fn offset(&self) -> u64 {
        match self {
            Source::Direct(b) => b.offset,
            Source::Prefetch(p) => p.offset,
        }
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        match self {
            Source::Direct(b) => b.recycle(buf),
            Source::Prefetch(p) => p.recycle(buf),
        }
    }
}

impl Reader<BufReader<File>> {
    /// Opens the trace at `path` and reads its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let f = File::open(path).map_err(|e| Error::io(e, &name))?;
        // A buffer smaller than a block's payload: payloads are read
        // straight into their buffers (a read as large as the buffer skips
        // it), only block headers and the payloads' first bytes through it.
        // With a megabyte, every payload was copied twice (churn 20 M:
        // decoding 3,240.5 M -> 3,208.6 M instructions, callgrind).
        Reader::new(BufReader::with_capacity(64 << 10, f), name)
    }

    /// [`Reader::open`], then [`Reader::with_prefetch`]: blocks are read and
    /// decompressed on a thread of their own.
    pub fn open_prefetch(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Reader::open(path)?.with_prefetch())
    }
}

impl<R: Read> Reader<R> {
    /// Reads the header from `inner`; `name` is used in error messages.
    pub fn new(mut inner: R, name: String) -> Result<Self> {
        let mut pre = [0u8; 12];
        let mut got = 0;
        while got < pre.len() {
            match inner.read(&mut pre[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(e, &name)),
            }
        }
        if got == 0 {
            return Err(Error::new(ErrorKind::Empty, &name, None, Some(0)));
        }
        if got < MAGIC.len() || &pre[..MAGIC.len()] != MAGIC {
            return Err(Error::new(
                ErrorKind::BadMagic {
                    found: pre[..got.min(MAGIC.len())].to_vec(),
                },
                &name,
                None,
                Some(0),
            ));
        }
        if got < 12 {
            return Err(Error::new(
                ErrorKind::Corrupt("file ends inside the preamble".into()),
                &name,
                None,
                Some(8),
            ));
        }
        let version = u16::from_le_bytes([pre[8], pre[9]]);
        if version > VERSION {
            return Err(Error::new(
                ErrorKind::UnsupportedVersion {
                    found: version,
                    supported: VERSION,
                },
                &name,
                None,
                Some(8),
            ));
        }
        let mut blocks = BlockReader::new(inner, name.clone(), 12);
        let header = match blocks.next()? {
            Next::Block(BlockType::Header, raw) => {
                postcard::from_bytes::<Header>(&raw).map_err(|e| {
                    Error::new(
                        ErrorKind::Corrupt(format!("header: {e}")),
                        &name,
                        Some(0),
                        Some(12),
                    )
                })?
            }
            Next::Block(ty, _) => {
                return Err(Error::new(
                    ErrorKind::Corrupt(format!("first block is {ty:?}, expected Header")),
                    &name,
                    Some(0),
                    Some(12),
                ))
            }
            Next::End | Next::Truncated { .. } => {
                return Err(Error::new(
                    ErrorKind::Corrupt("file ends inside the header".into()),
                    &name,
                    Some(0),
                    Some(12),
                ))
            }
        };
        Ok(Reader {
            blocks: Source::Direct(blocks),
            file: name,
            header,
            stacks: StackTable::new(),
            trailer: None,
            queues: Vec::new(),
            thread_queue: FxHashMap::default(),
            heads: Heads::default(),
            short_run: SHORT_RUN,
            pending: None,
            pending_pos: 0,
            pending_other: 0,
            watermark: 0,
            version,
            eof: false,
            error: None,
            truncation: None,
            buffered: 0,
            max_buffered: 0,
        })
    }

    /// Whether blocks are read on a thread of their own
    /// ([`Reader::with_prefetch`]).
    pub fn is_prefetching(&self) -> bool {
        matches!(self.blocks, Source::Prefetch(_))
    }

    /// The trace header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The file's format version (at most [`crate::VERSION`]).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Stacks defined so far (all of them once iteration has ended).
    pub fn stacks(&self) -> &StackTable {
        &self.stacks
    }

    /// The trailer, once read; `None` after the end means the recording did not
    /// finish cleanly (the collector was killed, or the file was cut).
    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }

    /// After the end: what was dropped because the file ends inside a block.
    pub fn truncation(&self) -> Option<&Truncation> {
        self.truncation.as_ref()
    }

    /// Name the reader was opened with.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Most payload bytes of undecoded event blocks held at once so far (a
    /// check that reading streams).
    pub fn max_buffered(&self) -> usize {
        self.max_buffered
    }

    /// For tests: threads whose runs between other threads' events are
    /// shorter than `n` events have their events decoded ahead (0: never;
    /// `usize::MAX`: always after a first run). Changes only the speed.
    #[doc(hidden)]
    pub fn set_short_run(&mut self, n: usize) {
        self.short_run = n;
    }

    /// Bytes of the file consumed so far (complete blocks).
    pub fn bytes_read(&self) -> u64 {
        self.blocks.offset()
    }

    /// Reads every remaining record, discarding them, so the stack table and
    /// trailer are complete. Returns how many records were skipped.
    pub fn drain(&mut self) -> Result<u64> {
        let mut n = 0;
        for r in self.by_ref() {
            r?;
            n += 1;
        }
        Ok(n)
    }

    /// Reads one block into the queues; sets `eof` at the end.
    fn fill(&mut self) {
        let at = (self.blocks.index(), self.blocks.offset());
        match self.blocks.next() {
            Err(e) => {
                self.error = Some(e);
                self.eof = true;
            }
            Ok(Next::End) => self.eof = true,
            Ok(Next::Truncated { have, .. }) => {
                self.truncation = Some(Truncation {
                    block: at.0,
                    offset: at.1,
                    dropped_bytes: have,
                });
                self.eof = true;
            }
            Ok(Next::Block(ty, payload)) => {
                if let Err(e) = self.take_block(ty, payload) {
                    // Report where the block started, not where the next one does.
                    self.error = Some(Error::new(
                        ErrorKind::Corrupt(e),
                        &self.file,
                        Some(at.0),
                        Some(at.1),
                    ));
                    self.eof = true;
                }
            }
        }
    }

    fn take_block(&mut self, ty: BlockType, payload: Vec<u8>) -> Result<(), String> {
        match ty {
            BlockType::Events => {
                let block = codec::BlockDecoder::with_version(payload, self.version)?;
                if block.first_time() < self.watermark {
                    return Err(format!(
                        "events block of thread {} starts at time {} before watermark {}",
                        block.thread(),
                        block.first_time(),
                        self.watermark
                    ));
                }
                if block.remaining() > 0 {
                    self.buffered += block.payload_len();
                    if self.buffered > MAX_BUFFERED {
                        return Err(format!(
                            "more than {} MiB of events wait for a watermark: the trace does not let threads be merged in bounded memory",
                            MAX_BUFFERED >> 20
                        ));
                    }
                    self.max_buffered = self.max_buffered.max(self.buffered);
                    let thread = block.thread();
                    let qi = *self.thread_queue.entry(thread).or_insert_with(|| {
                        self.queues.push(Queue::default());
                        self.queues.len() - 1
                    });
                    let q = &mut self.queues[qi];
                    let was_empty = q.blocks.is_empty();
                    q.blocks.push_back(block);
                    if was_empty {
                        if let Some(time) = q.head_time()? {
                            self.heads.push(Head {
                                time,
                                thread,
                                queue: qi,
                            });
                        }
                    }
                }
            }
            BlockType::Stacks => self.stacks.add_block(&payload)?,
            BlockType::Watermark => {
                let w = crate::varint::Cursor::new(&payload)
                    .get()
                    .ok_or("watermark block: missing value")?;
                self.watermark = self.watermark.max(w);
            }
            BlockType::Trailer => {
                let t = postcard::from_bytes::<Trailer>(&payload)
                    .map_err(|e| format!("trailer: {e}"))?;
                self.trailer = Some(t);
            }
            BlockType::Header => return Err("second header block".into()),
        }
        Ok(())
    }
}

impl<R: Read + Send + 'static> Reader<R> {
    /// Reads, checks and decompresses blocks on a thread of their own from
    /// now on, ahead of the decoding (which stays on the caller's thread):
    /// the same events, errors and truncation report as without, on two
    /// cores instead of one. At most [`PREFETCH_AHEAD`] blocks are read
    /// ahead, payload buffers are recycled, and when the next block is not
    /// decompressed yet the caller's thread decompresses one of those read
    /// ahead rather than wait. The thread stops
    /// at the end of the trace, at an error, or when the reader is dropped
    /// (which waits for it: the block under way completes first).
    /// If no thread can be started, the reader goes on reading on the
    /// caller's thread.
    ///
    /// ```
    /// # fn main() -> traces::Result<()> {
    /// # let bytes = {
    /// #     use traces::*;
    /// #     let mut w = Writer::new(Vec::new(), &Header::synthetic(&["doc"]), WriterOptions::default())?;
    /// #     let ev = Event::Alloc { func: AllocFn::Malloc, addr: 0x1000, size: 24, align: 0, stack: 0 };
    /// #     w.write(&Record { time: 5, thread: 1, event: ev })?;
    /// #     w.finish(&Trailer { end_time: 9, exit: ExitStatus::Code(0), dropped_events: 0 })?
    /// # };
    /// let reader = traces::Reader::new(std::io::Cursor::new(bytes), "example.atrace".into())?;
    /// let mut reader = reader.with_prefetch();
    /// assert!(reader.is_prefetching());
    /// let mut batch = traces::EventBatch::new();
    /// let mut n = 0;
    /// while reader.next_batch(&mut batch)? {
    ///     n += batch.len();
    /// }
    /// assert_eq!(n, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_prefetch(mut self) -> Self {
        let idle = Source::Prefetch(Prefetcher::idle());
        self.blocks = match std::mem::replace(&mut self.blocks, idle) {
            Source::Direct(blocks) => match Prefetcher::spawn(blocks) {
                Ok(p) => Source::Prefetch(p),
                Err(blocks) => Source::Direct(blocks),
            },
            // Already prefetching: keep that thread.
            prefetching => prefetching,
        };
        self
    }
}

impl<R: Read> Reader<R> {
    /// Fills `batch` with the next events in global order: up to
    /// [`EventBatch::CAPACITY`] of them, every field of every event, without
    /// building a [`Record`] per event. Returns `Ok(true)` when `batch` holds
    /// at least one event, `Ok(false)` at the end of the trace. On a damaged
    /// trace, the events before the damage come first (in this batch or
    /// earlier ones), then the next call returns the error; after that,
    /// `Ok(false)`. Do not mix with iterating the reader as an [`Iterator`]
    /// (events the iterator has decoded but not yet yielded are skipped).
    ///
    /// This is the fast way to read a trace: tens of millions of events per
    /// second on one core, several times faster than the iterator.
    ///
    /// ```
    /// # fn main() -> traces::Result<()> {
    /// use traces::{EventBatch, Kind, Reader};
    /// # let bytes = {
    /// #     use traces::*;
    /// #     let mut w = Writer::new(Vec::new(), &Header::synthetic(&["doc"]), WriterOptions::default())?;
    /// #     let ev = Event::Alloc { func: AllocFn::Malloc, addr: 0x1000, size: 24, align: 0, stack: 0 };
    /// #     w.write(&Record { time: 5, thread: 1, event: ev })?;
    /// #     w.finish(&Trailer { end_time: 9, exit: ExitStatus::Code(0), dropped_events: 0 })?
    /// # };
    /// let mut reader = Reader::new(&bytes[..], "example.atrace".into())?;
    /// let mut batch = EventBatch::new();
    /// let mut allocated = 0u64;
    /// while reader.next_batch(&mut batch)? {
    ///     for (i, kind) in batch.kinds().iter().enumerate() {
    ///         match kind {
    ///             Kind::Alloc(_) => allocated += batch.sizes()[i],
    ///             Kind::Free(_) | Kind::Realloc(_) => {}
    ///             // Rarer kinds: the whole event is at hand.
    ///             _ => println!("{:?}", batch.event(i)),
    ///         }
    ///     }
    /// }
    /// assert_eq!(allocated, 24);
    /// // Stacks and trailer are complete once the batches have ended.
    /// assert!(reader.trailer().is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub fn next_batch(&mut self, batch: &mut EventBatch) -> Result<bool> {
        batch.clear();
        self.fill_batch(batch, EventBatch::CAPACITY)?;
        Ok(!batch.is_empty())
    }

    /// Decodes up to `cap` events into `batch`, appending. `Err` only when
    /// `batch` gained no event.
    fn fill_batch(&mut self, batch: &mut EventBatch, cap: usize) -> Result<()> {
        let start = batch.len();
        loop {
            let room = cap.saturating_sub(batch.len() - start);
            if room == 0 {
                return Ok(());
            }
            let before_watermark = if self.eof {
                u128::MAX
            } else {
                self.watermark as u128
            };
            let (heads, queues) = (&mut self.heads, &mut self.queues);
            if heads.run_ahead(queues, batch, before_watermark, room, self.short_run) > 0 {
                continue;
            }
            let Some(Head {
                time,
                thread,
                queue,
            }) = self.heads.top()
            else {
                if self.eof {
                    return self.end(batch.len() > start);
                }
                self.fill();
                continue;
            };
            if !(time < self.watermark || self.eof) {
                if self.eof {
                    return self.end(batch.len() > start);
                }
                self.fill();
                continue;
            }
            // This thread may run until another thread's next event comes
            // first, and (before the end of the file) up to the watermark.
            let mut limit = self
                .heads
                .second()
                .map_or(u128::MAX, |h| h.limit_for(thread));
            if !self.eof {
                limit = limit.min(self.watermark as u128);
            }
            let q = &mut self.queues[queue];
            let next = q.decode_run(batch, limit, room, thread, self.short_run);
            self.buffered -= std::mem::take(&mut q.released);
            for b in q.spent.drain(..) {
                self.blocks.recycle(b);
            }
            match next {
                Ok(Some(t)) => self.heads.retime_top(t),
                Ok(None) => self.heads.pop(),
                Err(e) => {
                    self.heads.pop();
                    let (block, offset) = (self.blocks.index(), self.blocks.offset());
                    let kind = ErrorKind::Corrupt(format!("thread {thread}: {e}"));
                    let e = Error::new(kind, &self.file, Some(block), Some(offset));
                    self.error.get_or_insert(e);
                    self.eof = true;
                }
            }
        }
    }

    /// At the end: the pending error, unless events are to be returned first.
    fn end(&mut self, have_events: bool) -> Result<()> {
        match self.error.take() {
            Some(e) if !have_events => Err(e),
            Some(e) => {
                self.error = Some(e);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// Events the iterator decodes at a time.
const ITER_BATCH: usize = 1024;

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if self.pending_pos >= self.pending.as_ref().map_or(0, |b| b.len()) {
            let mut batch = self.pending.take().unwrap_or_default();
            batch.clear();
            let r = self.fill_batch(&mut batch, ITER_BATCH);
            let empty = batch.is_empty();
            self.pending = Some(batch);
            self.pending_pos = 0;
            self.pending_other = 0;
            if let Err(e) = r {
                return Some(Err(e));
            }
            if empty {
                return None;
            }
        }
        let i = self.pending_pos;
        self.pending_pos += 1;
        let batch = self.pending.as_mut()?;
        Some(Ok(batch.take_record(i, &mut self.pending_other)))
    }
}
