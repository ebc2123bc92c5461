//! Block reading on a thread of its own: reading, CRC checking and zstd
//! decompression run ahead of the column decoder (see [`crate::Reader::with_prefetch`]).
//!
//! A bounded pipeline: the block thread hands at most [`AHEAD`] blocks over a
//! bounded channel (plus the one it is working on), and the reader hands
//! spent payloads back for reuse, so decompression writes into pages already
//! faulted in rather than fresh ones. The thread stops after the end of the
//! file, an error or a truncated tail, or as soon as the reader is dropped;
//! dropping the reader joins it.

use std::io::Read;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};
use std::thread::JoinHandle;

use crate::block::{BlockReader, Next};
use crate::error::Result;

/// Blocks the block thread may have read ahead of the decoder, waiting in
/// the channel.
pub const AHEAD: usize = 2;

/// What the block thread found, and where it stands afterwards.
struct Fetched {
    next: Result<Next>,
    /// The block reader's index and offset after the call (for the
    /// decoder's error messages and `bytes_read`).
    index: u64,
    offset: u64,
}

/// The reader's side of the pipeline.
pub(crate) struct Prefetcher {
    /// `None` once the last message (end, truncation or error) arrived.
    rx: Option<Receiver<Fetched>>,
    back: Sender<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
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
        let (init_tx, init_rx) = sync_channel::<BlockReader<R>>(1);
        let (tx, rx) = sync_channel::<Fetched>(AHEAD);
        let (back, back_rx) = channel::<Vec<u8>>();
        let spawned = std::thread::Builder::new()
            .name("trace blocks".into())
            .spawn(move || {
                let Ok(mut blocks) = init_rx.recv() else {
                    return;
                };
                loop {
                    while let Ok(buf) = back_rx.try_recv() {
                        blocks.recycle(buf);
                    }
                    let next = blocks.next();
                    let last = !matches!(next, Ok(Next::Block(..)));
                    let msg = Fetched {
                        next,
                        index: blocks.index,
                        offset: blocks.offset,
                    };
                    // A send error: the reader is gone, nobody wants the rest.
                    if tx.send(msg).is_err() || last {
                        return;
                    }
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
            rx: Some(rx),
            back,
            thread: Some(thread),
            index,
            offset,
        })
    }

    /// A prefetcher with no thread, at the end (a placeholder).
    pub fn idle() -> Prefetcher {
        Prefetcher {
            rx: None,
            back: channel().0,
            thread: None,
            index: 0,
            offset: 0,
        }
    }

    /// The next block, as [`BlockReader::next`] would have returned it.
    pub fn next(&mut self) -> Result<Next> {
        let Some(rx) = &self.rx else {
            return Ok(Next::End);
        };
        match rx.recv() {
            Ok(m) => {
                self.index = m.index;
                self.offset = m.offset;
                if !matches!(m.next, Ok(Next::Block(..))) {
                    // The thread has returned or is returning.
                    self.stop();
                }
                m.next
            }
            Err(_) => {
                // The thread ended without a last message: it panicked.
                // Panic here, as reading on this thread would have.
                self.rx = None;
                if let Some(Err(p)) = self.thread.take().map(JoinHandle::join) {
                    std::panic::resume_unwind(p);
                }
                Ok(Next::End)
            }
        }
    }

    /// Gives back a payload for the block thread to reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.rx.is_some() {
            let _ = self.back.send(buf);
        }
    }

    /// Stops the block thread: closes the channel (waking it if it waits to
    /// send) and joins it.
    fn stop(&mut self) {
        self.rx = None;
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
