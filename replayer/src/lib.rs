//! Replays a recorded trace against an allocator, measures it, and gates
//! regressions between allocators.
//!
//! - [`plan`]: one pass over a trace → per-thread op lists with dense slot ids.
//! - [`backend`]: the allocators (ours in process, the C malloc of the process,
//!   a checking backend for tests); the replayer's `unsafe` lives there.
//! - [`driver`]: replay threads in program order with cross-thread waits.
//! - [`measure`]: RSS, samples over time, latency histograms.
//! - [`run`]: runs an allocator N times on a trace, in this process or in a
//!   replay driver process ([`preload_driver`], for `LD_PRELOAD` libraries).
//! - [`gate`]: baseline/candidate regression decisions.
//! - [`report_table`], [`report_json`]: output.
//! - [`cli`]: `alloctrace replay` arguments and entry points.
//!
//! The caller provides trace files. The replayer does not reproduce what the
//! program did between allocator calls (no compute, no think time), and events
//! that are heap errors in the trace are skipped and counted, never replayed.

pub mod backend;
pub mod cli;
pub mod driver;
pub mod gate;
pub mod measure;
pub mod plan;
pub mod preload_driver;
pub mod report_json;
pub mod report_table;
pub mod run;
mod sys;

pub use driver::{replay, ReplayOptions, RunResult};
pub use plan::{Op, OpKind, Plan};
