//! Per-sequence KV state: a view of a chain of shared, immutable prefix segments plus a private,
//! growable tail.
//!
//! Owns the key/value rows of one sequence. Layout of every block is `[position][kv_head][dim]`,
//! so appending a token is an `extend_from_slice`, and a shared prefix is referenced, never
//! copied. Segments are `Arc`s: forking a sequence from a prefix is O(1), and a sequence may use
//! only the first positions of a segment (a partial prefix match), so the prefix cache never
//! has to split or copy a segment.

use crate::engine::cpu::vmath::extend_f16;
use std::sync::Arc;

/// Keys and values of some positions for one layer, `[pos][kv_head][dim]` row-major, stored as
/// f16 bits (llama.cpp's default KV type: half the memory traffic of f32, which is what bounds
/// attention over long contexts in batched decode).
#[derive(Debug, Clone, Default)]
pub struct LayerKv {
    /// Keys (f16 bits).
    pub k: Vec<u16>,
    /// Values (f16 bits).
    pub v: Vec<u16>,
}

/// An immutable run of positions, shared between sequences.
#[derive(Debug)]
pub struct KvSegment {
    /// The positions before this segment: the first `start` positions of the parent chain.
    parent: Option<Arc<KvSegment>>,
    start: usize,
    len: usize,
    layers: Vec<LayerKv>,
    /// The token ids these positions were computed from.
    tokens: Vec<u32>,
}

/// Walks a chain from `seg` (used up to absolute position `limit`) to the root, newest first,
/// yielding each segment and how many of its positions are used.
fn chain(seg: Option<&Arc<KvSegment>>, mut limit: usize) -> Vec<(&KvSegment, usize)> {
    let mut out = Vec::new();
    let mut cur = seg.map(|s| &**s);
    while let Some(s) = cur {
        if limit > s.start {
            out.push((s, (limit - s.start).min(s.len)));
        }
        limit = limit.min(s.start);
        cur = s.parent.as_deref();
    }
    out.reverse();
    out
}

impl KvSegment {
    /// Positions from 0 through the end of this segment.
    pub fn end(&self) -> usize {
        self.start + self.len
    }

    /// Token ids of the first `limit` positions of the chain ending in this segment.
    pub fn tokens_up_to(self: &Arc<Self>, limit: usize) -> Vec<u32> {
        chain(Some(self), limit)
            .into_iter()
            .flat_map(|(s, n)| s.tokens[..n].iter().copied())
            .collect()
    }

    /// Bytes held by this segment alone (not its parents).
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| (l.k.len() + l.v.len()) * 2)
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
    /// Positions of the prefix chain in use (≤ its end).
    prefix_len: usize,
    tail: Vec<LayerKv>,
    tail_tokens: Vec<u32>,
    row: usize,
}

impl KvCache {
    /// An empty cache for a model with `n_layer` layers and `kv_row` = n_kv_head × head_dim.
    pub fn new(n_layer: usize, kv_row: usize) -> Self {
        Self {
            prefix: None,
            prefix_len: 0,
            tail: vec![LayerKv::default(); n_layer],
            tail_tokens: Vec::new(),
            row: kv_row,
        }
    }

    /// A cache that continues from the first `len` positions of a shared prefix (O(1)).
    pub fn from_prefix(prefix: Arc<KvSegment>, len: usize, kv_row: usize) -> Self {
        let n_layer = prefix.layers.len();
        let len = len.min(prefix.end());
        Self {
            prefix: Some(prefix),
            prefix_len: len,
            tail: vec![LayerKv::default(); n_layer],
            tail_tokens: Vec::new(),
            row: kv_row,
        }
    }

    /// Makes room for `positions` more tail positions in one allocation per layer, so a
    /// sequence admitted under a KV budget holds no more than its reservation (growth by
    /// doubling could take twice its contents).
    pub fn reserve(&mut self, positions: usize) {
        let n = positions.saturating_mul(self.row);
        for layer in &mut self.tail {
            layer.k.reserve_exact(n);
            layer.v.reserve_exact(n);
        }
        self.tail_tokens.reserve_exact(positions);
    }

    /// Number of positions held (prefix plus tail).
    pub fn len(&self) -> usize {
        self.prefix_len + self.tail_tokens.len()
    }

    /// Whether no position is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Positions that come from a shared prefix.
    pub fn shared_len(&self) -> usize {
        self.prefix_len
    }

    /// Token ids of every position held.
    pub fn tokens(&self) -> Vec<u32> {
        let mut t = self
            .prefix
            .as_ref()
            .map(|p| p.tokens_up_to(self.prefix_len))
            .unwrap_or_default();
        t.extend_from_slice(&self.tail_tokens);
        t
    }

    /// Records the token ids whose K/V the next [`KvCache::append`] calls (one per layer) add.
    pub fn push_tokens(&mut self, tokens: &[u32]) {
        self.tail_tokens.extend_from_slice(tokens);
    }

    /// Appends K/V rows (`n × kv_row` each, converted to f16) to one layer's tail.
    pub fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        let l = &mut self.tail[layer];
        extend_f16(&mut l.k, k);
        extend_f16(&mut l.v, v);
    }

    /// The blocks of one layer, oldest first: `(keys, values, n_positions)` (f16 bits).
    pub fn blocks(&self, layer: usize) -> Vec<(&[u16], &[u16], usize)> {
        let row = self.row;
        let mut out: Vec<(&[u16], &[u16], usize)> = chain(self.prefix.as_ref(), self.prefix_len)
            .into_iter()
            .map(|(s, n)| {
                let l = &s.layers[layer];
                (&l.k[..n * row], &l.v[..n * row], n)
            })
            .collect();
        let l = &self.tail[layer];
        out.push((l.k.as_slice(), l.v.as_slice(), l.k.len() / row.max(1)));
        out
    }

    /// Freezes the tail into a new shared segment (its parent is the current prefix view) and
    /// returns it; this cache then continues from that segment with an empty tail.
    pub fn freeze(&mut self) -> Option<Arc<KvSegment>> {
        if self.tail_tokens.is_empty() {
            return self.prefix.clone();
        }
        let n_layer = self.tail.len();
        let mut layers = std::mem::replace(&mut self.tail, vec![LayerKv::default(); n_layer]);
        // A shared segment holds exactly its positions (a reserved or doubled tail has spare
        // capacity that the prefix cache's byte count would not see).
        for l in &mut layers {
            l.k.shrink_to_fit();
            l.v.shrink_to_fit();
        }
        let mut tokens = std::mem::take(&mut self.tail_tokens);
        tokens.shrink_to_fit();
        let seg = Arc::new(KvSegment {
            parent: self.prefix.take(),
            start: self.prefix_len,
            len: tokens.len(),
            layers,
            tokens,
        });
        self.prefix_len = seg.end();
        self.prefix = Some(seg.clone());
        Some(seg)
    }

    /// Keeps only the first `len` positions (shrinking the prefix view if needed; shared
    /// segments themselves are never modified).
    pub fn truncate(&mut self, len: usize) {
        if len >= self.prefix_len {
            let keep = len - self.prefix_len;
            if keep < self.tail_tokens.len() {
                self.tail_tokens.truncate(keep);
                for l in &mut self.tail {
                    l.k.truncate(keep * self.row);
                    l.v.truncate(keep * self.row);
                }
            }
        } else {
            self.prefix_len = len;
            self.tail_tokens.clear();
            for l in &mut self.tail {
                l.k.clear();
                l.v.clear();
            }
        }
    }

    /// Bytes held privately by this sequence.
    pub fn private_bytes(&self) -> usize {
        self.tail.iter().map(|l| (l.k.len() + l.v.len()) * 2).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(c: &mut KvCache, tokens: &[u32], val: f32) {
        c.push_tokens(tokens);
        let kv: Vec<f32> = tokens.iter().flat_map(|_| [val, val]).collect();
        c.append(0, &kv, &kv);
    }

    #[test]
    fn freeze_fork_partial_views_and_truncate() {
        let mut a = KvCache::new(1, 2);
        push(&mut a, &[5, 6, 7], 1.0);
        let seg = a.freeze().unwrap();
        assert_eq!(seg.tokens_up_to(3), vec![5, 6, 7]);
        // A partial view: only the first two positions of the segment.
        let mut b = KvCache::from_prefix(seg.clone(), 2, 2);
        push(&mut b, &[9], 2.0);
        assert_eq!(b.len(), 3);
        assert_eq!(b.tokens(), vec![5, 6, 9]);
        let blocks = b.blocks(0);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].2, 2);
        assert_eq!(blocks[0].0.len(), 4);
        assert_eq!(blocks[1].0, &[half::f16::from_f32(2.0).to_bits(); 2]);
        // Freezing b's tail chains onto the partial view.
        let seg_b = b.freeze().unwrap();
        assert_eq!(seg_b.tokens_up_to(3), vec![5, 6, 9]);
        assert_eq!(seg_b.tokens_up_to(1), vec![5]);
        let mut c = KvCache::from_prefix(seg_b, 3, 2);
        push(&mut c, &[10, 11], 3.0);
        c.truncate(4);
        assert_eq!(c.tokens(), vec![5, 6, 9, 10]);
        c.truncate(1);
        assert_eq!(c.tokens(), vec![5]);
        assert_eq!(c.blocks(0).iter().map(|b| b.2).sum::<usize>(), 1);
    }
}
