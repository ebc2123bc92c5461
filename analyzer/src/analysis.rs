//! Runs the streaming pass over a trace file, with a progress bar, and keeps
//! what the reports need from the reader (header, stacks, trailer, truncation).

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use traces::{Header, Reader, StackTable, Trailer, Truncation};

use crate::pass::{AllocRow, Pass, PassResult};

/// Traces smaller than this get no progress bar (they take well under a second).
const PROGRESS_MIN_BYTES: u64 = 32 << 20;

/// Everything known about a trace after the pass.
pub struct Analysis {
    /// The trace's header.
    pub header: Header,
    /// Interned stacks (complete).
    pub stacks: StackTable,
    /// Trailer, `None` when the recording did not finish cleanly.
    pub trailer: Option<Trailer>,
    /// Set when the file was cut inside a block.
    pub truncation: Option<Truncation>,
    /// Path of the trace.
    pub path: String,
    /// What the pass found.
    pub result: PassResult,
}

impl Analysis {
    /// Duration of the recording in trace-clock nanoseconds.
    pub fn duration(&self) -> u64 {
        let t = &self.result.totals;
        let end = self
            .trailer
            .as_ref()
            .map_or(t.last_time, |tr| tr.end_time.max(t.last_time));
        let start = if t.records == 0 {
            end
        } else {
            self.header.start_time.min(t.first_time)
        };
        end.saturating_sub(start)
    }

    /// Prints the truncation warning, if any, to stderr.
    pub fn warn_truncation(&self) {
        if let Some(t) = &self.truncation {
            eprintln!("alloctrace: warning: {}: {t}", self.path);
        }
    }
}

/// Runs the pass over the trace at `path` (no cache involved).
pub fn analyze(path: &Path) -> anyhow::Result<Analysis> {
    analyze_with(path, None, true)
}

/// The analysis of `path` from its cache when fresh (see [`crate::cache`]),
/// else from a pass whose result is then cached. `use_cache: false` always
/// runs the pass and neither reads nor writes the cache.
pub fn analyze_cached(path: &Path, use_cache: bool) -> anyhow::Result<Analysis> {
    if !use_cache {
        return analyze(path);
    }
    if let Some(a) = crate::cache::load(path) {
        return Ok(a);
    }
    let a = analyze(path)?;
    crate::cache::save(path, &a);
    Ok(a)
}

/// Runs the pass, sending per-allocation rows to `rows` if given;
/// `progress` allows a progress bar (drawn only on a terminal).
pub fn analyze_with(
    path: &Path,
    rows: Option<&mut dyn FnMut(AllocRow)>,
    progress: bool,
) -> anyhow::Result<Analysis> {
    let mut reader = Reader::open(path)?;
    let header = reader.header().clone();
    let bar = progress_bar(path, progress);
    let mut pass = Pass::new(header.flags);
    if let Some(sink) = rows {
        pass = pass.with_rows(sink);
    }
    let mut n: u64 = 0;
    while let Some(rec) = reader.next() {
        let rec = rec?;
        pass.record(&rec);
        n += 1;
        if n & 0xffff == 0 {
            if let Some(b) = &bar {
                b.set_position(reader.bytes_read());
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let result = pass.finish();
    Ok(Analysis {
        header,
        stacks: reader.stacks().clone(),
        trailer: reader.trailer().cloned(),
        truncation: reader.truncation().cloned(),
        path: path.display().to_string(),
        result,
    })
}

fn progress_bar(path: &Path, wanted: bool) -> Option<ProgressBar> {
    if !wanted || !std::io::stderr().is_terminal() {
        return None;
    }
    let len = std::fs::metadata(path)
        .with_context(|| path.display().to_string())
        .ok()?
        .len();
    if len < PROGRESS_MIN_BYTES {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg} {wide_bar} {bytes}/{total_bytes} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("analysing");
    Some(bar)
}
