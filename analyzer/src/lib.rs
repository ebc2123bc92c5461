//! Offline analyses of alloctrace traces.

pub mod cli;
