//! Encoding and decoding speed of the trace format on the synthetic churn
//! stream (see `traces::synthetic`). `cargo bench -p traces --bench codec`.
// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use traces::synthetic::{Churn, ChurnConfig};
use traces::{
    EventBatch, ExitStatus, Header, Kind, Reader, Record, Trailer, Writer, WriterOptions,
};

const EVENTS: u64 = 2_000_000;

fn encode(recs: &[Record], stacks: &[(u32, Vec<u64>)]) -> Vec<u8> {
    let opts = WriterOptions {
        ordered: true,
        ..Default::default()
    };
    let mut w = Writer::new(
        Vec::with_capacity(8 << 20),
        &Header::synthetic(&["bench"]),
        opts,
    )
    .unwrap();
    for (id, f) in stacks {
        w.define_stack(*id, f).unwrap();
    }
    for r in recs {
        w.write(r).unwrap();
    }
    w.finish(&Trailer {
        end_time: 0,
        exit: ExitStatus::Code(0),
        dropped_events: 0,
    })
    .unwrap()
}

fn encode_collector(recs: &[Record], quarter: usize, stacks: &[(u32, Vec<u64>)]) -> Vec<u8> {
    let mut w = Writer::new(
        Vec::with_capacity(8 << 20),
        &Header::synthetic(&["bench"]),
        WriterOptions::default(),
    )
    .unwrap();
    for (id, f) in stacks {
        w.define_stack(*id, f).unwrap();
    }
    let round = 256;
    let mut at = 0;
    while at < quarter {
        for t in 0..4 {
            for r in &recs[t * quarter + at..t * quarter + (at + round).min(quarter)] {
                w.write(r).unwrap();
            }
        }
        at += round;
        w.advance(at as u64 * 30).unwrap();
    }
    w.finish(&Trailer {
        end_time: 0,
        exit: ExitStatus::Code(0),
        dropped_events: 0,
    })
    .unwrap()
}

/// Touches every field of every event in `b`.
fn fold_batch(b: &EventBatch) -> u64 {
    let mut acc = 0u64;
    for i in 0..b.len() {
        let k = match b.kinds()[i] {
            Kind::Alloc(f) => f as u64,
            Kind::Free(f) => 32 + f as u64,
            Kind::Realloc(f) => 64 + f as u64,
            _ => 128,
        };
        acc = acc
            .wrapping_add(b.times()[i] ^ b.threads()[i] as u64)
            .wrapping_add(b.addrs()[i] ^ b.aux()[i])
            .wrapping_add(b.sizes()[i] ^ ((b.stacks()[i] as u64) << 8) ^ k);
    }
    acc.wrapping_add(b.others().len() as u64)
}

fn bench(c: &mut Criterion) {
    let churn = Churn::new(ChurnConfig {
        events: EVENTS,
        ..Default::default()
    });
    let stacks: Vec<(u32, Vec<u64>)> = churn.stacks().map(|(i, f)| (i, f.to_vec())).collect();
    let recs: Vec<Record> = churn.collect();
    let bytes = encode(&recs, &stacks);
    eprintln!(
        "{} events -> {} bytes = {:.3} bytes/event",
        EVENTS,
        bytes.len(),
        bytes.len() as f64 / EVENTS as f64
    );

    let mut g = c.benchmark_group("churn");
    g.throughput(Throughput::Elements(EVENTS));
    g.sample_size(10);
    g.bench_function("encode", |b| b.iter(|| encode(&recs, &stacks).len()));
    // As the recorder's collector writes: four threads, each a quarter of the
    // stream, interleaved in rounds of 256 events per thread, unordered, with
    // a watermark after each round.
    let quarter = recs.len() / 4;
    let threads: Vec<Record> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            thread: 1 + (i / quarter) as u32,
            time: (i % quarter) as u64 * 30 + 1 + (i / quarter) as u64,
            event: r.event.clone(),
        })
        .collect();
    g.bench_function("encode_collector", |b| {
        b.iter(|| encode_collector(&threads, quarter, &stacks).len())
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            let r = Reader::new(&bytes[..], "bench".into()).unwrap();
            let mut n = 0u64;
            for rec in r {
                n += rec.unwrap().time & 1;
            }
            n
        })
    });
    // The batch API: same full path (checksum, zstd, columns, address model,
    // merge of threads), events handed over as columns. Every field of every
    // event is read, so nothing is optimised away.
    g.bench_function("decode_batch", |b| {
        let mut batch = EventBatch::new();
        b.iter(|| {
            let mut r = Reader::new(&bytes[..], "bench".into()).unwrap();
            let mut n = 0u64;
            while r.next_batch(&mut batch).unwrap() {
                n += fold_batch(&batch);
            }
            n
        })
    });
    // The column decoder alone, without file framing, zstd or the merge of
    // threads, into batches read like `decode_batch`'s: the ceiling for any
    // reader built on it.
    let mut payloads = Vec::new();
    let mut enc = traces::codec::BlockEncoder::new(1);
    for r in &recs {
        enc.push(r.time, &r.event);
        if enc.len() >= 1 << 20 {
            payloads.push(enc.finish());
        }
    }
    payloads.push(enc.finish());
    g.bench_function("decode_columns", |b| {
        let mut batch = EventBatch::new();
        b.iter(|| {
            let mut model = traces::codec::AddrModel::default();
            let mut n = 0u64;
            for p in &payloads {
                let mut d = traces::codec::BlockDecoder::new(p.clone()).unwrap();
                while d.remaining() > 0 {
                    batch.clear();
                    d.decode_into(&mut model, &mut batch, u128::MAX, usize::MAX)
                        .unwrap();
                    n += fold_batch(&batch);
                }
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
