//! `alloctrace info`: header, event counts by kind, threads, time span, integrity.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;
use traces::{Event, Reader};

/// Show a trace's header, event counts, threads, time span and integrity.
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Info {
    file: String,
    format_version: u16,
    tool: String,
    pid: u32,
    ppid: u32,
    cmdline: Vec<String>,
    exe: String,
    clock: String,
    start_unix_ns: u64,
    pointer_size: u8,
    page_size: u32,
    flags: Vec<&'static str>,
    events: u64,
    events_by_kind: BTreeMap<&'static str, u64>,
    threads: usize,
    stacks: usize,
    stack_nodes: usize,
    modules: u64,
    first_time_ns: Option<u64>,
    last_time_ns: Option<u64>,
    duration_ns: u64,
    file_bytes: u64,
    bytes_per_event: f64,
    integrity: Integrity,
}

#[derive(Serialize)]
struct Integrity {
    /// "complete", "no-trailer" or "truncated".
    status: &'static str,
    exit: Option<String>,
    /// How the process ended, as a sentence (the table's form of `exit`).
    #[serde(skip)]
    ended: Option<String>,
    dropped_events: u64,
    truncated_bytes: u64,
    message: Option<String>,
}

fn flag_names(f: u32) -> Vec<&'static str> {
    let mut v = Vec::new();
    for (bit, name) in [
        (traces::flags::ATTACHED, "attached"),
        (traces::flags::FORKED, "forked"),
        (traces::flags::EXECED, "execed"),
        (traces::flags::NO_BACKTRACES, "no-backtraces"),
    ] {
        if f & bit != 0 {
            v.push(name);
        }
    }
    v
}

/// Runs `info`.
pub fn run(args: &InfoArgs) -> anyhow::Result<i32> {
    let mut r = Reader::open(&args.trace)?;
    let h = r.header().clone();
    let mut by_kind = BTreeMap::new();
    let mut threads = BTreeSet::new();
    let (mut events, mut modules) = (0u64, 0u64);
    let (mut first, mut last) = (None, None);
    for rec in r.by_ref() {
        let rec = rec?;
        events += 1;
        *by_kind.entry(rec.event.kind_name()).or_insert(0u64) += 1;
        threads.insert(rec.thread);
        if matches!(rec.event, Event::ModuleLoad(_)) {
            modules += 1;
        }
        first.get_or_insert(rec.time);
        last = Some(rec.time);
    }
    let file_bytes = std::fs::metadata(&args.trace).map(|m| m.len()).unwrap_or(0);
    let integrity = match (r.truncation(), r.trailer()) {
        (Some(t), _) => Integrity {
            status: "truncated",
            exit: None,
            ended: None,
            dropped_events: 0,
            truncated_bytes: t.dropped_bytes,
            message: Some(t.to_string()),
        },
        (None, Some(tr)) => Integrity {
            status: "complete",
            exit: Some(format!("{:?}", tr.exit)),
            ended: Some(tr.exit.to_string()),
            dropped_events: tr.dropped_events,
            truncated_bytes: 0,
            message: None,
        },
        (None, None) => Integrity {
            status: "no-trailer",
            exit: None,
            ended: None,
            dropped_events: 0,
            truncated_bytes: 0,
            message: Some("the recording did not finish cleanly".into()),
        },
    };
    let info = Info {
        file: args.trace.display().to_string(),
        format_version: r.version(),
        tool: h.tool.clone(),
        pid: h.pid,
        ppid: h.ppid,
        cmdline: h.cmdline.clone(),
        exe: h.exe.clone(),
        clock: format!("{:?}", h.clock),
        start_unix_ns: h.start_unix_ns,
        pointer_size: h.pointer_size,
        page_size: h.page_size,
        flags: flag_names(h.flags),
        events,
        events_by_kind: by_kind,
        threads: threads.len(),
        stacks: r.stacks().len(),
        stack_nodes: r.stacks().node_count(),
        modules,
        first_time_ns: first.map(|t| t - h.start_time.min(t)),
        last_time_ns: last.map(|t| t - h.start_time.min(t)),
        duration_ns: match (first, last) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        },
        file_bytes,
        bytes_per_event: if events > 0 {
            file_bytes as f64 / events as f64
        } else {
            0.0
        },
        integrity,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &info)?;
        writeln!(out)?;
    } else {
        print_text(&mut out, &info).context("writing output")?;
    }
    crate::output::warn_incomplete(&r);
    Ok(0)
}

fn print_text(out: &mut impl Write, i: &Info) -> std::io::Result<()> {
    writeln!(
        out,
        "file:          {} ({} bytes, format v{})",
        i.file, i.file_bytes, i.format_version
    )?;
    writeln!(out, "written by:    {}", i.tool)?;
    writeln!(
        out,
        "process:       pid {} (parent {}), {}",
        i.pid, i.ppid, i.exe
    )?;
    writeln!(out, "command line:  {}", i.cmdline.join(" "))?;
    if !i.flags.is_empty() {
        writeln!(out, "flags:         {}", i.flags.join(", "))?;
    }
    writeln!(
        out,
        "clock:         {} ({}-byte pointers, {}-byte pages)",
        i.clock, i.pointer_size, i.page_size
    )?;
    writeln!(out, "duration:      {:.6} s", i.duration_ns as f64 / 1e9)?;
    writeln!(out, "threads:       {}", i.threads)?;
    writeln!(
        out,
        "stacks:        {} ({} trie nodes)",
        i.stacks, i.stack_nodes
    )?;
    writeln!(out, "modules:       {}", i.modules)?;
    writeln!(
        out,
        "events:        {} ({:.2} bytes/event)",
        i.events, i.bytes_per_event
    )?;
    for (k, n) in &i.events_by_kind {
        writeln!(out, "  {k:<14} {n}")?;
    }
    let g = &i.integrity;
    match g.status {
        "complete" => writeln!(
            out,
            "integrity:     complete; {}; {} events dropped by the recorder",
            g.ended.as_deref().unwrap_or("?"),
            g.dropped_events
        ),
        _ => writeln!(
            out,
            "integrity:     {}: {}",
            g.status,
            g.message.as_deref().unwrap_or("")
        ),
    }
}
