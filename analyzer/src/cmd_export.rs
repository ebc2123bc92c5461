//! `alloctrace export TRACE --parquet DIR`: the allocation table and the
//! stack table as Parquet, for DuckDB, Spark or DataFusion.
//!
//! `DIR/allocations.parquet`: one row per allocation (see
//! [`crate::table::rows_frame`] for the columns), streamed in row groups so
//! memory stays bounded. `DIR/stacks.parquet`: one row per frame of every
//! stack: `stack_id`, `depth` (0 = innermost), `address`, `function`,
//! `file`, `line`, `module`, `inlined`; join `allocations.alloc_stack` or
//! `free_stack` to `stacks.stack_id`.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;
use polars::prelude::*;

use crate::analysis::{analyze_with, Analysis};
use crate::symbols::Symbols;
use crate::table::RowWriter;

/// What `export` wrote.
#[derive(Clone, Debug)]
pub struct Exported {
    /// Path of the allocation table.
    pub allocations: PathBuf,
    /// Rows in it.
    pub allocation_rows: u64,
    /// Path of the stack table.
    pub stacks: PathBuf,
    /// Rows (frames) in it.
    pub stack_rows: u64,
}

/// Writes the tables of the trace at `trace` into `dir` (created if needed).
pub fn export_parquet(trace: &Path, dir: &Path, progress: bool) -> anyhow::Result<Exported> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let allocations = dir.join("allocations.parquet");
    let mut writer = RowWriter::create(&allocations)?;
    let a = analyze_with(trace, Some(&mut |row| writer.push(row)), progress)?;
    a.warn_incomplete();
    let allocation_rows = writer.finish()?;
    let stacks = dir.join("stacks.parquet");
    let stack_rows = write_stacks(&a, &stacks)?;
    Ok(Exported {
        allocations,
        allocation_rows,
        stacks,
        stack_rows,
    })
}

fn write_stacks(a: &Analysis, path: &Path) -> anyhow::Result<u64> {
    let mut ids: Vec<u32> = a.stacks.ids().collect();
    ids.sort_unstable();
    let mut syms = Symbols::new(&a.result.modules);
    syms.prefetch(&a.stacks, ids.iter().copied());
    let (mut sid, mut depth, mut addr) = (Vec::new(), Vec::new(), Vec::new());
    let (mut func, mut file, mut line, mut module, mut inl) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for id in ids {
        for (d, f) in syms.stack(&a.stacks, id).into_iter().enumerate() {
            sid.push(id);
            depth.push(d as u32);
            addr.push(f.address);
            func.push(f.function);
            file.push(f.file);
            line.push(f.line);
            module.push(f.module);
            inl.push(f.inlined);
        }
    }
    let n = sid.len();
    let mut df = DataFrame::new(
        n,
        vec![
            Column::new("stack_id".into(), sid),
            Column::new("depth".into(), depth),
            Column::new("address".into(), addr),
            Column::new("function".into(), func),
            Column::new("file".into(), file),
            Column::new("line".into(), line),
            Column::new("module".into(), module),
            Column::new("inlined".into(), inl),
        ],
    )?;
    let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    ParquetWriter::new(f).finish(&mut df)?;
    Ok(n as u64)
}
