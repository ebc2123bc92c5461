//! Counts a trace's events and says how its times are spread: total records,
//! threads, and the share of times that are whole microseconds (what
//! `record --time-resolution` makes of a single-threaded run). For the
//! trace-size figures in BENCHMARKS.md (bytes per event).
//! Usage: `tracestat TRACE...`

fn main() -> anyhow::Result<()> {
    for path in std::env::args().skip(1) {
        let mut r = traces::Reader::open(std::path::Path::new(&path))?;
        let (mut n, mut whole_us) = (0u64, 0u64);
        let mut threads = std::collections::HashSet::new();
        for rec in r.by_ref() {
            let rec = rec?;
            n += 1;
            whole_us += u64::from(rec.time % 1000 == 0);
            threads.insert(rec.thread);
        }
        let bytes = std::fs::metadata(&path)?.len();
        println!(
            "{path}: {n} events, {} threads, {bytes} bytes, {:.2} bytes/event, {:.1} % of times whole µs, dropped {}",
            threads.len(),
            bytes as f64 / n.max(1) as f64,
            100.0 * whole_us as f64 / n.max(1) as f64,
            r.trailer().map_or(0, |t| t.dropped_events),
        );
    }
    Ok(())
}
