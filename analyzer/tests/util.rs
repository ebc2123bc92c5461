//! Builds synthetic traces with the `traces` writer, in global time order.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use traces::{
    AllocFn, Event, ExitStatus, FreeFn, Header, Module, Record, StackId, ThreadId, Trailer, Writer,
    WriterOptions,
};

/// A synthetic trace being written; time advances by 10 ns per event.
pub struct Trace {
    w: Writer<BufWriter<File>>,
    pub time: u64,
    pub path: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Trace {
    pub fn new(flags: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.atrace");
        let mut h = Header::synthetic(&["synthetic"]);
        h.flags = flags;
        let f = BufWriter::new(File::create(&path).unwrap());
        let opts = WriterOptions {
            ordered: true,
            ..Default::default()
        };
        Trace {
            w: Writer::new(f, &h, opts).unwrap(),
            time: 0,
            path,
            dir,
        }
    }

    pub fn stack(&mut self, frames: &[u64]) -> StackId {
        self.w.intern_stack(frames).unwrap()
    }

    pub fn ev(&mut self, thread: ThreadId, event: Event) {
        self.time += 10;
        self.w
            .write(&Record {
                time: self.time,
                thread,
                event,
            })
            .unwrap();
    }

    pub fn alloc(&mut self, func: AllocFn, addr: u64, size: u64, stack: StackId) {
        self.ev(
            1,
            Event::Alloc {
                func,
                addr,
                size,
                align: 0,
                stack,
            },
        );
    }

    pub fn free(&mut self, func: FreeFn, addr: u64, stack: StackId) {
        self.ev(
            1,
            Event::Free {
                func,
                addr,
                size: 0,
                align: 0,
                stack,
            },
        );
    }

    pub fn realloc(&mut self, old: u64, new: u64, size: u64, stack: StackId) {
        self.ev(
            1,
            Event::Realloc {
                func: AllocFn::Realloc,
                old_addr: old,
                new_addr: new,
                size,
                stack,
            },
        );
    }

    pub fn module(&mut self, path: &str, base: u64, start: u64, end: u64) {
        self.module_with_build_id(path, base, start, end, Vec::new());
    }

    pub fn module_with_build_id(
        &mut self,
        path: &str,
        base: u64,
        start: u64,
        end: u64,
        build_id: Vec<u8>,
    ) {
        self.ev(
            1,
            Event::ModuleLoad(Box::new(Module {
                path: path.to_string(),
                base,
                start,
                end,
                build_id,
            })),
        );
    }

    /// Finishes the file; keep the returned directory alive while reading.
    pub fn finish(self) -> (tempfile::TempDir, PathBuf) {
        let end = self.time + 10;
        self.w
            .finish(&Trailer {
                end_time: end,
                exit: ExitStatus::Code(0),
                dropped_events: 0,
            })
            .unwrap();
        (self.dir, self.path)
    }
}
