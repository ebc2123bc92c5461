//! Writes the golden traces in `traces/samples/golden/` (their expected
//! `dump` outputs are checked by the root crate's tests).
//!
//! `cargo run -p traces --example make_golden` then
//! `cargo test -p alloctrace golden` (with `ALLOCTRACE_BLESS=1` to rewrite
//! the expected files after a deliberate format change).

use std::path::Path;

use traces::{
    AllocFn, Event, ExitStatus, FreeFn, Header, Module, Record, Trailer, Writer, WriterOptions,
};

fn rec(time: u64, thread: u32, event: Event) -> Record {
    Record {
        time,
        thread,
        event,
    }
}

fn alloc(func: AllocFn, addr: u64, size: u64, align: u64, stack: u32) -> Event {
    Event::Alloc {
        func,
        addr,
        size,
        align,
        stack,
    }
}

fn free(func: FreeFn, addr: u64, size: u64, align: u64, stack: u32) -> Event {
    Event::Free {
        func,
        addr,
        size,
        align,
        stack,
    }
}

fn header(cmd: &[&str], pid: u32) -> Header {
    let mut h = Header::synthetic(cmd);
    h.pid = pid;
    h.ppid = 1;
    h.start_time = 1_000;
    h.start_unix_ns = 1_764_158_400_000_000_000;
    h.tool = "alloctrace golden".into();
    h
}

/// One thread, every kind of event once or more.
fn basic(out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let f = std::fs::File::create(out)?;
    let opts = WriterOptions {
        ordered: true,
        ..Default::default()
    };
    let mut w = Writer::new(f, &header(&["./basic", "--flag"], 4242), opts)?;
    w.define_stack(1, &[0x401136, 0x401200, 0x7f00_0002_9d90])?;
    w.define_stack(2, &[0x401150, 0x401200, 0x7f00_0002_9d90])?;
    w.define_stack(3, &[0x7f00_0001_2345])?;
    let t = 4242;
    let m = Module {
        path: "/usr/bin/basic".into(),
        base: 0,
        start: 0x400000,
        end: 0x405000,
        build_id: vec![0xde, 0xad, 0xbe, 0xef],
    };
    let events = vec![
        Event::ThreadStart { parent: 0 },
        Event::ModuleLoad(Box::new(m)),
        alloc(AllocFn::Malloc, 0x5555_0000_1010, 24, 0, 1),
        alloc(AllocFn::Calloc, 0x5555_0000_1030, 400, 0, 1),
        Event::Realloc {
            func: AllocFn::Realloc,
            old_addr: 0x5555_0000_1010,
            new_addr: 0x5555_0000_2000,
            size: 4000,
            stack: 2,
        },
        alloc(AllocFn::NewArray, 0x5555_0000_3000, 80, 0, 2),
        free(FreeFn::Free, 0x5555_0000_3000, 0, 0, 2),
        alloc(AllocFn::AlignedAlloc, 0x5555_0000_4000, 4096, 4096, 1),
        free(FreeFn::DeleteSizedAligned, 0x5555_0000_4000, 4096, 4096, 3),
        free(FreeFn::Free, 0x5555_0000_1030, 0, 0, 2),
        free(FreeFn::Free, 0x5555_0000_1030, 0, 0, 2),
        alloc(AllocFn::Malloc, 0, 1 << 40, 0, 1),
        Event::Mmap {
            addr: 0x7f00_1000_0000,
            len: 1 << 20,
            prot: 3,
            flags: 0x22,
            fd: -1,
            stack: 3,
        },
        Event::Munmap {
            addr: 0x7f00_1000_0000,
            len: 1 << 20,
            stack: 3,
        },
        Event::Brk {
            old_break: 0x5555_0002_1000,
            new_break: 0x5555_0004_2000,
            stack: 3,
        },
        Event::Marker {
            value: 7,
            label: "phase 2".into(),
        },
        Event::Fork { child_pid: 4243 },
        Event::Exec {
            path: "/bin/true".into(),
        },
    ];
    for (i, e) in events.into_iter().enumerate() {
        w.write(&rec(1_000 + i as u64 * 10, t, e))?;
    }
    w.finish(&Trailer {
        end_time: 1_500,
        exit: ExitStatus::Exec,
        dropped_events: 0,
    })?;
    Ok(())
}

/// Three threads written collector-style (out of global order, watermarks),
/// with a cross-thread free; ends without a clean exit (SIGKILL).
fn threads(out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let f = std::fs::File::create(out)?;
    let opts = WriterOptions {
        block_bytes: 32,
        ..Default::default()
    };
    let mut w = Writer::new(f, &header(&["./threads"], 100), opts)?;
    w.define_stack(9, &[0x401300, 0x7f00_0000_1000])?;
    for round in 0..3u64 {
        for t in [101u32, 100, 102] {
            let base = 0x6000_0000 + t as u64 * 0x1000 + round * 0x100;
            let time = 2_000 + round * 100 + (t as u64 - 100) * 7;
            w.write(&rec(time, t, alloc(AllocFn::New, base, 48, 0, 9)))?;
            // Thread 101 frees what thread 100 allocated in the previous round.
            if t == 101 && round > 0 {
                let victim = 0x6000_0000 + 100 * 0x1000 + (round - 1) * 0x100;
                w.write(&rec(time + 1, t, free(FreeFn::Delete, victim, 0, 0, 9)))?;
            }
            w.write(&rec(time + 3, t, free(FreeFn::Delete, base, 0, 0, 9)))?;
        }
        w.advance(2_000 + round * 100 + 50)?;
    }
    w.write(&rec(2_400, 102, Event::ThreadExit))?;
    w.finish(&Trailer {
        end_time: 2_500,
        exit: ExitStatus::Signal(9),
        dropped_events: 2,
    })?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/golden");
    std::fs::create_dir_all(&dir)?;
    basic(&dir.join("basic.atrace"))?;
    threads(&dir.join("threads.atrace"))?;
    // The same trace cut inside its last events block: a crashed collector.
    let full = std::fs::read(dir.join("threads.atrace"))?;
    std::fs::write(dir.join("truncated.atrace"), &full[..full.len() - 40])?;
    println!("wrote {}", dir.display());
    Ok(())
}
