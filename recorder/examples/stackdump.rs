//! Prints each heap event of a trace with its function and stack frames (as
//! module file name + offset from the module's start), one line per event, so
//! that two recordings of the same program can be compared with `diff`: the
//! check that a recorder change kept every recorded stack the same.
//! Usage: `stackdump TRACE`

use std::io::Write;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: stackdump TRACE"))?;
    let mut r = traces::Reader::open(std::path::Path::new(&path))?;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let mut events = Vec::new();
    // (start, end, name) of the modules loaded so far.
    let mut modules: Vec<(u64, u64, String)> = Vec::new();
    for rec in r.by_ref() {
        let rec = rec?;
        let what = match &rec.event {
            traces::Event::ModuleLoad(m) => {
                let name = m.path.rsplit('/').next().unwrap_or("").to_string();
                modules.push((m.start, m.end, name));
                continue;
            }
            traces::Event::Alloc { func, .. } => format!("alloc {func:?}"),
            traces::Event::Free { func, .. } => format!("free {func:?}"),
            traces::Event::Realloc { func, .. } => format!("realloc {func:?}"),
            _ => continue,
        };
        events.push((what, rec.event.stack(), modules.len()));
    }
    let stacks = r.stacks();
    for (what, stack, nmods) in events {
        write!(out, "{what}:")?;
        if stack != 0 {
            for f in stacks.frames(stack) {
                match modules[..nmods].iter().rev().find(|m| f >= m.0 && f < m.1) {
                    Some((start, _, name)) => write!(out, " {name}+{:x}", f - start)?,
                    None => write!(out, " {f:x}")?,
                }
            }
        }
        writeln!(out)?;
    }
    Ok(())
}
