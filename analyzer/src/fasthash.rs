//! The two maps on the pass's hot path: heap address → slot, and stack id →
//! aggregates. Addresses are aligned (low bits zero), so the hash folds a
//! 128-bit product to spread them; stack ids are mostly dense, so aggregates
//! live in a vector indexed by id, with a map for the rare large id.

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

/// A map keyed by heap address.
pub struct AddrMap<V>(HashMap<u64, V, BuildHasherDefault<FoldHasher>>);

impl<V> Default for AddrMap<V> {
    fn default() -> Self {
        AddrMap(HashMap::default())
    }
}

impl<V: Copy> AddrMap<V> {
    /// Inserts, returning the previous value.
    pub fn insert(&mut self, k: u64, v: V) -> Option<V> {
        self.0.insert(k, v)
    }
    /// The value at `k`.
    pub fn get_mut(&mut self, k: u64) -> Option<&mut V> {
        self.0.get_mut(&k)
    }
    /// Entries, unordered.
    pub fn iter(&self) -> impl Iterator<Item = (u64, V)> + '_ {
        self.0.iter().map(|(k, v)| (*k, *v))
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Keeps the entries for which `f` holds.
    pub fn retain(&mut self, mut f: impl FnMut(&V) -> bool) {
        self.0.retain(|_, v| f(v));
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
