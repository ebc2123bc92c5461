//! alloctrace recorder: runs a program with the preload library and collects
//! its events into traces.
//!
//! - [`record`] runs one recording: it prepares a directory in `/dev/shm`,
//!   starts the program with `LD_PRELOAD` set to the embedded preload library
//!   ([`preload_path`]), drains every traced process's shared event file
//!   while the program runs ([`collector`]), and finishes one trace per
//!   process image when it is gone.
//! - [`cli`] is the `alloctrace record` front end.
//!
//! The caller provides a program to run; the recorder never interprets the
//! events (that is the analyzer's job) and never changes what the program's
//! allocator sees.

pub mod cli;
mod clock;
pub mod collector;
mod preload_lib;
mod session;
mod shm;
mod signals;

pub use preload_lib::preload_path;
pub use session::{record, RecordOptions, DEFAULT_TIME_RESOLUTION};

/// What a finished recording produced.
#[derive(Debug)]
pub struct RecordOutcome {
    /// Every trace written, the root process's first.
    pub traces: Vec<std::path::PathBuf>,
    /// The exit code `alloctrace` should exit with (the program's, or 128+signal).
    pub exit_code: i32,
}
