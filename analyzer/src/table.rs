//! The allocation table in polars, and the queries the reports make of it.
//!
//! Decision (memory): `summary`, `leaks` and `errors` must stay flat when a
//! trace gets longer, so they never materialise one row per allocation.
//! The pass aggregates per allocation stack while it runs ([`SiteStats`]),
//! and polars answers the questions over the tables that are bounded by the
//! live set and the distinct stacks: the live blocks at the end (leaks,
//! grouped by stack) and the per-stack aggregates (top sites). The full
//! per-allocation table — one row per allocation: id, address, size,
//! function, thread, alloc time, free time, alloc and free stacks — exists
//! only as a stream: `export` writes it to Parquet in batches of
//! [`BATCH_ROWS`] rows ([`RowWriter`]), so even that stays bounded.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use anyhow::Context;
use polars::prelude::*;
use traces::StackId;

use crate::pass::{AllocRow, SiteStats, Slot};

/// Rows buffered before `export` writes a Parquet row group. 256 Ki rows:
/// at 1 Mi, `export` peaked at 257 MB for 1 M rows and 301 MB (+17 %) for
/// 10 M; at 256 Ki, 117 MB and 121 MB (+4 %). Readers (DuckDB, Spark) work
/// well with row groups of this size.
pub const BATCH_ROWS: usize = 1 << 18;

/// The live blocks at the end: `address`, `size`, `stack`, `id`, `thread`, `time`.
pub fn live_frame(live: &[(u64, Slot)]) -> PolarsResult<DataFrame> {
    let n = live.len();
    DataFrame::new(
        n,
        vec![
            Column::new(
                "address".into(),
                live.iter().map(|(a, _)| *a).collect::<Vec<u64>>(),
            ),
            Column::new(
                "size".into(),
                live.iter().map(|(_, s)| s.size).collect::<Vec<u64>>(),
            ),
            Column::new(
                "stack".into(),
                live.iter().map(|(_, s)| s.stack).collect::<Vec<u32>>(),
            ),
            Column::new(
                "id".into(),
                live.iter().map(|(_, s)| s.id).collect::<Vec<u64>>(),
            ),
            Column::new(
                "thread".into(),
                live.iter().map(|(_, s)| s.thread).collect::<Vec<u32>>(),
            ),
            Column::new(
                "time".into(),
                live.iter().map(|(_, s)| s.time).collect::<Vec<u64>>(),
            ),
        ],
    )
}

/// Queries over fewer rows than this are answered in plain Rust: polars'
/// fixed cost (faulting in its code, starting its thread pool, planning;
/// about 25 ms of wall time per process on the 2-core bench machine, where
/// `leaks` on a cached analysis takes 20 ms without it) is more than such a
/// query costs. Both ways give the same result (tested).
pub const POLARS_MIN_ROWS: usize = 1 << 16;

/// Leaks grouped by allocation stack: `(stack, count, bytes)`, most bytes
/// first (then most blocks, then stack id, so the order is deterministic).
pub fn leak_groups(live: &[(u64, Slot)]) -> anyhow::Result<Vec<(StackId, u64, u64)>> {
    if live.len() < POLARS_MIN_ROWS {
        return Ok(leak_groups_small(live));
    }
    leak_groups_polars(live)
}

/// [`leak_groups`] in plain Rust.
fn leak_groups_small(live: &[(u64, Slot)]) -> Vec<(StackId, u64, u64)> {
    let mut by_stack: HashMap<StackId, (u64, u64)> = HashMap::new();
    for (_, s) in live {
        let g = by_stack.entry(s.stack).or_default();
        g.0 += 1;
        g.1 = g.1.wrapping_add(s.size);
    }
    let mut groups: Vec<(StackId, u64, u64)> =
        by_stack.into_iter().map(|(k, (n, b))| (k, n, b)).collect();
    groups.sort_unstable_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0)));
    groups
}

/// [`leak_groups`] with polars.
pub fn leak_groups_polars(live: &[(u64, Slot)]) -> anyhow::Result<Vec<(StackId, u64, u64)>> {
    let df = live_frame(live)?
        .lazy()
        .group_by([col("stack")])
        .agg([
            len().cast(DataType::UInt64).alias("count"),
            col("size").sum().cast(DataType::UInt64).alias("bytes"),
        ])
        .sort(
            ["bytes", "count", "stack"],
            SortMultipleOptions::default().with_order_descending_multi([true, true, false]),
        )
        .collect()?;
    triples(&df, "stack", "count", "bytes")
}

/// Per-stack aggregates: `stack`, `allocs`, `bytes`, `temporary`, `live`, `live_bytes`.
pub fn sites_frame(sites: &[(StackId, SiteStats)]) -> PolarsResult<DataFrame> {
    let get = |f: fn(&SiteStats) -> u64| sites.iter().map(|(_, s)| f(s)).collect::<Vec<u64>>();
    DataFrame::new(
        sites.len(),
        vec![
            Column::new(
                "stack".into(),
                sites.iter().map(|(k, _)| *k).collect::<Vec<u32>>(),
            ),
            Column::new("allocs".into(), get(|s| s.allocs)),
            Column::new("bytes".into(), get(|s| s.bytes)),
            Column::new("temporary".into(), get(|s| s.temporary)),
            Column::new("live".into(), get(|s| s.live)),
            Column::new("live_bytes".into(), get(|s| s.live_bytes)),
        ],
    )
}

/// The `n` sites with the largest `by` (`allocs` or `bytes`): stack ids in
/// order (ties: the larger other one of the two first, then the smaller id).
pub fn top_sites(
    sites: &[(StackId, SiteStats)],
    by: &str,
    n: usize,
) -> anyhow::Result<Vec<StackId>> {
    if sites.len() >= POLARS_MIN_ROWS {
        return top_sites_polars(sites, by, n);
    }
    let key = |s: &SiteStats| match by {
        "allocs" => Ok((s.allocs, s.bytes)),
        "bytes" => Ok((s.bytes, s.allocs)),
        _ => Err(anyhow::anyhow!("no site column {by:?} to sort by")),
    };
    let mut top: Vec<((u64, u64), StackId)> = Vec::new();
    for (id, s) in sites.iter().filter(|(_, s)| s.allocs > 0) {
        top.push((key(s)?, *id));
    }
    top.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(top.into_iter().take(n).map(|(_, id)| id).collect())
}

/// [`top_sites`] with polars.
pub fn top_sites_polars(
    sites: &[(StackId, SiteStats)],
    by: &str,
    n: usize,
) -> anyhow::Result<Vec<StackId>> {
    let other = if by == "allocs" { "bytes" } else { "allocs" };
    let df = sites_frame(sites)?
        .lazy()
        .filter(col("allocs").gt(lit(0u64)))
        .sort(
            [by, other, "stack"],
            SortMultipleOptions::default().with_order_descending_multi([true, true, false]),
        )
        .limit(n as IdxSize)
        .select([col("stack")])
        .collect()?;
    Ok(df.column("stack")?.u32()?.iter().flatten().collect())
}

fn triples(df: &DataFrame, a: &str, b: &str, c: &str) -> anyhow::Result<Vec<(u32, u64, u64)>> {
    let a = df.column(a)?.u32()?;
    let b = df.column(b)?.u64()?;
    let c = df.column(c)?.u64()?;
    Ok(a.iter()
        .zip(b.iter())
        .zip(c.iter())
        .map(|((a, b), c)| (a.unwrap_or(0), b.unwrap_or(0), c.unwrap_or(0)))
        .collect())
}

/// Streams [`AllocRow`]s into a Parquet file in row groups of [`BATCH_ROWS`].
pub struct RowWriter {
    writer: polars::io::parquet::write::BatchedWriter<File>,
    rows: Vec<AllocRow>,
    written: u64,
    error: Option<anyhow::Error>,
}

impl RowWriter {
    /// Creates `path` for the allocation table.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let schema = rows_frame(&[])?.schema().as_ref().clone();
        let writer = ParquetWriter::new(file).batched(&schema)?;
        Ok(RowWriter {
            writer,
            rows: Vec::with_capacity(BATCH_ROWS),
            written: 0,
            error: None,
        })
    }

    /// Buffers one row, writing a row group when the buffer is full.
    pub fn push(&mut self, row: AllocRow) {
        self.rows.push(row);
        if self.rows.len() >= BATCH_ROWS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.rows.is_empty() || self.error.is_some() {
            return;
        }
        let res = rows_frame(&self.rows).and_then(|df| self.writer.write_batch(&df));
        if let Err(e) = res {
            self.error = Some(e.into());
        }
        self.written += self.rows.len() as u64;
        self.rows.clear();
    }

    /// Writes what is left and the Parquet footer; returns the rows written.
    pub fn finish(mut self) -> anyhow::Result<u64> {
        self.flush();
        if let Some(e) = self.error {
            return Err(e);
        }
        self.writer.finish()?;
        Ok(self.written)
    }
}

/// The allocation table for `rows`. Columns: `id`, `address`, `size`,
/// `function`, `thread`, `alloc_time`, `free_time` (null: never freed),
/// `free_function` (null: never freed), `alloc_stack`, `free_stack` (null:
/// never freed). Stack ids refer to the stack table (`stacks.parquet`).
pub fn rows_frame(rows: &[AllocRow]) -> PolarsResult<DataFrame> {
    let freed = |r: &AllocRow| r.free_time.is_some();
    DataFrame::new(
        rows.len(),
        vec![
            Column::new("id".into(), rows.iter().map(|r| r.id).collect::<Vec<u64>>()),
            Column::new(
                "address".into(),
                rows.iter().map(|r| r.address).collect::<Vec<u64>>(),
            ),
            Column::new(
                "size".into(),
                rows.iter().map(|r| r.size).collect::<Vec<u64>>(),
            ),
            Column::new(
                "function".into(),
                rows.iter().map(|r| r.func.name()).collect::<Vec<&str>>(),
            ),
            Column::new(
                "thread".into(),
                rows.iter().map(|r| r.thread).collect::<Vec<u32>>(),
            ),
            Column::new(
                "alloc_time".into(),
                rows.iter().map(|r| r.alloc_time).collect::<Vec<u64>>(),
            ),
            Column::new(
                "free_time".into(),
                rows.iter()
                    .map(|r| r.free_time)
                    .collect::<Vec<Option<u64>>>(),
            ),
            Column::new(
                "free_function".into(),
                rows.iter()
                    .map(|r| r.free_func)
                    .collect::<Vec<Option<&str>>>(),
            ),
            Column::new(
                "alloc_stack".into(),
                rows.iter().map(|r| r.alloc_stack).collect::<Vec<u32>>(),
            ),
            Column::new(
                "free_stack".into(),
                rows.iter()
                    .map(|r| freed(r).then_some(r.free_stack))
                    .collect::<Vec<Option<u32>>>(),
            ),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    #[test]
    fn small_tables_get_the_polars_answers() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for len in [0, 1, 7, 300, 5000] {
            // Few stacks and sizes: many ties on every sort key.
            let live: Vec<(u64, Slot)> = (0..len)
                .map(|i| {
                    let s = Slot {
                        size: rng(&mut x) % 4 * 16,
                        stack: (rng(&mut x) % 40) as StackId,
                        id: i + 1,
                        live: true,
                        ..Slot::default()
                    };
                    (i * 16, s)
                })
                .collect();
            assert_eq!(leak_groups_small(&live), leak_groups_polars(&live).unwrap());
            let sites: Vec<(StackId, SiteStats)> = (0..len as StackId / 10)
                .map(|id| {
                    let allocs = rng(&mut x) % 5;
                    let s = SiteStats {
                        allocs,
                        bytes: allocs * (rng(&mut x) % 3) * 8,
                        ..SiteStats::default()
                    };
                    (id * 3, s)
                })
                .collect();
            for by in ["allocs", "bytes"] {
                for n in [0, 3, 10, 1000] {
                    assert_eq!(
                        top_sites(&sites, by, n).unwrap(),
                        top_sites_polars(&sites, by, n).unwrap(),
                        "{by} {n}"
                    );
                }
            }
        }
    }
}
