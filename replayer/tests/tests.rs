//! Integration tests of the replayer: one binary, modules by topic.

mod common;
mod driver_process;
mod gate;
mod plan;
mod replay;
mod samples;
