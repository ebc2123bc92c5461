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
use std::rc::Rc;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

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

/// Source files of allocation plumbing: the layers between a program's
/// code and the hooked allocation function (Rust's `alloc` crate and
/// `std`'s system allocator, libstdc++'s allocator headers).
const PLUMBING_FILES: &[&str] = &[
    "/library/alloc/src/",
    "/library/std/src/sys/alloc/",
    "/library/std/src/alloc.rs",
    "/library/core/src/alloc/",
    "/bits/new_allocator.h",
    "/bits/alloc_traits.h",
    "/bits/allocator.h",
];

/// Function-name prefixes of the same plumbing, for modules without line
/// information (symbol tables only).
const PLUMBING_FUNCTIONS: &[&str] = &[
    "alloc::",
    "<alloc::",
    "std::sys::alloc::",
    "<std::alloc::System",
    "std::alloc::",
    "__rust_alloc",
    "__rust_realloc",
    "__rdl_",
    "__rg_",
];

impl Frame {
    /// Whether this frame is allocation plumbing rather than the program's
    /// own code: Rust's `alloc` crate (`Vec`, `Box`, `String`, `RawVec`
    /// growth) and system allocator, libstdc++'s `std::allocator`. Tables
    /// hide such frames at the top of a stack, so the first frame shown is
    /// the code that asked for memory.
    pub fn is_allocation_plumbing(&self) -> bool {
        if let Some(file) = self.file.as_deref() {
            return PLUMBING_FILES.iter().any(|p| file.contains(p))
                && (file.starts_with("/rustc/") || file.contains("/c++/"));
        }
        self.function
            .as_deref()
            .is_some_and(|f| PLUMBING_FUNCTIONS.iter().any(|p| f.starts_with(p)))
    }
}

/// The frames of `stack` after its leading allocation plumbing (see
/// [`Frame::is_allocation_plumbing`]), and how many were skipped. A stack
/// made only of plumbing is returned whole.
pub fn skip_plumbing(stack: &[Frame]) -> (&[Frame], usize) {
    let n = stack
        .iter()
        .take_while(|f| f.is_allocation_plumbing())
        .count();
    if n == stack.len() {
        (stack, 0)
    } else {
        (&stack[n..], n)
    }
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Resolves stacks to frames, caching every address it has seen.
pub struct Symbols {
    modules: Vec<Module>,
    backend: Backend,
    cache: HashMap<u64, Vec<Frame>>,
    stacks: HashMap<StackId, Vec<Frame>>,
}

/// Where addresses are resolved.
enum Backend {
    /// On this thread (the symbolizer is created at the first use, unless
    /// one is shared: see [`SharedSymbolizer`]).
    Here(Option<Rc<Symbolizer>>),
    /// On the thread of a [`Warmup`], which loaded the debug info early.
    Warm(Warmup),
}

fn symbolizer() -> Symbolizer {
    Symbolizer::builder()
        .enable_code_info(true)
        .enable_inlined_fns(true)
        .enable_demangling(true)
        .build()
}

/// A symbolizer for several traces in turn (one thread): the debug info of
/// a module is read and inflated once, not once per trace (`record`'s report
/// on a shell script's hundred processes of the same few programs). Results
/// are those of separate symbolizers: modules are looked up by path, and
/// each is checked against the build id its trace recorded.
pub struct SharedSymbolizer(Rc<Symbolizer>);

impl SharedSymbolizer {
    /// A symbolizer with nothing loaded yet.
    pub fn new() -> Self {
        SharedSymbolizer(Rc::new(symbolizer()))
    }
}

impl Default for SharedSymbolizer {
    fn default() -> Self {
        Self::new()
    }
}

/// A request to the warm-up thread: resolve these addresses of this module.
type Request = (Module, Vec<u64>);

/// A symbolizer on its own thread that starts loading the debug info of a
/// trace's modules while the pass runs (blazesym's first lookup in a module
/// reads and inflates its DWARF: for libc's compressed debug file that is
/// most of `summary`'s time after the pass). The modules loaded are those
/// that frames of the trace's first stacks fall in (the program and the C
/// library, typically): a guess, which costs only time when wrong. Hand it
/// to [`Symbols::warmed`]; its thread then resolves every address.
pub struct Warmup {
    requests: Sender<Request>,
    replies: Receiver<Vec<Vec<Frame>>>,
}

impl Warmup {
    /// Starts the thread for the trace at `trace`; `None` if it cannot start.
    pub fn start(trace: &Path) -> Option<Warmup> {
        let trace = trace.to_path_buf();
        let (requests, rx) = channel::<Request>();
        let (tx, replies) = channel();
        std::thread::Builder::new()
            .name("symbolizer".into())
            .spawn(move || {
                let sym = symbolizer();
                for (m, addr) in first_modules(&trace) {
                    resolve(&sym, &m, &[addr]);
                }
                for (m, addrs) in rx {
                    if tx.send(resolve(&sym, &m, &addrs)).is_err() {
                        return;
                    }
                }
            })
            .ok()?;
        Some(Warmup { requests, replies })
    }

    fn resolve(&self, m: &Module, addrs: &[u64]) -> Option<Vec<Vec<Frame>>> {
        self.requests.send((m.clone(), addrs.to_vec())).ok()?;
        self.replies.recv().ok()
    }
}

/// The modules that frames of the stacks in the first batch of `trace` fall
/// in, each with one of those frames.
fn first_modules(trace: &Path) -> Vec<(Module, u64)> {
    let Ok(mut reader) = traces::Reader::open(trace) else {
        return Vec::new();
    };
    let mut batch = traces::EventBatch::new();
    if !matches!(reader.next_batch(&mut batch), Ok(true)) {
        return Vec::new();
    }
    let modules: Vec<&Module> = batch
        .others()
        .iter()
        .filter_map(|(_, e)| match e {
            traces::Event::ModuleLoad(m) => Some(&**m),
            _ => None,
        })
        .collect();
    let mut found: Vec<(Module, u64)> = Vec::new();
    let table = reader.stacks();
    for id in table.ids() {
        for a in table.frames(id) {
            let m = modules.iter().rev().find(|m| m.start <= a && a < m.end);
            if let Some(m) = m {
                if !found.iter().any(|(f, _)| f.path == m.path) {
                    found.push(((*m).clone(), a));
                }
            }
        }
    }
    found
}

impl Symbols {
    /// A symbolizer for addresses of the given modules (in load order; for
    /// overlapping ranges the latest load wins).
    pub fn new(modules: &[Module]) -> Self {
        Symbols {
            modules: modules.to_vec(),
            backend: Backend::Here(None),
            cache: HashMap::new(),
            stacks: HashMap::new(),
        }
    }

    /// [`Symbols::new`] resolving with `shared`, whose debug info loaded for
    /// other traces serves this one too.
    pub fn shared(modules: &[Module], shared: &SharedSymbolizer) -> Self {
        let mut s = Symbols::new(modules);
        s.backend = Backend::Here(Some(shared.0.clone()));
        s
    }

    /// [`Symbols::new`] resolving on the thread of `warmup` (if any), which
    /// may have loaded the debug info needed already. Same results.
    pub fn warmed(modules: &[Module], warmup: Option<Warmup>) -> Self {
        let mut s = Symbols::new(modules);
        if let Some(w) = warmup {
            s.backend = Backend::Warm(w);
        }
        s
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

    fn resolve_in(&mut self, i: usize, addrs: &[u64]) -> Vec<Vec<Frame>> {
        let m = &self.modules[i];
        if let Backend::Warm(w) = &self.backend {
            if let Some(frames) = w.resolve(m, addrs) {
                return frames;
            }
            // The thread is gone (it panicked): resolve here from now on.
            self.backend = Backend::Here(None);
        }
        let Backend::Here(sym) = &mut self.backend else {
            unreachable!("set above")
        };
        let sym = sym.get_or_insert_with(|| Rc::new(symbolizer()));
        resolve(sym, &self.modules[i], addrs)
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

/// Frames of `addrs` (each a list: inlined ones, then the function) in
/// module `m`.
fn resolve(symbolizer: &Symbolizer, m: &Module, addrs: &[u64]) -> Vec<Vec<Frame>> {
    let offsets: Vec<u64> = addrs.iter().map(|a| a.saturating_sub(m.base)).collect();
    let lookup: Vec<u64> = offsets.iter().map(|o| o.saturating_sub(1)).collect();
    let fallback = || {
        addrs
            .iter()
            .zip(&offsets)
            .map(|(a, o)| vec![unknown_frame(*a, Some(&m.path), *o)])
            .collect()
    };
    if !Path::new(&m.path).is_file() || !same_build(m) {
        return fallback();
    }
    let src = Source::Elf(Elf::new(&m.path));
    let Ok(syms) = symbolizer.symbolize(&src, Input::VirtOffset(&lookup)) else {
        return fallback();
    };
    addrs
        .iter()
        .zip(&offsets)
        .zip(syms)
        .map(|((a, o), s)| match s {
            Symbolized::Sym(sym) => {
                let frame = |name: &str, ci, inlined| {
                    let (file, line) = code(ci);
                    Frame {
                        function: Some(name.to_string()),
                        file,
                        line,
                        module: Some(m.path.clone()),
                        address: *a,
                        offset: *o,
                        inlined,
                    }
                };
                // blazesym lists inlined calls outermost first, each with
                // its own location; ours are innermost first.
                let mut out: Vec<Frame> = (sym.inlined.iter().rev())
                    .map(|f| frame(&f.name, f.code_info.as_ref(), true))
                    .collect();
                out.push(frame(&sym.name, sym.code_info.as_deref(), false));
                out
            }
            Symbolized::Unknown(_) => vec![unknown_frame(*a, Some(&m.path), *o)],
        })
        .collect()
}

/// Whether the file at `m.path` is still the module that was recorded: the
/// same GNU build id, when the trace has one. A program rebuilt since the
/// recording would otherwise get functions and lines of other code; its
/// frames degrade to module+offset instead, with one warning per module.
fn same_build(m: &Module) -> bool {
    if m.build_id.is_empty() {
        return true;
    }
    let now = blazesym::helper::read_elf_build_id(&m.path);
    if matches!(&now, Ok(Some(id)) if **id == *m.build_id) {
        return true;
    }
    static WARNED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if !warned.contains(&m.path) {
        eprintln!(
            "alloctrace: warning: {} is not the file that was recorded (its build id differs): \
             its frames are shown as module+offset",
            m.path
        );
        warned.push(m.path.clone());
    }
    false
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
