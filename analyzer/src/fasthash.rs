//! The two maps on the pass's hot path: heap address → slot ([`AddrMap`],
//! open addressing), and stack id → aggregates ([`StackMap`]: stack ids are
//! mostly dense, so aggregates live in a vector indexed by id, with a map for
//! the rare large id). [`FoldHasher`] serves the maps off the hot path.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use traces::StackId;

/// Folded-multiply hasher for `u64` keys (not DoS-resistant; keys are ours).
#[derive(Default, Clone, Copy)]
pub struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        let p = u128::from(self.0) * 0x9E37_79B9_7F4A_7C15_u128;
        (p as u64) ^ ((p >> 64) as u64)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
    fn write_u32(&mut self, n: u32) {
        self.0 ^= u64::from(n);
    }
}

/// Multiplier of the Fibonacci hash (2^64 / golden ratio, odd).
const FIB: u64 = 0x9E37_79B9_7F4A_7C15;

/// A map keyed by heap address, built for the pass's one lookup per event:
/// entries `(address, value)` sit densely in insertion order, and an
/// open-addressing index (linear probing, multiplicative hash of the
/// address, at most a quarter full, so a probe rarely goes past its first
/// slot) holds entry numbers + 1 (0: free). The index is 4 bytes a slot and
/// the entries carry no holes, so both stay in the core's cache for a live
/// set of tens of thousands of blocks, and no operation allocates (except
/// growing). Entries are never removed one by one (the pass only inserts and
/// overwrites); [`AddrMap::retain`] rebuilds.
pub struct AddrMap<V> {
    entries: Vec<Entry<V>>,
    index: Vec<u32>,
    /// `64 - log2(index.len())`: the hash's top bits pick the index slot.
    shift: u32,
}

/// An entry of [`AddrMap`]: an address and its value, aligned to a cache
/// line so that an entry of up to 56 bytes of value (the pass's slots are
/// 48) is one line, not two (unaligned 56-byte entries mostly straddle two).
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Entry<V>(u64, V);

/// Initial index size.
const MIN_INDEX: usize = 1 << 10;

impl<V: Copy> Default for AddrMap<V> {
    fn default() -> Self {
        AddrMap {
            entries: Vec::new(),
            index: vec![0; MIN_INDEX],
            shift: 64 - MIN_INDEX.trailing_zeros(),
        }
    }
}

impl<V: Copy> AddrMap<V> {
    /// The index slot holding `k`'s entry number, or the free slot where it would go.
    #[inline(always)]
    fn find(&self, k: u64) -> usize {
        let mask = self.index.len() - 1;
        let mut i = self.home(k);
        loop {
            let e = self.index[i] as usize;
            if e == 0 || self.entries[e - 1].0 == k {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// The entry number of `k` if `hint` (from [`AddrMap::prefetch`]) names
    /// it: entries never move but in [`AddrMap::retain`], and each key has
    /// one, so an entry with the key is the key's whatever happened since.
    #[inline(always)]
    fn hinted(&self, k: u64, hint: u32) -> Option<usize> {
        let e = (hint as usize).wrapping_sub(1);
        self.entries.get(e).filter(|x| x.0 == k).map(|_| e)
    }

    /// [`AddrMap::get_or_insert_default`], first trying the entry `hint`
    /// names (see [`AddrMap::prefetch`]).
    #[inline(always)]
    pub fn get_or_insert_hinted(&mut self, k: u64, hint: u32) -> (&mut V, bool)
    where
        V: Default,
    {
        match self.hinted(k, hint) {
            Some(e) => (&mut self.entries[e].1, true),
            None => self.get_or_insert_default(k),
        }
    }

    /// [`AddrMap::get_mut`], first trying the entry `hint` names (see
    /// [`AddrMap::prefetch`]).
    #[inline(always)]
    pub fn get_mut_hinted(&mut self, k: u64, hint: u32) -> Option<&mut V> {
        match self.hinted(k, hint) {
            Some(e) => Some(&mut self.entries[e].1),
            None => self.get_mut(k),
        }
    }

    /// The value at `k` and `true` if there is one; otherwise inserts
    /// `V::default()` there and returns it and `false` (one probe for both
    /// cases; the caller overwrites the value without building it first).
    #[inline(always)]
    pub fn get_or_insert_default(&mut self, k: u64) -> (&mut V, bool)
    where
        V: Default,
    {
        let i = self.find(k);
        let e = self.index[i] as usize;
        if e != 0 {
            return (&mut self.entries[e - 1].1, true);
        }
        self.push_default(i, k);
        let last = self.entries.len() - 1;
        (&mut self.entries[last].1, false)
    }

    /// [`AddrMap::push`] of `V::default()`.
    #[inline(never)]
    fn push_default(&mut self, i: usize, k: u64)
    where
        V: Default,
    {
        self.push(i, k, V::default());
    }

    /// Appends the entry `(k, v)`, whose free index slot is `i` (out of
    /// line: a new address is rare next to lookups of known ones).
    #[inline(never)]
    fn push(&mut self, i: usize, k: u64, v: V) {
        self.entries.push(Entry(k, v));
        self.index[i] = u32::try_from(self.entries.len()).expect("fewer than 2^32 addresses");
        if self.entries.len() * 4 > self.index.len() {
            self.grow();
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        self.reindex(self.index.len() * 2);
    }

    /// Starts loading the entry of `k` into the cache, if `k` is at its
    /// home position (most keys: the index is at most a quarter full), so
    /// that a lookup of `k` a few events later finds it there. The entries
    /// of a program's live blocks outgrow the core's cache early (64 bytes
    /// each): on the churn trace with 10,000 live blocks the pass took 13.8
    /// ns an event without, 11.6 with prefetches 16 events ahead, 10.6 with
    /// the hint below too; with 100,000 live, 24.2 against 14.4 and 13.8
    /// (`bench_cli pass`, AMD EPYC, 1 MiB L2 a core).
    ///
    /// Returns a hint for the lookup ([`AddrMap::get_mut_hinted`],
    /// [`AddrMap::get_or_insert_hinted`]): the entry at `k`'s home position,
    /// which spares that lookup the hash and the index when it is `k`'s.
    #[inline(always)]
    pub fn prefetch(&self, k: u64) -> u32 {
        let e = self.index[self.home(k)];
        // Entry `e - 1`; for an empty position (0) the address before the
        // entries, which a prefetch may name: it never faults.
        let at = (e as usize).wrapping_sub(1);
        traces::hint::prefetch(self.entries.as_ptr().wrapping_add(at));
        e
    }

    /// The index slot where the probe for `k` starts. The address's upper
    /// bits are folded into the lower ones before the multiply: the plain
    /// Fibonacci hash of glibc's heap addresses collided three times as
    /// often as chance (0.36 extra probes a lookup on the churn trace,
    /// 0.12 with the fold, at a quarter full).
    #[inline]
    fn home(&self, k: u64) -> usize {
        ((k ^ (k >> 15)).wrapping_mul(FIB) >> self.shift) as usize
    }

    /// Inserts, returning the previous value.
    #[inline]
    pub fn insert(&mut self, k: u64, v: V) -> Option<V> {
        let i = self.find(k);
        let e = self.index[i] as usize;
        if e != 0 {
            return Some(std::mem::replace(&mut self.entries[e - 1].1, v));
        }
        self.push(i, k, v);
        None
    }

    /// The value at `k`.
    #[inline(always)]
    pub fn get_mut(&mut self, k: u64) -> Option<&mut V> {
        let e = self.index[self.find(k)] as usize;
        if e == 0 {
            None
        } else {
            Some(&mut self.entries[e - 1].1)
        }
    }

    /// Entries, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, V)> + '_ {
        self.entries.iter().map(|e| (e.0, e.1))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keeps the entries for which `f` holds.
    pub fn retain(&mut self, f: impl Fn(&V) -> bool) {
        self.entries.retain(|e| f(&e.1));
        self.entries.shrink_to(self.entries.len() * 2);
        let size = (self.entries.len() * 4 + 1)
            .next_power_of_two()
            .max(MIN_INDEX);
        self.reindex(size);
    }

    fn reindex(&mut self, size: usize) {
        self.index.clear();
        self.index.resize(size, 0);
        self.index.shrink_to(size);
        self.shift = 64 - size.trailing_zeros();
        for n in 0..self.entries.len() {
            let i = self.find(self.entries[n].0);
            self.index[i] = n as u32 + 1;
        }
    }
}

/// Ids below this are stored densely.
const DENSE: usize = 1 << 22;

/// A map keyed by stack id: dense vector for small ids, hash map otherwise.
/// An id is present once its value differs from `V::default()` (the pass
/// counts an allocation in a site as soon as it creates it), so the dense
/// part needs no presence flag to check on the hot path.
pub struct StackMap<V> {
    dense: Vec<V>,
    sparse: HashMap<StackId, V, BuildHasherDefault<FoldHasher>>,
}

impl<V> Default for StackMap<V> {
    fn default() -> Self {
        StackMap {
            dense: Vec::new(),
            sparse: HashMap::default(),
        }
    }
}

impl<V: Default + PartialEq> StackMap<V> {
    /// The value for `id`, `V::default()` if absent.
    #[inline(always)]
    pub fn entry(&mut self, id: StackId) -> &mut V {
        let i = id as usize;
        if i >= self.dense.len() {
            return self.entry_slow(id);
        }
        &mut self.dense[i]
    }

    /// [`StackMap::entry`] for an id past the dense vector: grows it, or
    /// uses the map for a large id.
    #[cold]
    #[inline(never)]
    fn entry_slow(&mut self, id: StackId) -> &mut V {
        let i = id as usize;
        if i >= DENSE {
            return self.sparse.entry(id).or_default();
        }
        self.dense
            .resize_with((i + 1).max(self.dense.len() * 2), V::default);
        &mut self.dense[i]
    }

    /// Entries whose value is not the default, dense ones in id order first.
    pub fn iter(&self) -> impl Iterator<Item = (StackId, &V)> + '_ {
        self.dense
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != V::default())
            .map(|(i, v)| (i as StackId, v))
            .chain(
                self.sparse
                    .iter()
                    .filter(|(_, v)| **v != V::default())
                    .map(|(k, v)| (*k, v)),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_map_agrees_with_a_hash_map() {
        let mut m = AddrMap::<u64>::default();
        let mut want = HashMap::new();
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for n in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Aligned addresses, many repeats, 0 included.
            let k = (x % 30_000) * 16;
            assert_eq!(m.insert(k, n), want.insert(k, n));
            if n % 50_000 == 0 {
                m.retain(|v| v % 3 != 0);
                want.retain(|_, v| *v % 3 != 0);
            }
            let probe = (x >> 20) % 40_000 * 16;
            assert_eq!(m.get_mut(probe).copied(), want.get(&probe).copied());
        }
        assert_eq!(m.len(), want.len());
        let mut got: Vec<_> = m.iter().collect();
        got.sort_unstable();
        let mut all: Vec<_> = want.into_iter().collect();
        all.sort_unstable();
        assert_eq!(got, all);
    }
}
