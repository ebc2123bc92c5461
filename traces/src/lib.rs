//! The alloctrace trace format: one crate every other crate reads and writes
//! traces through. It depends on nothing else of ours.
//!
//! A trace is a preamble (magic, version) followed by checksummed blocks: the
//! [`Header`], per-thread [`Event`] blocks in compact columnar varint encoding
//! (optionally zstd-compressed), interned stacks, watermarks and a [`Trailer`].
//! `FORMAT.md` beside this crate specifies every byte.
//!
//! - [`Writer`] takes records in per-thread order and writes blocks.
//! - [`Reader`] yields records in global time order, holding in memory only the
//!   blocks not yet released by a watermark, and tolerates a truncated tail
//!   (see [`Reader::truncation`]). Iterate it for one [`Record`] at a time, or
//!   call [`Reader::next_batch`] for the same events as columns in an
//!   [`EventBatch`], several times faster (no `Record` built per event).
//!   [`Reader::with_prefetch`] moves block reading, CRC checks and zstd
//!   decompression onto a thread of their own, ahead of the decoding.
//!
//! What this crate won't do: symbolize addresses or interpret events; that is
//! the analyzer's job.
#![deny(unsafe_code)]

mod batch;
mod block;
pub mod codec;
mod error;
mod event;
mod header;
pub mod hint;
mod merge;
mod prefetch;
mod reader;
pub mod stacks;
pub mod synthetic;
pub mod varint;
mod writer;

pub use batch::{EventBatch, Kind};
pub use error::{Error, ErrorKind, Result};
pub use event::{AllocFn, Event, Family, FreeFn, Module, Record, StackId, ThreadId};
pub use header::{flags, signal_name, Clock, ExitStatus, Header, Trailer};
pub use prefetch::AHEAD as PREFETCH_AHEAD;
pub use reader::{Reader, Truncation, MAX_BUFFERED};
pub use stacks::StackTable;
pub use writer::{Writer, WriterOptions};

/// First bytes of every trace file.
pub const MAGIC: &[u8; 8] = b"ALLOCTRC";

/// Format version this crate writes, and the newest it reads.
pub const VERSION: u16 = 2;
