//! Block framing: every part of a trace after the magic is a block with a type,
//! a length and a CRC-32, so corruption is detected and a cut-off tail is
//! recognised as such.
//!
//! ```text
//! u8  type        BlockType
//! u8  flags       bit 0: payload is zstd-compressed
//! u16 reserved    0
//! u32 stored_len  bytes of payload that follow
//! u32 raw_len     bytes after decompression (== stored_len when uncompressed)
//! u32 crc32       CRC-32 (IEEE) of the stored payload
//! ```
//! All integers little-endian.

use std::io::{Read, Write};

use crate::error::{Error, ErrorKind, Result};

/// Size of a block header in bytes.
pub const HEADER_LEN: usize = 16;
/// Largest payload (stored or raw) a reader accepts, bounding its memory.
pub const MAX_PAYLOAD: u32 = 64 << 20;
/// Flag bit: payload is zstd-compressed.
pub const FLAG_ZSTD: u8 = 1;

/// Block types. Append-only: retired numbers stay reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum BlockType {
    /// The postcard-encoded [`crate::Header`]; always block 0.
    Header = 1,
    /// Events of one thread (see `codec`).
    Events = 2,
    /// New stack trie nodes and stack ids.
    Stacks = 3,
    /// Watermark: every event with time below the value has been written.
    Watermark = 4,
    /// The postcard-encoded [`crate::Trailer`]; last block of a finished trace.
    Trailer = 5,
}

impl BlockType {
    fn from_u8(b: u8) -> Option<BlockType> {
        Some(match b {
            1 => BlockType::Header,
            2 => BlockType::Events,
            3 => BlockType::Stacks,
            4 => BlockType::Watermark,
            5 => BlockType::Trailer,
            _ => return None,
        })
    }
}

/// Writes one block, compressing the payload with zstd at `level` when that helps.
pub fn write_block<W: Write>(
    w: &mut W,
    ty: BlockType,
    raw: &[u8],
    level: i32,
) -> std::io::Result<u64> {
    write_block_with(w, ty, raw, level, &mut BlockCompressor::default())
}

/// A zstd context and output buffer kept across blocks by a writer.
#[derive(Default)]
pub struct BlockCompressor {
    ctx: Option<(i32, zstd::bulk::Compressor<'static>)>,
    buf: Vec<u8>,
    /// [`write_block_parts`]: a context at [`DENSE_LEVEL`], and per part
    /// (by its first column) whether it last compressed more than
    /// [`DENSE_RATIO`] times.
    dense_ctx: Option<zstd::bulk::Compressor<'static>>,
    dense: [bool; 16],
}

impl BlockCompressor {
    /// Whether the part of the last [`write_block_parts`] that started at
    /// cut `k` (the column `k` of an events block) compressed more than
    /// [`DENSE_RATIO`] times.
    pub fn dense(&self, k: usize) -> bool {
        self.dense[k % self.dense.len()]
    }
}

/// A part of [`write_block_parts`] that compressed more than this many times
/// (a repetitive program's columns: sqlite3's compress 80x) is compressed at
/// [`DENSE_LEVEL`] in the next block: repeats are cheap to find, and
/// level 3 finds longer ones (sqlite3's events: 20.7 -> 18.3 KB). Columns of
/// random codes (churn's) stay at the writer's level.
const DENSE_RATIO: usize = 16;

/// See [`DENSE_RATIO`].
const DENSE_LEVEL: i32 = 3;

/// [`write_block`] reusing `c`'s context and buffer.
pub fn write_block_with<W: Write>(
    w: &mut W,
    ty: BlockType,
    raw: &[u8],
    level: i32,
    c: &mut BlockCompressor,
) -> std::io::Result<u64> {
    let (flags, stored) = if level > 0 && raw.len() >= 256 {
        let ctx = match &mut c.ctx {
            Some((l, ctx)) if *l == level => ctx,
            slot => &mut slot.insert((level, zstd::bulk::Compressor::new(level)?)).1,
        };
        c.buf.clear();
        c.buf.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        ctx.compress_to_buffer(raw, &mut c.buf)?;
        if c.buf.len() < raw.len() {
            (FLAG_ZSTD, &c.buf[..])
        } else {
            (0, raw)
        }
    } else {
        (0, raw)
    };
    put_block(w, ty, flags, raw.len(), stored)
}

/// Raw bytes below which a part of [`write_block_parts`] is joined to the
/// next one: a zstd frame of its own costs a frame header and a literals
/// table (tens of bytes).
const MIN_PART: usize = 8 << 10;

/// Like [`write_block_with`], compressing each part of `raw` (split at the
/// offsets `cuts`, increasing) as a zstd frame of its own, parts shorter
/// than `MIN_PART` joined to the next. The payload is then the frames one
/// after the other, which a reader decompresses in one call as for a single
/// frame. Events columns differ in their byte statistics (random low bytes
/// of codes, small sizes, runs of zero time deltas): one frame over all of
/// them gets one literals table per 128 KiB for a mix of them.
pub fn write_block_parts<W: Write>(
    w: &mut W,
    ty: BlockType,
    raw: &[u8],
    cuts: &[usize],
    level: i32,
    c: &mut BlockCompressor,
) -> std::io::Result<u64> {
    if level <= 0 || raw.len() < 256 {
        return write_block_with(w, ty, raw, level, c);
    }
    let ctx = match &mut c.ctx {
        Some((l, ctx)) if *l == level => ctx,
        slot => &mut slot.insert((level, zstd::bulk::Compressor::new(level)?)).1,
    };
    // `buf` keeps its length between parts (only grown): `len` bytes of
    // it are frames.
    let mut len = 0;
    let mut start = 0;
    // The cut index the current part starts at (0: the payload's start).
    let mut first = 0;
    for (k, &end) in cuts.iter().chain(std::iter::once(&raw.len())).enumerate() {
        let end = end.min(raw.len());
        if end < start + MIN_PART && end < raw.len() {
            continue;
        }
        let part = &raw[start..end];
        let need = len + zstd::zstd_safe::compress_bound(part.len());
        if c.buf.len() < need {
            c.buf.resize(need, 0);
        }
        let slot = first % c.dense.len();
        let out = &mut c.buf[len..need];
        let n = if c.dense[slot] && level < DENSE_LEVEL {
            let dense = match &mut c.dense_ctx {
                Some(d) => d,
                d => d.insert(zstd::bulk::Compressor::new(DENSE_LEVEL)?),
            };
            dense.compress_to_buffer(part, out)?
        } else {
            ctx.compress_to_buffer(part, out)?
        };
        c.dense[slot] = n * DENSE_RATIO < part.len();
        len += n;
        start = end;
        first = k + 1;
    }
    let (flags, stored) = if len < raw.len() {
        (FLAG_ZSTD, &c.buf[..len])
    } else {
        (0, raw)
    };
    put_block(w, ty, flags, raw.len(), stored)
}

/// Writes a block's header and stored payload.
fn put_block<W: Write>(
    w: &mut W,
    ty: BlockType,
    flags: u8,
    raw_len: usize,
    stored: &[u8],
) -> std::io::Result<u64> {
    let mut hdr = [0u8; HEADER_LEN];
    hdr[0] = ty as u8;
    hdr[1] = flags;
    hdr[4..8].copy_from_slice(&(stored.len() as u32).to_le_bytes());
    hdr[8..12].copy_from_slice(&(raw_len as u32).to_le_bytes());
    hdr[12..16].copy_from_slice(&crc32fast::hash(stored).to_le_bytes());
    w.write_all(&hdr)?;
    w.write_all(stored)?;
    Ok((HEADER_LEN + stored.len()) as u64)
}

/// What [`BlockReader::next`] found.
pub enum Next {
    /// A complete, verified block; payload decompressed.
    Block(BlockType, Vec<u8>),
    /// Clean end of file at a block boundary.
    End,
    /// The file ends inside a block: `have` bytes of it are present.
    Truncated {
        /// Bytes of the cut block present in the file.
        have: u64,
    },
}

/// Reads blocks one at a time, tracking offsets for error messages.
pub struct BlockReader<R> {
    inner: R,
    file: String,
    /// Offset of the next block.
    pub offset: u64,
    /// Index of the next block.
    pub index: u64,
    scratch: Vec<u8>,
    /// Reused across blocks: a zstd context and spent payload buffers (fresh
    /// megabyte buffers cost page faults on every block).
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    spare: Vec<Vec<u8>>,
    /// The largest capacity a payload buffer was given: every payload gets
    /// at least this much, so a recycled buffer is always large enough
    /// (blocks' sizes differ by a few bytes; growing a buffer by that much
    /// would reallocate a megabyte on every other block).
    payload_cap: usize,
}

impl<R: Read> BlockReader<R> {
    /// Starts reading blocks at `offset` of a stream named `file`.
    pub fn new(inner: R, file: String, offset: u64) -> Self {
        BlockReader {
            inner,
            file,
            offset,
            index: 0,
            scratch: Vec::new(),
            zstd: None,
            spare: Vec::new(),
            payload_cap: 0,
        }
    }

    /// Gives back a payload returned by [`BlockReader::next`], for reuse.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < 4 && buf.capacity() <= MAX_PAYLOAD as usize {
            buf.clear();
            self.spare.push(buf);
        }
    }

    fn err(&self, kind: ErrorKind) -> Error {
        Error::new(kind, &self.file, Some(self.index), Some(self.offset))
    }

    /// Reads the next block.
    pub fn next(&mut self) -> Result<Next> {
        let mut stored = std::mem::take(&mut self.scratch);
        let r = self.next_stored(&mut stored);
        let h = match r {
            Ok(Stored::Block(h)) => h,
            Ok(Stored::End) => {
                self.scratch = stored;
                return Ok(Next::End);
            }
            Ok(Stored::Truncated { have }) => {
                self.scratch = stored;
                return Ok(Next::Truncated { have });
            }
            Err(e) => {
                self.scratch = stored;
                return Err(e);
            }
        };
        let payload = if h.zstd {
            let out = payload_buffer(&h, &mut self.spare, &mut self.payload_cap);
            let r = decompress(&mut self.zstd, &stored, h.raw_len, out);
            self.scratch = stored;
            match r {
                Ok(out) => out,
                Err(kind) => {
                    // The block is not consumed: errors and offsets point at it.
                    (self.index, self.offset) = (h.index, h.offset);
                    return Err(h.err(kind, &self.file));
                }
            }
        } else if h.ty == BlockType::Events {
            self.scratch = self.spare.pop().unwrap_or_default();
            stored
        } else {
            // Watermarks, trailers, stack tables: small, and not given back
            // (a pooled buffer would be lost with each).
            let p = stored.clone();
            self.scratch = stored;
            p
        };
        Ok(Next::Block(h.ty, payload))
    }

    /// Reads the next block's header and stored payload (into `buf`,
    /// replacing its contents) and checks its CRC; the payload is left as
    /// stored, for [`decompress`] if [`StoredBlock::zstd`].
    pub(crate) fn next_stored(&mut self, buf: &mut Vec<u8>) -> Result<Stored> {
        let mut hdr = [0u8; HEADER_LEN];
        let got = read_full(&mut self.inner, &mut hdr).map_err(|e| self.err(ErrorKind::Io(e)))?;
        if got == 0 {
            return Ok(Stored::End);
        }
        if got < HEADER_LEN {
            return Ok(Stored::Truncated { have: got as u64 });
        }
        let ty = BlockType::from_u8(hdr[0]).ok_or_else(|| {
            self.err(ErrorKind::Corrupt(format!("unknown block type {}", hdr[0])))
        })?;
        let flags = hdr[1];
        let stored_len = u32::from_le_bytes(hdr[4..8].try_into().unwrap_or_default());
        let raw_len = u32::from_le_bytes(hdr[8..12].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(hdr[12..16].try_into().unwrap_or_default());
        if flags & !FLAG_ZSTD != 0 || hdr[2] != 0 || hdr[3] != 0 {
            return Err(self.err(ErrorKind::Corrupt(format!("bad block flags {flags:#x}"))));
        }
        if stored_len > MAX_PAYLOAD || raw_len > MAX_PAYLOAD {
            return Err(self.err(ErrorKind::Corrupt(format!(
                "block length {stored_len} (raw {raw_len}) exceeds the {MAX_PAYLOAD}-byte limit"
            ))));
        }
        if flags & FLAG_ZSTD == 0 && raw_len != stored_len {
            return Err(self.err(ErrorKind::Corrupt(
                "uncompressed block with raw length != stored length".into(),
            )));
        }
        // Read straight into the buffer's spare room: no zeroing first.
        buf.clear();
        buf.reserve(stored_len as usize);
        let got = (&mut self.inner)
            .take(stored_len as u64)
            .read_to_end(buf)
            .map_err(|e| self.err(ErrorKind::Io(e)))?;
        if got < stored_len as usize {
            return Ok(Stored::Truncated {
                have: (HEADER_LEN + got) as u64,
            });
        }
        let found = crc32fast::hash(buf);
        if found != crc {
            return Err(self.err(ErrorKind::Checksum {
                expected: crc,
                found,
            }));
        }
        let h = StoredBlock {
            ty,
            zstd: flags & FLAG_ZSTD != 0,
            raw_len,
            index: self.index,
            offset: self.offset,
        };
        self.offset += (HEADER_LEN as u64) + stored_len as u64;
        self.index += 1;
        Ok(Stored::Block(h))
    }

    /// The file name errors are reported with.
    pub(crate) fn file(&self) -> &str {
        &self.file
    }
}

/// What [`BlockReader::next_stored`] found.
pub(crate) enum Stored {
    /// A complete block whose CRC checked, payload still as stored.
    Block(StoredBlock),
    /// As [`Next::End`].
    End,
    /// As [`Next::Truncated`].
    Truncated { have: u64 },
}

/// A block read by [`BlockReader::next_stored`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct StoredBlock {
    pub ty: BlockType,
    /// The payload is zstd-compressed.
    pub zstd: bool,
    /// Bytes after decompression.
    pub raw_len: u32,
    /// Index and offset of the block.
    pub index: u64,
    pub offset: u64,
}

impl StoredBlock {
    /// An error about this block.
    pub fn err(&self, kind: ErrorKind, file: &str) -> Error {
        Error::new(kind, file, Some(self.index), Some(self.offset))
    }
}

/// `buf` (a pooled payload buffer), emptied, with room for a payload of
/// `raw_len` bytes and at least `cap` bytes, `cap` raised to what that takes:
/// every pooled buffer gets the largest capacity any was given, so a recycled
/// one is always large enough (blocks' sizes differ by a few bytes; growing a
/// buffer by that much would reallocate a megabyte on every other block).
pub(crate) fn pooled(mut buf: Vec<u8>, cap: &mut usize, raw_len: u32) -> Vec<u8> {
    *cap = (*cap).max(raw_len as usize + ZSTD_LIT_ROOM);
    buf.clear();
    buf.reserve_exact(*cap);
    buf
}

/// An empty buffer for the decompressed payload of block `h`: for an events
/// block, which comes back through `recycle`, one from `pool` ([`pooled`],
/// `cap` as there); for any other, which the reader keeps or drops, one of
/// its own, so that the pool is not drained by stack tables.
pub(crate) fn payload_buffer(h: &StoredBlock, pool: &mut Vec<Vec<u8>>, cap: &mut usize) -> Vec<u8> {
    if h.ty == BlockType::Events {
        pooled(pool.pop().unwrap_or_default(), cap, h.raw_len)
    } else {
        Vec::with_capacity(h.raw_len as usize + ZSTD_LIT_ROOM)
    }
}

/// Decompresses a stored payload into `out` (empty, with room for `raw_len`
/// bytes and [`ZSTD_LIT_ROOM`]) with the context in `z` (made on first use),
/// checking its length against `raw_len`.
pub(crate) fn decompress(
    z: &mut Option<zstd::bulk::Decompressor<'static>>,
    stored: &[u8],
    raw_len: u32,
    mut out: Vec<u8>,
) -> std::result::Result<Vec<u8>, ErrorKind> {
    let z = match z {
        Some(z) => z,
        None => z.insert(
            zstd::bulk::Decompressor::new()
                .map_err(|e| ErrorKind::Corrupt(format!("zstd: {e}")))?,
        ),
    };
    if let Err(e) = z.decompress_to_buffer(stored, &mut out) {
        return Err(ErrorKind::Corrupt(format!("zstd: {e}")));
    }
    if out.len() != raw_len as usize {
        return Err(ErrorKind::Corrupt(format!(
            "decompressed {} bytes, header says {raw_len}",
            out.len()
        )));
    }
    Ok(out)
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Room beyond a zstd frame's content given to its decompression: zstd then
/// decodes every block's literals inside the output buffer (one zstd block
/// and two 32-byte copy margins), never split with its own small buffer.
pub(crate) const ZSTD_LIT_ROOM: usize = (128 << 10) + 64;
