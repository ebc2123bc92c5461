//! Stack interning: stacks are stored as a trie of frames, outermost frame at
//! the root, so a new stack costs only the frames it does not share with an
//! earlier one. A stack id names a trie node; walking parents from that node
//! gives the frames innermost first.
//!
//! Stacks block payload: a sequence of entries, each a varint tag then fields
//! (FORMAT.md, section 5). Written: `2 back acode` defines the next node (ids
//! count up from 1), a child of node `id - back`, whose address is the file's
//! `acode`-th distinct frame address (1-based) or, for `acode` 0, a new one
//! given as a zigzag delta from the previous new one; `3 did back` binds the
//! stack id `previous id + did` (zigzag) to node `latest node - back`. Read
//! as well (format version 1): `0 parent addr` and `1 stack_id node`.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::event::StackId;
use crate::varint::{self, Cursor};

/// Writer side: assigns trie nodes to new frames and encodes new entries.
#[derive(Default)]
pub struct TrieBuilder {
    nodes: HashMap<(u32, u64), u32>,
    bound: HashSet<StackId>,
    next_node: u32,
    /// Distinct frame addresses so far, numbered from 0 in order of first use.
    addrs: HashMap<u64, u32>,
    last_new_addr: u64,
    last_id: StackId,
    pending: Vec<u8>,
}

impl TrieBuilder {
    /// Binds `id` to `frames` (innermost first), queuing the new entries.
    /// Returns false if `id` was bound already (the call is then ignored).
    pub fn define(&mut self, id: StackId, frames: &[u64]) -> bool {
        if !self.bound.insert(id) {
            return false;
        }
        let mut parent = 0u32;
        for &addr in frames.iter().rev() {
            parent = match self.nodes.get(&(parent, addr)) {
                Some(&n) => n,
                None => {
                    self.next_node += 1;
                    let n = self.next_node;
                    self.nodes.insert((parent, addr), n);
                    varint::put(&mut self.pending, 2);
                    varint::put(&mut self.pending, (n - parent) as u64);
                    let next = self.addrs.len() as u32;
                    match self.addrs.entry(addr) {
                        std::collections::hash_map::Entry::Occupied(e) => {
                            varint::put(&mut self.pending, *e.get() as u64 + 1);
                        }
                        std::collections::hash_map::Entry::Vacant(e) => {
                            e.insert(next);
                            varint::put(&mut self.pending, 0);
                            let d = addr.wrapping_sub(self.last_new_addr) as i64;
                            varint::put_signed(&mut self.pending, d);
                            self.last_new_addr = addr;
                        }
                    }
                    n
                }
            };
        }
        varint::put(&mut self.pending, 3);
        varint::put_signed(&mut self.pending, id as i64 - self.last_id as i64);
        varint::put(&mut self.pending, (self.next_node - parent) as u64);
        self.last_id = id;
        true
    }

    /// Bytes of entries not yet written.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Takes the queued entries as a block payload.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

/// Reader side: every stack defined so far.
#[derive(Default, Clone, Debug)]
pub struct StackTable {
    /// `(parent, frame address)` per node; index 0 is the root.
    nodes: Vec<(u32, u64)>,
    ids: HashMap<StackId, u32>,
    /// Distinct frame addresses of version 2 entries, in order of first use.
    addrs: Vec<u64>,
    last_new_addr: u64,
    last_id: StackId,
}

impl StackTable {
    /// An empty table.
    pub fn new() -> Self {
        StackTable {
            nodes: vec![(0, 0)],
            ..Default::default()
        }
    }

    /// Adds the entries of a stacks block.
    pub fn add_block(&mut self, payload: &[u8]) -> Result<(), String> {
        if self.nodes.is_empty() {
            self.nodes.push((0, 0));
        }
        let mut c = Cursor::new(payload);
        while !c.is_empty() {
            let bad = || "stacks block: cut entry".to_string();
            match c.get().ok_or_else(bad)? {
                0 => {
                    let parent = c.get().ok_or_else(bad)?;
                    let addr = c.get().ok_or_else(bad)?;
                    if parent >= self.nodes.len() as u64 {
                        return Err(format!(
                            "stacks block: node parent {parent} not yet defined"
                        ));
                    }
                    self.nodes.push((parent as u32, addr));
                }
                1 => {
                    let id = c.get().ok_or_else(bad)?;
                    let node = c.get().ok_or_else(bad)?;
                    let id = StackId::try_from(id)
                        .map_err(|_| "stacks block: stack id out of range".to_string())?;
                    if node >= self.nodes.len() as u64 {
                        return Err(format!(
                            "stacks block: stack {id} names undefined node {node}"
                        ));
                    }
                    self.ids.insert(id, node as u32);
                }
                2 => {
                    let back = c.get().ok_or_else(bad)?;
                    let n = self.nodes.len() as u64;
                    if back == 0 || back > n {
                        return Err(format!(
                            "stacks block: node parent {back} back out of range"
                        ));
                    }
                    let addr = match c.get().ok_or_else(bad)? {
                        0 => {
                            let d = varint::unzigzag(c.get().ok_or_else(bad)?);
                            let a = self.last_new_addr.wrapping_add(d as u64);
                            self.last_new_addr = a;
                            self.addrs.push(a);
                            a
                        }
                        k => *self.addrs.get(k as usize - 1).ok_or_else(|| {
                            format!("stacks block: frame address {k} not yet defined")
                        })?,
                    };
                    self.nodes.push(((n - back) as u32, addr));
                }
                3 => {
                    let did = varint::unzigzag(c.get().ok_or_else(bad)?);
                    let back = c.get().ok_or_else(bad)?;
                    let id = (self.last_id as i64).wrapping_add(did);
                    let id = StackId::try_from(id)
                        .map_err(|_| "stacks block: stack id out of range".to_string())?;
                    let last = self.nodes.len() as u64 - 1;
                    if back > last {
                        return Err(format!(
                            "stacks block: stack {id} names a node {back} before the first"
                        ));
                    }
                    self.ids.insert(id, (last - back) as u32);
                    self.last_id = id;
                }
                t => return Err(format!("stacks block: unknown entry tag {t}")),
            }
        }
        Ok(())
    }

    /// Frames of stack `id`, innermost first; empty for 0 or an unknown id.
    pub fn frames(&self, id: StackId) -> Vec<u64> {
        let mut out = Vec::new();
        let mut n = self.ids.get(&id).copied().unwrap_or(0);
        while n != 0 {
            let (parent, addr) = self.nodes[n as usize];
            out.push(addr);
            n = parent;
        }
        out
    }

    /// Whether `id` has been defined.
    pub fn contains(&self, id: StackId) -> bool {
        self.ids.contains_key(&id)
    }

    /// Number of stack ids defined.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no stack is defined.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of trie nodes (distinct frames in context).
    pub fn node_count(&self) -> usize {
        self.nodes.len().saturating_sub(1)
    }

    /// Every defined stack id (unordered).
    pub fn ids(&self) -> impl Iterator<Item = StackId> + '_ {
        self.ids.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_prefixes_cost_only_new_frames() {
        let mut b = TrieBuilder::default();
        assert!(b.define(7, &[3, 2, 1]));
        let first = b.pending_len();
        assert!(b.define(8, &[4, 2, 1]));
        // One new node plus one binding.
        assert!(b.pending_len() - first < first);
        assert!(!b.define(7, &[9]));
        let mut t = StackTable::new();
        t.add_block(&b.take()).unwrap();
        assert_eq!(t.frames(7), vec![3, 2, 1]);
        assert_eq!(t.frames(8), vec![4, 2, 1]);
        assert_eq!(t.frames(0), Vec::<u64>::new());
        assert_eq!(t.node_count(), 4);
    }

    #[test]
    fn entries_carry_state_across_blocks_and_version_1_entries_read() {
        let mut b = TrieBuilder::default();
        let mut t = StackTable::new();
        // Ids going down and up, an empty stack, addresses above and below
        // the previous new one, a repeated address under another parent.
        let stacks: [(StackId, &[u64]); 5] = [
            (9, &[0x7f00_0000_1000, 0x5500_0000_2000]),
            (3, &[]),
            (u32::MAX, &[0x5500_0000_2000, 0x7f00_0000_1000]),
            (4, &[0x10, 0x7f00_0000_1000, 0x5500_0000_2000]),
            (5, &[u64::MAX, 0]),
        ];
        for (id, frames) in stacks {
            assert!(b.define(id, frames));
            t.add_block(&b.take()).unwrap();
        }
        for (id, frames) in stacks {
            assert_eq!(t.frames(id), frames, "stack {id}");
        }
        // Version 1: `0 parent addr`, `1 id node`, after version 2 entries.
        let mut v1 = Vec::new();
        for v in [0, 0, 0x1234, 0, 8, 0x99, 1, 77, 9] {
            varint::put(&mut v1, v);
        }
        t.add_block(&v1).unwrap();
        assert_eq!(t.frames(77), vec![0x99, 0x1234]);
        // A node whose parent would lie before the root, an address not yet
        // defined: errors.
        for bad in [[2u64, 99, 1], [2, 1, 999]] {
            let mut p = Vec::new();
            for v in bad {
                varint::put(&mut p, v);
            }
            assert!(t.clone().add_block(&p).is_err());
        }
    }
}
