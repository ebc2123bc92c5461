//! Integration tests of the trace format: round trips, ordering, corruption.

mod batch;
mod common;
mod corruption;
mod merge;
mod prefetch;
mod roundtrip;
