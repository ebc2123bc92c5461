//! Block reading on a thread of its own: reading, CRC checking and zstd
//! decompression run ahead of the column decoder (see [`crate::Reader::with_prefetch`]).
//!
//! A bounded window of blocks: the block thread reads up to [`AHEAD`] blocks
//! ahead of the decoder (each checked, then decompressed in its place in the
//! window), and the reader hands spent payloads back for reuse, so
//! decompression writes into pages already faulted in rather than fresh
//! ones. When the next block is not decompressed yet, the decoder
//! decompresses a block of the window itself rather than wait: events can
//! only be merged up to a watermark, so the decoder regularly needs a dozen
//! blocks before it can go on, and two cores then decompress them. The
//! thread stops after the end of the file, an error or a truncated tail, or
//! as soon as the reader is dropped; dropping the reader joins it.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::block::{self, BlockReader, BlockType, Next, Stored, StoredBlock};
use crate::error::Result;

/// Blocks the block thread may hold ahead of the decoder: read, being
/// decompressed, or ready (about a megabyte each once decompressed, in
/// traces of the recorder's blocks; 16 MiB of them at most, but one
/// block whatever its size). More does not help: with the decoder
/// decompressing when it would wait, 8 blocks were 3 % slower than 4 (churn
/// 20 M, `summary --no-cache`, alternated: 0.94, 1.01 and 0.97 of 8's wall
/// in three series of 12), for 4 MB more.
pub const AHEAD: usize = 4;

/// Payload bytes (decompressed) the window may hold before the block thread
/// stops reading ahead, whatever the number of blocks: bounds memory on
/// traces of larger blocks (up to [`block::MAX_PAYLOAD`] each).
const AHEAD_BYTES: usize = 16 << 20;

/// Spent buffers kept for reuse, of each kind (stored and decompressed).
const POOL: usize = 4;

/// What the block thread found, and where it stands afterwards.
struct Fetched {
    next: Result<Next>,
    /// The block reader's index and offset after the block (for the
    /// decoder's error messages and `bytes_read`).
    index: u64,
    offset: u64,
}

/// A block of the window.
enum Slot {
    /// Read and checked, to be decompressed: the block, its stored payload,
    /// and the block reader's index and offset after it.
    Stored(StoredBlock, Vec<u8>, u64, u64),
    /// Being decompressed (by either thread), to this many bytes.
    Busy(usize),
    /// As the decoder is to receive it.
    Ready(Fetched),
}

/// The window and the spent buffers, shared by the block thread and the reader.
struct State {
    slots: VecDeque<Slot>,
    /// Slots the reader has taken from the window so far (the front slot's
    /// sequence number).
    taken: u64,
    /// The block thread has put its last slot (end of file, truncation,
    /// error).
    finished: bool,
    /// The block thread panicked: a block it took may never be ready.
    died: bool,
    /// The reader is gone.
    stop: bool,
    /// Spent buffers: stored payloads, and decompressed events payloads.
    stored_pool: Vec<Vec<u8>>,
    payload_pool: Vec<Vec<u8>>,
    /// Capacity every pooled payload buffer gets (see [`block::pooled`]).
    payload_cap: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled on every change of the window, `finished` or `stop`.
    changed: Condvar,
    /// The trace's name, for error messages.
    file: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code that can panic runs under the lock: the state is always
        // consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(g).unwrap_or_else(|e| e.into_inner())
    }
}

/// A decompression taken from the window, done outside the lock by either
/// thread.
struct Job {
    /// The slot's sequence number (see [`State::taken`]).
    seq: u64,
    h: StoredBlock,
    stored: Vec<u8>,
    index: u64,
    offset: u64,
    out: Vec<u8>,
}

impl State {
    /// Takes the first block of the window waiting to be decompressed,
    /// leaving it `Busy`, with a buffer for its payload.
    fn take_job(&mut self) -> Option<Job> {
        let i = self
            .slots
            .iter()
            .position(|s| matches!(s, Slot::Stored(..)))?;
        let Slot::Stored(h, stored, index, offset) =
            std::mem::replace(&mut self.slots[i], Slot::Busy(0))
        else {
            return None;
        };
        self.slots[i] = Slot::Busy(h.raw_len as usize);
        let out = block::payload_buffer(&h, &mut self.payload_pool, &mut self.payload_cap);
        Some(Job {
            seq: self.taken + i as u64,
            h,
            stored,
            index,
            offset,
            out,
        })
    }

    /// Payload bytes the window holds or will (once decompressed).
    fn bytes(&self) -> usize {
        self.slots
            .iter()
            .map(|s| match s {
                Slot::Stored(h, ..) => h.raw_len as usize,
                Slot::Busy(n) => *n,
                Slot::Ready(f) => match &f.next {
                    Ok(Next::Block(_, p)) => p.len(),
                    _ => 0,
                },
            })
            .sum()
    }

    /// Keeps a spent stored payload for reuse.
    fn give_stored(&mut self, buf: Vec<u8>) {
        if self.stored_pool.len() < POOL {
            self.stored_pool.push(buf);
        }
    }
}

impl Job {
    /// Decompresses, then makes the slot ready.
    fn run(self, z: &mut Option<zstd::bulk::Decompressor<'static>>, shared: &Shared) {
        let fetched = match block::decompress(z, &self.stored, self.h.raw_len, self.out) {
            Ok(payload) => Fetched {
                next: Ok(Next::Block(self.h.ty, payload)),
                index: self.index,
                offset: self.offset,
            },
            // Where reading on one thread stops: at the block.
            Err(kind) => Fetched {
                next: Err(self.h.err(kind, &shared.file)),
                index: self.h.index,
                offset: self.h.offset,
            },
        };
        let mut st = shared.lock();
        st.give_stored(self.stored);
        // A busy slot stays in the window (the reader takes only ready ones).
        let i = (self.seq - st.taken) as usize;
        if let Some(slot) = st.slots.get_mut(i) {
            *slot = Slot::Ready(fetched);
        }
        drop(st);
        shared.changed.notify_all();
    }
}

/// Marks the window's state died if the block thread unwinds, so that the
/// reader never waits in vain.
struct Unwinding<'a>(&'a Shared);

impl Drop for Unwinding<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().died = true;
            self.0.changed.notify_all();
        }
    }
}

/// The block thread: reads blocks into the window while there is room, and
/// decompresses them.
fn block_thread<R: Read>(mut blocks: BlockReader<R>, shared: &Shared) {
    let _unwinding = Unwinding(shared);
    let mut z = None;
    let mut st = shared.lock();
    loop {
        if st.stop {
            return;
        }
        // Reading is cheap next to decompressing: the window is kept full,
        // and a block or two waiting for decompression gives the reader
        // something to take when it would wait.
        let waiting = st
            .slots
            .iter()
            .filter(|s| matches!(s, Slot::Stored(..)))
            .count();
        let room = st.slots.is_empty() || st.slots.len() < AHEAD && st.bytes() < AHEAD_BYTES;
        if !st.finished && room && waiting < 2 {
            let mut buf = st.stored_pool.pop().unwrap_or_default();
            drop(st);
            let r = blocks.next_stored(&mut buf);
            let (index, offset) = (blocks.index, blocks.offset);
            let slot = match r {
                Ok(Stored::Block(h)) if h.zstd => Slot::Stored(h, buf, index, offset),
                Ok(Stored::Block(h)) => {
                    let payload = if h.ty == BlockType::Events {
                        // The payload comes back to the payload pool: a
                        // spent one takes its place among the stored
                        // buffers, as reading on one thread does, or every
                        // uncompressed block would take a new buffer.
                        let mut st = shared.lock();
                        if let Some(b) = st.payload_pool.pop() {
                            st.give_stored(b);
                        }
                        drop(st);
                        buf
                    } else {
                        // Small, and not given back: the buffer stays pooled.
                        let p = buf.clone();
                        shared.lock().give_stored(buf);
                        p
                    };
                    let next = Ok(Next::Block(h.ty, payload));
                    Slot::Ready(Fetched {
                        next,
                        index,
                        offset,
                    })
                }
                other => {
                    let next = match other {
                        Ok(Stored::End) => Ok(Next::End),
                        Ok(Stored::Truncated { have }) => Ok(Next::Truncated { have }),
                        Err(e) => Err(e),
                        Ok(Stored::Block(_)) => unreachable!("matched above"),
                    };
                    Slot::Ready(Fetched {
                        next,
                        index,
                        offset,
                    })
                }
            };
            let last = matches!(&slot, Slot::Ready(f) if !matches!(f.next, Ok(Next::Block(..))));
            st = shared.lock();
            st.slots.push_back(slot);
            st.finished |= last;
            drop(st);
            shared.changed.notify_all();
            st = shared.lock();
            continue;
        }
        if let Some(job) = st.take_job() {
            drop(st);
            job.run(&mut z, shared);
            st = shared.lock();
            continue;
        }
        if st.finished {
            // Everything read is decompressed: nothing left to do.
            return;
        }
        st = shared.wait(st);
    }
}

/// The reader's side of the pipeline.
pub(crate) struct Prefetcher {
    /// `None` once the last block (end, truncation or error) was taken.
    shared: Option<Arc<Shared>>,
    thread: Option<JoinHandle<()>>,
    /// The decoder's own decompression context, for when it helps.
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    /// Index and offset of the next block the decoder will receive.
    pub index: u64,
    pub offset: u64,
}

impl Prefetcher {
    /// Starts a thread reading `blocks`; gives them back if no thread can be
    /// started.
    // The error hands the block reader back (it is large): only when no
    // thread can be started, once per reader.
    #[allow(clippy::result_large_err)]
    pub fn spawn<R: Read + Send + 'static>(
        blocks: BlockReader<R>,
    ) -> std::result::Result<Prefetcher, BlockReader<R>> {
        let (index, offset) = (blocks.index, blocks.offset);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                slots: VecDeque::with_capacity(AHEAD),
                taken: 0,
                finished: false,
                died: false,
                stop: false,
                stored_pool: Vec::new(),
                payload_pool: Vec::new(),
                payload_cap: 0,
            }),
            changed: Condvar::new(),
            file: blocks.file().to_string(),
        });
        // The block reader goes to the thread once it runs (handed back if
        // it cannot be started).
        let (init_tx, init_rx) = std::sync::mpsc::sync_channel::<BlockReader<R>>(1);
        let theirs = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("trace blocks".into())
            .spawn(move || {
                if let Ok(blocks) = init_rx.recv() {
                    block_thread(blocks, &theirs);
                }
            });
        let thread = match spawned {
            Ok(t) => t,
            Err(_) => return Err(blocks),
        };
        if let Err(e) = init_tx.send(blocks) {
            // The thread is alive and waiting on this channel: cannot happen.
            let _ = thread.join();
            return Err(e.0);
        }
        Ok(Prefetcher {
            shared: Some(shared),
            thread: Some(thread),
            zstd: None,
            index,
            offset,
        })
    }

    /// A prefetcher with no thread, at the end (a placeholder).
    pub fn idle() -> Prefetcher {
        Prefetcher {
            shared: None,
            thread: None,
            zstd: None,
            index: 0,
            offset: 0,
        }
    }

    /// The next block, as [`BlockReader::next`] would have returned it.
    pub fn next(&mut self) -> Result<Next> {
        let Some(shared) = self.shared.clone() else {
            return Ok(Next::End);
        };
        let mut st = shared.lock();
        loop {
            if matches!(st.slots.front(), Some(Slot::Ready(_))) {
                let Some(Slot::Ready(m)) = st.slots.pop_front() else {
                    unreachable!("the front slot is ready");
                };
                st.taken += 1;
                drop(st);
                shared.changed.notify_all();
                self.index = m.index;
                self.offset = m.offset;
                if !matches!(m.next, Ok(Next::Block(..))) {
                    // The thread has returned or is returning.
                    self.stop();
                }
                return m.next;
            }
            // The next block is not ready: decompress one rather than wait.
            if let Some(job) = st.take_job() {
                drop(st);
                job.run(&mut self.zstd, &shared);
                st = shared.lock();
                continue;
            }
            if st.died {
                // A block will never be ready. Panic here, as reading on
                // this thread would have.
                drop(st);
                self.shared = None;
                if let Some(Err(p)) = self.thread.take().map(JoinHandle::join) {
                    std::panic::resume_unwind(p);
                }
                panic!("the block thread reading {} panicked", shared.file);
            }
            st = shared.wait(st);
        }
    }

    /// Gives back a payload for the block thread to reuse.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if let Some(shared) = &self.shared {
            if buf.capacity() <= block::MAX_PAYLOAD as usize {
                let mut st = shared.lock();
                if st.payload_pool.len() < POOL {
                    buf.clear();
                    st.payload_pool.push(buf);
                }
            }
        }
    }

    /// Stops the block thread (waking it if it waits) and joins it.
    fn stop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.lock().stop = true;
            shared.changed.notify_all();
        }
        if let Some(t) = self.thread.take() {
            // A panic there is not reported twice (or while unwinding).
            let _ = t.join();
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.stop();
    }
}
