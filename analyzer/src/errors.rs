//! Heap errors: what the pass reports for a release it cannot accept.

use serde::{Deserialize, Serialize};
use traces::{AllocFn, Record, StackId, ThreadId};

/// At most this many errors are kept with their stacks; all are counted.
pub const MAX_ERRORS: usize = 100_000;

/// Kinds of heap error. [`ErrorKind::as_str`] is the JSON `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ErrorKind {
    /// A block released a second time.
    DoubleFree,
    /// An address that was never allocated (stack, globals, garbage).
    InvalidFree,
    /// An address inside a live block, not its start.
    InteriorFree,
    /// Released by a function of another family (new[] by free, ...).
    MismatchedFree,
    /// `realloc` of a block already freed.
    ReallocOfFreed,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::DoubleFree,
        ErrorKind::InvalidFree,
        ErrorKind::InteriorFree,
        ErrorKind::MismatchedFree,
        ErrorKind::ReallocOfFreed,
    ];

    /// The stable name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::DoubleFree => "double-free",
            ErrorKind::InvalidFree => "invalid-free",
            ErrorKind::InteriorFree => "interior-free",
            ErrorKind::MismatchedFree => "mismatched-free",
            ErrorKind::ReallocOfFreed => "realloc-of-freed",
        }
    }
}

/// One heap error with everything known about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeapError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// When (trace clock).
    pub time: u64,
    /// Thread of the offending call.
    pub thread: ThreadId,
    /// Address passed to the offending call.
    pub address: u64,
    /// Size of the block concerned (0 when there is none).
    pub size: u64,
    /// Stack of the offending release (JSON `free`).
    pub stack: StackId,
    /// Allocation stack of the block concerned, when known (JSON `alloc`).
    pub alloc_stack: Option<StackId>,
    /// Stack of the earlier release of the block (JSON `first_free`).
    pub first_free_stack: Option<StackId>,
    /// Time of the earlier release.
    pub first_free_time: Option<u64>,
    /// Allocation function of the block concerned.
    pub alloc_func: Option<AllocFn>,
    /// The offending release function (`free`, `operator delete[]`, `realloc`).
    pub free_func: Option<String>,
    /// For an interior free: start of the containing block and the offset.
    pub block: Option<(u64, u64)>,
}

impl HeapError {
    /// An error of `kind` at the call in `r`; the caller fills in the rest.
    pub fn new(kind: ErrorKind, r: &Record, address: u64, size: u64, stack: StackId) -> Self {
        Self::at(kind, r.time, r.thread, address, size, stack)
    }

    /// An error of `kind` by a call at `time` on `thread`; the caller fills in the rest.
    pub fn at(
        kind: ErrorKind,
        time: u64,
        thread: ThreadId,
        address: u64,
        size: u64,
        stack: StackId,
    ) -> Self {
        HeapError {
            kind,
            time,
            thread,
            address,
            size,
            stack,
            alloc_stack: None,
            first_free_stack: None,
            first_free_time: None,
            alloc_func: None,
            free_func: None,
            block: None,
        }
    }
}
