//! alloctrace recorder: runs a program with the preload library and collects
//! its events into a trace.

pub mod cli;
