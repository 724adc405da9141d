//! Host-side kernels of the packed forward: RoPE at per-token positions and causal attention of
//! each sequence's new tokens over its KV blocks.
//!
//! Owns the numerics of attention. Works on plain `f32` slices because candle's CPU tensor ops
//! cost more in dispatch than the work itself at these sizes (engine-design.md §2.3, §6.3), and
//! because a per-sequence kernel makes results independent of batch composition by construction.

use crate::engine::cpu::dot::dot_f32 as dot;

/// How RoPE pairs up dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Pairs (2i, 2i+1): GGUF `llama` (its Q/K weights are permuted at conversion for this).
    Interleaved,
    /// Pairs (i, i + d/2): GGUF `qwen2`.
    Neox,
}

/// Precomputed cos/sin for every position of the context window.
pub struct RopeTables {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
    style: RopeStyle,
}

impl RopeTables {
    /// Tables for `ctx` positions. θ is built by repeated multiplication in f32, as ggml does,
    /// so angles match llama.cpp bit for bit.
    pub fn new(head_dim: usize, base: f32, ctx: usize, style: RopeStyle) -> Self {
        let half = head_dim / 2;
        let scale = base.powf(-2.0 / head_dim as f32);
        let mut cos = Vec::with_capacity(ctx * half);
        let mut sin = Vec::with_capacity(ctx * half);
        for p in 0..ctx {
            let mut theta = p as f32;
            for _ in 0..half {
                cos.push(theta.cos());
                sin.push(theta.sin());
                theta *= scale;
            }
        }
        Self {
            half,
            cos,
            sin,
            style,
        }
    }

    /// Number of positions covered.
    pub fn len(&self) -> usize {
        self.cos.len() / self.half.max(1)
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.cos.is_empty()
    }

    /// Rotates every head of one token's row (`n_heads × head_dim`) in place at position `pos`.
    pub fn apply(&self, row: &mut [f32], pos: usize) {
        let h = self.half;
        let cos = &self.cos[pos * h..(pos + 1) * h];
        let sin = &self.sin[pos * h..(pos + 1) * h];
        for head in row.chunks_exact_mut(2 * h) {
            match self.style {
                RopeStyle::Interleaved => {
                    for i in 0..h {
                        let (x0, x1) = (head[2 * i], head[2 * i + 1]);
                        head[2 * i] = x0 * cos[i] - x1 * sin[i];
                        head[2 * i + 1] = x0 * sin[i] + x1 * cos[i];
                    }
                }
                RopeStyle::Neox => {
                    for i in 0..h {
                        let (x0, x1) = (head[i], head[i + h]);
                        head[i] = x0 * cos[i] - x1 * sin[i];
                        head[i + h] = x0 * sin[i] + x1 * cos[i];
                    }
                }
            }
        }
    }
}

/// Shape of attention.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    /// Query heads.
    pub n_head: usize,
    /// KV heads (GQA: query head j uses KV head j / (n_head / n_kv_head)).
    pub n_kv_head: usize,
    /// Dimension per head.
    pub head_dim: usize,
}

/// Causal attention for the query heads of one token that share one KV head (a GQA group).
///
/// `q` holds the group's `r` query heads back to back (`r × head_dim`); `blocks` are the
/// sequence's K/V blocks, oldest first, each `[pos][kv_head][dim]`; the token at absolute
/// position `pos` sees positions `0..=pos`. Each key and value row is read once for all `r`
/// heads. Writes `r × head_dim` outputs to `out`. `scores` is scratch space.
pub fn attend_group(
    q: &[f32],
    blocks: &[(&[f32], &[f32], usize)],
    kv_head: usize,
    pos: usize,
    shape: AttnShape,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let e = shape.head_dim;
    let r = q.len() / e;
    let row = shape.n_kv_head * e;
    let scale = 1.0 / (e as f32).sqrt();
    let n_keys = pos + 1;
    scores.clear();
    scores.resize(r * n_keys, 0.0);
    let mut seen = 0;
    for (k, _, n) in blocks {
        let take = (*n).min(n_keys - seen);
        for p in 0..take {
            let key = &k[p * row + kv_head * e..p * row + kv_head * e + e];
            for h in 0..r {
                scores[h * n_keys + seen + p] = dot(&q[h * e..(h + 1) * e], key) * scale;
            }
        }
        seen += take;
        if seen == n_keys {
            break;
        }
    }
    for h in 0..r {
        let sc = &mut scores[h * n_keys..(h + 1) * n_keys];
        let max = sc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for s in sc.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let inv = 1.0 / sum;
        sc.iter_mut().for_each(|s| *s *= inv);
    }
    out.iter_mut().for_each(|o| *o = 0.0);
    let mut idx = 0;
    for (_, v, n) in blocks {
        let take = (*n).min(n_keys - idx);
        for p in 0..take {
            let val = &v[p * row + kv_head * e..p * row + kv_head * e + e];
            for h in 0..r {
                let w = scores[h * n_keys + idx + p];
                for (o, x) in out[h * e..(h + 1) * e].iter_mut().zip(val) {
                    *o = w.mul_add(*x, *o);
                }
            }
        }
        idx += take;
        if idx == n_keys {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_key_returns_its_value() {
        let shape = AttnShape {
            n_head: 1,
            n_kv_head: 1,
            head_dim: 2,
        };
        let k = [1.0, 0.0];
        let v = [3.0, 4.0];
        let mut out = [0.0; 2];
        attend_group(
            &[1.0, 1.0],
            &[(&k, &v, 1)],
            0,
            0,
            shape,
            &mut Vec::new(),
            &mut out,
        );
        assert_eq!(out, [3.0, 4.0]);
    }

    #[test]
    fn causal_limit_and_blocks_agree_with_one_block() {
        let shape = AttnShape {
            n_head: 1,
            n_kv_head: 1,
            head_dim: 2,
        };
        let k = [0.1, 0.2, 0.3, -0.4, 0.5, 0.6];
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let q = [0.7, -0.2];
        let (mut a, mut b) = ([0.0; 2], [0.0; 2]);
        attend_group(&q, &[(&k, &v, 3)], 0, 1, shape, &mut Vec::new(), &mut a);
        let split = [(&k[..2], &v[..2], 1), (&k[2..], &v[2..], 2)];
        attend_group(&q, &split, 0, 1, shape, &mut Vec::new(), &mut b);
        assert_eq!(a, b);
        // Position 1 must ignore the third key/value.
        assert!(a[0] < 3.0 && a[0] > 1.0);
    }

    #[test]
    fn a_group_equals_its_heads_one_by_one() {
        let shape = AttnShape {
            n_head: 2,
            n_kv_head: 1,
            head_dim: 2,
        };
        let k = [0.1, 0.2, 0.3, -0.4, 0.5, 0.6];
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let q = [0.7, -0.2, -0.3, 0.9];
        let mut both = [0.0; 4];
        attend_group(&q, &[(&k, &v, 3)], 0, 2, shape, &mut Vec::new(), &mut both);
        for h in 0..2 {
            let mut one = [0.0; 2];
            attend_group(
                &q[h * 2..h * 2 + 2],
                &[(&k, &v, 3)],
                0,
                2,
                shape,
                &mut Vec::new(),
                &mut one,
            );
            assert_eq!(one, both[h * 2..h * 2 + 2]);
        }
    }

    #[test]
    fn rope_position_zero_is_identity() {
        let t = RopeTables::new(4, 10000.0, 8, RopeStyle::Neox);
        let mut row = [1.0, 2.0, 3.0, 4.0];
        t.apply(&mut row, 0);
        assert_eq!(row, [1.0, 2.0, 3.0, 4.0]);
        let mut row = [1.0, 0.0, 0.0, 0.0];
        let t = RopeTables::new(4, 10000.0, 8, RopeStyle::Interleaved);
        t.apply(&mut row, 1);
        assert!((row[0] - 1f32.cos()).abs() < 1e-6 && (row[1] - 1f32.sin()).abs() < 1e-6);
    }
}
