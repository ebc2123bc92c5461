//! The events block: one thread's events in columns of varints.
//!
//! Layout (all varints unless noted):
//! ```text
//! thread, count, first_time,
//! len(ops), len(times), len(addrs), len(sizes), len(stacks), len(extra),
//! ops[count] (one byte each) | times | addrs | sizes | stacks | extra
//! ```
//! `times` holds each event's time minus the previous one's (the first minus
//! `first_time`); `addrs` holds each address minus the previous address in the
//! column, zigzag-encoded; `sizes` and `stacks` plain varints; `extra` the rare
//! fields. Which columns an event uses is fixed by its opcode (`FORMAT.md`).

use crate::event::{AllocFn, Event, FreeFn, Module, Record, ThreadId};
use crate::varint::{self, Cursor};

/// Opcode bases; the low bits carry the function number.
pub mod op {
    /// `Alloc` with `AllocFn` n: `ALLOC + n`.
    pub const ALLOC: u8 = 0x00;
    /// `Free` with `FreeFn` n: `FREE + n`.
    pub const FREE: u8 = 0x20;
    /// `Realloc` with `AllocFn::Realloc`.
    pub const REALLOC: u8 = 0x40;
    /// `Realloc` with `AllocFn::Reallocarray`.
    pub const REALLOCARRAY: u8 = 0x41;
    /// `Mmap`.
    pub const MMAP: u8 = 0x50;
    /// `Munmap`.
    pub const MUNMAP: u8 = 0x51;
    /// `Mremap`.
    pub const MREMAP: u8 = 0x52;
    /// `Brk`.
    pub const BRK: u8 = 0x53;
    /// `ThreadStart`.
    pub const THREAD_START: u8 = 0x60;
    /// `ThreadExit`.
    pub const THREAD_EXIT: u8 = 0x61;
    /// `Fork`.
    pub const FORK: u8 = 0x62;
    /// `Exec`.
    pub const EXEC: u8 = 0x63;
    /// `ModuleLoad`.
    pub const MODULE_LOAD: u8 = 0x70;
    /// `ModuleUnload`.
    pub const MODULE_UNLOAD: u8 = 0x71;
    /// `Marker`.
    pub const MARKER: u8 = 0x72;
}

fn is_sized_delete(f: FreeFn) -> bool {
    use FreeFn::*;
    matches!(
        f,
        DeleteSized | DeleteArraySized | DeleteSizedAligned | DeleteArraySizedAligned
    )
}

/// Accumulates one thread's events into columns.
#[derive(Default)]
pub struct BlockEncoder {
    /// Thread of every event in this block.
    pub thread: ThreadId,
    /// Number of events so far.
    pub count: u64,
    /// Time of the first event.
    pub first_time: u64,
    last_time: u64,
    last_addr: u64,
    ops: Vec<u8>,
    times: Vec<u8>,
    addrs: Vec<u8>,
    sizes: Vec<u8>,
    stacks: Vec<u8>,
    extra: Vec<u8>,
}

impl BlockEncoder {
    /// An empty block for `thread`.
    pub fn new(thread: ThreadId) -> Self {
        BlockEncoder {
            thread,
            ..Default::default()
        }
    }

    /// Encoded size so far (columns only).
    pub fn len(&self) -> usize {
        self.ops.len()
            + self.times.len()
            + self.addrs.len()
            + self.sizes.len()
            + self.stacks.len()
            + self.extra.len()
    }

    /// Whether no event has been added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Time of the last event added.
    pub fn last_time(&self) -> u64 {
        self.last_time
    }

    #[inline]
    fn addr(&mut self, a: u64) {
        varint::put_signed(&mut self.addrs, a.wrapping_sub(self.last_addr) as i64);
        self.last_addr = a;
    }

    fn string(&mut self, s: &[u8]) {
        varint::put(&mut self.extra, s.len() as u64);
        self.extra.extend_from_slice(s);
    }

    /// Adds an event. `time` must not be below the previous event's time.
    pub fn push(&mut self, time: u64, ev: &Event) {
        if self.count == 0 {
            self.first_time = time;
            self.last_time = time;
        }
        varint::put(&mut self.times, time.saturating_sub(self.last_time));
        self.last_time = time.max(self.last_time);
        self.count += 1;
        match ev {
            Event::Alloc {
                func,
                addr,
                size,
                align,
                stack,
            } => {
                self.ops.push(op::ALLOC + *func as u8);
                self.addr(*addr);
                varint::put(&mut self.sizes, *size);
                varint::put(&mut self.stacks, *stack as u64);
                if func.is_aligned() {
                    varint::put(&mut self.extra, *align);
                }
            }
            Event::Free {
                func,
                addr,
                size,
                align,
                stack,
            } => {
                self.ops.push(op::FREE + *func as u8);
                self.addr(*addr);
                varint::put(&mut self.stacks, *stack as u64);
                if is_sized_delete(*func) {
                    varint::put(&mut self.sizes, *size);
                }
                if func.is_aligned() {
                    varint::put(&mut self.extra, *align);
                }
            }
            Event::Realloc {
                func,
                old_addr,
                new_addr,
                size,
                stack,
            } => {
                self.ops.push(if *func == AllocFn::Reallocarray {
                    op::REALLOCARRAY
                } else {
                    op::REALLOC
                });
                self.addr(*old_addr);
                self.addr(*new_addr);
                varint::put(&mut self.sizes, *size);
                varint::put(&mut self.stacks, *stack as u64);
            }
            Event::Mmap {
                addr,
                len,
                prot,
                flags,
                fd,
                stack,
            } => {
                self.ops.push(op::MMAP);
                self.addr(*addr);
                varint::put(&mut self.sizes, *len);
                varint::put(&mut self.stacks, *stack as u64);
                varint::put(&mut self.extra, *prot as u64);
                varint::put(&mut self.extra, *flags as u64);
                varint::put_signed(&mut self.extra, *fd as i64);
            }
            Event::Munmap { addr, len, stack } => {
                self.ops.push(op::MUNMAP);
                self.addr(*addr);
                varint::put(&mut self.sizes, *len);
                varint::put(&mut self.stacks, *stack as u64);
            }
            Event::Mremap {
                old_addr,
                old_len,
                new_addr,
                new_len,
                stack,
            } => {
                self.ops.push(op::MREMAP);
                self.addr(*old_addr);
                self.addr(*new_addr);
                varint::put(&mut self.sizes, *old_len);
                varint::put(&mut self.sizes, *new_len);
                varint::put(&mut self.stacks, *stack as u64);
            }
            Event::Brk {
                old_break,
                new_break,
                stack,
            } => {
                self.ops.push(op::BRK);
                self.addr(*old_break);
                self.addr(*new_break);
                varint::put(&mut self.stacks, *stack as u64);
            }
            Event::ThreadStart { parent } => {
                self.ops.push(op::THREAD_START);
                varint::put(&mut self.extra, *parent as u64);
            }
            Event::ThreadExit => self.ops.push(op::THREAD_EXIT),
            Event::Fork { child_pid } => {
                self.ops.push(op::FORK);
                varint::put(&mut self.extra, *child_pid as u64);
            }
            Event::Exec { path } => {
                self.ops.push(op::EXEC);
                self.string(path.as_bytes());
            }
            Event::ModuleLoad(m) => {
                self.ops.push(op::MODULE_LOAD);
                self.string(m.path.as_bytes());
                varint::put(&mut self.extra, m.base);
                varint::put(&mut self.extra, m.start);
                varint::put(&mut self.extra, m.end);
                self.string(&m.build_id);
            }
            Event::ModuleUnload { base } => {
                self.ops.push(op::MODULE_UNLOAD);
                varint::put(&mut self.extra, *base);
            }
            Event::Marker { value, label } => {
                self.ops.push(op::MARKER);
                varint::put(&mut self.extra, *value);
                self.string(label.as_bytes());
            }
        }
    }

    /// The block payload; resets the encoder for the same thread.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() + 64);
        varint::put(&mut out, self.thread as u64);
        varint::put(&mut out, self.count);
        varint::put(&mut out, self.first_time);
        for col in [
            &self.ops,
            &self.times,
            &self.addrs,
            &self.sizes,
            &self.stacks,
            &self.extra,
        ] {
            varint::put(&mut out, col.len() as u64);
        }
        for col in [
            &self.ops,
            &self.times,
            &self.addrs,
            &self.sizes,
            &self.stacks,
            &self.extra,
        ] {
            out.extend_from_slice(col);
        }
        *self = BlockEncoder::new(self.thread);
        out
    }
}

/// Decodes an events block payload, appending its records to `out`.
/// Returns the thread, or a description of what is malformed.
pub fn decode_block(payload: &[u8], out: &mut Vec<Record>) -> Result<ThreadId, String> {
    let mut h = Cursor::new(payload);
    let bad = |what: &str| format!("events block: {what}");
    let thread = h.get().ok_or_else(|| bad("missing thread"))?;
    let count = h.get().ok_or_else(|| bad("missing count"))?;
    let first_time = h.get().ok_or_else(|| bad("missing time"))?;
    let mut lens = [0usize; 6];
    for l in lens.iter_mut() {
        *l = h.get().ok_or_else(|| bad("missing column length"))? as usize;
    }
    let thread = u32::try_from(thread).map_err(|_| bad("thread id out of range"))?;
    // Every event takes one op byte, so count is bounded by the payload.
    if count as usize != lens[0] {
        return Err(bad("op column length differs from event count"));
    }
    let mut rest = &payload[h.pos()..];
    let mut cols: [&[u8]; 6] = [&[]; 6];
    for (i, l) in lens.iter().enumerate() {
        if *l > rest.len() {
            return Err(bad("column longer than block"));
        }
        let (a, b) = rest.split_at(*l);
        cols[i] = a;
        rest = b;
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes after columns"));
    }
    let [ops, times, addrs, sizes, stacks, extra] = cols;
    let mut d = Decoder {
        times: Cursor::new(times),
        addrs: Cursor::new(addrs),
        sizes: Cursor::new(sizes),
        stacks: Cursor::new(stacks),
        extra: Cursor::new(extra),
        last_addr: 0,
    };
    out.reserve(count as usize);
    let mut time = first_time;
    for &opc in ops {
        let dt = d
            .times
            .get()
            .ok_or_else(|| bad("times column ended early"))?;
        time = time.checked_add(dt).ok_or_else(|| bad("time overflow"))?;
        let event = d
            .event(opc)
            .ok_or_else(|| format!("events block: bad or cut event with opcode {opc:#04x}"))?;
        out.push(Record {
            time,
            thread,
            event,
        });
    }
    if !(d.times.is_empty()
        && d.addrs.is_empty()
        && d.sizes.is_empty()
        && d.stacks.is_empty()
        && d.extra.is_empty())
    {
        return Err(bad("columns hold more values than the events use"));
    }
    Ok(thread)
}

struct Decoder<'a> {
    times: Cursor<'a>,
    addrs: Cursor<'a>,
    sizes: Cursor<'a>,
    stacks: Cursor<'a>,
    extra: Cursor<'a>,
    last_addr: u64,
}

impl Decoder<'_> {
    #[inline]
    fn addr(&mut self) -> Option<u64> {
        let d = self.addrs.get_signed()?;
        self.last_addr = self.last_addr.wrapping_add(d as u64);
        Some(self.last_addr)
    }

    #[inline]
    fn stack(&mut self) -> Option<u32> {
        u32::try_from(self.stacks.get()?).ok()
    }

    fn string(&mut self) -> Option<String> {
        let n = self.extra.get()? as usize;
        let b = self.extra.bytes(n)?;
        String::from_utf8(b.to_vec()).ok()
    }

    #[inline]
    fn event(&mut self, opc: u8) -> Option<Event> {
        Some(match opc {
            0x00..=0x10 => {
                let func = AllocFn::from_u8(opc)?;
                if matches!(func, AllocFn::Realloc | AllocFn::Reallocarray) {
                    return None;
                }
                let addr = self.addr()?;
                let size = self.sizes.get()?;
                let stack = self.stack()?;
                let align = if func.is_aligned() {
                    self.extra.get()?
                } else {
                    0
                };
                Event::Alloc {
                    func,
                    addr,
                    size,
                    align,
                    stack,
                }
            }
            0x20..=0x2c => {
                let func = FreeFn::from_u8(opc - op::FREE)?;
                let addr = self.addr()?;
                let stack = self.stack()?;
                let size = if is_sized_delete(func) {
                    self.sizes.get()?
                } else {
                    0
                };
                let align = if func.is_aligned() {
                    self.extra.get()?
                } else {
                    0
                };
                Event::Free {
                    func,
                    addr,
                    size,
                    align,
                    stack,
                }
            }
            op::REALLOC | op::REALLOCARRAY => Event::Realloc {
                func: if opc == op::REALLOC {
                    AllocFn::Realloc
                } else {
                    AllocFn::Reallocarray
                },
                old_addr: self.addr()?,
                new_addr: self.addr()?,
                size: self.sizes.get()?,
                stack: self.stack()?,
            },
            op::MMAP => Event::Mmap {
                addr: self.addr()?,
                len: self.sizes.get()?,
                stack: self.stack()?,
                prot: u32::try_from(self.extra.get()?).ok()?,
                flags: u32::try_from(self.extra.get()?).ok()?,
                fd: i32::try_from(self.extra.get_signed()?).ok()?,
            },
            op::MUNMAP => Event::Munmap {
                addr: self.addr()?,
                len: self.sizes.get()?,
                stack: self.stack()?,
            },
            op::MREMAP => Event::Mremap {
                old_addr: self.addr()?,
                new_addr: self.addr()?,
                old_len: self.sizes.get()?,
                new_len: self.sizes.get()?,
                stack: self.stack()?,
            },
            op::BRK => Event::Brk {
                old_break: self.addr()?,
                new_break: self.addr()?,
                stack: self.stack()?,
            },
            op::THREAD_START => Event::ThreadStart {
                parent: u32::try_from(self.extra.get()?).ok()?,
            },
            op::THREAD_EXIT => Event::ThreadExit,
            op::FORK => Event::Fork {
                child_pid: u32::try_from(self.extra.get()?).ok()?,
            },
            op::EXEC => Event::Exec {
                path: self.string()?,
            },
            op::MODULE_LOAD => {
                let path = self.string()?;
                let base = self.extra.get()?;
                let start = self.extra.get()?;
                let end = self.extra.get()?;
                let n = self.extra.get()? as usize;
                let build_id = self.extra.bytes(n)?.to_vec();
                Event::ModuleLoad(Module {
                    path,
                    base,
                    start,
                    end,
                    build_id,
                })
            }
            op::MODULE_UNLOAD => Event::ModuleUnload {
                base: self.extra.get()?,
            },
            op::MARKER => Event::Marker {
                value: self.extra.get()?,
                label: self.string()?,
            },
            _ => return None,
        })
    }
}
