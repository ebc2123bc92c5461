//! LEB128 varints and zigzag, the integer encoding of event columns.

/// Appends `v` as an unsigned LEB128 varint.
#[inline(always)]
pub fn put(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
    } else if v < 0x4000 {
        // Two bytes (most sizes), inline.
        out.extend_from_slice(&[v as u8 | 0x80, (v >> 7) as u8]);
    } else {
        put_wide(out, v);
    }
}

/// [`put`] for values of three bytes or more: up to 8 bytes are built in one
/// word (the 7-bit groups spread apart, continuation bits set) and appended
/// at once.
#[inline]
fn put_wide(out: &mut Vec<u8>, v: u64) {
    if v >> 56 != 0 {
        let mut v = v;
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        return;
    }
    let mut x = v;
    x = (x & 0x0000_0000_0fff_ffff) | ((x & 0x00ff_ffff_f000_0000) << 4);
    x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x0fff_c000_0fff_c000) << 2);
    x = (x & 0x007f_007f_007f_007f) | ((x & 0x3f80_3f80_3f80_3f80) << 1);
    // Bytes needed: 3 to 8 (v >= 0x4000 and below 2^56).
    let n = (70 - v.leading_zeros() as usize) / 7;
    x |= 0x8080_8080_8080_8080 & ((1u64 << (8 * (n - 1))) - 1);
    // All 8 bytes appended, the unused ones cut off again: a copy of a
    // fixed length is one store, one of `n` bytes a call to `memcpy`.
    let len = out.len();
    out.extend_from_slice(&x.to_le_bytes());
    out.truncate(len + n.min(8));
}

/// Appends a signed value zigzag-encoded as a varint.
#[inline]
pub fn put_signed(out: &mut Vec<u8>, v: i64) {
    put(out, zigzag(v));
}

/// Maps signed to unsigned so small magnitudes stay small.
#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
#[inline]
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Byte-at-a-time decoding of the varint at the start of `rest`: near the
/// end of a buffer, and for 9 and 10-byte varints. Returns the value and its
/// length in bytes.
#[cold]
#[inline(never)]
fn get_slow(rest: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    let mut shift = 0u32;
    for (i, &b) in rest.iter().enumerate() {
        if shift == 63 && b > 1 {
            return None;
        }
        v |= ((b & 0x7f) as u64) << shift;
        if b < 0x80 {
            return Some((v, i + 1));
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    None
}

/// A cursor over a byte slice that reads varints; `None` means the slice ended
/// or a varint was longer than 10 bytes.
#[derive(Clone, Debug)]
pub struct Cursor<'a> {
    /// The whole slice, never changed, and the read position (at most
    /// `all.len()`): reading only updates `pos`, so a hot decoding loop that
    /// runs out of registers spills one word per cursor, not two.
    all: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { all: buf, pos: 0 }
    }

    /// A cursor at byte `pos` of `buf` (at its end if `pos` is beyond).
    pub fn at(buf: &'a [u8], pos: usize) -> Self {
        Cursor {
            all: buf,
            pos: pos.min(buf.len()),
        }
    }

    /// Bytes consumed so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Moves to byte `pos` (to the end if `pos` is beyond).
    #[inline]
    pub fn set_pos(&mut self, pos: usize) {
        self.pos = pos.min(self.all.len());
    }

    /// Whether every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.all.len()
    }

    /// Reads one unsigned varint. Fastest for columns of mostly one-byte values.
    #[inline(always)]
    pub fn get(&mut self) -> Option<u64> {
        // Fast path: one byte.
        let b = *self.all.get(self.pos)?;
        if b < 0x80 {
            self.pos += 1;
            return Some(b as u64);
        }
        self.get_wide()
    }

    /// Reads one unsigned varint without a special case for one byte: better
    /// for columns whose values often take two or more bytes (sizes).
    #[inline(always)]
    pub fn get_wide(&mut self) -> Option<u64> {
        // Up to 8 bytes from one little-endian word, without a loop: find the
        // first byte whose continuation bit is clear, keep the bytes up to it
        // and squeeze out the continuation bits.
        let window = self.all.get(self.pos..self.pos.wrapping_add(8));
        if let Some(&w) = window.and_then(|w| w.first_chunk::<8>()) {
            let w = u64::from_le_bytes(w);
            let stops = !w & 0x8080_8080_8080_8080;
            if stops & 0x8080 != 0 {
                // One or two bytes (sizes below 16 KiB): keep the second
                // byte only if the first has its continuation bit, without
                // a branch on which.
                let two = (w >> 7) & 1;
                let hi = (w >> 1) & 0x3f80 & two.wrapping_neg();
                self.pos += 1 + two as usize;
                return Some((w & 0x7f) | hi);
            }
            if stops != 0 {
                let bits = stops.trailing_zeros() + 1; // 8 * length
                let mut x = w & (u64::MAX >> (64 - bits)) & 0x7f7f_7f7f_7f7f_7f7f;
                x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
                x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
                x = (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4);
                self.pos += (bits / 8) as usize;
                return Some(x);
            }
        }
        // Not inlined, and not given the cursor: a cursor whose address
        // escapes into a call would live in memory in every caller's loop.
        let (v, n) = get_slow(self.all.get(self.pos..).unwrap_or_default())?;
        self.pos += n;
        Some(v)
    }

    /// The next 8 bytes, without consuming them; `None` when fewer than 8
    /// are left.
    #[inline(always)]
    pub fn peek8(&self) -> Option<&'a [u8; 8]> {
        self.all.get(self.pos..)?.first_chunk::<8>()
    }

    /// The next 16 bytes, without consuming them; `None` when fewer than 16
    /// are left.
    #[inline(always)]
    pub fn peek16(&self) -> Option<&'a [u8; 16]> {
        self.all.get(self.pos..)?.first_chunk::<16>()
    }

    /// Skips `n` bytes, which must not be more than are left (else the
    /// cursor is past its end: every read then returns `None`).
    #[inline(always)]
    pub fn skip(&mut self, n: usize) {
        self.pos += n;
    }

    /// Reads varints into `out`, in order, until it is full or a value is
    /// cut, overlong or above `max` (the cursor then stays before it).
    /// Returns how many were read. Runs of one-byte values are found eight
    /// bytes at a time and widened in a loop of their own.
    #[inline]
    pub fn get_u32s(&mut self, out: &mut [u32], max: u32) -> usize {
        self.get_many(out, max as u64, |v| v as u32)
    }

    /// Reads varints into `out`, in order, until it is full or a value is
    /// cut or overlong (the cursor then stays before it). Returns how many
    /// were read.
    #[inline]
    pub fn get_u64s(&mut self, out: &mut [u64]) -> usize {
        self.get_many(out, u64::MAX, |v| v)
    }

    /// [`Cursor::get_u32s`] and [`Cursor::get_u64s`]: values up to `max`,
    /// stored as `to` makes them.
    #[inline]
    fn get_many<T>(&mut self, out: &mut [T], max: u64, to: impl Fn(u64) -> T) -> usize {
        let all = self.all;
        let mut p = self.pos;
        let mut i = 0;
        while i < out.len() {
            // A value of two bytes, or one alone before a longer one:
            // branch-free (as `get_wide`), without the setup of a run.
            if let Some(w) = all.get(p..).and_then(|s| s.first_chunk::<8>()) {
                let x = u64::from_le_bytes(*w);
                if x & 0x8080 != 0x8080 && x & 0x8080 != 0 {
                    let two = (x >> 7) & 1;
                    let v = (x & 0x7f) | ((x >> 1) & 0x3f80 & two.wrapping_neg());
                    if v > max {
                        break;
                    }
                    out[i] = to(v);
                    p += 1 + two as usize;
                    i += 1;
                    continue;
                }
            }
            // One-byte values from `p` on (stack ids, sizes of 16-byte
            // granules: the bulk of those columns), up to what `out` has
            // room for: found eight bytes at a time, widened in a loop of
            // their own.
            let bytes = all.get(p..).unwrap_or_default();
            let bytes = &bytes[..bytes.len().min(out.len() - i)];
            let ones = one_byte_prefix(bytes);
            for (d, &b) in out[i..].iter_mut().zip(&bytes[..ones]) {
                *d = to(b as u64);
            }
            p += ones;
            i += ones;
            // Then one longer value (its first byte has the continuation
            // bit), or the end.
            let Some(o) = out.get_mut(i) else { break };
            let mut c = Cursor { all, pos: p };
            match c.get().filter(|&v| v <= max) {
                Some(v) => *o = to(v),
                None => break,
            }
            p = c.pos;
            i += 1;
        }
        self.pos = p;
        i
    }

    /// Skips `n` varints (fewer if the slice ends or one is bad first).
    pub fn skip_varints(&mut self, n: usize) {
        for _ in 0..n {
            if self.get().is_none() {
                break;
            }
        }
    }

    /// The bytes from the read position on.
    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        self.all.get(self.pos..).unwrap_or_default()
    }

    /// Reads one zigzag varint.
    #[inline]
    pub fn get_signed(&mut self) -> Option<i64> {
        self.get().map(unzigzag)
    }

    /// Reads one byte.
    #[inline(always)]
    pub fn byte(&mut self) -> Option<u8> {
        let b = *self.all.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// Reads `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.all.get(self.pos..)?.get(..n)?;
        self.pos += n;
        Some(s)
    }
}

/// How many bytes at the start of `bytes` are whole one-byte varints (below
/// 0x80): eight bytes at a time, then byte by byte near the end.
#[inline(always)]
fn one_byte_prefix(bytes: &[u8]) -> usize {
    let mut ones = 0;
    // Sixteen at a time while they last (a column of one-byte values:
    // half the instructions a byte of eight at a time).
    while let Some(w) = bytes.get(ones..).and_then(|s| s.first_chunk::<16>()) {
        let hi = u128::from_le_bytes(*w) & (0x80 * (u128::MAX / 0xff));
        if hi != 0 {
            return ones + hi.trailing_zeros() as usize / 8;
        }
        ones += 16;
    }
    while let Some(w) = bytes.get(ones..).and_then(|s| s.first_chunk::<8>()) {
        let hi = u64::from_le_bytes(*w) & 0x8080_8080_8080_8080;
        if hi != 0 {
            return ones + hi.trailing_zeros() as usize / 8;
        }
        ones += 8;
    }
    while bytes.get(ones).is_some_and(|&b| b < 0x80) {
        ones += 1;
    }
    ones
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_edges() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put(&mut b, v);
            assert_eq!(Cursor::new(&b).get(), Some(v));
        }
        // The word-at-a-time writer against the byte-at-a-time definition.
        for bits in 0..64 {
            for v in [
                1u64 << bits,
                (1u64 << bits) - 1,
                (1u64 << bits) | 0x5a5a_5a5a_5a5a_5a5a >> (63 - bits),
            ] {
                let mut want = Vec::new();
                let mut x = v;
                while x >= 0x80 {
                    want.push((x as u8) | 0x80);
                    x >>= 7;
                }
                want.push(x as u8);
                let mut b = vec![9];
                put(&mut b, v);
                assert_eq!(&b[1..], &want[..], "{v:#x}");
            }
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn every_length_at_every_offset() {
        // Values of 1 to 10 bytes, alone and followed by other bytes, so both
        // the word path and the byte-at-a-time path are taken.
        let mut vals = vec![0u64, 1, 0x7f, u64::MAX];
        for bits in 7..64 {
            vals.push(1u64 << bits);
            vals.push((1u64 << bits) - 1);
            vals.push((1u64 << bits) | 0x55);
        }
        for &v in &vals {
            for pad in 0..10 {
                let mut b = Vec::new();
                put(&mut b, v);
                let n = b.len();
                b.extend(std::iter::repeat_n(0x81, pad));
                let mut c = Cursor::new(&b);
                assert_eq!(c.get(), Some(v), "{v:#x} pad {pad}");
                assert_eq!(c.pos(), n);
                let mut c = Cursor::new(&b);
                assert_eq!(c.get_wide(), Some(v), "{v:#x} pad {pad}");
                assert_eq!(c.pos(), n);
                // Cut anywhere: no value, cursor unmoved.
                for cut in 0..n {
                    let mut c = Cursor::new(&b[..cut]);
                    assert_eq!(c.get_wide(), None);
                    assert_eq!(c.get(), None);
                }
            }
        }
    }

    #[test]
    fn two_byte_values_at_column_ends() {
        // The one-or-two-byte path reads a whole word: the bytes after the
        // value (another column's, or none) must not leak into it.
        for v in [0u64, 1, 0x7f, 0x80, 0x81, 0x3fff, 0x2a5, 0x4000] {
            let mut b = Vec::new();
            put(&mut b, v);
            let n = b.len();
            for after in [0x00u8, 0x7f, 0x80, 0xff] {
                for pad in 0..9 {
                    let mut buf = b.clone();
                    buf.extend(std::iter::repeat_n(after, pad));
                    // Only the column (the value) is the cursor's slice.
                    let mut c = Cursor::new(&buf[..n]);
                    assert_eq!(c.get_wide(), Some(v), "{v:#x} then {pad} x {after:#x}");
                    assert!(c.is_empty());
                    assert_eq!(c.get_wide(), None);
                    // Inside a longer buffer, the word path is taken.
                    let mut c = Cursor::new(&buf);
                    assert_eq!(c.get_wide(), Some(v));
                    assert_eq!(c.pos(), n);
                }
            }
        }
        // Positions past the end stay at the end.
        let b = [1u8, 2, 3];
        let mut c = Cursor::at(&b, 7);
        assert!(c.is_empty());
        assert_eq!(c.get(), None);
        assert_eq!(c.byte(), None);
        c.set_pos(1);
        assert_eq!(c.bytes(5), None);
        assert_eq!(c.bytes(2), Some(&b[1..]));
        assert!(c.is_empty());
    }

    #[test]
    fn every_one_and_two_byte_value_wide() {
        // The branch-free one-or-two-byte path, for every such value, with
        // bytes after it that have their continuation bit set or not.
        for v in 0..0x4000u64 {
            for after in [0x00u8, 0xff, 0x80, 0x7f] {
                let mut b = Vec::new();
                put(&mut b, v);
                let n = b.len();
                b.extend([after; 8]);
                let mut c = Cursor::new(&b);
                assert_eq!(c.get_wide(), Some(v), "{v:#x} then {after:#x}");
                assert_eq!(c.pos(), n);
            }
        }
    }

    #[test]
    fn bulk_reads_agree_with_one_at_a_time() {
        // Random mixes of one- to ten-byte values, cut anywhere or followed
        // by an overlong varint, read into slices of every length: the same
        // values and position as `get` one at a time, stopping at the first
        // value `get` refuses (or, for u32s, above the maximum).
        let mut rng = crate::synthetic::Rng::new(3);
        for round in 0..3000 {
            let mut b = Vec::new();
            let n = rng.next_u64() % 40;
            for _ in 0..n {
                let bits = match rng.next_u64() % 4 {
                    0 | 1 => 7,
                    2 => 14,
                    _ => rng.next_u64() % 65,
                };
                put(&mut b, rng.next_u64() & (u64::MAX >> (64 - bits.max(1))));
            }
            if round % 5 == 0 {
                b.extend([0x80; 11]);
            }
            let cut = (rng.next_u64() % (b.len() as u64 + 1)) as usize;
            let b = &b[..if round % 2 == 0 { cut } else { b.len() }];
            let start = (rng.next_u64() % 3).min(b.len() as u64) as usize;
            for len in [0, 1, 7, 8, 9, 17, 64] {
                let max = [u32::MAX, 0xff_ffff, 300][round % 3];
                let mut one = Cursor::at(b, start);
                let mut want = Vec::new();
                let mut want_pos = one.pos();
                while want.len() < len {
                    match one.get() {
                        Some(v) if v <= max as u64 => want.push(v as u32),
                        _ => break,
                    }
                    want_pos = one.pos();
                }
                let mut c = Cursor::at(b, start);
                let mut out = vec![0u32; len];
                let k = c.get_u32s(&mut out, max);
                assert_eq!(
                    (&out[..k], c.pos()),
                    (&want[..], want_pos),
                    "round {round} len {len}"
                );
                let mut one = Cursor::at(b, start);
                let mut want = Vec::new();
                let mut want_pos = one.pos();
                while want.len() < len {
                    let Some(v) = one.get() else { break };
                    want.push(v);
                    want_pos = one.pos();
                }
                let mut c = Cursor::at(b, start);
                let mut out = vec![0u64; len];
                let k = c.get_u64s(&mut out);
                assert_eq!(
                    (&out[..k], c.pos()),
                    (&want[..], want_pos),
                    "round {round} len {len}"
                );
                let mut c = Cursor::at(b, start);
                c.skip_varints(want.len());
                assert_eq!(c.pos(), want_pos);
            }
        }
    }

    #[test]
    fn rejects_overlong_and_cut() {
        assert_eq!(Cursor::new(&[0x80; 11]).get(), None);
        assert_eq!(Cursor::new(&[0x80, 0x80]).get(), None);
        assert_eq!(Cursor::new(&[0xff; 9]).get(), None);
        // 10th byte may only carry one bit.
        let mut b = vec![0xff; 9];
        b.push(0x02);
        assert_eq!(Cursor::new(&b).get(), None);
        let mut long = vec![0x80; 11];
        long.extend([0; 8]);
        assert_eq!(Cursor::new(&long).get_wide(), None);
    }
}
