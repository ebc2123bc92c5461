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

/// Marks a free entry in [`AddrMap`]; the entry for this key lives aside.
const EMPTY: u64 = 0;

/// A map keyed by heap address: open addressing with linear probing over a
/// power-of-two table of `(address, value)` pairs, so a lookup is usually
/// one cache line and no operation allocates (except growing). Fibonacci
/// hashing spreads aligned, mostly consecutive addresses evenly. Entries are
/// never removed one by one (the pass only inserts and overwrites);
/// [`AddrMap::retain`] rebuilds the table.
pub struct AddrMap<V> {
    entries: Vec<(u64, V)>,
    len: usize,
    /// `64 - log2(entries.len())`: the hash's top bits index the table.
    shift: u32,
    /// The value at address 0 (`EMPTY` marks free entries).
    zero: Option<V>,
}

/// Initial table size (entries).
const MIN_CAPACITY: usize = 1 << 10;

impl<V: Copy + Default> Default for AddrMap<V> {
    fn default() -> Self {
        Self::with_table(MIN_CAPACITY)
    }
}

impl<V: Copy + Default> AddrMap<V> {
    fn with_table(cap: usize) -> Self {
        debug_assert!(cap.is_power_of_two());
        AddrMap {
            entries: vec![(EMPTY, V::default()); cap],
            len: 0,
            shift: 64 - cap.trailing_zeros(),
            zero: None,
        }
    }

    /// Index of `k`'s entry, or of the free entry where it would go.
    #[inline]
    fn find(&self, k: u64) -> usize {
        let mask = self.entries.len() - 1;
        let mut i = (k.wrapping_mul(FIB) >> self.shift) as usize;
        loop {
            let key = self.entries[i].0;
            if key == k || key == EMPTY {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// Inserts, returning the previous value.
    #[inline]
    pub fn insert(&mut self, k: u64, v: V) -> Option<V> {
        if k == EMPTY {
            let old = self.zero.replace(v);
            if old.is_none() {
                self.len += 1;
            }
            return old;
        }
        let i = self.find(k);
        let e = &mut self.entries[i];
        if e.0 == k {
            return Some(std::mem::replace(&mut e.1, v));
        }
        *e = (k, v);
        self.len += 1;
        // Load at most 5/8: short probe sequences.
        if self.len * 8 > self.entries.len() * 5 {
            self.rebuild(self.entries.len() * 2, |_| true);
        }
        None
    }

    /// The value at `k`.
    #[inline]
    pub fn get_mut(&mut self, k: u64) -> Option<&mut V> {
        if k == EMPTY {
            return self.zero.as_mut();
        }
        let i = self.find(k);
        let e = &mut self.entries[i];
        (e.0 == k).then_some(&mut e.1)
    }

    /// Entries, unordered.
    pub fn iter(&self) -> impl Iterator<Item = (u64, V)> + '_ {
        self.zero
            .map(|v| (EMPTY, v))
            .into_iter()
            .chain(self.entries.iter().filter(|e| e.0 != EMPTY).copied())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Keeps the entries for which `f` holds (rebuilds the table, sized for them).
    pub fn retain(&mut self, f: impl Fn(&V) -> bool) {
        if self.zero.as_ref().is_some_and(|v| !f(v)) {
            self.zero = None;
        }
        let kept = self
            .entries
            .iter()
            .filter(|e| e.0 != EMPTY && f(&e.1))
            .count()
            + usize::from(self.zero.is_some());
        let cap = (kept * 2).next_power_of_two().max(MIN_CAPACITY);
        self.rebuild(cap, f);
    }

    fn rebuild(&mut self, cap: usize, f: impl Fn(&V) -> bool) {
        let old = std::mem::replace(&mut self.entries, vec![(EMPTY, V::default()); cap]);
        self.shift = 64 - cap.trailing_zeros();
        self.len = usize::from(self.zero.is_some());
        for (k, v) in old {
            if k != EMPTY && f(&v) {
                let i = self.find(k);
                self.entries[i] = (k, v);
                self.len += 1;
            }
        }
    }
}

/// Ids below this are stored densely.
const DENSE: usize = 1 << 22;

/// A map keyed by stack id: dense vector for small ids, hash map otherwise.
pub struct StackMap<V> {
    dense: Vec<Option<V>>,
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

impl<V: Default> StackMap<V> {
    /// The value for `id`, created with `V::default()` if absent.
    pub fn entry(&mut self, id: StackId) -> &mut V {
        let i = id as usize;
        if i < DENSE {
            if i >= self.dense.len() {
                self.dense
                    .resize_with((i + 1).max(self.dense.len() * 2), || None);
            }
            self.dense[i].get_or_insert_with(V::default)
        } else {
            self.sparse.entry(id).or_default()
        }
    }

    /// Entries, dense ones in id order first.
    pub fn iter(&self) -> impl Iterator<Item = (StackId, &V)> + '_ {
        self.dense
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (i as StackId, v)))
            .chain(self.sparse.iter().map(|(k, v)| (*k, v)))
    }
}
