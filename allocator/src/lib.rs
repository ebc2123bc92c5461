//! A size-class allocator on brk and mmap, usable as a Rust [`GlobalAlloc`]
//! ([`AllocTrace`]), as a drop-in C malloc (the `alloctrace-malloc` cdylib over
//! [`c_api`]), and as independent [`Heap`] instances for the replayer.
//!
//! Small requests (up to 128 KiB by default) are rounded to one of 57 size classes
//! ([`size_class`]) and served from spans carved out of a brk arena ([`os::brk`]: the
//! real program break, or a reserved region that emulates one). Larger requests get
//! their own mapping and are unmapped on free. Empty spans return their pages to the
//! OS with `madvise` (at once by default, else after a decay), and spans that emptied
//! down to a few blocks give back the pages above their last one. Freed blocks of
//! 8 KiB and more give back every page no block in use shares, so a free one keeps
//! nothing resident (their spans track free blocks in a bitmap). The first blocks
//! of every class up to 6 KiB (at most 6 KiB or 64 blocks of it) come from runs in
//! a chunk the classes share, so the many classes a small program uses a few
//! blocks of share pages. The global instance adds per-thread caches, so the
//! common malloc/free takes no lock.
//!
//! The caller provides nothing but a Linux process. The allocator does not detect
//! heap errors (double free, foreign pointers): it trusts its callers, as malloc does.
//!
//! # Glossary
//!
//! * **chunk**: 64 KiB of arena address space, aligned; the unit spans are made of.
//! * **span** (slab): 1 to 16 chunks holding blocks of one class, header first
//!   ([`span`]).
//! * **class**: a block size; [`size_class`] documents the table and its waste.
//! * **block**: what `malloc` hands out; free blocks are linked through their first word.
//! * **mixed span**, **run**: a one-chunk span shared by many classes, carved into
//!   runs of a few blocks of one class each ([`span::carve_run`]); a class's first
//!   [`size_class::RUN_BYTES`] of blocks come from runs, which are never given back.
//! * **arena**: the brk-grown region spans come from ([`os::brk::BrkArena`]).
//! * **chunk map**: table from arena chunk to span and its class bin's tag, used by
//!   `free` ([`chunk_map`]).
//! * **pool**: idle spans, dirty then purged ([`pool`]).
//! * **large block**: a request above the threshold, in its own mapping ([`large`]).
//! * **thread cache**: per-thread, per-class free lists ([`thread_cache`]).
//! * **heap**: one allocator instance ([`Heap`]); [`global`] holds the process's own.
//!
//! # `no_std`
//!
//! The crate needs only `core` and `libc` (std is linked for its own tests, and on
//! targets without the initial-exec thread area of [`os::tls`]), so the preload
//! library built on it carries no standard-library code: every page of library text
//! is resident memory in every process it is loaded into.
//!
//! [`GlobalAlloc`]: core::alloc::GlobalAlloc

#![no_std]

#[cfg(any(test, not(all(target_arch = "x86_64", target_os = "linux"))))]
extern crate std;

// `pub(crate)` rather than private: the preload library compiles this file as a
// module of its own crate and re-exports these at its root for the `crate::` paths.
pub mod c_api;
pub(crate) mod check;
pub(crate) mod chunk_map;
pub mod global;
pub(crate) mod heap;
pub(crate) mod heap_api;
pub(crate) mod large;
pub(crate) mod lock;
pub mod os;
pub(crate) mod pool;
pub mod size_class;
pub(crate) mod span;
pub mod stats;
pub mod thread_cache;

pub use check::CheckError;

/// `&a[i]`, aborting if `i` is out of bounds (panicking in debug builds).
///
/// An indexing panic formats the index and length, which links `core`'s integer
/// formatting into the preload library (4 KiB of text, so a resident page in every
/// process); an abort needs none of it. Same cost as the bounds check it replaces.
#[inline(always)]
pub(crate) fn at<T>(a: &[T], i: usize) -> &T {
    if cfg!(debug_assertions) {
        return &a[i];
    }
    match a.get(i) {
        Some(x) => x,
        None => os::thread::abort(),
    }
}

/// `a / b`, aborting if `b` is 0 (panicking in debug builds): for divisors the
/// compiler cannot prove nonzero (block sizes read from a span header or a table).
/// A `/` by them links `core`'s panic call, message and location into the preload
/// library (a GOT entry and relocated data each, on its one page of writable data).
#[inline(always)]
pub(crate) fn div(a: usize, b: usize) -> usize {
    if cfg!(debug_assertions) {
        return a / b;
    }
    match core::num::NonZeroUsize::new(b) {
        Some(b) => a / b,
        None => os::thread::abort(),
    }
}

/// `&mut a[i]`, aborting if `i` is out of bounds (see [`at`]).
#[inline(always)]
pub(crate) fn at_mut<T>(a: &mut [T], i: usize) -> &mut T {
    if cfg!(debug_assertions) {
        return &mut a[i];
    }
    match a.get_mut(i) {
        Some(x) => x,
        None => os::thread::abort(),
    }
}
pub use global::AllocTrace;
pub use heap::{Config, Heap, InitError};
pub use os::brk::Backend;
pub use stats::{ClassStats, Stats};
