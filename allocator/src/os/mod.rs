//! The OS layer: the only code in the crate that calls the kernel or libc.
//!
//! # Contract
//!
//! The allocator core asks the OS layer for exactly these things:
//!
//! * [`brk::BrkArena`]: a growable, contiguous-when-possible region for small-block
//!   spans. It is backed either by the real program break (`sbrk`) or by a region the
//!   arena reserves for itself with `mmap(PROT_NONE)` and commits with `mprotect`, which
//!   emulates a program break without touching the real one. Growth returns the start
//!   of fresh, zero-filled, read-write memory, aligned as asked; it may be
//!   non-contiguous with earlier growth when someone else moved the real break, or
//!   when the break cannot grow and the arena goes on with fixed mappings above it.
//!   Memory is never returned by shrinking the break; idle parts are given back with
//!   [`mmap::advise_free`] instead.
//! * [`mmap`]: anonymous private mappings (zero-filled, read-write), unmapping,
//!   `mremap` growth and shrink, and `madvise(MADV_DONTNEED)`.
//! * [`tls`]: one zero-initialised thread-local area reached without a call.
//! * [`thread`]: a pthread key whose destructor runs at thread exit, `pthread_atfork`
//!   registration, yielding the CPU, a coarse monotonic clock, `errno` and the environment.
//!
//! Nothing here allocates with the Rust or C heap, and nothing here panics: failures
//! are reported as `None`/`false` so the caller can return a null pointer.

pub mod brk;
pub mod mmap;
pub mod thread;
pub mod tls;
