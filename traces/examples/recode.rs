//! Reads a trace and writes it again with the current writer, printing the
//! size before and after (for trying out encoder changes on real traces).
//!
//! `cargo run --release -p traces --example recode -- IN OUT [QUANTUM_NS]`
//!
//! With `QUANTUM_NS`, every event's time is rounded down to a multiple of it
//! first (an experiment on what the time column costs; 1 ns keeps the trace
//! as it is; coarse times can misorder events of different threads).

use traces::{ExitStatus, Reader, Trailer, Writer, WriterOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (inp, out) = (
        args.next().ok_or("usage: recode IN OUT")?,
        args.next().ok_or("usage: recode IN OUT")?,
    );
    let mut r = Reader::open(&inp)?;
    let f = std::io::BufWriter::new(std::fs::File::create(&out)?);
    let mut w = Writer::new(
        f,
        &r.header().clone(),
        WriterOptions {
            ordered: true,
            ..Default::default()
        },
    )?;
    let quantum: u64 = match args.next() {
        Some(q) => q
            .parse()
            .ok()
            .filter(|&q| q > 0)
            .ok_or("QUANTUM_NS: a positive integer")?,
        None => 1,
    };
    let mut n = 0u64;
    for rec in r.by_ref() {
        let mut rec = rec?;
        rec.time -= rec.time % quantum;
        w.write(&rec)?;
        n += 1;
    }
    let ids: Vec<u32> = r.stacks().ids().collect();
    for id in ids {
        w.define_stack(id, &r.stacks().frames(id))?;
    }
    let t = r.trailer().cloned().unwrap_or(Trailer {
        end_time: 0,
        exit: ExitStatus::Unknown,
        dropped_events: 0,
    });
    w.finish(&t)?;
    let (a, b) = (
        std::fs::metadata(&inp)?.len(),
        std::fs::metadata(&out)?.len(),
    );
    println!(
        "{n} events: {a} -> {b} bytes ({:.3} -> {:.3} bytes/event)",
        a as f64 / n as f64,
        b as f64 / n as f64
    );
    Ok(())
}
