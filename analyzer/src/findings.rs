//! What the streaming pass produces: slots (what it knows of one heap
//! address), per-allocation rows for `export`, per-stack aggregates, the
//! trace's counters, and the [`PassResult`] every report starts from (and the
//! analysis cache stores).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use traces::{AllocFn, Module, StackId, ThreadId};

use crate::errors::{ErrorKind, HeapError};

/// One heap address: a live block, or the last block that lived there.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Slot {
    /// Allocation identity: the number of the allocation, from 1, in time order.
    pub id: u64,
    /// Requested size.
    pub size: u64,
    /// Allocation time.
    pub time: u64,
    /// Release time (freed slots only).
    pub free_time: u64,
    /// Allocating thread.
    pub thread: ThreadId,
    /// Allocation stack.
    pub stack: StackId,
    /// Release stack (freed slots only).
    pub free_stack: StackId,
    /// Allocation function.
    pub func: AllocFn,
    /// Whether the block is live (not yet released).
    pub live: bool,
    /// Whether the block was known before it was freed (false: allocated
    /// before an attached trace started).
    pub known: bool,
}

impl Default for Slot {
    /// An empty slot (what free entries of the address table hold).
    fn default() -> Self {
        Slot {
            id: 0,
            size: 0,
            time: 0,
            free_time: 0,
            thread: 0,
            stack: 0,
            free_stack: 0,
            func: AllocFn::Malloc,
            live: false,
            known: false,
        }
    }
}

/// One finished (or, at the end, still live) allocation, as `export` writes it.
#[derive(Clone, Debug, PartialEq)]
pub struct AllocRow {
    /// Allocation identity.
    pub id: u64,
    /// Block address.
    pub address: u64,
    /// Requested size.
    pub size: u64,
    /// Allocation function.
    pub func: AllocFn,
    /// Allocating thread.
    pub thread: ThreadId,
    /// Allocation time.
    pub alloc_time: u64,
    /// Release time, `None` for a block still live at the end.
    pub free_time: Option<u64>,
    /// Release function name (`free`, `operator delete`, `realloc`), if freed.
    pub free_func: Option<&'static str>,
    /// Allocation stack.
    pub alloc_stack: StackId,
    /// Release stack, 0 when not freed.
    pub free_stack: StackId,
}

/// Aggregates of the allocations made at one stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteStats {
    /// Allocations made here.
    pub allocs: u64,
    /// Bytes requested here.
    pub bytes: u64,
    /// Blocks from here still live.
    pub live: u64,
    /// Bytes of those blocks.
    pub live_bytes: u64,
    /// Temporary allocations made here.
    pub temporary: u64,
}

/// Counters of the whole trace.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Totals {
    /// Successful allocations, `realloc`s that returned a new block included.
    pub allocations: u64,
    /// Successful allocations per function, indexed by `AllocFn as usize`.
    pub by_alloc_fn: Vec<u64>,
    /// Releases (valid or not) per function, indexed by `FreeFn as usize`.
    pub by_free_fn: Vec<u64>,
    /// Valid releases (free, delete, realloc to 0 or moving).
    pub frees: u64,
    /// `realloc`/`reallocarray` calls.
    pub reallocs: u64,
    /// Allocations that returned NULL.
    pub failed: u64,
    /// Bytes requested by successful allocations.
    pub bytes_allocated: u64,
    /// Highest live byte count.
    pub peak_live_bytes: u64,
    /// Time of the peak.
    pub peak_time: u64,
    /// Temporary allocations: freed before the thread allocated anything else.
    pub temporary: u64,
    /// Releases of blocks allocated before an attached trace started.
    pub unknown_before_attach: u64,
    /// Allocations returned at an address that was still live (a lost free).
    pub overlapping_allocs: u64,
    /// Errors found, per kind (all of them, also past [`crate::errors::MAX_ERRORS`]).
    pub errors_by_kind: HashMap<ErrorKind, u64>,
    /// Allocation sizes: `histogram[i]` counts sizes in `[2^(i-1), 2^i)`, `[0]` size 0.
    pub histogram: Vec<u64>,
    /// mmap calls and bytes, munmap calls.
    pub mmaps: u64,
    /// Bytes mapped by mmap.
    pub mmap_bytes: u64,
    /// munmap calls.
    pub munmaps: u64,
    /// Records read.
    pub records: u64,
    /// Time of the first and last record.
    pub first_time: u64,
    /// Time of the last record.
    pub last_time: u64,
}

/// What the pass found; the input of every report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PassResult {
    /// Counters.
    pub totals: Totals,
    /// Per-allocation-stack aggregates (live counts at the end = leaks).
    pub sites: Vec<(StackId, SiteStats)>,
    /// Blocks still live at the end, in address order.
    pub live: Vec<(u64, Slot)>,
    /// Errors in time order (at most [`crate::errors::MAX_ERRORS`]; see `totals.errors_by_kind`).
    pub errors: Vec<HeapError>,
    /// Live bytes per stack at (within 1/64 of) the peak, largest first.
    pub peak_sites: Vec<(StackId, u64)>,
    /// Threads seen.
    pub threads: usize,
    /// Modules loaded, in load order.
    pub modules: Vec<Module>,
}
