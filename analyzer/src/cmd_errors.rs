//! `alloctrace errors TRACE`: every heap error the pass found, with its stacks.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use crate::analysis::Analysis;
use crate::errors::{ErrorKind, HeapError};
use crate::report_json::{hex, JSON_VERSION};
use crate::report_table::{count, stack_cell, table};
use crate::symbols::{Frame, Symbols};

/// One error (JSON: an element of `errors`).
#[derive(Clone, Debug, Serialize)]
pub struct ErrorEntry {
    /// `double-free`, `invalid-free`, `interior-free`, `mismatched-free`, `realloc-of-freed`.
    pub kind: &'static str,
    /// Address passed to the offending call, `"0x..."`.
    #[serde(serialize_with = "hex")]
    pub address: u64,
    /// Size of the block concerned (0 when there is none).
    pub size: u64,
    /// Trace time of the offending call, nanoseconds since the trace start.
    pub time_ns: u64,
    /// Thread of the offending call.
    pub thread: u32,
    /// Function of the offending call (`free`, `operator delete[]`, `realloc`).
    pub function: Option<String>,
    /// Allocation function of the block concerned, when known.
    pub alloc_function: Option<&'static str>,
    /// Interior free: start of the containing block, `"0x..."`.
    pub block: Option<String>,
    /// Interior free: offset of `address` in that block.
    pub offset: Option<u64>,
    /// `alloc`, `free` (the offending call) and `first_free` (the earlier
    /// release of a double free) stacks, innermost first; only those known.
    pub stacks: BTreeMap<&'static str, Vec<Frame>>,
}

/// The errors report (JSON object of `errors --json`).
#[derive(Clone, Debug, Serialize)]
pub struct ErrorReport {
    /// Version of the JSON shapes.
    pub version: u32,
    /// Trace path.
    pub trace: String,
    /// Errors found, per kind (all of them).
    pub counts: BTreeMap<&'static str, u64>,
    /// Total errors found.
    pub total: u64,
    /// Releases of blocks allocated before an attached trace started (not errors).
    pub unknown_before_attach: u64,
    /// The errors in time order (the first 100,000 when there are more).
    pub errors: Vec<ErrorEntry>,
}

/// Symbolizes the errors of `a`.
pub fn error_report(a: &Analysis, syms: &mut Symbols) -> ErrorReport {
    let errs = &a.result.errors;
    syms.prefetch(
        &a.stacks,
        errs.iter()
            .flat_map(|e| [Some(e.stack), e.alloc_stack, e.first_free_stack])
            .flatten(),
    );
    let start = a.header.start_time.min(a.result.totals.first_time);
    let errors = errs.iter().map(|e| entry(a, syms, e, start)).collect();
    let t = &a.result.totals;
    ErrorReport {
        version: JSON_VERSION,
        trace: a.path.clone(),
        counts: ErrorKind::ALL
            .iter()
            .map(|k| (k.as_str(), t.errors_by_kind.get(k).copied().unwrap_or(0)))
            .collect(),
        total: t.errors_by_kind.values().sum(),
        unknown_before_attach: t.unknown_before_attach,
        errors,
    }
}

fn entry(a: &Analysis, syms: &mut Symbols, e: &HeapError, start: u64) -> ErrorEntry {
    let mut stacks = BTreeMap::new();
    stacks.insert("free", syms.stack(&a.stacks, e.stack));
    if let Some(s) = e.alloc_stack {
        stacks.insert("alloc", syms.stack(&a.stacks, s));
    }
    if let Some(s) = e.first_free_stack {
        stacks.insert("first_free", syms.stack(&a.stacks, s));
    }
    ErrorEntry {
        kind: e.kind.as_str(),
        address: e.address,
        size: e.size,
        time_ns: e.time.saturating_sub(start),
        thread: e.thread,
        function: e.free_func.clone(),
        alloc_function: e.alloc_func.map(|f| f.name()),
        block: e.block.map(|(b, _)| format!("{b:#x}")),
        offset: e.block.map(|(_, o)| o),
        stacks,
    }
}

/// One-line description of an error, e.g. `double free of 0x1000 (32 bytes)`.
pub fn describe(e: &ErrorEntry) -> String {
    let f = e.function.as_deref().unwrap_or("free");
    let a = e.alloc_function.unwrap_or("?");
    match e.kind {
        "double-free" => format!("double free of {:#x} ({} bytes) by {f}", e.address, e.size),
        "invalid-free" => format!("{f} of {:#x}, which was never allocated", e.address),
        "interior-free" => format!(
            "{f} of {:#x}, {} bytes inside the live block {} of {} bytes",
            e.address,
            e.offset.unwrap_or(0),
            e.block.as_deref().unwrap_or("?"),
            e.size
        ),
        "mismatched-free" => format!(
            "{f} of {:#x} ({} bytes), allocated by {a}",
            e.address, e.size
        ),
        "realloc-of-freed" => format!(
            "{f} of {:#x} ({} bytes), which was already freed",
            e.address, e.size
        ),
        k => format!("{k} at {:#x}", e.address),
    }
}

/// Prints the report as a table.
pub fn print_table(out: &mut impl Write, r: &ErrorReport) -> std::io::Result<()> {
    if r.errors.is_empty() {
        writeln!(out, "No heap errors in {}.", r.trace)?;
    } else {
        let mut t = table(&["#", "error", "stacks"]);
        for (i, e) in r.errors.iter().enumerate() {
            let mut cell = Vec::new();
            for (label, key) in [
                ("released at", "free"),
                ("first freed at", "first_free"),
                ("allocated at", "alloc"),
            ] {
                if let Some(s) = e.stacks.get(key) {
                    cell.push(format!("{label}:\n{}", stack_cell(s)));
                }
            }
            t.add_row(vec![(i + 1).to_string(), describe(e), cell.join("\n")]);
        }
        writeln!(out, "{t}")?;
        let per: Vec<String> = r
            .counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k}: {}", count(*n)))
            .collect();
        writeln!(out, "{} heap errors ({}).", count(r.total), per.join(", "))?;
    }
    if r.unknown_before_attach > 0 {
        writeln!(
            out,
            "{} releases of blocks allocated before the trace started (attached; not errors).",
            count(r.unknown_before_attach)
        )?;
    }
    Ok(())
}
