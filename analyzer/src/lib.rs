//! Offline analyses of alloctrace traces: summary, leaks, heap errors, and
//! export of the allocation table to Parquet.
//!
//! How it works: [`pass`] walks a trace once, in global time order, giving
//! every allocation an identity from the address history and classifying
//! every release (valid, double free, invalid, interior, mismatched family,
//! realloc of freed memory, or freed-before-attach). It keeps only live
//! blocks, recently freed addresses and per-stack aggregates, so memory grows
//! with the live set and distinct stacks, not with the trace length
//! ([`table`] explains where polars comes in). Reports resolve only the
//! stacks they show ([`symbols`]), then print a table or JSON.
//!
//! The caller provides a trace file written by the `traces` crate. What this
//! crate won't do: record, replay, or scan memory for references (a block
//! never freed is a leak, reachable or not).
//!
//! Glossary: a *slot* is what the pass knows about one heap address; a
//! *site* is an allocation stack with its aggregates; a *leak group* is the
//! blocks never freed from one site.
#![forbid(unsafe_code)]

mod after_record;
pub mod analysis;
pub mod cache;
pub mod cli;
pub mod cmd_errors;
pub mod cmd_export;
pub mod cmd_leaks;
pub mod cmd_summary;
pub mod errors;
mod fasthash;
pub mod findings;
pub mod pass;
pub mod report_json;
pub mod report_table;
pub mod suppressions;
pub mod symbols;
pub mod table;

pub use analysis::{analyze, analyze_cached, analyze_serial, analyze_with, Analysis};
pub use errors::{ErrorKind, HeapError};
pub use pass::{AllocRow, Pass, PassResult, SiteStats, Slot, Totals};
