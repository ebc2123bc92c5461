//! Stack interning: stacks are stored as a trie of frames, outermost frame at
//! the root, so a new stack costs only the frames it does not share with an
//! earlier one. A stack id names a trie node; walking parents from that node
//! gives the frames innermost first.
//!
//! Stacks block payload: a sequence of entries, each a varint tag then fields:
//! `0 parent addr` defines the next node (ids count up from 1; parent 0 is the
//! root) and `1 stack_id node` binds a stack id to a node.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::event::StackId;
use crate::varint::{self, Cursor};

/// Writer side: assigns trie nodes to new frames and encodes new entries.
#[derive(Default)]
pub struct TrieBuilder {
    nodes: HashMap<(u32, u64), u32>,
    bound: HashSet<StackId>,
    next_node: u32,
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
                    varint::put(&mut self.pending, 0);
                    varint::put(&mut self.pending, parent as u64);
                    varint::put(&mut self.pending, addr);
                    n
                }
            };
        }
        varint::put(&mut self.pending, 1);
        varint::put(&mut self.pending, id as u64);
        varint::put(&mut self.pending, parent as u64);
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
}

impl StackTable {
    /// An empty table.
    pub fn new() -> Self {
        StackTable {
            nodes: vec![(0, 0)],
            ids: HashMap::default(),
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
}
