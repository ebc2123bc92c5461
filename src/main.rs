//! `alloctrace`: command-line entry point. Parses arguments and dispatches.
fn main() {}
