//! The size-class policy: which block size serves a request, and how big the span
//! carrying blocks of each class is.
//!
//! # The table
//!
//! | range (bytes)      | classes                     | step            |
//! |--------------------|-----------------------------|-----------------|
//! | 1 ..= 128          | 16, 32, 48, ..., 128 (8)    | 16              |
//! | 2^k+1 ..= 2^(k+1)  | 2^k * (1.25, 1.5, 1.75, 2)  | 2^(k-2), k=7..11, 14..16 |
//! | 4097 ..= 16384     | 2^k * (1.125, 1.25, ..., 2) | 2^(k-3), k=12, 13 |
//! | 4097 ..= 4368      | 4368 ([`PAGE_PLUS_HEADER`]) | one extra class |
//!
//! That is 8 + 8 * 4 + 2 * 8 + 1 = 57 classes, the largest 128 KiB ([`MAX_SMALL`]);
//! requests above the large threshold (128 KiB by default, like glibc's
//! `M_MMAP_THRESHOLD`) get their own mapping. Every class is a multiple of 16, so
//! every block is 16-byte aligned.
//!
//! # Worst-case waste
//!
//! * Internal (rounding) waste: at most 15 bytes for requests up to 128 bytes; above,
//!   a request one byte over class `2^k * m` is served by `2^k * (m + 0.25)`, wasting
//!   less than `2^(k-2) / (2^k * 1.25)` = **20 %** of the block (e.g. 129 -> 160
//!   wastes 31 of 160 bytes, 19.4 %); from 4 KiB to 16 KiB, with eight steps, less
//!   than **11.2 %**. Page-sized buffers with a small header are common there
//!   (sqlite's page cache: 4 KiB pages plus 272 bytes), and rounding waste is
//!   resident memory: they fit 4368-byte blocks (the one class off the steps) exactly,
//!   16 bytes less than glibc's chunks for them (4480-byte blocks cost `sqlite3` about
//!   90 KiB of peak RSS more). More classes everywhere cost more than they save: each class in use
//!   keeps a partly used span and a thread-cache bin (32 steps per doubling from 4 to
//!   8 KiB, or 8 from 8 to 16 KiB, cost `git log -p` 250 to 600 KiB of peak RSS).
//! * Span tail waste: each span is 1 to [`MAX_SPAN_CHUNKS`] chunks of 64 KiB, chosen
//!   as the smallest that holds at least 4 blocks with at most **1/64** (1.6 %) of the
//!   span left over after the 128-byte header, **1/8** for the purged classes (8 KiB
//!   and up), checked by a unit test for every class. Only the tail's part in the
//!   last block's page becomes resident: one 64 KiB chunk holds fourteen 4368-byte
//!   blocks (a 6.5 % tail), five hold 74 (1.3 %). That class, whose spans a page
//!   cache fills, is the exception: its spans are eight chunks, which 120 blocks
//!   fill exactly (no tail at all).
//!   A longer span costs nothing while partly used (blocks are handed out bottom up,
//!   so untouched ones stay untouched).

/// Number of size classes.
pub const NUM_CLASSES: usize = 57;
/// The largest block size served from spans.
pub const MAX_SMALL: usize = 128 * 1024;
/// Span granule: spans are whole, aligned chunks of this many bytes.
pub const CHUNK: usize = 64 * 1024;
/// log2 of [`CHUNK`].
pub const CHUNK_SHIFT: u32 = 16;
/// The largest span, in chunks.
pub const MAX_SPAN_CHUNKS: usize = 16;
/// Bytes at the start of every span taken by its header.
pub const SPAN_HEADER: usize = 128;
/// Blocks of at least this many bytes give their pages back to the OS when freed
/// (every page no block in use shares; their spans track free blocks in a bitmap,
/// see `span::give_purged`): a free block of a large class can be reused by its own
/// class only, and would otherwise stay resident. At 16 KiB, `sqlite3`'s 8 to 12 KiB
/// buffers (freed, then not reused by its page cache) kept 130 KiB more of peak RSS
/// than at 8 KiB; keeping the page holding a free block's link (the design before
/// the bitmap) cost `git log -p` 200 KiB.
pub const PURGE_MIN_BLOCK: usize = 8 * 1024;
/// A class takes its first blocks, up to this many bytes (and [`RUN_BLOCKS`]
/// blocks), from runs in a chunk shared with other classes (see `span::carve_run`)
/// before it gets a span of its own: the classes a program uses a few blocks of
/// then share pages instead of each keeping a partly used one (`sqlite3` uses 22
/// classes, 20 of them for 1 to 80 blocks). Classes above it have no runs.
///
/// 6 KiB rather than 4: `sqlite3`'s 96 and 640-byte classes then stay in runs at
/// its peak (each kept a page of a span of its own) and its 1280-byte span carves
/// one block fewer: its shared chunk grows by three pages and its spans lose
/// four (peak heap 3608 -> 3604 KiB). 5, 5.5, 6.5, 7 and 8 KiB left its peak where
/// it was; `git log -p` and `gcc` also come out lower (phase_mean.sh: -16 and
/// -33 KiB). The price is run blocks in circulation, whose frees take the slow
/// path: `bench/churn.c` 2000000, 223.9 -> 225.3 M instructions.
pub const RUN_BYTES: usize = 6144;
/// The most blocks of one class in runs: a free of a run block takes the slow path
/// (the chunk map has no class tag for a shared chunk), so a busy class of small
/// blocks should not keep many of them in circulation.
pub const RUN_BLOCKS: usize = 64;

/// How many blocks of `class` may live in runs (0 for classes above [`RUN_BYTES`]).
#[inline]
pub fn run_budget(class: usize) -> usize {
    *crate::at(&RUN_BUDGET, class) as usize
}

/// [`run_budget`] of every class (a table: no division in the refill path).
static RUN_BUDGET: [u8; NUM_CLASSES] = {
    let mut t = [0u8; NUM_CLASSES];
    let mut i = 0;
    while i < NUM_CLASSES {
        let n = RUN_BYTES / class_size_const(i);
        t[i] = if n < RUN_BLOCKS { n } else { RUN_BLOCKS } as u8;
        i += 1;
    }
    t
};

/// The first class whose blocks are purged when freed.
pub const PURGE_CLASS: usize = class_of_const(PURGE_MIN_BLOCK);

/// Steps per doubling above `2^k`: 8 for 4 KiB to 16 KiB, where page-sized buffers
/// with a small header (sqlite's page cache: 4 KiB plus a few hundred bytes) are
/// common, 4 elsewhere.
const fn steps(k: usize) -> usize {
    if k == 12 || k == 13 {
        8
    } else {
        4
    }
}

/// Index of the first class above `2^k` (k >= 7).
const fn first_class(k: usize) -> usize {
    let mut c = 8;
    let mut i = 7;
    while i < k {
        c += steps(i);
        i += 1;
    }
    c
}

/// One class off the regular steps: a 4 KiB page plus a 272-byte header, what the
/// page cache of sqlite 3.40 on x86-64 allocates per page; larger headers go to the
/// next regular class (4608).
pub const PAGE_PLUS_HEADER: usize = 4096 + 272;
/// The index of [`PAGE_PLUS_HEADER`].
const EXTRA_CLASS: usize = first_class(12);

const fn class_size_const(class: usize) -> usize {
    if class == EXTRA_CLASS {
        PAGE_PLUS_HEADER
    } else if class > EXTRA_CLASS {
        regular_class_size(class - 1)
    } else {
        regular_class_size(class)
    }
}

pub(crate) const fn class_of_const(size: usize) -> usize {
    if size <= 4096 {
        regular_class_of(size)
    } else if size <= PAGE_PLUS_HEADER {
        EXTRA_CLASS
    } else {
        regular_class_of(size) + 1
    }
}

const fn regular_class_size(class: usize) -> usize {
    if class < 8 {
        16 * (class + 1)
    } else {
        let mut k = 7;
        while class >= first_class(k + 1) {
            k += 1;
        }
        let j = class - first_class(k) + 1;
        (1 << k) + j * ((1 << k) / steps(k))
    }
}

const fn regular_class_of(size: usize) -> usize {
    if size <= 128 {
        if size == 0 {
            0
        } else {
            size.div_ceil(16) - 1
        }
    } else {
        let k = (usize::BITS - 1 - (size - 1).leading_zeros()) as usize;
        let step = (1 << k) / steps(k);
        let j = (size - (1 << k)).div_ceil(step);
        first_class(k) + (j - 1)
    }
}

const fn span_chunks_const(class: usize) -> usize {
    let size = class_size_const(class);
    if class == EXTRA_CLASS {
        // Page-cache pages fill their spans: as long as it takes for the blocks to
        // fit exactly (eight chunks, 120 blocks). The five chunks of the rule below
        // leave 224 bytes of a touched page and a header per 74 blocks: a page of
        // sqlite3's peak over its eleven full spans.
        let mut n = 1;
        while (n * CHUNK - SPAN_HEADER) % size != 0 {
            n += 1;
        }
        return n;
    }
    // Below the purged classes, as long as it takes to waste at most 1/64 (bigger
    // blocks of a span that is not full are not touched, so cost nothing).
    let limit = if size < PURGE_MIN_BLOCK { 64 } else { 8 };
    let mut n = 1;
    while n < MAX_SPAN_CHUNKS {
        let usable = n * CHUNK - SPAN_HEADER;
        let cap = usable / size;
        if cap >= 4 && (usable - cap * size) * limit <= n * CHUNK {
            return n;
        }
        n += 1;
    }
    MAX_SPAN_CHUNKS
}

/// Block size of every class.
pub const CLASS_SIZE: [u32; NUM_CLASSES] = {
    let mut t = [0u32; NUM_CLASSES];
    let mut i = 0;
    while i < NUM_CLASSES {
        t[i] = class_size_const(i) as u32;
        i += 1;
    }
    t
};

/// Span length, in chunks, for every class.
pub const SPAN_CHUNKS: [u8; NUM_CLASSES] = {
    let mut t = [0u8; NUM_CLASSES];
    let mut i = 0;
    while i < NUM_CLASSES {
        t[i] = span_chunks_const(i) as u8;
        i += 1;
    }
    t
};

/// Largest size whose class is looked up in a table (the thread cache's bin-tag
/// table, see [`class_of`]). Above it every class is a multiple of 128 and the class
/// is computed.
pub const SMALL_LOOKUP_MAX: usize = 8192;

/// The first class above `2^13` and above `2^14` (the computed part of [`class_of`]).
const FIRST_ABOVE_8K: usize = class_of_const(8192 + 1);
const FIRST_ABOVE_16K: usize = class_of_const(16384 + 1);

/// The class of `size` for `SMALL_LOOKUP_MAX < size <= MAX_SMALL`, computed: above
/// `2^13` the classes are `2^13 + j * 2^10` (8 steps), above `2^k` for k = 14..16
/// `2^k + j * 2^(k-2)` (4 steps). With `s = size - 1` in `(2^k, 2^(k+1)]`'s step
/// `2^shift`, `s >> shift` is `steps + j - 1`. (A lookup table for these sizes was
/// 1 KiB of the library's read-only data, which every process it is loaded into
/// keeps resident.)
#[inline(always)]
fn class_above_lookup(size: usize) -> usize {
    debug_assert!(size > SMALL_LOOKUP_MAX && size <= MAX_SMALL);
    let s = size - 1;
    let k = (usize::BITS - 1 - s.leading_zeros()) as usize;
    if k == 13 {
        FIRST_ABOVE_8K + (s >> 10) - 8
    } else {
        FIRST_ABOVE_16K + 4 * (k - 14) + (s >> (k - 2)) - 4
    }
}

/// [`CLASS_SIZE`] as one object: a `const` array is copied into every codegen unit
/// that indexes it (and folded into the lookups' tables), each copy library data.
static CLASS_SIZE_TABLE: [u32; NUM_CLASSES] = CLASS_SIZE;

/// The class serving a request of `size` bytes (`size <= MAX_SMALL`; 0 counts as 1).
#[inline(always)]
pub fn class_of(size: usize) -> usize {
    if size <= SMALL_LOOKUP_MAX {
        // The thread cache's size-to-tag table serves the fast paths; the class is
        // the tag's bin index (one table for both: a class table of its own was
        // 0.5 KiB more of the library's read-only data).
        crate::thread_cache::class_of_tag(crate::thread_cache::small_tag(size))
    } else {
        class_above_lookup(size)
    }
}

/// The block size of `class`.
#[inline(always)]
pub fn class_size(class: usize) -> usize {
    *crate::at(&CLASS_SIZE_TABLE, class) as usize
}

/// How many blocks a span of `class` holds.
pub fn span_capacity(class: usize) -> usize {
    (SPAN_CHUNKS[class] as usize * CHUNK - SPAN_HEADER) / class_size(class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_increasing_and_ends_at_max_small() {
        for c in 1..NUM_CLASSES {
            assert!(CLASS_SIZE[c] > CLASS_SIZE[c - 1]);
            assert_eq!(CLASS_SIZE[c] % 16, 0);
            if CLASS_SIZE[c] > SMALL_LOOKUP_MAX as u32 {
                assert_eq!(CLASS_SIZE[c] % 128, 0, "the large lookup's granule");
            }
        }
        assert_eq!(class_size(NUM_CLASSES - 1), MAX_SMALL);
    }

    #[test]
    fn every_size_maps_to_the_smallest_fitting_class() {
        for size in 0..=MAX_SMALL {
            let c = class_of(size);
            assert!(class_size(c) >= size.max(1), "size {size}");
            if c > 0 {
                assert!(
                    class_size(c - 1) < size,
                    "size {size} not in smallest class"
                );
            }
        }
    }

    #[test]
    fn internal_waste_is_bounded() {
        for size in 129..=MAX_SMALL {
            let block = class_size(class_of(size));
            assert!(
                (block - size) * 5 < block,
                "size {size} wastes too much in {block}"
            );
        }
        for size in 1..=128 {
            assert!(class_size(class_of(size)) - size <= 15);
        }
    }

    #[test]
    fn page_sized_classes_are_fine() {
        for size in 4097..=16384 {
            let block = class_size(class_of(size));
            assert!((block - size) * 9 < block, "size {size} in {block}");
        }
        assert_eq!(class_size(class_of(4097)), 4368);
        assert_eq!(class_size(class_of(4368)), 4368);
        assert_eq!(class_size(class_of(4369)), 4608);
    }

    #[test]
    fn purge_class_starts_at_purge_min_block() {
        assert_eq!(class_size(PURGE_CLASS), PURGE_MIN_BLOCK);
    }

    #[test]
    fn span_tail_waste_is_bounded() {
        for (c, &chunks) in SPAN_CHUNKS.iter().enumerate() {
            let span = chunks as usize * CHUNK;
            let cap = span_capacity(c);
            assert!(cap >= 4, "class {c}");
            let tail = span - SPAN_HEADER - cap * class_size(c);
            let limit = if c < PURGE_CLASS { 64 } else { 8 };
            assert!(tail * limit <= span, "class {c} leaves {tail} of {span}");
            assert!(
                cap <= (CHUNK - SPAN_HEADER) / 16,
                "class {c}: trim_top's bitmap holds a one-chunk span of 16-byte blocks"
            );
        }
        // The page-cache class fills its spans exactly.
        let c = class_of(PAGE_PLUS_HEADER);
        assert_eq!(SPAN_CHUNKS[c], 8);
        assert_eq!(span_capacity(c) * PAGE_PLUS_HEADER, 8 * CHUNK - SPAN_HEADER);
        for c in PURGE_CLASS..NUM_CLASSES {
            assert!(
                span_capacity(c) <= 64,
                "class {c}: a purged span's free blocks fit one 64-bit word"
            );
        }
    }
}
