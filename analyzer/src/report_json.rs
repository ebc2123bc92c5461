//! JSON output. The shapes are a public interface (documented in the README):
//! field names change only with a version note. Every report carries
//! `"version": 1`; frames are `{function, file, line, module, address, offset,
//! inlined}` objects, innermost first.

use std::io::Write;

use serde::Serialize;

/// Version of the JSON shapes.
pub const JSON_VERSION: u32 = 1;

/// Writes `value` as pretty JSON and a newline to stdout.
pub fn print<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Serializes a `u64` address as a `"0x..."` string.
pub fn hex<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:#x}"))
}
