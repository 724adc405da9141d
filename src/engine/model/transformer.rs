//! The decoder-only transformer the supported architectures share, with a packed ("varlen")
//! forward: the new tokens of every scheduled sequence form one `(T, hidden)` matrix for all
//! row-wise work (embedding, norms, projections, MLP, LM head); only attention knows about
//! sequences. No padding, per-token positions, per-sequence KV.
//!
//! Owns the forward numerics. Does not own weight-loading conventions (the architecture files
//! do) nor any per-sequence state (the caller passes each sequence's [`KvCache`]). Runs on
//! maspo's CPU kernels ([`crate::engine::cpu`]); every result row depends only on its own
//! sequence, so outputs are identical whatever else shares the batch.

use super::attention::{attend_group, AttnShape, RopeStyle, RopeTables};
use crate::engine::cpu::pool::SharedOut;
use crate::engine::cpu::vmath::silu_mul;
use crate::engine::cpu::{Acts, Pool, QMatrix};
use crate::engine::error::{EngineError, Result};
use crate::engine::kv::KvCache;
use std::cell::RefCell;

/// Hyper-parameters read from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformerConfig {
    /// Decoder blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// KV heads.
    pub n_kv_head: usize,
    /// Dimension per head.
    pub head_dim: usize,
    /// Residual width.
    pub hidden: usize,
    /// MLP inner width.
    pub ffn: usize,
    /// RMSNorm epsilon.
    pub eps: f64,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// RoPE pairing convention.
    pub rope_style: RopeStyle,
    /// Context window (positions the RoPE table covers).
    pub ctx_len: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab: usize,
}

/// A projection: weight plus optional bias.
pub struct Linear {
    w: QMatrix,
    bias: Option<Vec<f32>>,
}

impl Linear {
    /// Wraps a weight and bias.
    pub fn new(w: QMatrix, bias: Option<Vec<f32>>) -> Self {
        Self { w, bias }
    }

    fn forward(&self, pool: &Pool, a: &Acts<'_>) -> Vec<f32> {
        let mut out = vec![0f32; a.m * self.w.n];
        self.w.matmul(pool, a, &mut out);
        if let Some(b) = &self.bias {
            for row in out.chunks_exact_mut(self.w.n) {
                row.iter_mut().zip(b).for_each(|(o, b)| *o += b);
            }
        }
        out
    }
}

/// One decoder block's weights.
pub struct Block {
    /// Pre-attention RMSNorm weight.
    pub attn_norm: Vec<f32>,
    /// Query projection.
    pub wq: Linear,
    /// Key projection.
    pub wk: Linear,
    /// Value projection.
    pub wv: Linear,
    /// Attention output projection.
    pub wo: Linear,
    /// Per-head RMSNorm of the queries before RoPE (Qwen3), `head_dim` weights.
    pub q_norm: Option<Vec<f32>>,
    /// Per-head RMSNorm of the keys before RoPE (Qwen3).
    pub k_norm: Option<Vec<f32>>,
    /// Pre-MLP RMSNorm weight.
    pub ffn_norm: Vec<f32>,
    /// MLP gate.
    pub gate: Linear,
    /// MLP up.
    pub up: Linear,
    /// MLP down.
    pub down: Linear,
}

/// Which rows of a sequence's new tokens need logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitRows {
    /// None (an intermediate prefill chunk).
    None,
    /// The last new token (generation).
    Last,
    /// Every new token (scoring continuations).
    All,
}

/// The new tokens of one sequence in a forward step.
pub struct SeqStep<'a> {
    /// Tokens to append (≥ 1).
    pub tokens: &'a [u32],
    /// The sequence's KV state; positions continue from `cache.len()`.
    pub cache: &'a mut KvCache,
    /// Which rows need logits.
    pub logits: LogitRows,
}

/// Weights plus fixed tables; immutable and shareable across threads.
pub struct Transformer {
    /// Hyper-parameters.
    pub cfg: TransformerConfig,
    embed: QMatrix,
    blocks: Vec<Block>,
    norm: Vec<f32>,
    /// `None`: tied to the embedding.
    lm_head: Option<Linear>,
    rope: RopeTables,
    pool: Pool,
}

/// RMSNorm of every row, in place into `out` (sum of squares in f64, as ggml does).
fn rms_norm(x: &[f32], w: &[f32], eps: f64, out: &mut [f32]) {
    let d = w.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ss: f64 = xr.iter().map(|v| (*v as f64) * (*v as f64)).sum();
        let scale = (1.0 / (ss / d as f64 + eps).sqrt()) as f32;
        for ((o, v), g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * scale * g;
        }
    }
}

/// [`rms_norm`] in place (per-head q/k norm: no copy of the projections on the hot path).
fn rms_norm_in_place(x: &mut [f32], w: &[f32], eps: f64) {
    for r in x.chunks_exact_mut(w.len()) {
        let ss: f64 = r.iter().map(|v| (*v as f64) * (*v as f64)).sum();
        let scale = (1.0 / (ss / w.len() as f64 + eps).sqrt()) as f32;
        r.iter_mut().zip(w).for_each(|(v, g)| *v = *v * scale * g);
    }
}

fn add_into(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

/// Checks a step's sequences (tokens present, in the vocabulary, within `ctx` positions),
/// records their tokens in their caches and returns the packed rows: token ids, positions and
/// the sequence of each row.
pub(super) fn pack(
    c: &TransformerConfig,
    ctx: usize,
    seqs: &mut [SeqStep<'_>],
) -> Result<(Vec<u32>, Vec<usize>, Vec<usize>)> {
    let mut ids = Vec::new();
    let mut pos = Vec::new();
    let mut row_seq = Vec::new();
    for (s, step) in seqs.iter().enumerate() {
        if step.tokens.is_empty() {
            return Err(EngineError::Request(
                "a forward step got a sequence with no tokens".into(),
            ));
        }
        let start = step.cache.len();
        if start + step.tokens.len() > ctx {
            return Err(EngineError::ContextOverflow {
                prompt: start + step.tokens.len(),
                max_new: 0,
                ctx,
            });
        }
        if let Some(&bad) = step.tokens.iter().find(|&&t| t as usize >= c.vocab) {
            return Err(EngineError::Request(format!(
                "token id {bad} is outside the vocabulary of {}",
                c.vocab
            )));
        }
        ids.extend_from_slice(step.tokens);
        pos.extend(start..start + step.tokens.len());
        row_seq.extend(std::iter::repeat_n(s, step.tokens.len()));
    }
    for step in seqs.iter_mut() {
        step.cache.push_tokens(step.tokens);
    }
    Ok((ids, pos, row_seq))
}

/// The packed rows that need logits, and how many belong to each sequence.
pub(super) fn logit_rows(seqs: &[SeqStep<'_>]) -> (Vec<usize>, Vec<usize>) {
    let mut out_rows = Vec::new();
    let mut per_seq = Vec::with_capacity(seqs.len());
    let mut row = 0;
    for step in seqs {
        let n = step.tokens.len();
        let rows: Vec<usize> = match step.logits {
            LogitRows::None => Vec::new(),
            LogitRows::Last => vec![row + n - 1],
            LogitRows::All => (row..row + n).collect(),
        };
        per_seq.push(rows.len());
        out_rows.extend(rows);
        row += n;
    }
    (out_rows, per_seq)
}

impl Transformer {
    /// Assembles a model from loaded parts; `threads` sizes its compute pool.
    pub fn new(
        cfg: TransformerConfig,
        embed: QMatrix,
        blocks: Vec<Block>,
        norm: Vec<f32>,
        lm_head: Option<Linear>,
        threads: usize,
    ) -> Self {
        let rope = RopeTables::new(cfg.head_dim, cfg.rope_base, cfg.ctx_len, cfg.rope_style);
        Self {
            cfg,
            embed,
            blocks,
            norm,
            lm_head,
            rope,
            pool: Pool::new(threads),
        }
    }

    /// A fresh, empty KV cache sized for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.cfg.n_layer, self.cfg.n_kv_head * self.cfg.head_dim)
    }

    /// Threads of the compute pool.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Weight formats in use, e.g. `["q4_1", "q8_0"]` (for reports).
    pub fn weight_formats(&self) -> Vec<&'static str> {
        let mut f: Vec<&'static str> = self.matmul_weights().map(|w| w.format()).collect();
        f.push(self.embed.format());
        f.sort_unstable();
        f.dedup();
        f
    }

    /// Every matrix a decode step multiplies by (the LM head last; the embedding only when it
    /// is the LM head).
    fn matmul_weights(&self) -> impl Iterator<Item = &QMatrix> {
        self.blocks
            .iter()
            .flat_map(|b| [&b.wq, &b.wk, &b.wv, &b.wo, &b.gate, &b.up, &b.down].map(|l| &l.w))
            .chain([self.lm_head.as_ref().map_or(&self.embed, |l| &l.w)])
    }

    /// Weight bytes one decode step reads (every matrix once, the LM head included): the
    /// memory traffic that bounds batch-1 decode.
    pub fn decode_weight_bytes(&self) -> usize {
        self.matmul_weights().map(QMatrix::bytes).sum()
    }

    /// Runs one packed step over several sequences. Returns, aligned with `seqs`, each
    /// sequence's requested logit rows concatenated (`rows × vocab`; empty for `None`).
    pub fn forward(&self, seqs: &mut [SeqStep<'_>]) -> Result<Vec<Vec<f32>>> {
        let c = &self.cfg;
        let d = c.hidden;
        let (ids, pos, row_seq) = pack(c, self.rope.len(), seqs)?;
        let t = ids.len();
        let pool = &self.pool;
        let mut x = vec![0f32; t * d];
        for (row, &id) in x.chunks_exact_mut(d).zip(&ids) {
            self.embed.dequantize_row(id as usize, row);
        }
        let mut h = vec![0f32; t * d];
        for (l, block) in self.blocks.iter().enumerate() {
            rms_norm(&x, &block.attn_norm, c.eps, &mut h);
            let attn = self.attention(l, block, &h, &pos, &row_seq, seqs);
            let a = Acts::new(pool, &attn, t, c.n_head * c.head_dim);
            add_into(&mut x, &block.wo.forward(pool, &a));
            rms_norm(&x, &block.ffn_norm, c.eps, &mut h);
            let a = Acts::new(pool, &h, t, d);
            let mut gate = block.gate.forward(pool, &a);
            let up = block.up.forward(pool, &a);
            silu_mul(&mut gate, &up);
            let a = Acts::new(pool, &gate, t, c.ffn);
            add_into(&mut x, &block.down.forward(pool, &a));
        }
        // Logits only for the rows that need them (the LM head is the largest matmul).
        let (out_rows, per_seq) = logit_rows(seqs);
        if out_rows.is_empty() {
            return Ok(vec![Vec::new(); seqs.len()]);
        }
        let last: Vec<f32> = out_rows
            .iter()
            .flat_map(|&r| x[r * d..(r + 1) * d].iter().copied())
            .collect();
        let mut normed = vec![0f32; last.len()];
        rms_norm(&last, &self.norm, c.eps, &mut normed);
        let a = Acts::new(pool, &normed, out_rows.len(), d);
        let logits = match &self.lm_head {
            Some(head) => head.forward(pool, &a),
            None => {
                let mut out = vec![0f32; out_rows.len() * c.vocab];
                self.embed.matmul(pool, &a, &mut out);
                out
            }
        };
        let mut at = 0;
        Ok(per_seq
            .into_iter()
            .map(|n| {
                let rows = logits[at * c.vocab..(at + n) * c.vocab].to_vec();
                at += n;
                rows
            })
            .collect())
    }

    fn attention(
        &self,
        layer: usize,
        block: &Block,
        h: &[f32],
        pos: &[usize],
        row_seq: &[usize],
        seqs: &mut [SeqStep<'_>],
    ) -> Vec<f32> {
        let c = &self.cfg;
        let (e, t) = (c.head_dim, pos.len());
        let (qw, kw) = (c.n_head * e, c.n_kv_head * e);
        let pool = &self.pool;
        let a = Acts::new(pool, h, t, c.hidden);
        let mut q = block.wq.forward(pool, &a);
        let mut k = block.wk.forward(pool, &a);
        let v = block.wv.forward(pool, &a);
        // Qwen3: RMSNorm over each head's `head_dim` values (the weight's length).
        for (x, w) in [(&mut q, &block.q_norm), (&mut k, &block.k_norm)] {
            if let Some(w) = w {
                rms_norm_in_place(x, w, c.eps);
            }
        }
        q.chunks_exact_mut(qw)
            .zip(pos)
            .for_each(|(r, &p)| self.rope.apply(r, p));
        k.chunks_exact_mut(kw)
            .zip(pos)
            .for_each(|(r, &p)| self.rope.apply(r, p));
        let mut start = 0;
        for step in seqs.iter_mut() {
            let n = step.tokens.len();
            step.cache.append(
                layer,
                &k[start * kw..(start + n) * kw],
                &v[start * kw..(start + n) * kw],
            );
            start += n;
        }
        let blocks: Vec<_> = seqs.iter().map(|s| s.cache.blocks(layer)).collect();
        let shape = AttnShape {
            n_head: c.n_head,
            n_kv_head: c.n_kv_head,
            head_dim: e,
        };
        let group = c.n_head / c.n_kv_head;
        let mut out = vec![0f32; t * qw];
        let o = SharedOut::new(&mut out);
        thread_local!(static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) });
        // One task per (token, KV head): the GQA group's query heads are contiguous.
        pool.run(t * c.n_kv_head, &|task| {
            let (r, kv) = (task / c.n_kv_head, task % c.n_kv_head);
            let span = r * qw + kv * group * e..r * qw + (kv + 1) * group * e;
            // SAFETY: every (row, kv head) output span belongs to exactly one task.
            let o_span = unsafe { o.slice(span.start, span.len()) };
            SCORES.with(|s| {
                attend_group(
                    &q[span],
                    &blocks[row_seq[r]],
                    kv,
                    pos[r],
                    shape,
                    &mut s.borrow_mut(),
                    o_span,
                )
            });
        });
        out
    }
}
