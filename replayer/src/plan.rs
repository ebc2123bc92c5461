//! One pass over a trace turns it into a replay plan: per recorded thread, the
//! list of allocator calls in program order, with addresses replaced by dense
//! slot ids.
//!
//! Every allocation gets a fresh slot (slots are never reused), so the only
//! cross-thread dependency is "a block must be allocated before it is freed or
//! reallocated": the driver waits on the slot's ready flag. Slots that are never
//! reused cost 8 bytes per allocation at replay time, but need no write-after-read
//! ordering between threads.
//!
//! Heap errors in the trace (double free, free of an unknown pointer, realloc of
//! a freed block) are skipped and counted, as are failed allocations: replaying
//! them would crash the driver or measure nothing.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use traces::{AllocFn, Event, Record, ThreadId};

/// Slot id of "no block" (realloc acting as malloc).
pub const NO_SLOT: u32 = u32::MAX;

/// What an [`Op`] asks the allocator to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum OpKind {
    /// `malloc(size)` (also `operator new` and its forms without alignment).
    Malloc,
    /// `calloc(1, size)`.
    Calloc,
    /// `posix_memalign(&p, align, size)`.
    PosixMemalign,
    /// `aligned_alloc(align, size)` (also aligned `operator new`).
    AlignedAlloc,
    /// `memalign(align, size)`.
    Memalign,
    /// `valloc(size)`.
    Valloc,
    /// `pvalloc(size)`.
    Pvalloc,
    /// `realloc(old, size)`; `aux` is the old slot or [`NO_SLOT`].
    Realloc,
    /// `free(p)` (also every `operator delete` form, and `realloc(p, 0)`).
    Free,
}

/// One allocator call of the plan: 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Requested size (allocations and realloc), 0 for free.
    pub size: u64,
    /// The slot this op fills (allocations, realloc) or empties (free).
    pub slot: u32,
    /// Realloc: the old slot ([`NO_SLOT`] when acting as malloc). Aligned
    /// allocations: the alignment. Otherwise 0.
    pub aux: u32,
    /// Recorded time of the call, microseconds since the trace's first event
    /// (saturating), for paced replays.
    pub time_us: u32,
    /// Slot filled by another thread: the op must wait until it is ready
    /// (free and realloc of a block allocated on another thread).
    pub waits: bool,
    /// What to do.
    pub kind: OpKind,
}

/// Events of the trace that the plan skips, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Frees (or reallocs) of a block already freed.
    pub double_frees: u64,
    /// Frees (or reallocs) of an address never returned by an allocation
    /// (heap errors, or blocks allocated before an attach).
    pub invalid_frees: u64,
    /// Allocations (and reallocs) the recorded allocator failed.
    pub failed_allocs: u64,
    /// Aligned allocations whose alignment does not fit 32 bits.
    pub unsupported: u64,
}

impl Skipped {
    /// All skipped events.
    pub fn total(&self) -> u64 {
        self.double_frees + self.invalid_frees + self.failed_allocs + self.unsupported
    }
}

/// A replayable plan: per-thread op lists and the number of slots they use.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Plan {
    /// Recorded thread ids, in order of first appearance.
    pub thread_ids: Vec<ThreadId>,
    /// Ops of each thread (same index as `thread_ids`), in program order.
    pub threads: Vec<Vec<Op>>,
    /// Number of slots (allocations) the plan fills.
    pub slots: u32,
    /// Events not replayed, by reason.
    pub skipped: Skipped,
    /// Blocks still live at the end of the trace (leaks).
    pub live_at_end: u64,
    /// Highest sum of requested sizes of live blocks, in the trace's global order.
    pub peak_live_bytes: u64,
}

/// Where an address stands in the trace's history.
#[derive(Clone, Copy)]
enum AddrState {
    /// Live block in `slot` of `size` bytes, allocated on plan thread `thread`.
    Live { slot: u32, thread: u32, size: u64 },
    /// Freed and not reallocated since.
    Freed,
}

/// Builds a [`Plan`] from records in global time order.
#[derive(Default)]
pub struct PlanBuilder {
    plan: Plan,
    thread_index: HashMap<ThreadId, u32>,
    addrs: HashMap<u64, AddrState>,
    live: u64,
    first_time: Option<u64>,
    now_us: u32,
}

impl PlanBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    fn thread(&mut self, tid: ThreadId) -> u32 {
        if let Some(&i) = self.thread_index.get(&tid) {
            return i;
        }
        let i = self.plan.threads.len() as u32;
        self.plan.thread_ids.push(tid);
        self.plan.threads.push(Vec::new());
        self.thread_index.insert(tid, i);
        i
    }

    fn new_slot(&mut self, addr: u64, thread: u32, size: u64) -> anyhow::Result<u32> {
        let slot = self.plan.slots;
        anyhow::ensure!(slot < NO_SLOT - 1, "trace has more than 2^32 allocations");
        self.plan.slots += 1;
        self.addrs
            .insert(addr, AddrState::Live { slot, thread, size });
        self.live += size;
        self.plan.peak_live_bytes = self.plan.peak_live_bytes.max(self.live);
        Ok(slot)
    }

    /// Takes the live block at `addr` for a free or realloc on `thread`:
    /// `Some((slot, waits))`, or `None` (counted) when it is not live.
    fn take(&mut self, addr: u64, thread: u32) -> Option<(u32, bool)> {
        match self.addrs.get(&addr) {
            Some(&AddrState::Live {
                slot,
                thread: t,
                size,
            }) => {
                self.addrs.insert(addr, AddrState::Freed);
                self.live -= size;
                Some((slot, t != thread))
            }
            Some(AddrState::Freed) => {
                self.plan.skipped.double_frees += 1;
                None
            }
            None => {
                self.plan.skipped.invalid_frees += 1;
                None
            }
        }
    }

    fn push(&mut self, thread: u32, mut op: Op) {
        op.time_us = self.now_us;
        self.plan.threads[thread as usize].push(op);
    }

    /// Adds one record (records must come in the reader's global order).
    pub fn add(&mut self, rec: &Record) -> anyhow::Result<()> {
        let first = *self.first_time.get_or_insert(rec.time);
        self.now_us = u32::try_from(rec.time.saturating_sub(first) / 1000).unwrap_or(u32::MAX);
        match rec.event {
            Event::Alloc {
                func,
                addr,
                size,
                align,
                ..
            } => {
                let t = self.thread(rec.thread);
                if addr == 0 {
                    self.plan.skipped.failed_allocs += 1;
                    return Ok(());
                }
                let (kind, aux) = match alloc_kind(func) {
                    OpKind::Malloc | OpKind::Calloc | OpKind::Valloc | OpKind::Pvalloc => {
                        (alloc_kind(func), 0)
                    }
                    k => match u32::try_from(align.max(1)) {
                        Ok(a) => (k, a),
                        Err(_) => {
                            self.plan.skipped.unsupported += 1;
                            return Ok(());
                        }
                    },
                };
                if let Some(AddrState::Live { .. }) = self.addrs.get(&addr) {
                    // The recorded allocator handed out a live address again: the
                    // old block's free was lost. Leave the old one allocated.
                    self.plan.skipped.invalid_frees += 1;
                }
                let slot = self.new_slot(addr, t, size)?;
                self.push(
                    t,
                    Op {
                        size,
                        slot,
                        aux,
                        time_us: 0,
                        waits: false,
                        kind,
                    },
                );
            }
            Event::Free { addr, .. } => {
                let t = self.thread(rec.thread);
                if let Some((slot, waits)) = self.take(addr, t) {
                    self.push(t, free_op(slot, waits));
                }
            }
            Event::Realloc {
                old_addr,
                new_addr,
                size,
                ..
            } => {
                let t = self.thread(rec.thread);
                self.add_realloc(t, old_addr, new_addr, size)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn add_realloc(&mut self, t: u32, old: u64, new: u64, size: u64) -> anyhow::Result<()> {
        if new == 0 && size > 0 {
            // Failed: the old block stays as it was.
            self.plan.skipped.failed_allocs += 1;
            return Ok(());
        }
        let (old_slot, waits) = if old == 0 {
            (NO_SLOT, false)
        } else {
            match self.take(old, t) {
                Some(s) => s,
                None => return Ok(()),
            }
        };
        if new == 0 {
            // realloc(p, 0) freed the block (glibc); replay it as the free it was.
            if old_slot != NO_SLOT {
                self.push(t, free_op(old_slot, waits));
            }
            return Ok(());
        }
        let slot = self.new_slot(new, t, size)?;
        self.push(
            t,
            Op {
                size,
                slot,
                aux: old_slot,
                time_us: 0,
                waits,
                kind: OpKind::Realloc,
            },
        );
        Ok(())
    }

    /// The finished plan.
    pub fn finish(mut self) -> Plan {
        self.plan.live_at_end = self
            .addrs
            .values()
            .filter(|s| matches!(s, AddrState::Live { .. }))
            .count() as u64;
        self.plan
    }
}

fn free_op(slot: u32, waits: bool) -> Op {
    Op {
        size: 0,
        slot,
        aux: 0,
        time_us: 0,
        waits,
        kind: OpKind::Free,
    }
}

/// The call that replays an allocation function.
fn alloc_kind(func: AllocFn) -> OpKind {
    use AllocFn::*;
    match func {
        Calloc => OpKind::Calloc,
        PosixMemalign => OpKind::PosixMemalign,
        AlignedAlloc
        | NewAligned
        | NewArrayAligned
        | NewAlignedNothrow
        | NewArrayAlignedNothrow => OpKind::AlignedAlloc,
        Memalign => OpKind::Memalign,
        Valloc => OpKind::Valloc,
        Pvalloc => OpKind::Pvalloc,
        _ => OpKind::Malloc,
    }
}

impl Plan {
    /// Builds the plan of records in global order.
    pub fn from_records(
        records: impl IntoIterator<Item = anyhow::Result<Record>>,
    ) -> anyhow::Result<Plan> {
        let mut b = PlanBuilder::new();
        for r in records {
            b.add(&r?)?;
        }
        Ok(b.finish())
    }

    /// Reads the trace at `path` and builds its plan.
    pub fn from_trace(path: &Path) -> anyhow::Result<Plan> {
        let reader = traces::Reader::open(path)
            .with_context(|| format!("opening trace {}", path.display()))?;
        Plan::from_records(reader.map(|r| r.map_err(anyhow::Error::from)))
            .with_context(|| format!("reading trace {}", path.display()))
    }

    /// Total ops over all threads.
    pub fn ops(&self) -> u64 {
        self.threads.iter().map(|t| t.len() as u64).sum()
    }
}
