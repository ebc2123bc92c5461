//! Tables for people (comfy-table): shared layout and number formatting.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, ContentArrangement, Table};

use crate::symbols::Frame;

/// Frames shown per stack in tables (JSON has them all).
pub const TABLE_FRAMES: usize = 8;

/// A table with our preset and the given header.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    if let Ok(w) = std::env::var("COLUMNS") {
        if let Ok(w) = w.parse::<u16>() {
            t.set_width(w);
        }
    }
    t
}

/// Right-aligns the given columns (numbers).
pub fn align_right(t: &mut Table, columns: &[usize]) {
    for &c in columns {
        if let Some(col) = t.column_mut(c) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// A two-column key/value table.
pub fn key_values(rows: &[(&str, String)]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v.clone()]);
    }
    align_right(&mut t, &[1]);
    t
}

/// One frame per line, innermost first, at most [`TABLE_FRAMES`].
pub fn stack_cell(frames: &[Frame]) -> String {
    if frames.is_empty() {
        return "(no stack recorded)".to_string();
    }
    let mut s: Vec<String> = frames
        .iter()
        .take(TABLE_FRAMES)
        .map(|f| {
            if f.inlined {
                format!("{} [inlined]", f.display())
            } else {
                f.display()
            }
        })
        .collect();
    if frames.len() > TABLE_FRAMES {
        s.push(format!("… {} more", frames.len() - TABLE_FRAMES));
    }
    s.join("\n")
}

/// `1536` → `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Nanoseconds as seconds with millisecond precision, e.g. `1.234 s`.
pub fn seconds(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

/// `1234567` → `1,234,567`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats() {
        assert_eq!(super::count(1234567), "1,234,567");
        assert_eq!(super::count(12), "12");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(10), "10 B");
    }
}
