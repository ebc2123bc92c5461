//! The analysis cache: what the pass found, saved beside the trace as
//! `TRACE.analysis` (JSON), so `summary`, `leaks` and `errors` after the
//! first (or after `record`, which analyses the run it just recorded) skip
//! the pass and only symbolize. The pass result is bounded by the live set,
//! the distinct stacks and the errors, not by the trace length.
//!
//! The cache is used only when it names the same trace size, modification
//! time and analyzer version; anything else (missing, stale, unreadable,
//! unwritable directory) silently falls back to running the pass. Results
//! with more than [`MAX_CACHED_ITEMS`] live blocks plus errors are not saved.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use traces::stacks::TrieBuilder;
use traces::{Header, StackId, StackTable, Trailer, Truncation};

use crate::analysis::Analysis;
use crate::pass::PassResult;

/// Larger results are not cached (the file would cost more than the pass saves).
pub const MAX_CACHED_ITEMS: usize = 1_000_000;

/// Bumped whenever the pass's meaning or the cached shape changes.
const CACHE_FORMAT: u32 = 1;

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

/// The cached analysis of `trace`, if there is a fresh one.
pub fn load(trace: &Path) -> Option<Analysis> {
    let want = key(trace)?;
    let f = File::open(path_for(trace)).ok()?;
    let c: Cached = serde_json::from_reader(BufReader::with_capacity(1 << 20, f)).ok()?;
    if c.key != want {
        return None;
    }
    let mut trie = TrieBuilder::default();
    for (id, frames) in &c.stacks {
        trie.define(*id, frames);
    }
    let mut stacks = StackTable::new();
    stacks.add_block(&trie.take()).ok()?;
    Some(Analysis {
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
    })
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
