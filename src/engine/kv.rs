//! Per-sequence KV state: a view of a chain of shared, immutable prefix segments plus a private,
//! growable tail.
//!
//! Owns the key/value rows of one sequence. Layout of every block is `[position][kv_head][dim]`,
//! so appending a token is an `extend_from_slice`, and a shared prefix is referenced, never
//! copied. Segments are `Arc`s: forking a sequence from a prefix is O(1), and a sequence may use
//! only the first positions of a segment (a partial prefix match), so the prefix cache never
//! has to split or copy a segment.

use crate::engine::cpu::vmath::extend_f16;
use candle_core::{DType, Device, Tensor};
use std::sync::Arc;

/// Keys and values of some positions for one layer, `[pos][kv_head][dim]` row-major.
#[derive(Debug, Clone)]
pub enum LayerKv {
    /// Host memory, f16 bits (llama.cpp's default KV type: half the memory traffic of f32,
    /// which is what bounds attention over long contexts in batched decode).
    Host {
        /// Keys (f16 bits).
        k: Vec<u16>,
        /// Values (f16 bits).
        v: Vec<u16>,
    },
    /// Device memory: `(capacity, kv_row)` key and value tensors (none allocated yet: `None`)
    /// of which the first `len` rows are written.
    Device {
        /// Keys and values.
        kv: Option<(Tensor, Tensor)>,
        /// Rows written.
        len: usize,
    },
}

/// Where a cache keeps its K/V.
#[derive(Debug, Clone)]
pub enum KvStore {
    /// Host f16 vectors (maspo's CPU kernels).
    Host,
    /// Tensors on a candle device.
    Device {
        /// The device.
        device: Device,
        /// Element type (the compute type of the device forward).
        dtype: DType,
    },
}

impl KvStore {
    fn empty(&self) -> LayerKv {
        match self {
            Self::Host => LayerKv::Host {
                k: Vec::new(),
                v: Vec::new(),
            },
            Self::Device { .. } => LayerKv::Device { kv: None, len: 0 },
        }
    }
}

impl LayerKv {
    /// Positions held (for a row width of `row`).
    fn positions(&self, row: usize) -> usize {
        match self {
            Self::Host { k, .. } => k.len() / row.max(1),
            Self::Device { len, .. } => *len,
        }
    }

    /// Bytes allocated for the first `n` positions (`None`: all that is allocated).
    fn bytes(&self, row: usize, n: Option<usize>) -> usize {
        match self {
            Self::Host { k, v } => (k.len() + v.len()) * 2,
            Self::Device { kv: None, .. } => 0,
            Self::Device {
                kv: Some((k, _)), ..
            } => {
                let rows = n.unwrap_or_else(|| k.dim(0).unwrap_or(0));
                2 * rows * row * k.dtype().size_in_bytes()
            }
        }
    }

    /// Keeps only the first `n` positions.
    fn truncate(&mut self, n: usize, row: usize) {
        match self {
            Self::Host { k, v } => {
                k.truncate(n * row);
                v.truncate(n * row);
            }
            Self::Device { len, .. } => *len = (*len).min(n),
        }
    }

    /// Releases spare capacity (a frozen segment holds exactly its positions).
    fn shrink(&mut self) -> candle_core::Result<()> {
        match self {
            Self::Host { k, v } => {
                k.shrink_to_fit();
                v.shrink_to_fit();
            }
            Self::Device {
                kv: Some((k, v)),
                len,
            } => {
                if k.dim(0)? != *len {
                    *k = k.narrow(0, 0, *len)?.copy()?;
                    *v = v.narrow(0, 0, *len)?.copy()?;
                }
            }
            Self::Device { kv: None, .. } => {}
        }
        Ok(())
    }

    /// Makes room for `extra` more positions on the device (one allocation, contents copied):
    /// exactly that many when `exact` (a reservation), else at least doubling (appends beyond a
    /// reservation, or without one).
    fn grow_device(
        &mut self,
        extra: usize,
        row: usize,
        store: &KvStore,
        exact: bool,
    ) -> candle_core::Result<()> {
        let (Self::Device { kv, len }, KvStore::Device { device, dtype }) = (&mut *self, store)
        else {
            return Ok(());
        };
        let cap = match kv {
            Some((k, _)) => k.dim(0)?,
            None => 0,
        };
        if *len + extra <= cap || extra == 0 {
            return Ok(());
        }
        let new_cap = if exact {
            *len + extra
        } else {
            (*len + extra).max(cap * 2).max(16)
        };
        let nk = Tensor::zeros((new_cap, row), *dtype, device)?;
        let nv = Tensor::zeros((new_cap, row), *dtype, device)?;
        if let Some((k, v)) = kv {
            if *len > 0 {
                nk.slice_set(&k.narrow(0, 0, *len)?.contiguous()?, 0, 0)?;
                nv.slice_set(&v.narrow(0, 0, *len)?.contiguous()?, 0, 0)?;
            }
        }
        *kv = Some((nk, nv));
        Ok(())
    }
}

/// The host keys and values of a layer (maspo's CPU kernels never see a device cache).
fn host(l: &LayerKv) -> (&[u16], &[u16]) {
    match l {
        LayerKv::Host { k, v } => (k.as_slice(), v.as_slice()),
        LayerKv::Device { .. } => panic!("host blocks of a device KV cache"),
    }
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
    row: usize,
    store: KvStore,
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
            .map(|l| l.bytes(self.row, Some(self.len)))
            .sum()
    }

    /// The parent segment, if any.
    pub fn parent(&self) -> Option<&Arc<KvSegment>> {
        self.parent.as_ref()
    }
}

/// The KV state of one sequence.
#[derive(Debug)]
pub struct KvCache {
    prefix: Option<Arc<KvSegment>>,
    /// Positions of the prefix chain in use (≤ its end).
    prefix_len: usize,
    tail: Vec<LayerKv>,
    tail_tokens: Vec<u32>,
    row: usize,
    store: KvStore,
}

impl KvCache {
    /// An empty host cache for a model with `n_layer` layers and `kv_row` = n_kv_head × head_dim.
    pub fn new(n_layer: usize, kv_row: usize) -> Self {
        Self::new_in(n_layer, kv_row, KvStore::Host)
    }

    /// An empty cache whose K/V live in `store`.
    pub fn new_in(n_layer: usize, kv_row: usize, store: KvStore) -> Self {
        Self {
            prefix: None,
            prefix_len: 0,
            tail: (0..n_layer).map(|_| store.empty()).collect(),
            tail_tokens: Vec::new(),
            row: kv_row,
            store,
        }
    }

    /// A cache that continues from the first `len` positions of a shared prefix (O(1)); its
    /// tail lives where the prefix does.
    pub fn from_prefix(prefix: Arc<KvSegment>, len: usize, kv_row: usize) -> Self {
        let n_layer = prefix.layers.len();
        let len = len.min(prefix.end());
        let store = prefix.store.clone();
        Self {
            tail: (0..n_layer).map(|_| store.empty()).collect(),
            prefix: Some(prefix),
            prefix_len: len,
            tail_tokens: Vec::new(),
            row: kv_row,
            store,
        }
    }

    /// Makes room for `positions` more tail positions in one allocation per layer, so a
    /// sequence admitted under a KV budget holds no more than its reservation (growth by
    /// doubling could take twice its contents). On a device an allocation failure here is left
    /// to the next append, which reports it.
    pub fn reserve(&mut self, positions: usize) {
        let n = positions.saturating_mul(self.row);
        let row = self.row;
        for layer in &mut self.tail {
            match layer {
                LayerKv::Host { k, v } => {
                    k.reserve_exact(n);
                    v.reserve_exact(n);
                }
                LayerKv::Device { .. } => {
                    let _ = layer.grow_device(positions, row, &self.store, true);
                }
            }
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

    /// Appends K/V rows (`n × kv_row` each, converted to f16) to one layer's host tail.
    pub fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        match &mut self.tail[layer] {
            LayerKv::Host { k: hk, v: hv } => {
                extend_f16(hk, k);
                extend_f16(hv, v);
            }
            LayerKv::Device { .. } => panic!("host rows appended to a device KV cache"),
        }
    }

    /// Appends K/V rows (`(n, kv_row)` tensors of the cache's type) to one layer's device tail,
    /// growing it when the reservation is exceeded.
    pub fn append_device(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> candle_core::Result<()> {
        let row = self.row;
        let n = k.dim(0)?;
        let l = &mut self.tail[layer];
        l.grow_device(n, row, &self.store, false)?;
        match l {
            LayerKv::Device {
                kv: Some((dk, dv)),
                len,
            } => {
                dk.slice_set(&k.contiguous()?, 0, *len)?;
                dv.slice_set(&v.contiguous()?, 0, *len)?;
                *len += n;
                Ok(())
            }
            _ => candle_core::bail!("device rows appended to a host KV cache"),
        }
    }

    /// The blocks of one layer, oldest first: `(keys, values, n_positions)` (f16 bits; host
    /// caches only).
    pub fn blocks(&self, layer: usize) -> Vec<(&[u16], &[u16], usize)> {
        let row = self.row;
        let mut out: Vec<(&[u16], &[u16], usize)> = chain(self.prefix.as_ref(), self.prefix_len)
            .into_iter()
            .map(|(s, n)| {
                let (k, v) = host(&s.layers[layer]);
                (&k[..n * row], &v[..n * row], n)
            })
            .collect();
        let (k, v) = host(&self.tail[layer]);
        out.push((k, v, k.len() / row.max(1)));
        out
    }

    /// The blocks of one layer as `(positions, kv_row)` device tensors, oldest first (views:
    /// no copy).
    pub fn device_blocks(&self, layer: usize) -> candle_core::Result<Vec<(Tensor, Tensor)>> {
        let mut out = Vec::new();
        let parts = chain(self.prefix.as_ref(), self.prefix_len)
            .into_iter()
            .map(|(s, n)| (&s.layers[layer], n))
            .chain([(&self.tail[layer], self.tail[layer].positions(self.row))]);
        for (l, n) in parts {
            match l {
                LayerKv::Device {
                    kv: Some((k, v)), ..
                } if n > 0 => out.push((k.narrow(0, 0, n)?, v.narrow(0, 0, n)?)),
                LayerKv::Device { .. } => {}
                LayerKv::Host { .. } => candle_core::bail!("device blocks of a host KV cache"),
            }
        }
        Ok(out)
    }

    /// The keys and values of one layer as `(positions, kv_row)` device tensors (prefix blocks
    /// and tail joined; no copy when there is one block).
    pub fn device_kv(&self, layer: usize) -> candle_core::Result<(Tensor, Tensor)> {
        let (mut ks, mut vs): (Vec<Tensor>, Vec<Tensor>) =
            self.device_blocks(layer)?.into_iter().unzip();
        match ks.len() {
            0 => candle_core::bail!("attention over an empty KV cache"),
            1 => Ok((ks.remove(0), vs.remove(0))),
            _ => Ok((Tensor::cat(&ks, 0)?, Tensor::cat(&vs, 0)?)),
        }
    }

    /// Freezes the tail into a new shared segment (its parent is the current prefix view) and
    /// returns it; this cache then continues from that segment with an empty tail.
    pub fn freeze(&mut self) -> Option<Arc<KvSegment>> {
        if self.tail_tokens.is_empty() {
            return self.prefix.clone();
        }
        let fresh = (0..self.tail.len()).map(|_| self.store.empty()).collect();
        let mut layers = std::mem::replace(&mut self.tail, fresh);
        // A shared segment holds exactly its positions (a reserved or doubled tail has spare
        // capacity that the prefix cache's byte count would not see). A device copy that
        // fails keeps the spare capacity (counted low, still correct).
        for l in &mut layers {
            let _ = l.shrink();
        }
        let mut tokens = std::mem::take(&mut self.tail_tokens);
        tokens.shrink_to_fit();
        let seg = Arc::new(KvSegment {
            parent: self.prefix.take(),
            start: self.prefix_len,
            len: tokens.len(),
            layers,
            tokens,
            row: self.row,
            store: self.store.clone(),
        });
        self.prefix_len = seg.end();
        self.prefix = Some(seg.clone());
        Some(seg)
    }

    /// Keeps only the first `len` positions (shrinking the prefix view if needed; shared
    /// segments themselves are never modified).
    pub fn truncate(&mut self, len: usize) {
        let row = self.row;
        if len >= self.prefix_len {
            let keep = len - self.prefix_len;
            if keep < self.tail_tokens.len() {
                self.tail_tokens.truncate(keep);
                self.tail.iter_mut().for_each(|l| l.truncate(keep, row));
            }
        } else {
            self.prefix_len = len;
            self.tail_tokens.clear();
            self.tail.iter_mut().for_each(|l| l.truncate(0, row));
        }
    }

    /// Bytes held privately by this sequence.
    pub fn private_bytes(&self) -> usize {
        self.tail.iter().map(|l| l.bytes(self.row, None)).sum()
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

    #[test]
    fn device_caches_share_prefixes_reserve_exactly_and_truncate() {
        let store = KvStore::Device {
            device: Device::Cpu,
            dtype: DType::F32,
        };
        let rows =
            |vals: &[f32]| Tensor::from_slice(vals, (vals.len() / 2, 2), &Device::Cpu).unwrap();
        let mut a = KvCache::new_in(1, 2, store.clone());
        a.reserve(3);
        // One allocation of exactly the reservation: 3 positions × 2 values × (K + V) × 4 bytes.
        assert_eq!(a.private_bytes(), 3 * 2 * 2 * 4);
        a.push_tokens(&[5, 6, 7]);
        a.append_device(
            0,
            &rows(&[1., 1., 2., 2., 3., 3.]),
            &rows(&[1., 1., 2., 2., 3., 3.]),
        )
        .unwrap();
        let seg = a.freeze().unwrap();
        assert_eq!(seg.bytes(), 3 * 2 * 2 * 4);
        // A partial view of the segment plus a private tail grown beyond its reservation.
        let mut b = KvCache::from_prefix(seg.clone(), 2, 2);
        for (t, v) in [(9u32, 9f32), (10, 10.)] {
            b.push_tokens(&[t]);
            b.append_device(0, &rows(&[v, v]), &rows(&[v, v])).unwrap();
        }
        assert_eq!(b.tokens(), vec![5, 6, 9, 10]);
        let (k, _) = b.device_kv(0).unwrap();
        assert_eq!(
            k.to_vec2::<f32>().unwrap(),
            vec![vec![1., 1.], vec![2., 2.], vec![9., 9.], vec![10., 10.]]
        );
        assert_eq!(b.device_blocks(0).unwrap().len(), 2);
        b.truncate(3);
        assert_eq!(b.device_kv(0).unwrap().0.dim(0).unwrap(), 3);
        b.truncate(1);
        assert_eq!(b.tokens(), vec![5]);
        assert_eq!(b.device_blocks(0).unwrap().len(), 1);
        // The segment itself is untouched by b's writes.
        let (k, _) = KvCache::from_prefix(seg, 3, 2).device_kv(0).unwrap();
        assert_eq!(k.to_vec2::<f32>().unwrap()[2], vec![3., 3.]);
    }
}
