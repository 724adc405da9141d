//! Host-side kernels of the packed forward: RoPE at per-token positions and causal attention of
//! each sequence's new tokens over its KV blocks.
//!
//! Owns the numerics of attention. Works on plain `f32` slices because candle's CPU tensor ops
//! cost more in dispatch than the work itself at these sizes (docs/design/engine.md §2.3, §6.3), and
//! because a per-sequence kernel makes results independent of batch composition by construction.

use crate::engine::cpu::vmath::{
    accumulate64, axpy_f16, dot, exp_shifted_sum, f16_to_f32_into, scores8_64,
};

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

    /// The tables, `positions × head_dim / 2` each, row-major: `(cos, sin)`.
    pub fn tables(&self) -> (&[f32], &[f32]) {
        (&self.cos, &self.sin)
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
/// sequence's K/V blocks (f16 bits), oldest first, each `[pos][kv_head][dim]`; the token at
/// absolute position `pos` sees positions `0..=pos`. Each key row is widened once for all `r`
/// heads. Writes `r × head_dim` outputs to `out`. `scores` is scratch space.
///
/// Results depend only on the keys and values, never on how they are split into blocks (every
/// score is its own dot product, softmax runs over one contiguous row, values accumulate in
/// position order), so prefix reuse cannot change outputs.
pub fn attend_group(
    q: &[f32],
    blocks: &[(&[u16], &[u16], usize)],
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
    // Each position's key and value rows, in order, up to the causal limit.
    let mut rows: Vec<(&[u16], &[u16])> = Vec::with_capacity(n_keys);
    let mut left = n_keys;
    for &(k, v, n) in blocks {
        let take = n.min(left);
        for p in 0..take {
            let at = p * row + kv_head * e;
            rows.push((&k[at..at + e], &v[at..at + e]));
        }
        left -= take;
    }
    // Keys, then values, are widened CHUNK rows at a time into one scratch buffer, once for all
    // heads of the group (head dim 64); eight keys share one reduction tree.
    let mut buf = if e == 64 {
        vec![0f32; CHUNK * 64]
    } else {
        Vec::new()
    };
    if e == 64 {
        for (c, chunk) in rows.chunks(CHUNK).enumerate() {
            for (j, (k, _)) in chunk.iter().enumerate() {
                f16_to_f32_into(k, &mut buf[j * 64..(j + 1) * 64]);
            }
            let padded = chunk.len().div_ceil(8) * 8;
            buf[chunk.len() * 64..padded * 64].fill(0.0);
            for h in 0..r {
                for g in (0..padded).step_by(8) {
                    let s8 = scores8_64(&q[h * 64..(h + 1) * 64], &buf[g * 64..(g + 8) * 64]);
                    let live = (chunk.len() - g).min(8);
                    let at = h * n_keys + c * CHUNK + g;
                    for (dst, s) in scores[at..at + live].iter_mut().zip(s8) {
                        *dst = s * scale;
                    }
                }
            }
        }
    } else {
        let mut key = vec![0f32; e];
        for (i, (k, _)) in rows.iter().enumerate() {
            f16_to_f32_into(k, &mut key);
            for h in 0..r {
                scores[h * n_keys + i] = dot(&q[h * e..(h + 1) * e], &key) * scale;
            }
        }
    }
    for h in 0..r {
        let sc = &mut scores[h * n_keys..(h + 1) * n_keys];
        let max = sc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let inv = 1.0 / exp_shifted_sum(sc, max);
        sc.iter_mut().for_each(|s| *s *= inv);
    }
    out.iter_mut().for_each(|x| *x = 0.0);
    if e == 64 {
        for (c, chunk) in rows.chunks(CHUNK).enumerate() {
            for (j, (_, v)) in chunk.iter().enumerate() {
                f16_to_f32_into(v, &mut buf[j * 64..(j + 1) * 64]);
            }
            for h in 0..r {
                let at = h * n_keys + c * CHUNK;
                accumulate64(
                    &scores[at..at + chunk.len()],
                    &buf[..chunk.len() * 64],
                    &mut out[h * 64..(h + 1) * 64],
                );
            }
        }
    } else {
        for h in 0..r {
            let o = &mut out[h * e..(h + 1) * e];
            for (i, (_, v)) in rows.iter().enumerate() {
                axpy_f16(scores[h * n_keys + i], v, o);
            }
        }
    }
}

/// Keys (values) widened to f32 per chunk of positions in the head-dim-64 path.
const CHUNK: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: &[f32]) -> Vec<u16> {
        let mut v = Vec::new();
        crate::engine::cpu::vmath::extend_f16(&mut v, x);
        v
    }

    #[test]
    fn single_key_returns_its_value() {
        let shape = AttnShape {
            n_head: 1,
            n_kv_head: 1,
            head_dim: 2,
        };
        let (k, v) = (h(&[1.0, 0.0]), h(&[3.0, 4.0]));
        let mut out = [0.0; 2];
        attend_group(
            &[1.0, 1.0],
            &[(&k[..], &v[..], 1)],
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
        let k = h(&[0.1, 0.2, 0.3, -0.4, 0.5, 0.6]);
        let v = h(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let q = [0.7, -0.2];
        let (mut a, mut b) = ([0.0; 2], [0.0; 2]);
        attend_group(
            &q,
            &[(&k[..], &v[..], 3)],
            0,
            1,
            shape,
            &mut Vec::new(),
            &mut a,
        );
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
        let k = h(&[0.1, 0.2, 0.3, -0.4, 0.5, 0.6]);
        let v = h(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let q = [0.7, -0.2, -0.3, 0.9];
        let mut both = [0.0; 4];
        attend_group(
            &q,
            &[(&k[..], &v[..], 3)],
            0,
            2,
            shape,
            &mut Vec::new(),
            &mut both,
        );
        for h in 0..2 {
            let mut one = [0.0; 2];
            attend_group(
                &q[h * 2..h * 2 + 2],
                &[(&k[..], &v[..], 3)],
                0,
                2,
                shape,
                &mut Vec::new(),
                &mut one,
            );
            assert_eq!(one, both[h * 2..h * 2 + 2]);
        }
    }

    /// Head dimension 64 (both shipped models) runs the register-accumulated value kernel:
    /// splitting the keys into blocks changes nothing, and the result is the softmax-weighted
    /// mean of the values.
    #[test]
    fn head_dim_64_blocks_agree_and_match_reference() {
        let shape = AttnShape {
            n_head: 4,
            n_kv_head: 2,
            head_dim: 64,
        };
        let n = 37;
        let row = 2 * 64;
        let kf: Vec<f32> = (0..n * row).map(|i| ((i as f32) * 0.013).sin()).collect();
        let vf: Vec<f32> = (0..n * row).map(|i| ((i as f32) * 0.029).cos()).collect();
        let (k, v) = (h(&kf), h(&vf));
        let q: Vec<f32> = (0..128).map(|i| ((i as f32) * 0.07).cos()).collect();
        let pos = 30;
        let (mut one, mut split) = (vec![0.0; 128], vec![0.0; 128]);
        attend_group(
            &q,
            &[(&k[..], &v[..], n)],
            1,
            pos,
            shape,
            &mut Vec::new(),
            &mut one,
        );
        let cut = 11 * row;
        let parts = [(&k[..cut], &v[..cut], 11), (&k[cut..], &v[cut..], n - 11)];
        attend_group(&q, &parts, 1, pos, shape, &mut Vec::new(), &mut split);
        assert_eq!(one, split);
        let deq = |x: &[u16], i: usize| half::f16::from_bits(x[i]).to_f32() as f64;
        for hd in 0..2 {
            let s: Vec<f64> = (0..=pos)
                .map(|p| {
                    (0..64)
                        .map(|d| q[hd * 64 + d] as f64 * deq(&k, p * row + 64 + d))
                        .sum::<f64>()
                        / 8.0
                })
                .collect();
            let m = s.iter().copied().fold(f64::MIN, f64::max);
            let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
            for d in 0..64 {
                let want: f64 = (0..=pos)
                    .map(|p| (s[p] - m).exp() / z * deq(&v, p * row + 64 + d))
                    .sum();
                assert!(
                    (one[hd * 64 + d] as f64 - want).abs() < 1e-5,
                    "head {hd} dim {d}"
                );
            }
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
