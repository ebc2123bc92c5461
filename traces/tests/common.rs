//! Helpers shared by the format tests.

use traces::{Event, ExitStatus, Header, Reader, Record, Trailer, Writer, WriterOptions};

/// Writes `recs` (with `stacks` defined first) into an in-memory trace.
pub fn write_trace(recs: &[Record], stacks: &[(u32, Vec<u64>)], opts: WriterOptions) -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), &Header::synthetic(&["test"]), opts).unwrap();
    for (id, frames) in stacks {
        w.define_stack(*id, frames).unwrap();
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

/// Reads every record of an in-memory trace.
pub fn read_all(bytes: &[u8]) -> (Vec<Record>, Reader<&[u8]>) {
    let mut r = Reader::new(bytes, "mem.atrace".into()).unwrap();
    let mut out = Vec::new();
    for rec in r.by_ref() {
        out.push(rec.unwrap());
    }
    (out, r)
}

/// A small but varied single-thread sequence.
pub fn alloc(time: u64, thread: u32, addr: u64, size: u64) -> Record {
    Record {
        time,
        thread,
        event: Event::Alloc {
            func: traces::AllocFn::Malloc,
            addr,
            size,
            align: 0,
            stack: 1,
        },
    }
}
