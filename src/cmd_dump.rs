//! `alloctrace dump`: every event, one per line, for debugging and golden tests.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use serde::Serialize;
use traces::{Event, Reader, Record};

/// Print every event of a trace, one per line.
#[derive(clap::Args, Debug)]
pub struct DumpArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// Print JSON lines (one object per event, then one per stack).
    #[arg(long)]
    pub json: bool,
    /// Omit the stack table printed after the events.
    #[arg(long)]
    pub no_stacks: bool,
}

#[derive(Serialize)]
struct JsonRecord<'a> {
    time_ns: u64,
    thread: u32,
    kind: &'static str,
    event: &'a Event,
}

#[derive(Serialize)]
struct JsonStack {
    stack: u32,
    frames: Vec<String>,
}

/// Runs `dump`.
pub fn run(args: &DumpArgs) -> anyhow::Result<i32> {
    let mut r = Reader::open(&args.trace)?;
    let start = r.header().start_time;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for rec in r.by_ref() {
        let rec = rec?;
        let t = rec.time.saturating_sub(start);
        if args.json {
            let j = JsonRecord {
                time_ns: t,
                thread: rec.thread,
                kind: rec.event.kind_name(),
                event: &rec.event,
            };
            serde_json::to_writer(&mut out, &j)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", line(t, &rec))?;
        }
    }
    if !args.no_stacks {
        let mut ids: Vec<u32> = r.stacks().ids().collect();
        ids.sort_unstable();
        for id in ids {
            let frames: Vec<String> = r
                .stacks()
                .frames(id)
                .iter()
                .map(|a| format!("{a:#x}"))
                .collect();
            if args.json {
                serde_json::to_writer(&mut out, &JsonStack { stack: id, frames })?;
                writeln!(out)?;
            } else {
                writeln!(out, "stack {id}: {}", frames.join(" "))?;
            }
        }
    }
    out.flush()?;
    crate::output::warn_incomplete(&r);
    Ok(0)
}

/// One human-readable line for a record at relative time `t`.
fn line(t: u64, rec: &Record) -> String {
    let head = format!("{t:>12} tid={:<6}", rec.thread);
    let body = match &rec.event {
        Event::Alloc {
            func,
            addr,
            size,
            align,
            stack,
        } => {
            let al = if *align != 0 {
                format!(" align={align}")
            } else {
                String::new()
            };
            format!(
                "alloc   {} {addr:#x} size={size}{al} stack={stack}",
                func.name()
            )
        }
        Event::Free {
            func,
            addr,
            size,
            align,
            stack,
        } => {
            let sz = if *size != 0 {
                format!(" size={size}")
            } else {
                String::new()
            };
            let al = if *align != 0 {
                format!(" align={align}")
            } else {
                String::new()
            };
            format!("free    {} {addr:#x}{sz}{al} stack={stack}", func.name())
        }
        Event::Realloc {
            func,
            old_addr,
            new_addr,
            size,
            stack,
        } => {
            format!(
                "realloc {} {old_addr:#x} -> {new_addr:#x} size={size} stack={stack}",
                func.name()
            )
        }
        Event::Mmap {
            addr,
            len,
            prot,
            flags,
            fd,
            stack,
        } => {
            format!(
                "mmap    {addr:#x} len={len} prot={prot:#x} flags={flags:#x} fd={fd} stack={stack}"
            )
        }
        Event::Munmap { addr, len, stack } => format!("munmap  {addr:#x} len={len} stack={stack}"),
        Event::Mremap {
            old_addr,
            old_len,
            new_addr,
            new_len,
            stack,
        } => {
            format!(
                "mremap  {old_addr:#x} len={old_len} -> {new_addr:#x} len={new_len} stack={stack}"
            )
        }
        Event::Brk {
            old_break,
            new_break,
            stack,
        } => format!("brk     {old_break:#x} -> {new_break:#x} stack={stack}"),
        Event::ThreadStart { parent } => format!("thread-start parent={parent}"),
        Event::ThreadExit => "thread-exit".to_string(),
        Event::Fork { child_pid } => format!("fork    child={child_pid}"),
        Event::Exec { path } => format!("exec    {path:?}"),
        Event::ModuleLoad(m) => {
            let id: String = m.build_id.iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "module-load {:?} base={:#x} range={:#x}-{:#x} build-id={}",
                m.path,
                m.base,
                m.start,
                m.end,
                if id.is_empty() { "-" } else { &id }
            )
        }
        Event::ModuleUnload { base } => format!("module-unload base={base:#x}"),
        Event::Marker { value, label } => format!("marker  {value} {label:?}"),
    };
    format!("{head} {body}")
}
