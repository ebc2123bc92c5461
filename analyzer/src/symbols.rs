//! Offline symbolization of recorded stacks from the recorded modules.
//!
//! Each frame address is looked up in the module that contained it (from the
//! trace's `ModuleLoad` events), converted to a virtual offset in that file
//! (`address - 1 - load bias`: frames are return addresses, and the byte
//! before one is inside the call instruction, so the line is the call's), and
//! resolved by blazesym from DWARF (separate debug files included) or the
//! symbol table: function, file, line, inlined frames, demangled C++ and Rust
//! names. A module that is missing, unreadable or stripped degrades to
//! `module+offset`, never to an error. Frames of the recorder itself (its
//! preload library) are removed.

use std::collections::HashMap;
use std::path::Path;

use blazesym::symbolize::source::{Elf, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};
use serde::Serialize;
use traces::{Module, StackId, StackTable};

/// File names of recorder modules whose frames are removed from stacks.
const RECORDER_MODULES: &[&str] = &["liballoctrace_preload", "liballoctrace-preload"];

/// One symbolized frame. Serialized as the JSON frame object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Frame {
    /// Demangled function name, `null` when unknown.
    pub function: Option<String>,
    /// Source file path, `null` when unknown.
    pub file: Option<String>,
    /// Source line, `null` when unknown.
    pub line: Option<u32>,
    /// Path of the module, `null` when the address is in no recorded module.
    pub module: Option<String>,
    /// The recorded address (return address for all but the innermost frame).
    pub address: u64,
    /// Offset of the address in the module file (virtual address).
    pub offset: u64,
    /// Whether this frame was inlined into the next (outer) one.
    pub inlined: bool,
}

impl Frame {
    /// `function (file:line)`, or `module+0xoffset`, or `0xaddress`.
    pub fn display(&self) -> String {
        match (&self.function, &self.module) {
            (Some(f), _) => match (&self.file, self.line) {
                (Some(file), Some(line)) => format!("{f} ({}:{line})", basename(file)),
                _ => f.clone(),
            },
            (None, Some(m)) => format!("{}+{:#x}", basename(m), self.offset),
            (None, None) => format!("{:#x}", self.address),
        }
    }
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Resolves stacks to frames, caching every address it has seen.
pub struct Symbols {
    modules: Vec<Module>,
    symbolizer: Symbolizer,
    cache: HashMap<u64, Vec<Frame>>,
    stacks: HashMap<StackId, Vec<Frame>>,
}

impl Symbols {
    /// A symbolizer for addresses of the given modules (in load order; for
    /// overlapping ranges the latest load wins).
    pub fn new(modules: &[Module]) -> Self {
        let symbolizer = Symbolizer::builder()
            .enable_code_info(true)
            .enable_inlined_fns(true)
            .enable_demangling(true)
            .build();
        Symbols {
            modules: modules.to_vec(),
            symbolizer,
            cache: HashMap::new(),
            stacks: HashMap::new(),
        }
    }

    fn module_of(&self, addr: u64) -> Option<usize> {
        self.modules
            .iter()
            .rposition(|m| m.start <= addr && addr < m.end)
    }

    /// Symbolizes every frame of `ids` in one batch per module (faster than
    /// one by one); later calls to [`Symbols::stack`] hit the cache.
    pub fn prefetch(&mut self, table: &StackTable, ids: impl IntoIterator<Item = StackId>) {
        let mut by_module: HashMap<Option<usize>, Vec<u64>> = HashMap::new();
        for id in ids {
            for a in table.frames(id) {
                if !self.cache.contains_key(&a) {
                    by_module.entry(self.module_of(a)).or_default().push(a);
                }
            }
        }
        for (m, mut addrs) in by_module {
            addrs.sort_unstable();
            addrs.dedup();
            let frames = match m {
                Some(i) => self.resolve_in(i, &addrs),
                None => addrs
                    .iter()
                    .map(|a| vec![unknown_frame(*a, None, 0)])
                    .collect(),
            };
            for (a, f) in addrs.into_iter().zip(frames) {
                self.cache.insert(a, f);
            }
        }
    }

    fn resolve_in(&self, i: usize, addrs: &[u64]) -> Vec<Vec<Frame>> {
        let m = &self.modules[i];
        let offsets: Vec<u64> = addrs.iter().map(|a| a.saturating_sub(m.base)).collect();
        let lookup: Vec<u64> = offsets.iter().map(|o| o.saturating_sub(1)).collect();
        let fallback = || {
            addrs
                .iter()
                .zip(&offsets)
                .map(|(a, o)| vec![unknown_frame(*a, Some(&m.path), *o)])
                .collect()
        };
        if !Path::new(&m.path).is_file() {
            return fallback();
        }
        let src = Source::Elf(Elf::new(&m.path));
        let Ok(syms) = self.symbolizer.symbolize(&src, Input::VirtOffset(&lookup)) else {
            return fallback();
        };
        addrs
            .iter()
            .zip(&offsets)
            .zip(syms)
            .map(|((a, o), s)| match s {
                Symbolized::Sym(sym) => {
                    let mut out = Vec::with_capacity(1 + sym.inlined.len());
                    // blazesym lists inlined calls outermost first, each with
                    // its own location; ours are innermost first.
                    for f in sym.inlined.iter().rev() {
                        let (file, line) = code(f.code_info.as_ref());
                        out.push(Frame {
                            function: Some(f.name.to_string()),
                            file,
                            line,
                            module: Some(m.path.clone()),
                            address: *a,
                            offset: *o,
                            inlined: true,
                        });
                    }
                    let (file, line) = code(sym.code_info.as_deref());
                    out.push(Frame {
                        function: Some(sym.name.to_string()),
                        file,
                        line,
                        module: Some(m.path.clone()),
                        address: *a,
                        offset: *o,
                        inlined: false,
                    });
                    out
                }
                Symbolized::Unknown(_) => vec![unknown_frame(*a, Some(&m.path), *o)],
            })
            .collect()
    }

    /// Frames of stack `id`, innermost first, inlined frames expanded and
    /// recorder frames removed.
    pub fn stack(&mut self, table: &StackTable, id: StackId) -> Vec<Frame> {
        if let Some(s) = self.stacks.get(&id) {
            return s.clone();
        }
        self.prefetch(table, [id]);
        let frames: Vec<Frame> = table
            .frames(id)
            .iter()
            .flat_map(|a| self.cache.get(a).cloned().unwrap_or_default())
            .filter(|f| !is_recorder_frame(f))
            .collect();
        self.stacks.insert(id, frames.clone());
        frames
    }
}

fn code(ci: Option<&blazesym::symbolize::CodeInfo<'_>>) -> (Option<String>, Option<u32>) {
    match ci {
        Some(c) => (Some(c.to_path().display().to_string()), c.line),
        None => (None, None),
    }
}

fn unknown_frame(address: u64, module: Option<&str>, offset: u64) -> Frame {
    Frame {
        function: None,
        file: None,
        line: None,
        module: module.map(str::to_string),
        address,
        offset,
        inlined: false,
    }
}

fn is_recorder_frame(f: &Frame) -> bool {
    f.module
        .as_deref()
        .is_some_and(|m| RECORDER_MODULES.iter().any(|r| basename(m).starts_with(r)))
}
