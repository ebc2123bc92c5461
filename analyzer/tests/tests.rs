//! Integration tests of the analyzer: one binary, one module per concern.

mod util;

mod classify;
mod export;
mod recorded;
mod reports;
mod symbolize;
