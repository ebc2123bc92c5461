//! `export --parquet`: the allocation and stack tables read back with polars.

use std::fs::File;

use analyzer::cmd_export::export_parquet;
use polars::prelude::*;
use traces::{AllocFn, FreeFn};

use crate::util::Trace;

#[test]
fn export_writes_one_row_per_allocation() {
    let mut t = Trace::new(0);
    let (s1, s2) = (t.stack(&[0x11, 0x12]), t.stack(&[0x21]));
    t.alloc(AllocFn::Malloc, 0x1000, 10, s1);
    t.alloc(AllocFn::New, 0x2000, 20, s2);
    t.free(FreeFn::Free, 0x1000, s2);
    t.realloc(0, 0x3000, 30, s1);
    let (_d, p) = t.finish();
    let out = tempfile::tempdir().unwrap();
    let e = export_parquet(&p, out.path(), false).unwrap();
    assert_eq!(e.allocation_rows, 3);
    let df = ParquetReader::new(File::open(&e.allocations).unwrap())
        .finish()
        .unwrap();
    let df = df.sort(["id"], Default::default()).unwrap();
    let ids: Vec<_> = df
        .column("id")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
    let sizes: Vec<_> = df
        .column("size")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(sizes, vec![10, 20, 30]);
    let freed: Vec<Option<u64>> = df
        .column("free_time")
        .unwrap()
        .u64()
        .unwrap()
        .iter()
        .collect();
    assert!(freed[0].is_some() && freed[1].is_none() && freed[2].is_none());
    let stacks = ParquetReader::new(File::open(&e.stacks).unwrap())
        .finish()
        .unwrap();
    assert_eq!(stacks.height(), 3);
    assert_eq!(e.stack_rows, 3);
}
