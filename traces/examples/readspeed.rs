//! Reads a trace and prints events per second of CPU time (user + system),
//! which stays meaningful on a busy machine where wall time does not.
//!
//! `cargo run --release -p traces --example readspeed -- TRACE [REPEATS] [batch|prefetch|iter-prefetch] [SHORT_RUN]`
//! (`batch`: read with `Reader::next_batch` instead of the iterator;
//! `prefetch`: the same with `Reader::with_prefetch`, blocks read and
//! decompressed on a second thread; `iter-prefetch`: the iterator with it;
//! `SHORT_RUN`: threads whose runs are shorter are decoded ahead, see
//! `Reader::set_short_run`).
//! With prefetch, CPU time counts both threads; the line then also gives
//! the main thread's own (decoding, without reading and decompressing),
//! in nanoseconds from the scheduler's statistics rather than clock ticks.
//!
//! `readspeed TRACE hash` instead prints a hash of every batch's columns
//! (and its events kept whole), read once with `next_batch`: equal hashes
//! from two builds mean they decode the trace identically.

fn cpu_seconds() -> f64 {
    // Every thread's time, exited ones included (the prefetch thread's):
    // /proc/self/schedstat would count the main thread only. Clock ticks.
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name: utime is field 14, stime 15 (1-based).
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU time of the calling thread in seconds, to the nanosecond
/// (`/proc/thread-self/schedstat`: its first field; 0 where there is none).
fn thread_cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = s
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok());
    ns.unwrap_or(0.0) / 1e9
}

/// Reads every event of `reader`, through `next_batch` when `batched`, else
/// through the iterator; returns the count.
fn read_all<R: std::io::Read>(
    mut reader: traces::Reader<R>,
    batched: bool,
    batch: &mut traces::EventBatch,
) -> traces::Result<u64> {
    let mut n = 0u64;
    if batched {
        while reader.next_batch(batch)? {
            n += batch.len() as u64;
        }
    } else {
        for r in reader {
            n += (r?.time & 1) | 1;
        }
    }
    Ok(n)
}

/// A hash of every batch `next_batch` gives for the trace at `path`, and
/// the number of events.
fn hash_batches(path: &str) -> Result<(u64, u64), Box<dyn std::error::Error>> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(path)?;
    let mut reader = traces::Reader::new(&bytes[..], path.to_string())?;
    let mut batch = traces::EventBatch::new();
    // Fixed keys: the same hash from run to run and build to build.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut n = 0u64;
    while reader.next_batch(&mut batch)? {
        n += batch.len() as u64;
        batch.len().hash(&mut h);
        batch.times().hash(&mut h);
        batch.threads().hash(&mut h);
        batch.kinds().hash(&mut h);
        batch.addrs().hash(&mut h);
        batch.aux().hash(&mut h);
        batch.sizes().hash(&mut h);
        batch.stacks().hash(&mut h);
        format!("{:?}", batch.others()).hash(&mut h);
    }
    Ok((h.finish(), n))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: readspeed TRACE [REPEATS]")?;
    if std::env::args().nth(2).as_deref() == Some("hash") {
        let (h, n) = hash_batches(&path)?;
        println!("{n} events: hash {h:016x}");
        return Ok(());
    }
    let repeats: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let mode = args.next().unwrap_or_default();
    // Merge tuning, for measurements: runs shorter than this are decoded ahead.
    let short_run: Option<usize> = args.next().map(|s| s.parse()).transpose()?;
    let batched = mode == "batch" || mode == "prefetch";
    let prefetch = mode == "prefetch" || mode == "iter-prefetch";
    let bytes = std::fs::read(&path)?;
    let shared: std::sync::Arc<[u8]> = bytes.clone().into();
    let (c0, w0) = (cpu_seconds(), std::time::Instant::now());
    let t0 = thread_cpu_seconds();
    let mut n = 0u64;
    let mut batch = traces::EventBatch::new();
    for _ in 0..repeats {
        n += if prefetch {
            let inner = std::io::Cursor::new(std::sync::Arc::clone(&shared));
            let mut reader = traces::Reader::new(inner, path.clone())?.with_prefetch();
            if let Some(n) = short_run {
                reader.set_short_run(n);
            }
            read_all(reader, batched, &mut batch)?
        } else {
            let mut reader = traces::Reader::new(&bytes[..], path.clone())?;
            if let Some(n) = short_run {
                reader.set_short_run(n);
            }
            read_all(reader, batched, &mut batch)?
        };
    }
    let (cpu, wall) = (cpu_seconds() - c0, w0.elapsed().as_secs_f64());
    let main = thread_cpu_seconds() - t0;
    print!(
        "{n} events: {:.1} M events/s of CPU time ({cpu:.2} s), {:.1} M events/s wall ({wall:.2} s)",
        n as f64 / cpu / 1e6,
        n as f64 / wall / 1e6
    );
    if prefetch {
        print!(", main thread {main:.3} s");
    }
    println!();
    Ok(())
}
