//! The allocator's integration tests: randomized stress per policy and backend,
//! edge cases of the C face, thread exit and fork, and real programs run under
//! `LD_PRELOAD=liballoctrace_malloc.so` with their output compared to glibc's.

mod edge;
mod preload;
mod runs;
mod stress;
mod util;
mod workloads;
