//! Runs the streaming pass over a trace file, with a progress bar, and keeps
//! what the reports need from the reader (header, stacks, trailer, truncation).
//! Decoding runs on a second thread, ahead of the pass ([`analyze_with`]).

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::sync::mpsc::{channel, sync_channel};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use traces::{EventBatch, Header, Reader, StackTable, Trailer, Truncation};

use crate::pass::{AllocRow, Pass, PassResult};
use crate::symbols::Warmup;

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

    /// How the process ended, as a sentence ("exited with code 0", "killed by
    /// signal 6 (SIGABRT)"); `None` when the recording did not finish cleanly.
    pub fn ended(&self) -> Option<String> {
        self.trailer.as_ref().map(|t| t.exit.to_string())
    }

    /// True when the process was killed or exec'd: its still-live blocks were
    /// not all leaks, some were in use when it stopped.
    pub fn cut_short(&self) -> bool {
        self.trailer.as_ref().is_some_and(|t| t.exit.cut_short())
    }

    /// Prints to stderr what the trace lacks, if anything: the part cut off
    /// (truncation), and events the recorder could not record (then heap
    /// errors and leaks may be artifacts of the lost events).
    pub fn warn_incomplete(&self) {
        if let Some(t) = &self.truncation {
            eprintln!("alloctrace: warning: {}: {t}", self.path);
        }
        let dropped = self.trailer.as_ref().map_or(0, |t| t.dropped_events);
        if dropped > 0 {
            eprintln!(
                "alloctrace: warning: {}: {dropped} events were lost while recording (no room for \
                 the recorder's shared file, or no collector): heap errors and leaks may be artifacts",
                self.path
            );
        }
    }
}

/// Runs the pass over the trace at `path` (no cache involved).
pub fn analyze(path: &Path) -> anyhow::Result<Analysis> {
    analyze_with(path, None, true)
}

/// The analysis of `path` from its cache when fresh (see [`crate::cache`]),
/// else from a pass whose result is then cached. `use_cache: false` always
/// runs the pass and neither reads nor writes the cache. A cache file that
/// cannot be read is reported (one warning) and replaced.
pub fn analyze_cached(path: &Path, use_cache: bool) -> anyhow::Result<Analysis> {
    Ok(analyze_cached_warm(path, use_cache, false)?.0)
}

/// [`analyze_cached`] for a report that will symbolize stacks: when the
/// pass runs and `warm` is set, a [`Warmup`] starts loading debug info
/// beside it (for [`crate::symbols::Symbols::warmed`]).
pub fn analyze_cached_warm(
    path: &Path,
    use_cache: bool,
    warm: bool,
) -> anyhow::Result<(Analysis, Option<Warmup>)> {
    if use_cache {
        match crate::cache::lookup(path) {
            crate::cache::Lookup::Fresh(a) => return Ok((*a, None)),
            crate::cache::Lookup::Corrupt(why) => eprintln!(
                "alloctrace: warning: ignoring the unreadable analysis cache {}: {why}",
                crate::cache::path_for(path).display()
            ),
            crate::cache::Lookup::Missing | crate::cache::Lookup::Stale => {}
        }
    }
    let warmup = if warm { Warmup::start(path) } else { None };
    let a = analyze(path)?;
    if use_cache {
        crate::cache::save(path, &a);
    }
    Ok((a, warmup))
}

/// Runs the pass, sending per-allocation rows to `rows` if given;
/// `progress` allows a progress bar (drawn only on a terminal).
///
/// Two threads (three with the reader's block thread,
/// [`Reader::open_prefetch`]): a reader thread decodes the trace into batches
/// ([`Reader::next_batch`]) and hands them, [`GROUP`] at a time, over a
/// bounded channel to the pass on this thread, which hands them back for
/// reuse. Memory: at most ([`GROUPS_AHEAD`] + 2) x [`GROUP`] batches of
/// [`EventBatch::CAPACITY`] events exist.
pub fn analyze_with(
    path: &Path,
    rows: Option<&mut dyn FnMut(AllocRow)>,
    progress: bool,
) -> anyhow::Result<Analysis> {
    // Blocks are read and decompressed on a third thread, ahead of the
    // decoding on the reader thread.
    let reader = Reader::open_prefetch(path)?;
    let header = reader.header().clone();
    let bar = progress_bar(path, progress);
    let mut pass = Pass::new(header.flags);
    if let Some(sink) = rows {
        pass = pass.with_rows(sink);
    }
    let mut n: u64 = 0;
    let end = read_ahead(reader, |batch, bytes| {
        pass.batch(batch);
        n += 1;
        if n % 16 == 0 {
            if let Some(b) = &bar {
                b.set_position(bytes);
            }
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(end.analysis(header, path, pass.finish()))
}

/// The reference pass: one thread, one [`traces::Record`] at a time through
/// the reader's iterator and [`Pass::record`]. Same result as [`analyze`]
/// (which tests check); slower.
pub fn analyze_serial(path: &Path) -> anyhow::Result<Analysis> {
    let mut reader = Reader::open(path)?;
    let header = reader.header().clone();
    let mut pass = Pass::new(header.flags);
    for rec in reader.by_ref() {
        pass.record(&rec?);
    }
    let end = ReadEnd::of(&reader);
    Ok(end.analysis(header, path, pass.finish()))
}

/// Batches handed from the reader thread to the pass at a time: one wake-up
/// (a futex call on the reader's side, a context switch on the pass's) per
/// group instead of per batch, while a group's columns (about 170 KB a
/// batch) are still in cache when the pass reads them. Measured on the 20 M
/// event churn trace, `errors --no-cache`, alternated: 2 against 4, wall
/// time 0.937 of 4's (median of 10 pairs, 7 faster) and less CPU in 8 of
/// 10; 1 paid more in wake-ups than it saved.
pub const GROUP: usize = 2;

/// Groups the reader thread may decode ahead of the pass.
pub const GROUPS_AHEAD: usize = 1;

/// What the reader knows once every event has been read.
struct ReadEnd {
    stacks: StackTable,
    trailer: Option<Trailer>,
    truncation: Option<Truncation>,
}

impl ReadEnd {
    fn of<R: Read>(reader: &Reader<R>) -> Self {
        ReadEnd {
            stacks: reader.stacks().clone(),
            trailer: reader.trailer().cloned(),
            truncation: reader.truncation().cloned(),
        }
    }

    fn analysis(self, header: Header, path: &Path, result: PassResult) -> Analysis {
        Analysis {
            header,
            stacks: self.stacks,
            trailer: self.trailer,
            truncation: self.truncation,
            path: path.display().to_string(),
            result,
        }
    }
}

/// Reads every batch of `reader` on a second thread and calls `each` with
/// each batch, in order, and the bytes of the file read so far. A reader
/// error comes back as this function's error, after the batches before it
/// were processed. Returns once both threads are done (the reader thread
/// stops as soon as this side stops listening, so neither can wait forever).
fn read_ahead<R: Read + Send>(
    mut reader: Reader<R>,
    mut each: impl FnMut(&EventBatch, u64),
) -> anyhow::Result<ReadEnd> {
    /// Up to [`GROUP`] batches (the last group of a trace may hold fewer),
    /// and the bytes read when the last of them was decoded.
    type Group = (Vec<EventBatch>, u64);
    let (full_tx, full_rx) = sync_channel::<Group>(GROUPS_AHEAD);
    let (empty_tx, empty_rx) = channel::<Vec<EventBatch>>();
    std::thread::scope(|s| {
        let producer = std::thread::Builder::new()
            .name("trace reader".into())
            .spawn_scoped(s, move || -> traces::Result<ReadEnd> {
                loop {
                    let mut group = empty_rx.try_recv().unwrap_or_default();
                    let mut filled = 0;
                    let mut more = true;
                    while more && filled < GROUP {
                        if group.len() == filled {
                            group.push(EventBatch::new());
                        }
                        match reader.next_batch(&mut group[filled]) {
                            Ok(true) => filled += 1,
                            Ok(false) => more = false,
                            // The batches before the error go first.
                            Err(e) if filled > 0 => {
                                group.truncate(filled);
                                let _ = full_tx.send((group, reader.bytes_read()));
                                return Err(e);
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    group.truncate(filled);
                    if filled > 0 && full_tx.send((group, reader.bytes_read())).is_err() {
                        // The pass side is gone; nobody wants the rest.
                        return Ok(ReadEnd::of(&reader));
                    }
                    if !more {
                        return Ok(ReadEnd::of(&reader));
                    }
                }
            })
            .context("cannot start the trace reader thread")?;
        for (group, bytes) in full_rx.iter() {
            for batch in &group {
                each(batch, bytes);
            }
            // The reader thread may have finished: then the group is dropped.
            let _ = empty_tx.send(group);
        }
        let end = producer
            .join()
            .map_err(|_| anyhow::anyhow!("the trace reader thread panicked"))??;
        Ok(end)
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
