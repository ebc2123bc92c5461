//! The analysis cache: what the pass found, saved beside the trace as
//! `TRACE.analysis` (JSON), so `summary`, `leaks` and `errors` after the
//! first (or after `record`, which analyses the run it just recorded) skip
//! the pass and only symbolize. The pass result is bounded by the live set,
//! the distinct stacks and the errors, not by the trace length.
//!
//! The cache is used only when it names the same trace size, modification
//! time, analyzer version and cache format, and holds the same header as the
//! trace (so a trace replaced by another of the same size in the same
//! clock tick is not mistaken for it). A missing or stale cache falls back to
//! running the pass silently, an unreadable one with a warning
//! ([`Lookup::Corrupt`]); either is then replaced. An unwritable directory
//! only means no cache. Results with more than [`MAX_CACHED_ITEMS`] live
//! blocks plus errors are not saved.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use traces::stacks::TrieBuilder;
use traces::{Header, Reader, StackId, StackTable, Trailer, Truncation};

use crate::analysis::Analysis;
use crate::pass::PassResult;

/// Larger results are not cached (the file would cost more than the pass saves).
pub const MAX_CACHED_ITEMS: usize = 1_000_000;

/// Bumped whenever the pass's meaning or the cached shape changes.
const CACHE_FORMAT: u32 = 2;

#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct Key {
    format: u32,
    version: String,
    size: u64,
    mtime_ns: u128,
}

#[derive(Serialize, Deserialize)]
struct Cached {
    key: Key,
    header: Header,
    trailer: Option<Trailer>,
    truncation: Option<(u64, u64, u64)>,
    stacks: Vec<(StackId, Vec<u64>)>,
    result: PassResult,
}

/// Where the cache of `trace` lives.
pub fn path_for(trace: &Path) -> PathBuf {
    let mut s = trace.as_os_str().to_owned();
    s.push(".analysis");
    PathBuf::from(s)
}

fn key(trace: &Path) -> Option<Key> {
    let m = std::fs::metadata(trace).ok()?;
    let mtime_ns = m
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(Key {
        format: CACHE_FORMAT,
        version: env!("CARGO_PKG_VERSION").to_string(),
        size: m.len(),
        mtime_ns,
    })
}

/// What [`lookup`] found beside a trace.
pub enum Lookup {
    /// A cache of this very trace.
    Fresh(Box<Analysis>),
    /// No cache file (or the trace itself cannot be read).
    Missing,
    /// A cache of another trace, an older version of it, or another analyzer.
    Stale,
    /// A cache file that cannot be read or parsed, with why.
    Corrupt(String),
}

/// The cached analysis of `trace`, if there is a fresh one.
pub fn load(trace: &Path) -> Option<Analysis> {
    match lookup(trace) {
        Lookup::Fresh(a) => Some(*a),
        _ => None,
    }
}

/// Looks for the cached analysis of `trace`.
pub fn lookup(trace: &Path) -> Lookup {
    let Some(want) = key(trace) else {
        return Lookup::Missing;
    };
    let f = match File::open(path_for(trace)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Missing,
        Err(e) => return Lookup::Corrupt(e.to_string()),
    };
    let c: Cached = match serde_json::from_reader(BufReader::with_capacity(1 << 20, f)) {
        Ok(c) => c,
        // A cache of another format version may not parse: that is staleness.
        Err(_) if !same_format(trace) => return Lookup::Stale,
        Err(e) => return Lookup::Corrupt(e.to_string()),
    };
    if c.key != want {
        return Lookup::Stale;
    }
    match Reader::open(trace) {
        Ok(r) if *r.header() == c.header => {}
        _ => return Lookup::Stale,
    }
    let mut trie = TrieBuilder::default();
    for (id, frames) in &c.stacks {
        trie.define(*id, frames);
    }
    let mut stacks = StackTable::new();
    if let Err(e) = stacks.add_block(&trie.take()) {
        return Lookup::Corrupt(format!("stacks: {e}"));
    }
    Lookup::Fresh(Box::new(Analysis {
        header: c.header,
        stacks,
        trailer: c.trailer,
        truncation: c
            .truncation
            .map(|(block, offset, dropped_bytes)| Truncation {
                block,
                offset,
                dropped_bytes,
            }),
        path: trace.display().to_string(),
        result: c.result,
    }))
}

/// Whether the cache beside `trace`, which did not parse, names this cache
/// format and analyzer version (valid JSON with another key is a cache of
/// another version, not a damaged one).
fn same_format(trace: &Path) -> bool {
    #[derive(Deserialize)]
    struct KeyOnly {
        key: Key,
    }
    let Ok(text) = std::fs::read(path_for(trace)) else {
        return true;
    };
    match serde_json::from_slice::<KeyOnly>(&text) {
        Ok(k) => k.key.format == CACHE_FORMAT && k.key.version == env!("CARGO_PKG_VERSION"),
        Err(_) => true,
    }
}

/// Saves `a` as the cache of `trace`; failures are ignored (the cache is an
/// optimisation). Returns whether it was written.
pub fn save(trace: &Path, a: &Analysis) -> bool {
    let r = &a.result;
    if r.live.len() + r.errors.len() > MAX_CACHED_ITEMS {
        return false;
    }
    let Some(key) = key(trace) else { return false };
    let mut ids: Vec<StackId> = a.stacks.ids().collect();
    ids.sort_unstable();
    let c = Cached {
        key,
        header: a.header.clone(),
        trailer: a.trailer.clone(),
        truncation: a
            .truncation
            .as_ref()
            .map(|t| (t.block, t.offset, t.dropped_bytes)),
        stacks: ids
            .into_iter()
            .map(|id| (id, a.stacks.frames(id)))
            .collect(),
        result: r.clone(),
    };
    let path = path_for(trace);
    let tmp = path.with_extension("analysis.tmp");
    let ok = File::create(&tmp)
        .ok()
        .and_then(|f| serde_json::to_writer(BufWriter::new(f), &c).ok())
        .is_some();
    ok && std::fs::rename(&tmp, &path).is_ok()
}
