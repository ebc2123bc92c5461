//! The LD_PRELOAD library that hooks the malloc family and records events.
//!
//! It runs inside someone else's process, so it keeps to a few rules:
//! no panics (the workspace builds with `panic = "abort"` and nothing on the
//! hot path can panic), no I/O on the hot path (records are copied into
//! per-thread chunks of a shared file mapping that the collector drains), no
//! hooked allocation inside a hook (its own memory comes from anonymous
//! mappings, never from the program's allocator, see [`alloc`]), and if it cannot start it says so
//! once and lets the program run untraced.
//!
//! Glossary:
//! - [`process::Process`]: the mapping of this process image's shared file.
//! - [`thread::ThreadState`]: a thread's slot, current chunk and unwinder.
//! - [`guard::Guard`]: proof that the current thread is inside a hook.
//! - [`record`]: the functions hooks call to record an event.

mod alloc;
mod guard;
mod hooks;
mod modules;
mod process;
mod real;
mod record;
mod stacks;
mod sys;
mod thread;
mod unwind;

#[global_allocator]
static GLOBAL: alloc::MapAlloc = alloc::MapAlloc;
