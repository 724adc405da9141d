//! Per-sequence KV state: an optional chain of shared, immutable prefix segments plus a private,
//! growable tail.
//!
//! Owns the key/value rows of one sequence. Layout of every block is `[position][kv_head][dim]`,
//! so appending a token is a `extend_from_slice` and a shared prefix is referenced, never copied.
//! Segments are `Arc`s: forking a sequence from a prefix is O(1), and the prefix cache (a later
//! layer) can hand the same segment to many sequences.

use std::sync::Arc;

/// Keys and values of some positions for one layer, `[pos][kv_head][dim]` row-major.
#[derive(Debug, Clone, Default)]
pub struct LayerKv {
    /// Keys.
    pub k: Vec<f32>,
    /// Values.
    pub v: Vec<f32>,
}

/// An immutable run of positions, shared between sequences.
#[derive(Debug)]
pub struct KvSegment {
    parent: Option<Arc<KvSegment>>,
    /// First position covered.
    start: usize,
    /// Number of positions covered.
    len: usize,
    layers: Vec<LayerKv>,
    /// The token ids these positions were computed from.
    tokens: Vec<u32>,
}

impl KvSegment {
    /// Total positions from position 0 through the end of this segment.
    pub fn end(&self) -> usize {
        self.start + self.len
    }

    /// Token ids from position 0 through the end of this segment.
    pub fn all_tokens(&self) -> Vec<u32> {
        let mut chain = Vec::new();
        let mut cur = Some(self);
        while let Some(s) = cur {
            chain.push(s);
            cur = s.parent.as_deref();
        }
        chain
            .iter()
            .rev()
            .flat_map(|s| s.tokens.iter().copied())
            .collect()
    }

    /// Bytes held by this segment alone (not its parents).
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| (l.k.len() + l.v.len()) * 4)
            .sum()
    }

    /// The parent segment, if any.
    pub fn parent(&self) -> Option<&Arc<KvSegment>> {
        self.parent.as_ref()
    }
}

/// The KV state of one sequence.
#[derive(Debug, Clone)]
pub struct KvCache {
    prefix: Option<Arc<KvSegment>>,
    tail: Vec<LayerKv>,
    tail_tokens: Vec<u32>,
    row: usize,
}

impl KvCache {
    /// An empty cache for a model with `n_layer` layers and `kv_row` = n_kv_head × head_dim.
    pub fn new(n_layer: usize, kv_row: usize) -> Self {
        Self {
            prefix: None,
            tail: vec![LayerKv::default(); n_layer],
            tail_tokens: Vec::new(),
            row: kv_row,
        }
    }

    /// A cache that continues from a shared prefix (O(1): nothing is copied).
    pub fn from_prefix(prefix: Arc<KvSegment>, kv_row: usize) -> Self {
        let n_layer = prefix.layers.len();
        Self {
            prefix: Some(prefix),
            tail: vec![LayerKv::default(); n_layer],
            tail_tokens: Vec::new(),
            row: kv_row,
        }
    }

    /// Number of positions held (prefix plus tail).
    pub fn len(&self) -> usize {
        self.prefix.as_ref().map_or(0, |p| p.end()) + self.tail_tokens.len()
    }

    /// Whether no position is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token ids of every position held.
    pub fn tokens(&self) -> Vec<u32> {
        let mut t = self
            .prefix
            .as_ref()
            .map(|p| p.all_tokens())
            .unwrap_or_default();
        t.extend_from_slice(&self.tail_tokens);
        t
    }

    /// Records the token ids whose K/V the next [`KvCache::append`] calls (one per layer) add.
    pub fn push_tokens(&mut self, tokens: &[u32]) {
        self.tail_tokens.extend_from_slice(tokens);
    }

    /// Appends K/V rows (`n × kv_row` each) to one layer's tail.
    pub fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        let l = &mut self.tail[layer];
        l.k.extend_from_slice(k);
        l.v.extend_from_slice(v);
    }

    /// The blocks of one layer, oldest first: `(keys, values, n_positions)`.
    pub fn blocks(&self, layer: usize) -> Vec<(&[f32], &[f32], usize)> {
        let mut out = Vec::new();
        let mut cur = self.prefix.as_deref();
        while let Some(s) = cur {
            let l = &s.layers[layer];
            out.push((l.k.as_slice(), l.v.as_slice(), s.len));
            cur = s.parent.as_deref();
        }
        out.reverse();
        let l = &self.tail[layer];
        out.push((l.k.as_slice(), l.v.as_slice(), l.k.len() / self.row.max(1)));
        out
    }

    /// Freezes the tail into a new shared segment (its parent is the current prefix) and returns
    /// it; this cache then continues from that segment with an empty tail.
    pub fn freeze(&mut self) -> Arc<KvSegment> {
        if self.tail_tokens.is_empty() {
            if let Some(p) = &self.prefix {
                return p.clone();
            }
        }
        let n_layer = self.tail.len();
        let seg = Arc::new(KvSegment {
            parent: self.prefix.take(),
            start: self.len() - self.tail_tokens.len(),
            len: self.tail_tokens.len(),
            layers: std::mem::replace(&mut self.tail, vec![LayerKv::default(); n_layer]),
            tokens: std::mem::take(&mut self.tail_tokens),
        });
        self.prefix = Some(seg.clone());
        seg
    }

    /// Drops private positions beyond `len` (only the tail can shrink; the shared prefix is
    /// immutable). Returns false when `len` falls inside the prefix.
    pub fn truncate(&mut self, len: usize) -> bool {
        let plen = self.prefix.as_ref().map_or(0, |p| p.end());
        if len < plen {
            return false;
        }
        let keep = len - plen;
        if keep < self.tail_tokens.len() {
            self.tail_tokens.truncate(keep);
            for l in &mut self.tail {
                l.k.truncate(keep * self.row);
                l.v.truncate(keep * self.row);
            }
        }
        true
    }

    /// Bytes held privately by this sequence.
    pub fn private_bytes(&self) -> usize {
        self.tail.iter().map(|l| (l.k.len() + l.v.len()) * 4).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freeze_fork_and_blocks() {
        let mut a = KvCache::new(1, 2);
        a.push_tokens(&[5, 6]);
        a.append(0, &[1.0, 1.0, 2.0, 2.0], &[0.0; 4]);
        let seg = a.freeze();
        assert_eq!(seg.all_tokens(), vec![5, 6]);
        let mut b = KvCache::from_prefix(seg.clone(), 2);
        b.push_tokens(&[7]);
        b.append(0, &[3.0, 3.0], &[0.0; 2]);
        assert_eq!(b.len(), 3);
        assert_eq!(b.tokens(), vec![5, 6, 7]);
        let blocks = b.blocks(0);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].2, 2);
        assert_eq!(blocks[1].0, &[3.0, 3.0]);
        assert!(!b.truncate(1));
        assert!(b.truncate(2));
        assert_eq!(b.tokens(), vec![5, 6]);
    }
}
