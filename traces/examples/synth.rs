//! Writes the synthetic churn stream to a trace and prints bytes per event.
//!
//! `cargo run --release -p traces --example synth -- [EVENTS] [OUT]`

use std::io::BufWriter;

use traces::synthetic::{Churn, ChurnConfig};
use traces::{ExitStatus, Header, Trailer, Writer, WriterOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let events: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000_000);
    let out = args
        .next()
        .unwrap_or_else(|| "synthetic-churn.atrace".into());
    let churn = Churn::new(ChurnConfig {
        events,
        ..Default::default()
    });
    let file = BufWriter::new(std::fs::File::create(&out)?);
    let mut w = Writer::new(
        file,
        &Header::synthetic(&["synthetic-churn"]),
        WriterOptions {
            ordered: true,
            ..Default::default()
        },
    )?;
    let stacks: Vec<(u32, Vec<u64>)> = churn.stacks().map(|(i, f)| (i, f.to_vec())).collect();
    for (id, f) in &stacks {
        w.define_stack(*id, f)?;
    }
    let t0 = std::time::Instant::now();
    for r in churn {
        w.write(&r)?;
    }
    w.finish(&Trailer {
        end_time: 0,
        exit: ExitStatus::Code(0),
        dropped_events: 0,
    })?;
    let enc = t0.elapsed();
    let bytes = std::fs::metadata(&out)?.len();
    let t1 = std::time::Instant::now();
    let n = traces::Reader::open(&out)?.count();
    let dec = t1.elapsed();
    println!(
        "{events} events, {bytes} bytes, {:.3} bytes/event; encode {:.1} Mev/s, decode {:.1} Mev/s ({n} read)",
        bytes as f64 / events as f64,
        events as f64 / enc.as_secs_f64() / 1e6,
        n as f64 / dec.as_secs_f64() / 1e6
    );
    Ok(())
}
