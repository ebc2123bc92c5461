//! The events block: one thread's events in columns of varints.
//!
//! Layout (all varints unless noted):
//! ```text
//! thread, count, first_time,
//! len(ops), len(times), len(addrs), len(frees), len(frees_hi), len(allocs),
//! len(sizes), len(stacks), len(extra), len(sizes_lo),
//! ops[count] (one byte each) | times | addrs | frees | frees_hi | allocs | sizes | stacks | extra
//!     | sizes_lo (one byte each)
//! ```
//! (Format version 1: no `sizes_lo`, and `sizes` holds whole values.)
//! `times` holds each event's time minus the previous one's (the first minus
//! `first_time`); `addrs` holds literal addresses, `frees` and `allocs` the
//! prediction codes of freed and allocated addresses ([`AddrModel`]); `sizes`
//! each size shifted right by 4 (its low 4 bits in `sizes_lo`); `stacks`
//! plain varints; `extra` the rare fields. Which columns an event
//! uses is fixed by its opcode (`FORMAT.md`).
//!
//! Addresses are predicted from per-thread state that persists across the
//! thread's blocks ([`AddrModel`]): a freed address is usually coded as its
//! index in the thread's list of live blocks, an allocated one as its position
//! in the ring of the thread's recent frees; anything else is a literal delta.

use crate::batch::{EventBatch, Kind, Scratch, Slots};
use crate::event::{AllocFn, Event, FreeFn, Module, ThreadId};

use crate::varint::{self, Cursor};

/// Opcode bases; the low bits carry the function number.
pub mod op {
    /// `Alloc` with `AllocFn` n: `ALLOC + n`.
    pub const ALLOC: u8 = 0x00;
    /// `Free` with `FreeFn` n: `FREE + n`.
    pub const FREE: u8 = 0x20;
    /// `Realloc` with `AllocFn::Realloc`.
    pub const REALLOC: u8 = 0x40;
    /// `Realloc` with `AllocFn::Reallocarray`.
    pub const REALLOCARRAY: u8 = 0x41;
    /// `Mmap`.
    pub const MMAP: u8 = 0x50;
    /// `Munmap`.
    pub const MUNMAP: u8 = 0x51;
    /// `Mremap`.
    pub const MREMAP: u8 = 0x52;
    /// `Brk`.
    pub const BRK: u8 = 0x53;
    /// `ThreadStart`.
    pub const THREAD_START: u8 = 0x60;
    /// `ThreadExit`.
    pub const THREAD_EXIT: u8 = 0x61;
    /// `Fork`.
    pub const FORK: u8 = 0x62;
    /// `Exec`.
    pub const EXEC: u8 = 0x63;
    /// `ModuleLoad`.
    pub const MODULE_LOAD: u8 = 0x70;
    /// `ModuleUnload`.
    pub const MODULE_UNLOAD: u8 = 0x71;
    /// `Marker`.
    pub const MARKER: u8 = 0x72;
}

/// Most entries in a thread's live list; at this size the list is cleared (by
/// encoder and decoder alike), which bounds the reader's memory per thread.
pub const LIVE_CAP: usize = 1 << 15;
/// The end of the list of empty live-table slots (above any slot index).
const NO_SLOT: u32 = u32::MAX;
const _: () = assert!(LIVE_CAP < NO_SLOT as usize);
/// Recent frees remembered per size class.
pub const RING: usize = 16;
/// A class stack's `order` with every slot in order (see [`AddrModel`]).
const SLOTS_IN_ORDER: u64 = 0xfedc_ba98_7654_3210;
const _: () = assert!(RING == 16, "`order` holds 16 4-bit digits");
/// Slots of the table predicting a free's stack from its block's allocation stack.
const FREE_SITES: usize = 1024;

/// Columns in an events block (format version 2; version 1 has the first
/// [`COLUMNS_V1`]).
pub const COLUMNS: usize = 10;

/// Columns in an events block of format version 1 (no `sizes_lo`).
pub const COLUMNS_V1: usize = 9;

/// Size classes predicted: glibc-like 16-byte chunk classes up to 1 KiB, and
/// one shared class for everything larger.
const CLASSES: usize = 66;
/// Class stacks allocated: a power of two above [`CLASSES`], so a class read
/// back from the live table is brought in range by a mask (the stacks past
/// [`CLASSES`] are never used, and never touched).
const CLASS_SLOTS: usize = 128;
const _: () = assert!(CLASSES <= CLASS_SLOTS && CLASS_SLOTS.is_power_of_two());

/// The size class of a request, as a LIFO allocator (glibc's tcache, most
/// thread caches) would bin it: chunk size `size + 8` rounded up to 16.
/// Public for tools that generate traces aimed at the address model
/// (`examples/addr_model_fuzz.rs`).
#[inline]
pub fn class(size: u64) -> usize {
    // Sizes from 1017 up share the last class; clamping first spares the
    // overflow check of the addition.
    ((size.min(1017) + 23) >> 4) as usize
}

/// Per-thread address prediction state, identical in writer and reader.
///
/// Codes in the `frees` column (freed addresses: `Free`, realloc's old):
/// `0` then a literal in `addrs`, or `i + 1` for the occupied slot `i` of the
/// live table (which is then emptied and its index pushed on the stack of free
/// slots; the address is remembered as recently freed in its size class).
///
/// Codes in the `allocs` column (allocated addresses: `Alloc`, realloc's new):
/// `0` then a literal in `addrs`; `1` for the most recently freed address;
/// `k + 2` for the `k`-th entry from the top of the request's size-class
/// stack of recent frees, which is then removed from that stack (mirroring a
/// LIFO allocator). A non-zero allocated address is then stored with its size
/// and stack in the slot popped from the stack of free slots or, when there is
/// none, in a new slot at the end of the table; when the table already has
/// [`LIVE_CAP`] slots, table and free-slot stack are cleared first. Each class
/// stack keeps the [`RING`] most recent frees.
///
/// A literal is the delta `d` from the previous literal (wrapping), stored as
/// one varint `zigzag(d / 16) << 1` when `d` is a multiple of 16 and that fits,
/// else as the varint `1` followed by the varint `zigzag(d)`.
/// Other addresses (mappings, the break) are always literals.
#[derive(Clone)]
pub struct AddrModel {
    /// Slots of `(address, size class, stack)`; address 0 marks an empty
    /// slot. (Only the class of a block's size is ever needed: 16 bytes a slot.)
    /// The stack of empty slots is a list through them: an empty slot on it
    /// holds `(0, next, _)`, `next` the slot below it on the stack
    /// ([`NO_SLOT`] at the bottom). A free writes the slot it empties and
    /// an allocation reads the slot it fills: no other memory is touched.
    live: Vec<(u64, u32, u32)>,
    /// The top of the stack of empty slots, or [`NO_SLOT`].
    free_head: u32,
    free_site: [(u32, u32); FREE_SITES],
    /// Class stacks: each holds its entries in any of its [`RING`] slots,
    /// in the order of `order`, whose 4-bit digit `i` (from the lowest) is
    /// the slot of the `i`-th entry from the top; the digits past the
    /// stack's depth are its unused slots, which hold 0 (a stacked address
    /// never is: that is how the depth is known). A push fills the slot of
    /// the highest digit (unused, or the bottom entry's when the stack is
    /// full) and rotates it to digit 0; a removal empties the entry's slot
    /// and moves it to the highest digit, the digits above it down one.
    /// So either is a few shifts and no loop over entries: the decoder's
    /// hot loop takes an entry from any depth without a branch on it (an
    /// allocator's frees and allocations mix unpredictably; stored in
    /// circular order, entries above a removed one had to move down in a
    /// loop whose length mispredicted).
    rings: [[u64; RING]; CLASS_SLOTS],
    order: [u64; CLASS_SLOTS],
    last_freed: u64,
    last_lit: u64,
}

impl Default for AddrModel {
    fn default() -> Self {
        AddrModel {
            live: Vec::new(),
            free_head: NO_SLOT,
            free_site: [(0, 0); FREE_SITES],
            rings: [[0; RING]; CLASS_SLOTS],
            order: [SLOTS_IN_ORDER; CLASS_SLOTS],
            last_freed: 0,
            last_lit: 0,
        }
    }
}

impl AddrModel {
    /// Stores a live block; returns its slot and whether the table was cleared.
    #[inline(always)]
    fn push_live(&mut self, a: u64, c: usize, stack: u32) -> (u32, bool) {
        let e = (a, c as u32, stack);
        // `NO_SLOT` is beyond any table: the bounds check is the emptiness test.
        let slot = self.free_head;
        if let Some(s) = self.live.get_mut(slot as usize) {
            self.free_head = s.1;
            *s = e;
            return (slot, false);
        }
        let cleared = self.live.len() >= LIVE_CAP;
        if cleared {
            // No slot is empty: the stack of empty slots is empty too.
            self.live.clear();
        }
        self.live.push(e);
        (self.live.len() as u32 - 1, cleared)
    }

    /// Empties slot `i`, returning its entry, or `None` if it is not occupied.
    #[inline(always)]
    fn take_live(&mut self, i: usize) -> Option<(u64, u32, u32)> {
        let e = self.live.get_mut(i)?;
        if e.0 == 0 {
            return None;
        }
        let taken = *e;
        e.0 = 0;
        e.1 = self.free_head;
        self.free_head = i as u32;
        Some(taken)
    }

    /// Code of a free's stack: `0` when it is the stack that last freed a block
    /// allocated at `alloc_stack`, otherwise `stack + 1`.
    #[inline]
    fn free_stack_code(&mut self, alloc_stack: Option<u32>, stack: u32) -> u64 {
        let Some(a) = alloc_stack else {
            return stack as u64 + 1;
        };
        let slot = &mut self.free_site[a as usize % FREE_SITES];
        let code = if *slot == (a, stack) {
            0
        } else {
            stack as u64 + 1
        };
        *slot = (a, stack);
        code
    }

    #[inline(always)]
    fn free_stack_decode(&mut self, alloc_stack: Option<u32>, code: u64) -> Option<u32> {
        match (code, alloc_stack) {
            // Predicted: the slot already holds `(a, stack)`, nothing to store.
            (0, Some(a)) => {
                let slot = self.free_site[a as usize % FREE_SITES];
                (slot.0 == a).then_some(slot.1)
            }
            (0, None) => None,
            (c, alloc_stack) => {
                let stack = u32::try_from(c - 1).ok()?;
                if let Some(a) = alloc_stack {
                    self.free_site[a as usize % FREE_SITES] = (a, stack);
                }
                Some(stack)
            }
        }
    }

    #[inline(always)]
    fn push_freed(&mut self, a: u64, class: Option<u32>) {
        self.last_freed = a;
        if let Some(c) = class {
            let c = c as usize & (CLASS_SLOTS - 1);
            let (order, slot) = push_order(self.order[c]);
            self.order[c] = order;
            self.rings[c][slot] = a;
        }
    }

    /// The `k`-th entry from the top of class `c`'s stack, if it has one.
    #[inline(always)]
    fn ring_get(&self, c: usize, k: usize) -> Option<u64> {
        if k >= RING {
            return None;
        }
        let a = self.rings[c][order_slot(self.order[c], k as u32)];
        (a != 0).then_some(a)
    }

    /// Removes the `k`-th entry from the top of class `c`'s stack (which
    /// must have one).
    #[inline(always)]
    fn ring_remove(&mut self, c: usize, k: usize) {
        let k = k as u32 % RING as u32;
        self.rings[c][order_slot(self.order[c], k)] = 0;
        self.order[c] = remove_order(self.order[c], k);
    }

    /// After an allocation coded `1`: drop the address from the top of its class stack.
    #[inline(always)]
    fn pop_if_top(&mut self, c: usize, a: u64) {
        if a != 0 && self.ring_get(c, 0) == Some(a) {
            self.ring_remove(c, 0);
        }
    }

    /// For the fast path ([`Decoder::fast_run`]): the address of an
    /// allocation of class `c` with `code` (other than from its class
    /// stack into an empty slot), as
    /// [`AddrModel::allocated_code`] finds it, before it is stored; `None`
    /// (and nothing changed, literal cursor included) if it is bad.
    #[cold]
    #[inline(never)]
    fn allocated_other(&mut self, code: u32, lits: &mut Cursor, c: usize) -> Option<u64> {
        match code {
            0 => self.allocated_literal(lits),
            1 => {
                let x = self.last_freed;
                self.pop_if_top(c, x);
                Some(x)
            }
            k => {
                let k = (k - 2) as usize;
                let x = self.ring_get(c, k)?;
                self.ring_remove(c, k);
                Some(x)
            }
        }
    }

    /// [`AddrModel::allocated_other`] for a literal, out of line (it needs
    /// more registers than the rest).
    #[inline(never)]
    fn allocated_literal(&mut self, lits: &mut Cursor) -> Option<u64> {
        let p = lits.pos();
        let x = self.get_lit(lits);
        if x.is_none() {
            lits.set_pos(p);
        }
        x
    }

    /// For the fast path: a free coded as a literal, with stack code `st`
    /// (which must not be 0: a literal's stack is never predicted); `None`
    /// (and nothing changed) if it is bad.
    #[cold]
    #[inline(never)]
    fn freed_literal(&mut self, st: u32, lits: &mut Cursor) -> Option<u64> {
        if st == 0 {
            return None;
        }
        let p = lits.pos();
        let Some(x) = self.get_lit(lits) else {
            lits.set_pos(p);
            return None;
        };
        self.push_freed(x, None);
        Some(x)
    }

    #[inline]
    fn put_lit(&mut self, out: &mut Vec<u8>, a: u64) {
        let d = a.wrapping_sub(self.last_lit) as i64;
        // A multiple of 16 divided by 16 is shifted right by 4, exactly
        // (no rounding toward zero to correct).
        let z = varint::zigzag(d >> 4);
        if d & 15 == 0 && z >> 63 == 0 {
            varint::put(out, z << 1);
        } else {
            varint::put(out, 1);
            varint::put(out, varint::zigzag(d));
        }
        self.last_lit = a;
    }

    #[inline(always)]
    fn get_lit(&mut self, c: &mut Cursor) -> Option<u64> {
        let d = match c.get()? {
            1 => varint::unzigzag(c.get()?),
            v if v & 1 == 0 => varint::unzigzag(v >> 1).wrapping_mul(16),
            _ => return None,
        };
        self.last_lit = self.last_lit.wrapping_add(d as u64);
        Some(self.last_lit)
    }

    #[inline(always)]
    fn get_freed(
        &mut self,
        codes: (&mut Cursor, &mut Cursor),
        lits: &mut Cursor,
    ) -> Option<(u64, Option<u32>)> {
        let code = get_split(codes.0, codes.1)?;
        self.freed_code(code, lits)
    }

    /// A freed address from its code (literals from `lits`), and the
    /// allocation stack of its block when it was coded from the live table.
    #[inline(always)]
    fn freed_code(&mut self, code: u64, lits: &mut Cursor) -> Option<(u64, Option<u32>)> {
        if code == 0 {
            let a = self.get_lit(lits)?;
            self.push_freed(a, None);
            Some((a, None))
        } else {
            let i = (code - 1) as usize;
            let (a, c, stack) = self.take_live(i)?;
            self.push_freed(a, Some(c));
            Some((a, Some(stack)))
        }
    }

    #[inline(always)]
    fn get_allocated(
        &mut self,
        codes: &mut Cursor,
        lits: &mut Cursor,
        size: u64,
        stack: u32,
    ) -> Option<u64> {
        let code = codes.get()?;
        self.allocated_code(code, lits, size, stack)
    }

    /// An allocated address from its code (literals from `lits`), stored in
    /// the live table with `size` and `stack`.
    #[inline(always)]
    fn allocated_code(
        &mut self,
        code: u64,
        lits: &mut Cursor,
        size: u64,
        stack: u32,
    ) -> Option<u64> {
        let c = class(size);
        let a = match code {
            0 => self.get_lit(lits)?,
            1 => {
                let a = self.last_freed;
                self.pop_if_top(c, a);
                a
            }
            k => {
                let k = (k - 2) as usize;
                let a = self.ring_get(c, k)?;
                self.ring_remove(c, k);
                a
            }
        };
        if a != 0 {
            self.push_live(a, c, stack);
        }
        Some(a)
    }
}

/// The slot of the `k`-th entry from the top of a class stack with `order`
/// (see [`AddrModel`]); `k` below [`RING`].
#[inline(always)]
fn order_slot(order: u64, k: u32) -> usize {
    (order >> (4 * (k % RING as u32))) as usize % RING
}

/// A class stack's `order` after a push, and the slot the pushed entry
/// goes to: the lowest unused one, or the bottom entry's when the stack is
/// full (that entry is dropped).
#[inline(always)]
fn push_order(order: u64) -> (u64, usize) {
    let slot = (order >> 60) as usize;
    (order.rotate_left(4), slot)
}

/// A class stack's `order` after the removal of its `k`-th entry (`k`
/// below [`RING`]): the digits above `k` move down one, and the slot goes
/// to the top digit, unused.
#[inline(always)]
fn remove_order(order: u64, k: u32) -> u64 {
    let shift = 4 * (k % RING as u32);
    // Digits `k` up, from digit 0; the slot is the lowest.
    let high = order >> shift;
    // Bit fields apart, so `^` is `|`: the digits below `k`, those above
    // it down one, and the slot at the top.
    order ^ (high ^ high >> 4) << shift ^ (high & 15) << 60
}

/// Free codes are split: the low byte in one column, the rest as a varint in
/// another, so each column has a simple distribution for zstd's entropy coder.
#[inline]
fn put_split(cols: &mut (Vec<u8>, Vec<u8>), code: u64) {
    cols.0.push(code as u8);
    varint::put(&mut cols.1, code >> 8);
}

#[inline(always)]
fn get_split(lo: &mut Cursor, hi: &mut Cursor) -> Option<u64> {
    let l = lo.byte()? as u64;
    let h = hi.get()?;
    h.checked_mul(256).map(|h| h | l)
}

/// Live address -> its live-table entry `(slot, size class, stack)`: an
/// open-addressing hash table with linear probing and backward-shift deletion
/// (no tombstones), at most a quarter full (short probes and short runs to
/// shift back on removal; at the live table's cap of 32768 entries, 2 MiB).
/// Holding the entry here spares the writer a random read of the live table
/// on every free. Address 0 is never stored and marks an empty entry.
///
/// The index counts no entries: it holds at most one per occupied slot of
/// the live table, so it is grown by the table's length ([`AddrIndex::fit`],
/// when the table gains a slot) rather than checked on every insertion.
struct AddrIndex {
    /// `(address, slot | class << 16, stack)`.
    entries: Vec<(u64, u32, u32)>,
    /// `64 - log2(entries.len())`: the hash keeps the high bits.
    shift: u32,
}

impl Default for AddrIndex {
    fn default() -> Self {
        AddrIndex {
            entries: vec![(0, 0, 0); 64],
            shift: 64 - 6,
        }
    }
}

impl AddrIndex {
    #[inline(always)]
    fn home(&self, a: u64) -> usize {
        // Blocks are 16-byte aligned: drop the low bits, then Fibonacci hashing.
        ((a >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    #[inline(always)]
    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    /// Grows the index, if needed, to stay at most a quarter full with
    /// `n` entries.
    #[inline]
    fn fit(&mut self, n: usize) {
        if n * 4 > self.entries.len() {
            self.grow();
        }
    }

    /// Sets the entry of `a` (non-zero): `slot | class << 16` and `stack`.
    /// The index must have room ([`AddrIndex::fit`]).
    #[inline]
    fn insert(&mut self, a: u64, slot: u32, stack: u32) {
        let mask = self.mask();
        let mut i = self.home(a);
        loop {
            let e = &mut self.entries[i & mask];
            if e.0 == a || e.0 == 0 {
                *e = (a, slot, stack);
                return;
            }
            i = (i & mask) + 1;
        }
    }

    /// Removes `a`, returning its entry. (Inlined into the encoder's free:
    /// out of line, its call, its result's packing and its prologue were a
    /// fifth of its cost.)
    #[inline(always)]
    fn remove(&mut self, a: u64) -> Option<(u32, u32)> {
        if a == 0 {
            return None;
        }
        let mask = self.mask();
        let mut i = self.home(a) & mask;
        let slot = loop {
            let e = self.entries[i];
            if e.0 == a {
                break (e.1, e.2);
            }
            if e.0 == 0 {
                return None;
            }
            i = (i + 1) & mask;
        };
        // Shift back the entries after it that would no longer be found.
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let e = self.entries[j];
            if e.0 == 0 {
                break;
            }
            let k = self.home(e.0) & mask;
            // `e` may move to the hole at `i` unless its home lies
            // cyclically in (i, j]: unless it is nearer to `j` than `i` is.
            if (j.wrapping_sub(k) & mask) >= (j.wrapping_sub(i) & mask) {
                self.entries[i] = e;
                i = j;
            }
        }
        // Only the address marks an entry empty (the rest is not read).
        self.entries[i].0 = 0;
        Some(slot)
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let old = std::mem::take(&mut self.entries);
        self.entries = vec![(0, 0, 0); old.len() * 2];
        self.shift -= 1;
        for (a, slot, stack) in old {
            if a != 0 {
                self.insert(a, slot, stack);
            }
        }
    }

    fn clear(&mut self) {
        self.entries.fill((0, 0, 0));
    }

    fn hint(&self) -> IndexHint {
        IndexHint {
            base: self.entries.as_ptr().cast(),
            mask: self.mask(),
            shift: self.shift,
        }
    }
}

/// Where a thread's address index starts looking an address up: for a
/// caller that knows the addresses of the records it will write next, to
/// have those memory lines fetched ahead (the index is large and read at
/// random: most frees missed the cache on it). Only an address is computed
/// here, never read through. Valid until the index grows; a stale hint
/// names memory no longer used, which a prefetch may name harmlessly.
#[derive(Clone, Copy, Debug)]
pub struct IndexHint {
    base: *const u8,
    mask: usize,
    shift: u32,
}

impl IndexHint {
    /// Whether the index is large enough for its lines to miss the cache
    /// (at least 512 KiB of entries: half a common L2 cache); a small
    /// one stays cached, and fetching ahead only costs instructions.
    pub fn is_large(&self) -> bool {
        self.mask >= (32 << 10) - 1
    }

    /// The address of the index entry where the search for `a` starts.
    #[inline(always)]
    pub fn entry(&self, a: u64) -> *const u8 {
        let i = ((a >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize & self.mask;
        self.base
            .wrapping_add(i * std::mem::size_of::<(u64, u32, u32)>())
    }
}

/// The writer's side of [`AddrModel`]: also knows where each live address is.
pub struct AddrEncoder {
    model: AddrModel,
    index: AddrIndex,
    /// The live table's stack of empty slots, as a list through them like
    /// [`AddrModel`]'s: per slot (the table's length), the empty slot below
    /// it on the stack, and the top ([`NO_SLOT`] when none). The encoder
    /// never reads the table's entries (the index holds them), so it keeps
    /// only what decides the slot of the next allocation (`model.live`
    /// stays empty).
    next_free: Vec<u32>,
    free_top: u32,
}

impl Default for AddrEncoder {
    fn default() -> Self {
        AddrEncoder {
            model: AddrModel::default(),
            index: AddrIndex::default(),
            next_free: Vec::new(),
            free_top: NO_SLOT,
        }
    }
}

impl AddrEncoder {
    /// Codes a freed address; returns the allocation stack of its block, if known.
    #[inline(always)]
    fn freed(&mut self, codes: &mut (Vec<u8>, Vec<u8>), lits: &mut Vec<u8>, a: u64) -> Option<u32> {
        let m = &mut self.model;
        // The index holds exactly the live table's occupied slots (a slot
        // left by an address allocated twice is not indexed), so the entry
        // found is the live one.
        match self.index.remove(a) {
            Some((packed, stack)) => {
                let i = packed & 0xffff;
                put_split(codes, i as u64 + 1);
                // `i` is an occupied slot of the table.
                if let Some(n) = self.next_free.get_mut(i as usize) {
                    *n = self.free_top;
                    self.free_top = i;
                }
                m.push_freed(a, Some(packed >> 16));
                Some(stack)
            }
            _ => {
                put_split(codes, 0);
                m.put_lit(lits, a);
                m.push_freed(a, None);
                None
            }
        }
    }

    #[inline(always)]
    fn allocated(
        &mut self,
        codes: &mut Vec<u8>,
        lits: &mut Vec<u8>,
        a: u64,
        size: u64,
        stack: u32,
    ) {
        let m = &mut self.model;
        let c = class(size);
        let order = m.order[c];
        let ring = &m.rings[c];
        // The stack ends at the first 0 entry (and `a` is not 0). The top is
        // tested first, alone: a LIFO allocator mostly hands it out.
        let found = if a == 0 {
            None
        } else if ring[order_slot(order, 0)] == a {
            Some(0)
        } else {
            // Each entry read once: tested against `a`, then as the end
            // (an empty stack's entries are all 0).
            let mut found = None;
            for k in 1..RING as u32 {
                let e = ring[order_slot(order, k)];
                if e == a {
                    found = Some(k);
                    break;
                }
                if e == 0 {
                    break;
                }
            }
            found
        };
        if let Some(k) = found {
            varint::put(codes, k as u64 + 2);
            m.ring_remove(c, k as usize);
        } else if a != 0 && a == m.last_freed {
            varint::put(codes, 1);
            m.pop_if_top(c, a);
        } else {
            varint::put(codes, 0);
            m.put_lit(lits, a);
        }
        if a != 0 {
            // As `AddrModel::push_live`: an empty slot, else a new one, the
            // table (and so the index) cleared first when full.
            // `NO_SLOT` is beyond any table: the bounds check is the
            // emptiness test.
            let top = self.free_top;
            let slot = match self.next_free.get(top as usize) {
                Some(&below) => {
                    self.free_top = below;
                    top
                }
                None => {
                    if self.next_free.len() >= LIVE_CAP {
                        self.next_free.clear();
                        self.index.clear();
                    }
                    self.next_free.push(NO_SLOT);
                    // The index holds at most one entry per slot.
                    self.index.fit(self.next_free.len());
                    self.next_free.len() as u32 - 1
                }
            };
            self.index.insert(a, slot | (c as u32) << 16, stack);
        }
    }

    fn other(&mut self, lits: &mut Vec<u8>, a: u64) {
        self.model.put_lit(lits, a);
    }

    fn hint(&self) -> IndexHint {
        self.index.hint()
    }
}

const fn is_sized_delete(f: FreeFn) -> bool {
    use FreeFn::*;
    matches!(
        f,
        DeleteSized | DeleteArraySized | DeleteSizedAligned | DeleteArraySizedAligned
    )
}

/// Accumulates one thread's events into columns.
#[derive(Default)]
pub struct BlockEncoder {
    /// Thread of every event in this block.
    pub thread: ThreadId,
    /// Number of events so far.
    pub count: u64,
    /// Time of the first event.
    pub first_time: u64,
    last_time: u64,
    /// Event count at which [`BlockEncoder::is_full`] next measures the columns.
    next_check: u64,
    addr: AddrEncoder,
    ops: Vec<u8>,
    times: Vec<u8>,
    addrs: Vec<u8>,
    frees: (Vec<u8>, Vec<u8>),
    allocs: Vec<u8>,
    sizes: Vec<u8>,
    stacks: Vec<u8>,
    extra: Vec<u8>,
    /// The low 4 bits of each value of `sizes` (which holds the rest), one
    /// byte each: a size's varint split its bits into bytes of unlike
    /// statistics that zstd's byte-wise entropy coding could not separate
    /// (churn's uniform 8-512 byte sizes: 10.8 bits each, against 9.0).
    sizes_lo: Vec<u8>,
    /// The next block is finished with whole sizes ([`BlockEncoder::whole_sizes`]).
    whole_sizes: bool,
}

impl BlockEncoder {
    /// An empty block for `thread`.
    pub fn new(thread: ThreadId) -> Self {
        BlockEncoder {
            thread,
            ..Default::default()
        }
    }

    /// Encoded size so far (columns only).
    pub fn len(&self) -> usize {
        self.ops.len()
            + self.times.len()
            + self.addrs.len()
            + self.frees.0.len()
            + self.frees.1.len()
            + self.allocs.len()
            + self.sizes.len()
            + self.stacks.len()
            + self.extra.len()
            + self.sizes_lo.len()
    }

    /// Where the encoder's address index looks addresses up ([`IndexHint`]).
    pub fn index_hint(&self) -> IndexHint {
        self.addr.hint()
    }

    /// Whether no event has been added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The latest time of the events in the block (0 when empty).
    pub(crate) fn last_time(&self) -> u64 {
        self.last_time
    }

    #[inline]
    fn allocated(&mut self, a: u64, size: u64, stack: u32) {
        self.addr
            .allocated(&mut self.allocs, &mut self.addrs, a, size, stack);
    }

    #[inline]
    fn freed(&mut self, a: u64) -> Option<u32> {
        self.addr.freed(&mut self.frees, &mut self.addrs, a)
    }

    #[inline]
    fn addr(&mut self, a: u64) {
        self.addr.other(&mut self.addrs, a);
    }

    /// Puts a size (or length) into `sizes` and `sizes_lo`.
    #[inline(always)]
    fn size(&mut self, v: u64) {
        varint::put(&mut self.sizes, v >> 4);
        self.sizes_lo.push(v as u8 & 15);
    }

    /// Whether the block is to be finished with whole sizes in `sizes` (and
    /// `sizes_lo` empty) rather than split: better for a program whose sizes
    /// repeat in patterns, which zstd finds more easily whole (sqlite3's
    /// workload: 1.4 KB whole, 3.1 KB split); random sizes compress better
    /// split (churn's: 11.3 MB, 13.5 MB whole). The writer decides by how
    /// the sizes of the thread's previous block compressed.
    pub fn whole_sizes(&mut self, whole: bool) {
        self.whole_sizes = whole;
    }

    /// Joins `sizes` and `sizes_lo` back into whole sizes in `sizes`
    /// (`sizes_lo` left empty, which tells a reader).
    #[cold]
    fn join_sizes(&mut self) {
        let mut whole = Vec::with_capacity(self.sizes.len() + self.sizes_lo.len());
        let mut hi = Cursor::new(&self.sizes);
        for &lo in &self.sizes_lo {
            let h = hi.get().unwrap_or_default();
            varint::put(&mut whole, h << 4 | lo as u64);
        }
        self.sizes = whole;
        self.sizes_lo.clear();
    }

    fn string(&mut self, s: &[u8]) {
        varint::put(&mut self.extra, s.len() as u64);
        self.extra.extend_from_slice(s);
    }

    /// Adds an event. `time` must not be below the previous event's time.
    #[inline(always)]
    pub fn push(&mut self, time: u64, ev: &Event) {
        match ev {
            // Plain malloc and free inline: the bulk of every trace.
            Event::Alloc {
                func: AllocFn::Malloc,
                addr,
                size,
                stack,
                ..
            } => self.push_malloc(time, *addr, *size, *stack),
            Event::Free {
                func: FreeFn::Free,
                addr,
                stack,
                ..
            } => self.push_free(time, *addr, *stack),
            _ => {
                self.time(time);
                self.push_other(ev)
            }
        }
    }

    /// An event's time.
    #[inline(always)]
    fn time(&mut self, time: u64) {
        if self.count == 0 {
            self.first_time = time;
            self.last_time = time;
        }
        varint::put(&mut self.times, time.saturating_sub(self.last_time));
        self.last_time = time.max(self.last_time);
        self.count += 1;
    }

    /// [`BlockEncoder::push`] of a plain malloc (no [`Event`] to build and
    /// match again: the recorder's collector calls this directly).
    #[inline(always)]
    pub fn push_malloc(&mut self, time: u64, addr: u64, size: u64, stack: u32) {
        self.time(time);
        self.ops.push(op::ALLOC);
        self.allocated(addr, size, stack);
        self.size(size);
        varint::put(&mut self.stacks, stack as u64);
    }

    /// [`BlockEncoder::push`] of a plain free.
    #[inline(always)]
    pub fn push_free(&mut self, time: u64, addr: u64, stack: u32) {
        self.time(time);
        self.ops.push(op::FREE);
        let alloc_stack = self.freed(addr);
        let code = self.addr.model.free_stack_code(alloc_stack, stack);
        varint::put(&mut self.stacks, code);
    }

    /// The rest of [`BlockEncoder::push`]: every other event, after its time.
    #[inline(never)]
    fn push_other(&mut self, ev: &Event) {
        match ev {
            Event::Alloc {
                func,
                addr,
                size,
                align,
                stack,
            } => {
                self.ops.push(op::ALLOC + *func as u8);
                self.allocated(*addr, *size, *stack);
                self.size(*size);
                varint::put(&mut self.stacks, *stack as u64);
                if func.is_aligned() {
                    varint::put(&mut self.extra, *align);
                }
            }
            Event::Free {
                func,
                addr,
                size,
                align,
                stack,
            } => {
                self.ops.push(op::FREE + *func as u8);
                let alloc_stack = self.freed(*addr);
                let code = self.addr.model.free_stack_code(alloc_stack, *stack);
                varint::put(&mut self.stacks, code);
                if is_sized_delete(*func) {
                    self.size(*size);
                }
                if func.is_aligned() {
                    varint::put(&mut self.extra, *align);
                }
            }
            Event::Realloc {
                func,
                old_addr,
                new_addr,
                size,
                stack,
            } => {
                self.ops.push(if *func == AllocFn::Reallocarray {
                    op::REALLOCARRAY
                } else {
                    op::REALLOC
                });
                self.freed(*old_addr);
                self.allocated(*new_addr, *size, *stack);
                self.size(*size);
                varint::put(&mut self.stacks, *stack as u64);
            }
            Event::Mmap {
                addr,
                len,
                prot,
                flags,
                fd,
                stack,
            } => {
                self.ops.push(op::MMAP);
                self.addr(*addr);
                self.size(*len);
                varint::put(&mut self.stacks, *stack as u64);
                varint::put(&mut self.extra, *prot as u64);
                varint::put(&mut self.extra, *flags as u64);
                varint::put_signed(&mut self.extra, *fd as i64);
            }
            Event::Munmap { addr, len, stack } => {
                self.ops.push(op::MUNMAP);
                self.addr(*addr);
                self.size(*len);
                varint::put(&mut self.stacks, *stack as u64);
            }
            Event::Mremap {
                old_addr,
                old_len,
                new_addr,
                new_len,
                stack,
            } => {
                self.ops.push(op::MREMAP);
                self.addr(*old_addr);
                self.addr(*new_addr);
                self.size(*old_len);
                self.size(*new_len);
                varint::put(&mut self.stacks, *stack as u64);
            }
            Event::Brk {
                old_break,
                new_break,
                stack,
            } => {
                self.ops.push(op::BRK);
                self.addr(*old_break);
                self.addr(*new_break);
                varint::put(&mut self.stacks, *stack as u64);
            }
            Event::ThreadStart { parent } => {
                self.ops.push(op::THREAD_START);
                varint::put(&mut self.extra, *parent as u64);
            }
            Event::ThreadExit => self.ops.push(op::THREAD_EXIT),
            Event::Fork { child_pid } => {
                self.ops.push(op::FORK);
                varint::put(&mut self.extra, *child_pid as u64);
            }
            Event::Exec { path } => {
                self.ops.push(op::EXEC);
                self.next_check = 0; // strings: unbounded
                self.string(path.as_bytes());
            }
            Event::ModuleLoad(m) => {
                self.ops.push(op::MODULE_LOAD);
                self.next_check = 0; // strings: unbounded
                self.string(m.path.as_bytes());
                varint::put(&mut self.extra, m.base);
                varint::put(&mut self.extra, m.start);
                varint::put(&mut self.extra, m.end);
                self.string(&m.build_id);
            }
            Event::ModuleUnload { base } => {
                self.ops.push(op::MODULE_UNLOAD);
                varint::put(&mut self.extra, *base);
            }
            Event::Marker { value, label } => {
                self.ops.push(op::MARKER);
                self.next_check = 0; // strings: unbounded
                varint::put(&mut self.extra, *value);
                self.string(label.as_bytes());
            }
        }
    }

    /// The block payload; resets the encoder for the same thread.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.finish_into(&mut out);
        out
    }

    /// Like [`BlockEncoder::finish`], writing the payload into `out` (cleared
    /// first), and keeping the column buffers for the next block.
    pub fn finish_into(&mut self, out: &mut Vec<u8>) {
        self.finish_cuts(out);
    }

    /// [`BlockEncoder::finish_into`], returning where each column starts in
    /// `out` (the first one after the block's leading varints).
    pub fn finish_cuts(&mut self, out: &mut Vec<u8>) -> [usize; COLUMNS] {
        let mut cuts = [0; COLUMNS];
        if self.whole_sizes {
            self.join_sizes();
        }
        out.clear();
        out.reserve(self.len() + 64);
        varint::put(out, self.thread as u64);
        varint::put(out, self.count);
        varint::put(out, self.first_time);
        for col in [
            &self.ops,
            &self.times,
            &self.addrs,
            &self.frees.0,
            &self.frees.1,
            &self.allocs,
            &self.sizes,
            &self.stacks,
            &self.extra,
            &self.sizes_lo,
        ] {
            varint::put(out, col.len() as u64);
        }
        for (k, col) in [
            &mut self.ops,
            &mut self.times,
            &mut self.addrs,
            &mut self.frees.0,
            &mut self.frees.1,
            &mut self.allocs,
            &mut self.sizes,
            &mut self.stacks,
            &mut self.extra,
            &mut self.sizes_lo,
        ]
        .into_iter()
        .enumerate()
        {
            cuts[k] = out.len();
            out.extend_from_slice(col);
            col.clear();
        }
        self.count = 0;
        self.first_time = 0;
        self.last_time = 0;
        self.next_check = 0;
        cuts
    }

    /// Whether the block has reached `block_bytes` of columns. Cheap: the
    /// columns are only measured when a run of heap events (at most
    /// `HEAP_EVENT_MAX_BYTES` each) could have filled the block since the
    /// last measurement, so the answer is exact at every event.
    #[inline(always)]
    pub fn is_full(&mut self, block_bytes: usize) -> bool {
        if self.count < self.next_check {
            return false;
        }
        let len = self.len();
        if len >= block_bytes {
            return true;
        }
        self.next_check = self.count + ((block_bytes - len) / HEAP_EVENT_MAX_BYTES) as u64;
        false
    }
}

/// Most column bytes one `Alloc`, `Free` or `Realloc` event adds (opcode 1,
/// time 10, freed address 1 + 10 + 11, allocated address 10 + 11, size 10,
/// stack 5, alignment 10, bounded generously).
const HEAP_EVENT_MAX_BYTES: usize = 80;

/// The error of an events block whose times overflow.
pub const TIME_OVERFLOW: &str = "events block: time overflow";

/// Decodes an events block lazily, a batch at a time, so a reader holds the
/// compact payload rather than decoded records.
pub struct BlockDecoder {
    payload: Vec<u8>,
    thread: ThreadId,
    remaining: u64,
    first_time: u64,
    time: u64,
    /// Start and end of each column in `payload`.
    bounds: [(usize, usize); COLUMNS],
    /// Read position within each column.
    pos: [usize; COLUMNS],
    /// Whether runs of plain mallocs and frees take [`Decoder::fast_runs`]
    /// (always, but in tests comparing it with the general path).
    fast: bool,
    /// Sizes are split into `sizes` and `sizes_lo` (format version 2).
    split: bool,
}

impl BlockDecoder {
    /// Parses and checks the block's header and column table (of the
    /// current format version).
    pub fn new(payload: Vec<u8>) -> Result<Self, String> {
        Self::with_version(payload, crate::VERSION)
    }

    /// [`BlockDecoder::new`] for a block of a file of format `version`.
    pub fn with_version(payload: Vec<u8>, version: u16) -> Result<Self, String> {
        let ncols = if version >= 2 { COLUMNS } else { COLUMNS_V1 };
        let mut h = Cursor::new(&payload);
        let bad = |what: &str| format!("events block: {what}");
        let thread = h.get().ok_or_else(|| bad("missing thread"))?;
        let count = h.get().ok_or_else(|| bad("missing count"))?;
        let first_time = h.get().ok_or_else(|| bad("missing time"))?;
        let mut bounds = [(0usize, 0usize); COLUMNS];
        let mut lens = [0u64; COLUMNS];
        for l in lens.iter_mut().take(ncols) {
            *l = h.get().ok_or_else(|| bad("missing column length"))?;
        }
        let thread = u32::try_from(thread).map_err(|_| bad("thread id out of range"))?;
        // Every event takes one op byte, so the count is bounded by the payload.
        if count != lens[0] {
            return Err(bad("op column length differs from event count"));
        }
        let mut at = h.pos();
        for (b, &l) in bounds.iter_mut().zip(&lens) {
            let end = usize::try_from(l)
                .ok()
                .and_then(|l| at.checked_add(l))
                .filter(|&e| e <= payload.len());
            let end = end.ok_or_else(|| bad("column longer than block"))?;
            *b = (at, end);
            at = end;
        }
        if at != payload.len() {
            return Err(bad("trailing bytes after columns"));
        }
        // An empty `sizes_lo` column: whole sizes in `sizes`.
        let split = lens[COLUMNS - 1] != 0;
        Ok(BlockDecoder {
            payload,
            thread,
            remaining: count,
            first_time,
            time: first_time,
            bounds,
            pos: [0; COLUMNS],
            fast: true,
            split,
        })
    }

    /// Thread of the block's events.
    pub fn thread(&self) -> ThreadId {
        self.thread
    }

    /// Events not yet decoded.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Time of the block's first event.
    pub fn first_time(&self) -> u64 {
        self.first_time
    }

    /// Bytes held.
    pub fn payload_len(&self) -> usize {
        self.payload.len()
    }

    /// The payload, for reuse of its buffer.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }
}

struct Decoder<'a> {
    addrs: Cursor<'a>,
    frees: Cursor<'a>,
    frees_hi: Cursor<'a>,
    allocs: Cursor<'a>,
    sizes: Sizes<'a>,
    stacks: Cursor<'a>,
    extra: Cursor<'a>,
    model: &'a mut AddrModel,
}

/// The `sizes` column and, in format version 2, `sizes_lo`: a size is
/// `sizes` value `<< 4 | sizes_lo` byte.
struct Sizes<'a> {
    hi: Cursor<'a>,
    lo: Cursor<'a>,
    split: bool,
}

impl Sizes<'_> {
    #[inline(always)]
    fn join(h: u64, l: u8) -> Option<u64> {
        if l >= 16 || h >> 60 != 0 {
            return None;
        }
        Some(h << 4 | l as u64)
    }

    /// One size.
    #[inline(always)]
    fn get(&mut self) -> Option<u64> {
        if !self.split {
            return self.hi.get_wide();
        }
        let h = self.hi.get()?;
        Self::join(h, self.lo.byte()?)
    }

    /// Sizes into `out`, as far as they are below 4 GiB; returns how many
    /// were read (fewer at a column's end, a bad value or a larger size,
    /// the cursors then just after the last one read).
    #[inline(always)]
    fn get_u32s(&mut self, out: &mut [u32]) -> usize {
        if !self.split {
            return self.hi.get_u32s(out, u32::MAX);
        }
        let start = self.hi.pos();
        let read = self.hi.get_u32s(out, u32::MAX >> 4);
        let lo = self.lo.rest();
        let mut n = read.min(lo.len());
        // Every low part good (always, but in a damaged block): joined in
        // a loop without a test per value.
        let bad = lo[..n].iter().fold(0, |b, &l| b | l >> 4);
        if bad == 0 {
            for (s, &l) in out[..n].iter_mut().zip(lo) {
                *s = *s << 4 | u32::from(l);
            }
        } else {
            for (k, (s, &l)) in out[..n].iter_mut().zip(lo).enumerate() {
                if l >= 16 {
                    n = k;
                    break;
                }
                *s = *s << 4 | u32::from(l);
            }
        }
        if n != read {
            self.hi.set_pos(start);
            self.hi.skip_varints(n);
        }
        self.lo.skip(n);
        n
    }

    /// Puts the cursors just after the first `used` sizes from `start`
    /// (`hi`'s and `lo`'s positions), when `read` were read since.
    #[inline(always)]
    fn back(&mut self, start: (usize, usize), used: usize, read: usize) {
        if used != read {
            self.hi.set_pos(start.0);
            self.hi.skip_varints(used);
            self.lo.set_pos(start.1 + if self.split { used } else { 0 });
        }
    }
}

impl Decoder<'_> {
    #[inline]
    fn addr(&mut self) -> Option<u64> {
        self.model.get_lit(&mut self.addrs)
    }

    #[inline]
    fn allocated(&mut self, size: u64, stack: u32) -> Option<u64> {
        self.model
            .get_allocated(&mut self.allocs, &mut self.addrs, size, stack)
    }

    #[inline]
    fn freed(&mut self) -> Option<u64> {
        self.model
            .get_freed((&mut self.frees, &mut self.frees_hi), &mut self.addrs)
            .map(|(a, _)| a)
    }

    #[inline]
    fn stack(&mut self) -> Option<u32> {
        u32::try_from(self.stacks.get()?).ok()
    }

    fn string(&mut self) -> Option<String> {
        let n = self.extra.get()? as usize;
        let b = self.extra.bytes(n)?;
        String::from_utf8(b.to_vec()).ok()
    }

    /// Decodes an event other than an allocation, free or realloc (those are
    /// written straight into the batch's columns by [`Decoder::event_into`]).
    #[inline]
    fn other_event(&mut self, opc: u8) -> Option<Event> {
        Some(match opc {
            op::MMAP => Event::Mmap {
                addr: self.addr()?,
                len: self.sizes.get()?,
                stack: self.stack()?,
                prot: u32::try_from(self.extra.get()?).ok()?,
                flags: u32::try_from(self.extra.get()?).ok()?,
                fd: i32::try_from(self.extra.get_signed()?).ok()?,
            },
            op::MUNMAP => Event::Munmap {
                addr: self.addr()?,
                len: self.sizes.get()?,
                stack: self.stack()?,
            },
            op::MREMAP => Event::Mremap {
                old_addr: self.addr()?,
                new_addr: self.addr()?,
                old_len: self.sizes.get()?,
                new_len: self.sizes.get()?,
                stack: self.stack()?,
            },
            op::BRK => Event::Brk {
                old_break: self.addr()?,
                new_break: self.addr()?,
                stack: self.stack()?,
            },
            op::THREAD_START => Event::ThreadStart {
                parent: u32::try_from(self.extra.get()?).ok()?,
            },
            op::THREAD_EXIT => Event::ThreadExit,
            op::FORK => Event::Fork {
                child_pid: u32::try_from(self.extra.get()?).ok()?,
            },
            op::EXEC => Event::Exec {
                path: self.string()?,
            },
            op::MODULE_LOAD => {
                let path = self.string()?;
                let base = self.extra.get()?;
                let start = self.extra.get()?;
                let end = self.extra.get()?;
                let n = self.extra.get()? as usize;
                let build_id = self.extra.bytes(n)?.to_vec();
                Event::ModuleLoad(Box::new(Module {
                    path,
                    base,
                    start,
                    end,
                    build_id,
                }))
            }
            op::MODULE_UNLOAD => Event::ModuleUnload {
                base: self.extra.get()?,
            },
            op::MARKER => Event::Marker {
                value: self.extra.get()?,
                label: self.string()?,
            },
            _ => return None,
        })
    }
}

impl BlockDecoder {
    /// Time of the next event, without decoding it; `None` when the block has
    /// no event left.
    pub fn peek_time(&self) -> Result<Option<u64>, String> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let (a, b) = self.bounds[1];
        let dt = Cursor::at(&self.payload[a..b], self.pos[1])
            .get()
            .ok_or("events block: times column ended early")?;
        self.time
            .checked_add(dt)
            .map(Some)
            .ok_or_else(|| TIME_OVERFLOW.to_string())
    }

    /// Decodes up to `max` more events into `out` (and no more than it has
    /// room for), stopping before the first whose time is not below `limit`
    /// (so a reader merging threads can stop where another thread's next
    /// event comes first). Returns the number of events decoded, thread
    /// column included. On error, the events before the bad one are in `out`,
    /// and [`BlockDecoder::peek_time`] then gives the bad event's time if
    /// the event itself is bad (its opcode or a value), an error if its time
    /// is cut, and `None` if the block was used up with column bytes left
    /// over; after [`TIME_OVERFLOW`], it reads on past the bad time.
    /// Checks, when the block is used up, that every column was consumed
    /// exactly.
    pub fn decode_into(
        &mut self,
        model: &mut AddrModel,
        out: &mut EventBatch,
        limit: u128,
        max: usize,
    ) -> Result<usize, String> {
        let start = out.len();
        let col = |i: usize| {
            let (a, b) = self.bounds[i];
            Cursor::at(&self.payload[a..b], self.pos[i])
        };
        // Times first, in a tight loop of their own (one per event): they
        // decide how many events this run takes.
        let mut times = col(1);
        let mut time = self.time;
        let mut result = Ok(());
        let slots = out.free_times();
        let n = (self.remaining as usize).min(max).min(slots.len());
        let mut m = 0;
        // `limit` as a u64 bound, unless it is above every time.
        let unlimited = limit > u64::MAX as u128;
        let limit = limit.min(u64::MAX as u128) as u64;
        let slots = &mut slots[..n];
        while m < n {
            // Eight deltas at a time: one load finds how many of them, from
            // the first, take one byte (all eight in most of a trace; about
            // three when clock readings are ~200 ns apart). Those are summed
            // with no overflow check per event (eight bytes add below 2048)
            // and one limit check, on the last (times do not decrease); a
            // two-byte delta after them is taken from the same load, and a
            // longer one read alone below.
            if let (Some(bytes), Some(chunk)) = (
                times.peek8(),
                slots.get_mut(m..).and_then(|s| s.first_chunk_mut::<8>()),
            ) {
                if time <= u64::MAX - (1 << 15) {
                    let w = u64::from_le_bytes(*bytes);
                    let ones = (w & 0x8080_8080_8080_8080).trailing_zeros() as usize / 8;
                    // Past `ones`, the sums are meaningless: later events
                    // overwrite them.
                    let mut t = time;
                    for (slot, &b) in chunk.iter_mut().zip(bytes) {
                        t += b as u64;
                        *slot = t;
                    }
                    let last = ones.checked_sub(1).and_then(|i| chunk.get(i));
                    // `< u64::MAX`: right whether or not `limit` is unlimited.
                    if last.is_some_and(|&t| t >= limit) {
                        // The run ends within these.
                        let k = chunk.iter().take(ones).take_while(|&&t| t < limit).count();
                        if let Some(&t) = k.checked_sub(1).and_then(|i| chunk.get(i)) {
                            time = t;
                        }
                        m += k;
                        times.skip(k);
                        break;
                    }
                    if let Some(&t) = last {
                        time = t;
                    }
                    m += ones;
                    times.skip(ones);
                    // Bytes `ones` and `ones + 1` of the word: a two-byte
                    // delta if the second ends it.
                    let x = w.checked_shr(8 * ones as u32).unwrap_or(0);
                    if ones < 7 && x & 0x8000 == 0 {
                        let t = time + ((x & 0x7f) | ((x >> 1) & 0x3f80));
                        if t >= limit {
                            break;
                        }
                        if let Some(slot) = chunk.get_mut(ones) {
                            *slot = t;
                        }
                        time = t;
                        m += 1;
                        times.skip(2);
                        continue;
                    }
                    if ones == 8 {
                        // A run of one-byte deltas: sixteen at a time while
                        // it lasts, with one test of the bytes and one of
                        // the limit (on the last).
                        while let (Some(bytes), Some(chunk)) = (
                            times.peek16(),
                            slots.get_mut(m..).and_then(|s| s.first_chunk_mut::<16>()),
                        ) {
                            if u128::from_le_bytes(*bytes) & (0x80 * (u128::MAX / 0xff)) != 0
                                || time > u64::MAX - (1 << 15)
                            {
                                break;
                            }
                            let mut t = time;
                            for (slot, &b) in chunk.iter_mut().zip(bytes) {
                                t += b as u64;
                                *slot = t;
                            }
                            if t >= limit {
                                break;
                            }
                            time = t;
                            m += 16;
                            times.skip(16);
                        }
                        continue;
                    }
                }
            }
            let before = times.pos();
            let Some(dt) = times.get() else {
                result = Err("events block: times column ended early".to_string());
                break;
            };
            let Some(t) = time.checked_add(dt) else {
                result = Err(TIME_OVERFLOW.to_string());
                break;
            };
            if t >= limit && !unlimited {
                times.set_pos(before);
                break;
            }
            if let Some(slot) = slots.get_mut(m) {
                *slot = t;
            }
            time = t;
            m += 1;
        }
        let (a, b) = self.bounds[0];
        let ops = &self.payload[a..b];
        let ops = ops.get(self.pos[0]..).unwrap_or_default();
        let ops = &ops[..m.min(ops.len())];
        let mut d = Decoder {
            addrs: col(2),
            frees: col(3),
            frees_hi: col(4),
            allocs: col(5),
            sizes: Sizes {
                hi: col(6),
                lo: col(9),
                split: self.split,
            },
            stacks: col(7),
            extra: col(8),
            model,
        };
        let (mut slots, scratch) = out.slots_and_scratch(start);
        // Runs of plain mallocs and frees on the fast path; any other event,
        // or one the fast path finds bad, the general way (which reports it).
        let (mut done, mut general_until) = (0, 0);
        loop {
            // (Only from a plain malloc or free, and not again within a run
            // too short for it: a trace may hold few.)
            if self.fast
                && done >= general_until
                && matches!(ops.get(done), Some(&(op::ALLOC | op::FREE)))
            {
                let (k, short) = d.fast_runs(
                    ops.get(done..).unwrap_or_default(),
                    &mut slots,
                    scratch,
                    done,
                );
                done += k;
                general_until = done + short;
            }
            let Some(&opc) = ops.get(done) else { break };
            if d.event_into(opc, &mut slots, done).is_none() {
                break;
            }
            done += 1;
        }
        if let Some(&opc) = ops.get(done) {
            result = Err(format!(
                "events block: bad or cut event with opcode {opc:#04x}"
            ));
        }
        if done < m {
            // Stopped by a bad event: the times column goes back to just
            // after the last good one (the error ends the trace anyway).
            let mut again = col(1);
            time = self.time;
            for _ in 0..done {
                time = time.saturating_add(again.get().unwrap_or_default());
            }
            times = again;
        }
        out.set_len(start + done, self.thread);
        out.truncate(start + done);
        let cursors = [
            &d.addrs,
            &d.frees,
            &d.frees_hi,
            &d.allocs,
            &d.sizes.hi,
            &d.stacks,
            &d.extra,
            &d.sizes.lo,
        ];
        self.pos[0] += done;
        self.pos[1] = times.pos();
        for (p, c) in self.pos[2..].iter_mut().zip(cursors) {
            *p = c.pos();
        }
        let all_used = cursors.iter().all(|c| c.is_empty())
            && times.is_empty()
            && self.pos[0] == self.bounds[0].1 - self.bounds[0].0;
        self.time = time;
        self.remaining -= done as u64;
        result?;
        if self.remaining == 0 && !all_used {
            return Err("events block: columns hold more values than the events use".into());
        }
        Ok(done)
    }
}

/// Fewest plain mallocs and frees in a row that take the fast path
/// ([`Decoder::fast_runs`]); shorter runs cost less the general way.
const MIN_RUN: usize = 16;

/// The length of the run of plain mallocs and frees (opcodes `0x00` and
/// `0x20`) at the start of `ops`, and how many of them are mallocs.
#[inline]
fn malloc_free_prefix(ops: &[u8]) -> (usize, usize) {
    const FREES: u64 = 0x2020_2020_2020_2020;
    let (mut n, mut mallocs) = (0, 0);
    // Eight at a time: each byte 0x00 or 0x20.
    while let Some(w) = ops.get(n..).and_then(|s| s.first_chunk::<8>()) {
        let w = u64::from_le_bytes(*w);
        if w & !FREES != 0 {
            break;
        }
        // The frees' bits, one per byte, summed into the top byte.
        let frees = ((w >> 5).wrapping_mul(0x0101_0101_0101_0101) >> 56) as usize;
        mallocs += 8 - frees;
        n += 8;
    }
    while let Some(&b) = ops.get(n) {
        if b & !op::FREE != 0 {
            break;
        }
        mallocs += usize::from(b == op::ALLOC);
        n += 1;
    }
    (n, mallocs)
}

impl Decoder<'_> {
    /// Decodes the plain mallocs and frees (the bulk of most traces) at the
    /// start of `ops` into slots from `at` on, [`Scratch::RUN`] at a time:
    /// see [`Decoder::fast_run`]. Returns how many it decoded.
    #[inline(never)]
    fn fast_runs(
        &mut self,
        ops: &[u8],
        out: &mut Slots,
        sc: &mut Scratch,
        at: usize,
    ) -> (usize, usize) {
        let mut done = 0;
        loop {
            let run = ops.get(done..).unwrap_or_default();
            let run = &run[..run.len().min(Scratch::RUN)];
            let (k, short) = self.fast_run(run, out, sc, at + done);
            done += k;
            if k < Scratch::RUN {
                return (done, short);
            }
        }
    }

    /// Decodes the plain mallocs and frees at the start of `ops` (at most
    /// [`Scratch::RUN`]) into slots from `at` on. Each column's values for
    /// the run are read first in a loop of their own (stacks straight into
    /// the slots, the rest into `sc`), so the event loop finds them with no
    /// cursor, length test or error case. Returns how many events it
    /// decoded: it stops before any other event, and before an event it
    /// cannot decode, which it leaves untouched (address model and cursors
    /// as after the events before it) for [`Decoder::event_into`] to decode
    /// or report. Events it decodes come out exactly as `event_into` would
    /// decode them.
    #[inline(always)]
    fn fast_run(
        &mut self,
        ops: &[u8],
        out: &mut Slots,
        sc: &mut Scratch,
        at: usize,
    ) -> (usize, usize) {
        let (n, mallocs) = malloc_free_prefix(ops);
        if n < MIN_RUN {
            // Too short to pay for the columns' loops: the general path's.
            return (0, n);
        }
        let frees = n - mallocs;
        let starts = [
            self.stacks.pos(),
            self.sizes.hi.pos(),
            self.allocs.pos(),
            self.frees.pos(),
            self.frees_hi.pos(),
        ];
        let sizes_lo = self.sizes.lo.pos();
        // The run's opcodes and stacks where the event loop reads them, at
        // the index of each event's slot in the batch.
        let j0 = out.index(at);
        let Some(run_ops) = sc.ops.get_mut(j0..j0 + n) else {
            return (0, n);
        };
        run_ops.copy_from_slice(&ops[..n]);
        out.clear_aux(j0, n);
        let got_stacks = self.stacks.get_u32s(out.stacks_mut(at, n), u32::MAX);
        let got_sizes = self.sizes.get_u32s(&mut sc.size[..mallocs]);
        let got_allocs = self.allocs.get_u32s(&mut sc.alloc[..mallocs], u32::MAX);
        // Free codes: the high part's varints, then the low bytes put in
        // (a code above `u32::MAX` is left to the general path).
        let got_hi = self.frees_hi.get_u32s(&mut sc.free[..frees], 0xff_ffff);
        let lo = self.frees.rest();
        let got_frees = got_hi.min(lo.len());
        for (c, &l) in sc.free[..got_frees].iter_mut().zip(lo) {
            *c = *c << 8 | l as u32;
        }
        self.frees.skip(got_frees);
        // Only the events whose values were all read (all of them, but in
        // a damaged block).
        let mut n = n;
        if got_stacks < n || got_sizes.min(got_allocs) < mallocs || got_frees < frees {
            let (mut a, mut f) = (0, 0);
            n = 0;
            for &opc in &ops[..got_stacks.min(ops.len())] {
                if opc == op::ALLOC {
                    if a >= got_sizes.min(got_allocs) {
                        break;
                    }
                    a += 1;
                } else {
                    if f >= got_frees {
                        break;
                    }
                    f += 1;
                }
                n += 1;
            }
        }
        let (i, a, f) = fast_events(&mut *self.model, &mut self.addrs, out, sc, j0, n);
        // Cursors just after the values of the events decoded (where they
        // are already, but in a damaged block).
        let back = |c: &mut Cursor, start: usize, used: usize, read: usize| {
            if used != read {
                c.set_pos(start);
                c.skip_varints(used);
            }
        };
        back(&mut self.stacks, starts[0], i, got_stacks);
        self.sizes.back((starts[1], sizes_lo), a, got_sizes);
        back(&mut self.allocs, starts[2], a, got_allocs);
        back(&mut self.frees_hi, starts[4], f, got_hi);
        if f != got_frees {
            self.frees.set_pos(starts[3] + f);
        }
        (i, 0)
    }
}

/// The event loop of [`Decoder::fast_run`]: decodes the events at indexes
/// `j0..j0 + n` of the batch from the run's values in `sc` (literal
/// addresses from `lits`), stopping before a bad one; returns how many it
/// decoded, and how many of them are mallocs and frees. Out of line, so the
/// run's bookkeeping around it (column starts, counts read) does not
/// compete with it for registers.
#[inline(never)]
fn fast_events(
    m: &mut AddrModel,
    lits: &mut Cursor,
    out: &mut Slots,
    sc: &Scratch,
    j0: usize,
    n: usize,
) -> (usize, usize, usize) {
    const MASK: usize = Scratch::RUN - 1;
    // Mallocs and frees taken so far; `j` is the event's index in the
    // batch (and in `sc.ops`).
    let (mut a, mut f) = (0, 0);
    let mut j = j0;
    let end = j0 + n;
    // A branch tells mallocs from frees, mispredicted where they mix
    // unpredictably (half the time in a random churn). One branch-free step
    // doing both kinds' work with selects (`select_unpredictable`; both
    // read and write one live-table slot and one class-stack slot) was
    // tried: about 90 instructions more per event, and slower than the
    // mispredictions it saved (churn 0.86 -> 1.1 s of CPU per 60 M events).
    while j < end {
        let st = out.stack_at(j);
        if sc.ops[j & (EventBatch::CAPACITY - 1)] == op::ALLOC {
            let size = u64::from(sc.size[a & MASK]);
            let c = class(size);
            let code = sc.alloc[a & MASK];
            // The usual allocation: an entry of its class stack (at any
            // depth, without a branch on it: see `remove_order`) into
            // an empty slot of the live table.
            let k = code.wrapping_sub(2);
            let addr = match m.live.get_mut(m.free_head as usize) {
                Some(e) if k < RING as u32 => {
                    let order = m.order[c];
                    let s = order_slot(order, k);
                    let x = m.rings[c][s];
                    if x == 0 {
                        break;
                    }
                    m.rings[c][s] = 0;
                    m.order[c] = remove_order(order, k);
                    m.free_head = e.1;
                    *e = (x, c as u32, st);
                    x
                }
                // A literal (see `allocated_literal`).
                _ if code == 0 => {
                    let p = lits.pos();
                    let Some(x) = m.get_lit(lits) else {
                        lits.set_pos(p);
                        break;
                    };
                    if x != 0 {
                        m.push_live(x, c, st);
                    }
                    x
                }
                // Another code, or no empty slot.
                _ => {
                    let Some(x) = m.allocated_other(code, lits, c) else {
                        break;
                    };
                    if x != 0 {
                        m.push_live(x, c, st);
                    }
                    x
                }
            };
            out.set_kind_addr_at(j, Kind::Alloc(AllocFn::Malloc), addr);
            out.set_size_at(j, size);
            a += 1;
        } else {
            let code = sc.free[f & MASK];
            // The live-table entry of the free eight frees on starts loading
            // now (with a table too large for the core's cache, most frees
            // wait for theirs: churn 20 M, 10,000 live, decoding -5.6 % with
            // a plain load in its place, which cost 4 % with 100,000 live; a
            // prefetch does not stall). Past the run's frees, or for a
            // literal (code 0), it names some other address: harmless.
            let ahead = sc.free[(f + 8) & MASK].wrapping_sub(1) as usize;
            crate::hint::prefetch(m.live.as_ptr().wrapping_add(ahead));
            let (addr, stack) = if code != 0 {
                // Every test before any change (see `take_live` and
                // `free_stack_decode`).
                let idx = (code - 1) as usize;
                let Some(e) = m.live.get_mut(idx) else { break };
                let (x, cls, alloc_stack) = *e;
                if x == 0 {
                    break;
                }
                let site = &mut m.free_site[alloc_stack as usize % FREE_SITES];
                let stack = if st == 0 {
                    if site.0 != alloc_stack {
                        break;
                    }
                    site.1
                } else {
                    *site = (alloc_stack, st - 1);
                    st - 1
                };
                e.0 = 0;
                e.1 = m.free_head;
                m.free_head = idx as u32;
                m.push_freed(x, Some(cls));
                (x, stack)
            } else {
                let Some(x) = m.freed_literal(st, lits) else {
                    break;
                };
                (x, st - 1)
            };
            out.set_kind_addr_at(j, Kind::Free(FreeFn::Free), addr);
            out.set_size_at(j, 0);
            out.set_stack_at(j, stack);
            f += 1;
        }
        j += 1;
    }
    (j - j0, a, f)
}

impl Decoder<'_> {
    /// Decodes one event with opcode `opc` at `time` into `out`'s columns.
    /// `None` when the event is bad or cut (slot `i` is then left as it was;
    /// the caller truncates).
    #[inline(always)]
    fn event_into(&mut self, opc: u8, out: &mut Slots, i: usize) -> Option<()> {
        // Plain malloc and free first, each with one compare: the bulk of
        // every trace.
        if opc == op::ALLOC {
            let size = self.sizes.get()?;
            let stack = self.stack()?;
            let addr = self.allocated(size, stack)?;
            out.set(i, Kind::Alloc(AllocFn::Malloc), addr, 0, size, stack);
            return Some(());
        }
        if opc == op::FREE {
            // One branch on how the address is coded; from the live table
            // (the usual case), the allocation stack is known.
            let code = get_split(&mut self.frees, &mut self.frees_hi)?;
            let m = &mut *self.model;
            let (addr, stack) = if code != 0 {
                let (a, c, alloc_stack) = m.take_live((code - 1) as usize)?;
                m.push_freed(a, Some(c));
                let code = self.stacks.get()?;
                (a, m.free_stack_decode(Some(alloc_stack), code)?)
            } else {
                let a = m.get_lit(&mut self.addrs)?;
                m.push_freed(a, None);
                let code = self.stacks.get()?;
                (a, m.free_stack_decode(None, code)?)
            };
            out.set(i, Kind::Free(FreeFn::Free), addr, 0, 0, stack);
            return Some(());
        }
        match opc {
            0x01..=0x10 => {
                let func = AllocFn::from_u8(opc)?;
                if matches!(func, AllocFn::Realloc | AllocFn::Reallocarray) {
                    return None;
                }
                let size = self.sizes.get()?;
                let stack = self.stack()?;
                let addr = self.allocated(size, stack)?;
                let align = if func.is_aligned() {
                    self.extra.get()?
                } else {
                    0
                };
                out.set(i, Kind::Alloc(func), addr, align, size, stack);
            }
            0x21..=0x2c => {
                let func = FreeFn::from_u8(opc - op::FREE)?;
                let (addr, alloc_stack) = self
                    .model
                    .get_freed((&mut self.frees, &mut self.frees_hi), &mut self.addrs)?;
                let code = self.stacks.get()?;
                let stack = self.model.free_stack_decode(alloc_stack, code)?;
                let size = if is_sized_delete(func) {
                    self.sizes.get()?
                } else {
                    0
                };
                let align = if func.is_aligned() {
                    self.extra.get()?
                } else {
                    0
                };
                out.set(i, Kind::Free(func), addr, align, size, stack);
            }
            op::REALLOC | op::REALLOCARRAY => {
                let old_addr = self.freed()?;
                let size = self.sizes.get()?;
                let func = if opc == op::REALLOC {
                    AllocFn::Realloc
                } else {
                    AllocFn::Reallocarray
                };
                let stack = self.stack()?;
                let new_addr = self.allocated(size, stack)?;
                out.set(i, Kind::Realloc(func), new_addr, old_addr, size, stack);
            }
            _ => {
                let ev = self.other_event(opc)?;
                out.set_event(i, ev);
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Record;

    /// Allocation code 2 takes the top of the request's class stack, code
    /// `k + 2` the `k`-th entry; either is an error on an empty entry.
    #[test]
    fn allocation_codes_take_class_stack_entries() {
        let mut m = AddrModel::default();
        let mut lits = Cursor::new(&[]);
        assert_eq!(m.allocated_code(2, &mut lits, 24, 0), None, "empty stack");
        for a in [0x100u64, 0x200, 0x300] {
            m.push_live(a, class(24), 5);
        }
        for code in [1, 2, 3] {
            assert_eq!(
                m.freed_code(code, &mut lits),
                Some(([0x100, 0x200, 0x300][code as usize - 1], Some(5)))
            );
        }
        // Stack of class(24), top first: 0x300, 0x200, 0x100.
        assert_eq!(m.allocated_code(2, &mut lits, 40, 0), None, "other class");
        assert_eq!(m.allocated_code(3, &mut lits, 24, 6), Some(0x200));
        assert_eq!(m.allocated_code(2, &mut lits, 24, 6), Some(0x300));
        assert_eq!(m.allocated_code(2, &mut lits, 24, 6), Some(0x100));
        assert_eq!(m.allocated_code(2, &mut lits, 24, 6), None, "used up");
        assert_eq!(m.allocated_code(3, &mut lits, 24, 6), None);
    }

    /// Emptied live-table slots are refilled last emptied first, then the
    /// table grows; a full table is cleared.
    #[test]
    fn empty_live_slots_are_reused_as_a_stack() {
        let mut m = AddrModel::default();
        for a in 1..=4u64 {
            assert_eq!(m.push_live(a * 16, 1, a as u32), (a as u32 - 1, false));
        }
        assert_eq!(m.take_live(1), Some((32, 1, 2)));
        assert_eq!(m.take_live(1), None, "slot 1 is empty");
        assert_eq!(m.take_live(3), Some((64, 1, 4)));
        assert_eq!(m.take_live(0), Some((16, 1, 1)));
        assert_eq!(m.take_live(9), None, "beyond the table");
        assert_eq!(m.push_live(0x100, 2, 7), (0, false));
        assert_eq!(m.push_live(0x200, 2, 8), (3, false));
        assert_eq!(m.take_live(3), Some((0x200, 2, 8)));
        assert_eq!(m.push_live(0x300, 2, 9), (3, false));
        assert_eq!(m.push_live(0x400, 2, 10), (1, false));
        assert_eq!(m.push_live(0x500, 2, 11), (4, false));
        assert_eq!(m.take_live(2), Some((48, 1, 3)));
        while m.live.len() < LIVE_CAP {
            m.push_live(0x1000, 3, 0);
        }
        // Slot 2 was empty: filled before the table is full.
        assert_eq!(m.live[2], (0x1000, 3, 0));
        assert_eq!(m.push_live(0x600, 4, 12), (0, true));
        assert_eq!(m.live.len(), 1);
        assert_eq!(m.take_live(0), Some((0x600, 4, 12)));
        assert_eq!(m.push_live(0x700, 4, 13), (0, false));
    }

    #[test]
    fn class_stack_depth_follows_pushes_and_removals() {
        // A stack's depth is only known from its empty (0) entries: check it
        // against a plain vector through pushes past the capacity, removals
        // from every depth, and pops of the top.
        let mut m = AddrModel::default();
        let mut want: Vec<u64> = Vec::new(); // top last
        let mut rng = crate::synthetic::Rng::new(5);
        let c = 7;
        for step in 0..20_000u64 {
            match rng.next_u64() % 3 {
                0 | 1 => {
                    let a = 0x1000 + step * 16;
                    m.push_freed(a, Some(c as u32));
                    want.push(a);
                    if want.len() > RING {
                        want.remove(0);
                    }
                }
                _ => {
                    let k = rng.range(0, RING as u64 + 1) as usize;
                    let expect = want.len().checked_sub(k + 1).map(|i| want[i]);
                    assert_eq!(m.ring_get(c, k), expect, "step {step} k {k}");
                    if let Some(a) = expect {
                        if k == 0 && step % 2 == 0 {
                            m.pop_if_top(c, a);
                        } else {
                            m.ring_remove(c, k);
                        }
                        want.remove(want.len() - 1 - k);
                    }
                }
            }
            for k in 0..=RING {
                let expect = want.len().checked_sub(k + 1).map(|i| want[i]);
                assert_eq!(m.ring_get(c, k), expect, "step {step} depth {k}");
            }
        }
        // Address 0 never pops an empty stack's top.
        let mut m = AddrModel::default();
        m.pop_if_top(3, 0);
        assert_eq!(m.ring_get(3, 0), None);
    }

    /// Encodes ThreadExit events at `times` (one thread) into one block.
    fn times_block(times: &[u64]) -> Vec<u8> {
        let mut enc = BlockEncoder::new(3);
        for &t in times {
            enc.push(t, &Event::ThreadExit);
        }
        enc.finish()
    }

    #[test]
    fn times_decode_eight_at_a_time_up_to_any_limit() {
        // One-byte deltas in long runs (the eight-at-a-time path), broken by
        // wider ones at every offset, rarely (synthetic) or often (real
        // clocks: runs of about three); start times near the top of the
        // range, where eight deltas could overflow.
        let mut rng = crate::synthetic::Rng::new(9);
        let starts = [
            0u64,
            1000,
            u64::MAX - 3000,
            u64::MAX - 2050,
            u64::MAX - 1030,
        ];
        for (start, wide) in starts.iter().flat_map(|&s| [(s, 0), (s, 1), (s, 5)]) {
            let mut times = vec![start];
            let mut t = start;
            for i in 0..300u64 {
                let r = rng.next_u64() % 16;
                let d = match r {
                    0 if wide > 1 => 20000 + i,
                    _ if r < wide => 128 + i,
                    _ if r == wide => 0,
                    _ => rng.next_u64() % 128,
                };
                t = t.saturating_add(d);
                times.push(t);
            }
            let block = times_block(&times);
            let mut limits: Vec<u128> = times.iter().map(|&t| t as u128).collect();
            limits.extend(times.iter().map(|&t| t as u128 + 1));
            limits.extend([0, u64::MAX as u128, u64::MAX as u128 + 1, u128::MAX]);
            for (li, &limit) in limits.iter().enumerate() {
                let max = [1, 3, 7, 8, 9, 64, 4096][li % 7];
                let mut dec = BlockDecoder::new(block.clone()).unwrap();
                let mut model = AddrModel::default();
                let mut got = Vec::new();
                let mut batch = EventBatch::new();
                loop {
                    batch.clear();
                    let k = dec.decode_into(&mut model, &mut batch, limit, max).unwrap();
                    got.extend_from_slice(batch.times());
                    assert_eq!(dec.peek_time().unwrap(), times.get(got.len()).copied());
                    if k == 0 {
                        break;
                    }
                }
                let want: Vec<u64> = times
                    .iter()
                    .copied()
                    .take_while(|&t| (t as u128) < limit)
                    .collect();
                assert_eq!(got, want, "start {start} limit {limit} max {max}");
                // The rest, unlimited.
                batch.clear();
                dec.decode_into(&mut model, &mut batch, u128::MAX, 4096)
                    .unwrap();
                got.extend_from_slice(batch.times());
                assert_eq!(got, times);
                assert_eq!(dec.remaining(), 0);
            }
        }
    }

    #[test]
    fn times_column_cut_or_overflowing_is_an_error() {
        // ThreadExit events use no column but ops and times, which end the
        // payload: the times column is its last 20 bytes (zero deltas).
        let mut b = times_block(&[5; 20]);
        let mut big = times_block(&[u64::MAX - 5; 20]);
        // The 12th delta becomes 9: the time overflows.
        let times_at = big.len() - 20;
        big[times_at + 11] = 9;
        let mut dec = BlockDecoder::new(big).unwrap();
        let mut batch = EventBatch::new();
        let err = dec
            .decode_into(&mut AddrModel::default(), &mut batch, u128::MAX, 4096)
            .unwrap_err();
        assert!(err.contains("overflow"), "{err}");
        assert_eq!(batch.len(), 11);
        // A times column whose last varint is cut: events before it decode.
        let times_at = b.len() - 20;
        let last = b.len() - 1;
        b[last] = 0x80;
        assert_eq!(b[times_at], 0);
        let mut dec = BlockDecoder::new(b).unwrap();
        let mut batch = EventBatch::new();
        let err = dec
            .decode_into(&mut AddrModel::default(), &mut batch, u128::MAX, 4096)
            .unwrap_err();
        assert!(err.contains("ended early"), "{err}");
        assert_eq!(batch.len(), 19);
    }

    /// Churn with now and then another event, an unknown address, a failed
    /// allocation, a wide stack or size, or a double free.
    fn mixed_events(seed: u64, n: u64) -> Vec<(u64, Event)> {
        use crate::synthetic::{Churn, ChurnConfig};
        let cfg = ChurnConfig {
            events: n,
            working_set: 1 + (seed as usize * 37) % 300,
            sizes: (1, if seed % 3 == 0 { 1 << 20 } else { 600 }),
            sites: 100,
            depth: (1, 3),
            seed,
        };
        let mut rng = crate::synthetic::Rng::new(seed ^ 0x5eed);
        let odds = 2 + seed % 40;
        let mut out = Vec::new();
        let mut last_free = 0;
        for r in Churn::new(cfg) {
            let mut ev = r.event;
            if rng.next_u64() % odds == 0 {
                let stack = [0, 5, 200, 70_000, u32::MAX][(rng.next_u64() % 5) as usize];
                let addr = 0x7000_0000
                    + (rng.next_u64() % (1 << 20)) * [1, 16][(rng.next_u64() % 2) as usize];
                let extra = match rng.next_u64() % 10 {
                    0 => Event::Alloc {
                        func: AllocFn::Calloc,
                        addr,
                        size: u64::MAX - rng.range(0, 3),
                        align: 0,
                        stack,
                    },
                    1 => Event::Free {
                        func: [FreeFn::Delete, FreeFn::DeleteSized][(rng.next_u64() % 2) as usize],
                        addr,
                        size: 24,
                        align: 0,
                        stack,
                    },
                    2 => Event::Realloc {
                        func: AllocFn::Realloc,
                        old_addr: last_free,
                        new_addr: addr,
                        size: 40,
                        stack,
                    },
                    3 => Event::Marker {
                        value: 7,
                        label: "m".into(),
                    },
                    4 => Event::Free {
                        func: FreeFn::Free,
                        addr: [addr, last_free, 0][(rng.next_u64() % 3) as usize],
                        size: 0,
                        align: 0,
                        stack,
                    },
                    5 => Event::Alloc {
                        func: AllocFn::Malloc,
                        addr: [0, addr, last_free][(rng.next_u64() % 3) as usize],
                        size: [0, 1 << 14, 1 << 30, u64::MAX][(rng.next_u64() % 4) as usize],
                        align: 0,
                        stack,
                    },
                    _ => {
                        // The churn event itself, with a wide stack.
                        if let Event::Alloc { stack: s, .. } | Event::Free { stack: s, .. } =
                            &mut ev
                        {
                            *s = stack;
                        }
                        ev.clone()
                    }
                };
                out.push((r.time, extra));
            }
            if let Event::Free { addr, .. } = ev {
                last_free = addr;
            }
            out.push((r.time, ev));
        }
        out
    }

    /// Decodes `block` with the fast path on or off, in steps of random
    /// sizes and limits, into batches that do not start empty; returns every
    /// observation (events, results, peeked times).
    fn observe(block: &[u8], model: &mut AddrModel, fast: bool, seed: u64) -> Vec<String> {
        let mut seen = Vec::new();
        let Ok(mut dec) = BlockDecoder::new(block.to_vec()) else {
            seen.push("bad header".to_string());
            return seen;
        };
        dec.fast = fast;
        let mut rng = crate::synthetic::Rng::new(seed);
        let mut batch = EventBatch::new();
        for _ in 0..10_000 {
            batch.clear();
            let pre = (rng.next_u64() % 3) as usize * 700;
            for _ in 0..pre {
                batch.push_record(&Record {
                    time: 0,
                    thread: 9,
                    event: Event::ThreadExit,
                });
            }
            let max = [1, 5, 300, 4096][(rng.next_u64() % 4) as usize];
            let limit = match (rng.next_u64() % 3, dec.peek_time()) {
                (0, Ok(Some(t))) => t as u128 + (rng.next_u64() % 500) as u128,
                _ => u128::MAX,
            };
            let r = dec.decode_into(model, &mut batch, limit, max);
            seen.push(format!("{r:?} {:?} {}", dec.peek_time(), dec.remaining()));
            seen.extend((pre..batch.len()).map(|i| format!("{:?}", batch.record(i))));
            match r {
                Ok(0) if dec.remaining() == 0 => break,
                Err(_) => break,
                _ => {}
            }
        }
        seen
    }

    /// Plain mallocs of 4 GiB and more (whole and split sizes) end the
    /// fast path's runs: the general path decodes them, the same events
    /// come out either way.
    #[test]
    fn huge_malloc_sizes_decode_as_the_general_path() {
        for whole in [false, true] {
            let mut enc = BlockEncoder::new(1);
            enc.whole_sizes(whole);
            for i in 0..200u64 {
                let size = match i % 50 {
                    20 => 1 << 32,
                    21 => (1 << 32) - 1,
                    22 => 5 << 30,
                    23 => (u32::MAX as u64 >> 4) << 4 | 15,
                    _ => 16 + i % 48,
                };
                enc.push(
                    i,
                    &Event::Alloc {
                        func: AllocFn::Malloc,
                        addr: 0x1000 + i * 0x100,
                        size,
                        align: 0,
                        stack: 1 + (i % 3) as u32,
                    },
                );
                if i % 3 == 2 {
                    enc.push(
                        i,
                        &Event::Free {
                            func: FreeFn::Free,
                            addr: 0x1000 + (i - 1) * 0x100,
                            size: 0,
                            align: 0,
                            stack: 4,
                        },
                    );
                }
            }
            let block = enc.finish();
            let (mut fast, mut slow) = (AddrModel::default(), AddrModel::default());
            let want = observe(&block, &mut slow, false, 3);
            assert_eq!(observe(&block, &mut fast, true, 3), want, "whole {whole}");
            assert!(want.iter().any(|e| e.contains("size: 4294967296")));
        }
    }

    #[test]
    fn fast_path_decodes_as_the_general_path() {
        // Whole blocks, then damaged ones: the same events, errors, peeked
        // times and address model either way.
        for seed in 0..40u64 {
            let events = mixed_events(seed, 3000);
            let mut enc = BlockEncoder::new(1);
            let mut blocks = Vec::new();
            let mut rng = crate::synthetic::Rng::new(seed);
            for (t, ev) in &events {
                enc.push(*t, ev);
                if rng.next_u64() % 1500 == 0 {
                    blocks.push(enc.finish());
                }
            }
            blocks.push(enc.finish());
            let (mut fast, mut slow) = (AddrModel::default(), AddrModel::default());
            for (b, block) in blocks.iter().enumerate() {
                let want = observe(block, &mut slow, false, seed + b as u64);
                let got = observe(block, &mut fast, true, seed + b as u64);
                assert_eq!(got, want, "seed {seed} block {b}");
                for cut in 0..12u64 {
                    let mut damaged = block.clone();
                    let at = (rng.next_u64() % damaged.len().max(1) as u64) as usize;
                    match cut % 3 {
                        0 => damaged[at] ^= 1 << (rng.next_u64() % 8),
                        1 => {
                            damaged[at] =
                                [0x00, 0x01, 0x20, 0x80, 0xff][(rng.next_u64() % 5) as usize]
                        }
                        _ => damaged.truncate(at),
                    }
                    let (mut f, mut s) = (fast.clone(), slow.clone());
                    let want = observe(&damaged, &mut s, false, cut);
                    let got = observe(&damaged, &mut f, true, cut);
                    assert_eq!(got, want, "seed {seed} block {b} damage {cut} at {at}");
                }
            }
            // The models agree: a block decoded after them reads the same.
            let block = blocks.last().cloned().unwrap_or_default();
            assert_eq!(
                observe(&block, &mut fast, false, 1),
                observe(&block, &mut slow, false, 1)
            );
        }
    }

    /// Events of a LIFO allocator whose allocations take their class
    /// stack's entry at every depth (past [`RING`] too), in many or few
    /// classes, with frees of the last freed address, double frees,
    /// unknown addresses, address 0, reuse of live addresses and a live
    /// set that outgrows [`LIVE_CAP`] now and then.
    fn class_stack_events(seed: u64, n: usize) -> Vec<(u64, Event)> {
        let mut rng = crate::synthetic::Rng::new(seed);
        let classes = [1u64, 3, 66][(seed % 3) as usize];
        let mut freed: Vec<Vec<u64>> = vec![Vec::new(); CLASSES];
        let mut live: Vec<(u64, u64)> = Vec::new();
        let (mut next, mut last_freed, mut time) = (0x10_0000u64, 0u64, 0u64);
        let grow = seed % 4 == 0;
        let mut out = Vec::new();
        for _ in 0..n {
            time += rng.next_u64() % 50;
            let stack = [1, 2, 3, 0, u32::MAX][(rng.next_u64() % 5).min(4) as usize];
            let r = rng.next_u64() % 100;
            let alloc = if grow && live.len() < LIVE_CAP + 3000 {
                r < 80
            } else {
                r < 50
            };
            if alloc {
                let size = match rng.next_u64() % 30 {
                    0 => 0,
                    1 => u64::MAX,
                    2 => 1 << 30,
                    _ => (rng.next_u64() % classes) * 16 + rng.next_u64() % 16,
                };
                let c = class(size);
                let addr = match rng.next_u64() % 20 {
                    0 => last_freed,
                    1 => 0,
                    2 if !live.is_empty() => live[(rng.next_u64() % live.len() as u64) as usize].0,
                    3..=14 if !freed[c].is_empty() => {
                        let d = (rng.next_u64() % (RING as u64 + 4)) as usize;
                        let l = &mut freed[c];
                        let i = l.len().saturating_sub(1 + d);
                        l.remove(i)
                    }
                    _ => {
                        next += 16 * (1 + rng.next_u64() % 4);
                        next
                    }
                };
                if addr != 0 {
                    live.push((addr, size));
                }
                out.push((
                    time,
                    Event::Alloc {
                        func: AllocFn::Malloc,
                        addr,
                        size,
                        align: 0,
                        stack,
                    },
                ));
            } else {
                let addr = match rng.next_u64() % 20 {
                    0 => last_freed,
                    1 => 0,
                    2 => 0x7777_0000 + 16 * (rng.next_u64() % 64),
                    _ if !live.is_empty() => {
                        let i = (rng.next_u64() % live.len() as u64) as usize;
                        let (a, size) = live.swap_remove(i);
                        freed[class(size)].push(a);
                        a
                    }
                    _ => 0,
                };
                last_freed = addr;
                out.push((
                    time,
                    Event::Free {
                        func: FreeFn::Free,
                        addr,
                        size: 0,
                        align: 0,
                        stack,
                    },
                ));
            }
        }
        out
    }

    #[test]
    fn class_stack_entries_at_every_depth_decode_either_way() {
        let mut hist = [0u64; RING + 3];
        for seed in 0..24u64 {
            let events = class_stack_events(seed, if seed % 4 == 0 { 80_000 } else { 20_000 });
            let mut enc = BlockEncoder::new(1);
            let mut blocks = Vec::new();
            let mut rng = crate::synthetic::Rng::new(seed);
            for (t, ev) in &events {
                enc.push(*t, ev);
                if rng.next_u64() % 7000 == 0 {
                    let mut c = Cursor::new(&enc.allocs);
                    while let Some(v) = c.get() {
                        hist[(v as usize).min(RING + 2)] += 1;
                    }
                    blocks.push(enc.finish());
                }
            }
            let mut c = Cursor::new(&enc.allocs);
            while let Some(v) = c.get() {
                hist[(v as usize).min(RING + 2)] += 1;
            }
            blocks.push(enc.finish());
            let mut all = Vec::new();
            let (mut fast, mut slow) = (AddrModel::default(), AddrModel::default());
            for (b, block) in blocks.iter().enumerate() {
                let want = observe(block, &mut slow, false, seed + b as u64);
                let got = observe(block, &mut fast, true, seed + b as u64);
                assert_eq!(got, want, "seed {seed} block {b}");
                all.extend(got.into_iter().filter(|l| l.starts_with("Record")));
                for cut in 0..9u64 {
                    let mut damaged = block.clone();
                    let at = (rng.next_u64() % damaged.len().max(1) as u64) as usize;
                    match cut % 3 {
                        0 => damaged[at] ^= 1 << (rng.next_u64() % 8),
                        1 => damaged[at] = [2, 3, 17, 18, 19, 0x80][(rng.next_u64() % 6) as usize],
                        _ => damaged.truncate(at),
                    }
                    let (mut f, mut s) = (fast.clone(), slow.clone());
                    let want = observe(&damaged, &mut s, false, cut);
                    let got = observe(&damaged, &mut f, true, cut);
                    assert_eq!(got, want, "seed {seed} block {b} damage {cut} at {at}");
                }
            }
            let want: Vec<String> = events
                .iter()
                .map(|(t, e)| {
                    format!(
                        "{:?}",
                        Record {
                            time: *t,
                            thread: 1,
                            event: e.clone()
                        }
                    )
                })
                .collect();
            assert_eq!(all, want, "seed {seed}: round trip");
        }
        // Every depth of a class stack was taken (codes 2 to 17).
        eprintln!("allocation codes 0, 1, 2.. 17, 18+: {hist:?}");
        assert!(hist[2..RING + 2].iter().all(|&n| n > 100), "{hist:?}");
    }

    #[test]
    fn class_matches_its_definition() {
        // FORMAT.md 4.2: min((s + 23) >> 4, 65), without overflow.
        let def = |s: u64| (s.saturating_add(23) >> 4).min(CLASSES as u64 - 1) as usize;
        for s in (0..5000).chain([u64::MAX - 23, u64::MAX - 22, u64::MAX - 1, u64::MAX]) {
            assert_eq!(class(s), def(s), "size {s}");
        }
    }

    #[test]
    fn addr_index_agrees_with_a_hash_map() {
        let mut rng = crate::synthetic::Rng::new(11);
        let mut idx = AddrIndex::default();
        let mut want = std::collections::HashMap::new();
        for step in 0..200_000u32 {
            // Few distinct addresses, some colliding in their low bits.
            let a = 0x1000 + rng.range(0, 3000) * if step % 3 == 0 { 16 } else { 4096 };
            if rng.next_u64() % 2 == 0 {
                idx.fit(want.len() + 1);
                idx.insert(a, step, !step);
                want.insert(a, (step, !step));
            } else {
                assert_eq!(idx.remove(a), want.remove(&a), "step {step}");
            }
            if step % 1000 == 0 {
                let n = idx.entries.iter().filter(|e| e.0 != 0).count();
                assert_eq!(n, want.len());
                assert!(n * 4 <= idx.entries.len());
            }
            if step % 50_000 == 0 {
                idx.clear();
                want.clear();
            }
        }
        assert_eq!(idx.remove(0), None);
    }
}
