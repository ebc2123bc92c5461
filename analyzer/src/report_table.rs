//! Tables for people (comfy-table): shared layout and number formatting.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, ContentArrangement, Table};

use crate::symbols::{skip_plumbing, Frame};

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

/// One frame per line, innermost first, at most [`TABLE_FRAMES`] after the
/// leading allocation plumbing (Rust's `alloc` crate, libstdc++'s
/// allocator), which is counted on the first line instead (`--json` keeps
/// every frame).
pub fn stack_cell(frames: &[Frame]) -> String {
    if frames.is_empty() {
        return "(no stack recorded)".to_string();
    }
    let (frames, hidden) = skip_plumbing(frames);
    let mut s: Vec<String> = Vec::with_capacity(TABLE_FRAMES + 2);
    if hidden > 0 {
        let plural = if hidden == 1 { "" } else { "s" };
        s.push(format!("({hidden} allocator frame{plural} hidden)"));
    }
    s.extend(frames.iter().take(TABLE_FRAMES).map(|f| {
        let line = table_frame(f);
        if f.inlined {
            format!("{line} [inlined]")
        } else {
            line
        }
    }));
    if frames.len() > TABLE_FRAMES {
        s.push(format!("… {} more", frames.len() - TABLE_FRAMES));
    }
    s.join("\n")
}

/// Longest function name shown in a table cell, in characters: Rust's
/// generic closures and C++ templates give names of thousands, which would
/// make every table as wide as the longest (`--json` keeps them whole).
pub const TABLE_FUNCTION_CHARS: usize = 100;

/// [`Frame::display`] with the function name cut to
/// [`TABLE_FUNCTION_CHARS`] (an ellipsis marks the cut).
pub fn table_frame(f: &Frame) -> String {
    match &f.function {
        Some(name) if name.chars().count() > TABLE_FUNCTION_CHARS => {
            let cut: String = name.chars().take(TABLE_FUNCTION_CHARS - 1).collect();
            let short = Frame {
                function: Some(format!("{cut}…")),
                ..f.clone()
            };
            short.display()
        }
        _ => f.display(),
    }
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
    use crate::symbols::Frame;

    #[test]
    fn formats() {
        assert_eq!(super::count(1234567), "1,234,567");
        assert_eq!(super::count(12), "12");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(10), "10 B");
    }

    fn frame(function: &str, file: Option<&str>) -> Frame {
        Frame {
            function: Some(function.to_string()),
            file: file.map(str::to_string),
            line: file.map(|_| 7),
            module: Some("/bin/prog".to_string()),
            address: 0x1000,
            offset: 0x1000,
            inlined: false,
        }
    }

    #[test]
    fn stack_cells_hide_leading_allocator_frames() {
        let rs = "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library";
        let stack = vec![
            frame("alloc", Some(&format!("{rs}/alloc/src/alloc.rs"))),
            frame(
                "finish_grow",
                Some(&format!("{rs}/alloc/src/raw_vec/mod.rs")),
            ),
            frame("alloc::raw_vec::RawVec<T>::grow_one", None),
            frame("parse_line", Some("/src/app/src/parse.rs")),
            // Plumbing further out is the program's business: kept.
            frame("alloc", Some(&format!("{rs}/alloc/src/alloc.rs"))),
            frame("main", Some("/src/app/src/main.rs")),
        ];
        assert_eq!(
            super::stack_cell(&stack),
            "(3 allocator frames hidden)\nparse_line (parse.rs:7)\nalloc (alloc.rs:7)\nmain (main.rs:7)"
        );
        // C++: libstdc++'s allocator headers, not the containers.
        let cxx = vec![
            frame(
                "std::__new_allocator<int>::allocate",
                Some("/usr/include/c++/12/bits/new_allocator.h"),
            ),
            frame(
                "std::vector<int>::_M_realloc_insert",
                Some("/usr/include/c++/12/bits/stl_vector.h"),
            ),
        ];
        assert!(super::stack_cell(&cxx).starts_with("(1 allocator frame hidden)\nstd::vector"));
        // A user file that happens to be called alloc.rs is not plumbing,
        // and a stack of nothing but plumbing is shown whole.
        let own = vec![frame("alloc", Some("/src/app/library/alloc/src/alloc.rs"))];
        assert_eq!(super::stack_cell(&own), "alloc (alloc.rs:7)");
        let only = vec![frame("__rust_alloc", None)];
        assert_eq!(super::stack_cell(&only), "__rust_alloc");
    }

    #[test]
    fn long_function_names_are_cut_in_tables() {
        let long = format!("{{closure#0}}<{}>", "alloc::vec::Vec<u8>, ".repeat(20));
        let cell = super::stack_cell(&[frame(&long, Some("/src/app/src/main.rs"))]);
        let name: String = long.chars().take(super::TABLE_FUNCTION_CHARS - 1).collect();
        assert_eq!(cell, format!("{name}… (main.rs:7)"));
        assert_eq!(
            cell.chars().count(),
            super::TABLE_FUNCTION_CHARS + " (main.rs:7)".len()
        );
        // Names up to the limit are shown whole.
        let ok = "f".repeat(super::TABLE_FUNCTION_CHARS);
        assert_eq!(super::stack_cell(&[frame(&ok, None)]), ok);
    }
}
