//! Integration tests: small C and C++ programs compiled here, run under
//! [`recorder::record`], and their traces read back with `traces::Reader`.

mod common;
mod fork_memo;
mod getattr;
mod memo;
mod programs;
mod real_programs;
mod resolution;
mod signal_alloc;
mod workloads;
