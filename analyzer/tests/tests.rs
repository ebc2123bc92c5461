//! Integration tests of the analyzer: one binary, one module per concern.

mod util;

mod classify;
mod export;
mod pipeline;
mod recorded;
mod reports;
mod symbolize;
