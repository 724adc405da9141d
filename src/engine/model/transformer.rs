//! The decoder-only transformer both shipped architectures share, with a packed ("varlen")
//! forward: the new tokens of every scheduled sequence form one `(T, hidden)` matrix for all
//! row-wise work (embedding, norms, projections, MLP, LM head); only attention knows about
//! sequences. No padding, per-token positions, per-sequence KV.
//!
//! Owns the forward numerics. Does not own weights loading conventions (the architecture files
//! do) nor any per-sequence state (the caller passes each sequence's [`KvCache`]).

use super::attention::{attend_one, AttnShape, RopeStyle, RopeTables};
use crate::engine::error::{EngineError, Result};
use crate::engine::kv::KvCache;
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

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

/// A projection: quantized (or f32) weight plus optional bias.
pub struct Linear {
    w: QMatMul,
    bias: Option<Tensor>,
}

impl Linear {
    /// Wraps a weight and bias.
    pub fn new(w: QTensor, bias: Option<Tensor>) -> Result<Self> {
        Ok(Self {
            w: QMatMul::from_qtensor(w)?,
            bias,
        })
    }

    /// Wraps a shared weight (e.g. the tied embedding as LM head).
    pub fn from_arc(w: Arc<QTensor>) -> Result<Self> {
        Ok(Self {
            w: QMatMul::from_arc(w)?,
            bias: None,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.w.forward(x)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// One decoder block's weights.
pub struct Block {
    /// Pre-attention RMSNorm weight.
    pub attn_norm: Tensor,
    /// Query projection.
    pub wq: Linear,
    /// Key projection.
    pub wk: Linear,
    /// Value projection.
    pub wv: Linear,
    /// Attention output projection.
    pub wo: Linear,
    /// Pre-MLP RMSNorm weight.
    pub ffn_norm: Tensor,
    /// MLP gate.
    pub gate: Linear,
    /// MLP up.
    pub up: Linear,
    /// MLP down.
    pub down: Linear,
}

/// The new tokens of one sequence in a forward step.
pub struct SeqStep<'a> {
    /// Tokens to append (≥ 1).
    pub tokens: &'a [u32],
    /// The sequence's KV state; positions continue from `cache.len()`.
    pub cache: &'a mut KvCache,
    /// Whether to return the logits of the last new token.
    pub want_logits: bool,
}

/// Weights plus fixed tables; immutable and shareable across threads.
pub struct Transformer {
    /// Hyper-parameters.
    pub cfg: TransformerConfig,
    embed: Arc<QTensor>,
    blocks: Vec<Block>,
    norm: Tensor,
    lm_head: Linear,
    rope: RopeTables,
    device: Device,
}

impl Transformer {
    /// Assembles a model from loaded parts.
    pub fn new(
        cfg: TransformerConfig,
        embed: Arc<QTensor>,
        blocks: Vec<Block>,
        norm: Tensor,
        lm_head: Linear,
        device: Device,
    ) -> Self {
        let rope = RopeTables::new(cfg.head_dim, cfg.rope_base, cfg.ctx_len, cfg.rope_style);
        Self {
            cfg,
            embed,
            blocks,
            norm,
            lm_head,
            rope,
            device,
        }
    }

    /// A fresh, empty KV cache sized for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.cfg.n_layer, self.cfg.n_kv_head * self.cfg.head_dim)
    }

    /// Runs one packed step over several sequences. Returns, aligned with `seqs`, the logits of
    /// each sequence's last new token where `want_logits` was set.
    pub fn forward(&self, seqs: &mut [SeqStep<'_>]) -> Result<Vec<Option<Vec<f32>>>> {
        let c = &self.cfg;
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
            if start + step.tokens.len() > self.rope.len() {
                return Err(EngineError::ContextOverflow {
                    prompt: start + step.tokens.len(),
                    max_new: 0,
                    ctx: self.rope.len(),
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
        let t = ids.len();
        let ids_t = Tensor::from_vec(ids, t, &self.device)?;
        let mut x = self.embed.embedding(&ids_t)?;
        for (l, block) in self.blocks.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &block.attn_norm, c.eps as f32)?;
            let attn = self.attention(l, block, &h, &pos, &row_seq, seqs)?;
            x = (x + block.wo.forward(&attn)?)?;
            let h = candle_nn::ops::rms_norm(&x, &block.ffn_norm, c.eps as f32)?;
            let act = (candle_nn::ops::silu(&block.gate.forward(&h)?)? * block.up.forward(&h)?)?;
            x = (x + block.down.forward(&act)?)?;
        }
        // Logits only for the rows that need them (the LM head is the largest matmul).
        let mut out_rows = Vec::new();
        let mut row = 0u32;
        for step in seqs.iter() {
            row += step.tokens.len() as u32;
            if step.want_logits {
                out_rows.push(row - 1);
            }
        }
        let mut result = vec![None; seqs.len()];
        if out_rows.is_empty() {
            return Ok(result);
        }
        let n_out = out_rows.len();
        let sel = Tensor::from_vec(out_rows, n_out, &self.device)?;
        let last = x.index_select(&sel, 0)?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, c.eps as f32)?;
        let logits = self.lm_head.forward(&last)?.to_vec2::<f32>()?;
        let mut it = logits.into_iter();
        for (slot, step) in result.iter_mut().zip(seqs.iter()) {
            if step.want_logits {
                *slot = it.next();
            }
        }
        Ok(result)
    }

    fn attention(
        &self,
        layer: usize,
        block: &Block,
        h: &Tensor,
        pos: &[usize],
        row_seq: &[usize],
        seqs: &mut [SeqStep<'_>],
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let e = c.head_dim;
        let (qw, kw) = (c.n_head * e, c.n_kv_head * e);
        let mut q = block.wq.forward(h)?.flatten_all()?.to_vec1::<f32>()?;
        let mut k = block.wk.forward(h)?.flatten_all()?.to_vec1::<f32>()?;
        let v = block.wv.forward(h)?.flatten_all()?.to_vec1::<f32>()?;
        q.par_chunks_exact_mut(qw)
            .zip(pos.par_iter())
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
        let mut out = vec![0f32; q.len()];
        out.par_chunks_exact_mut(qw)
            .zip(q.par_chunks_exact(qw))
            .enumerate()
            .for_each_init(Vec::new, |scores, (r, (o, qr))| {
                for head in 0..c.n_head {
                    let qh = &qr[head * e..(head + 1) * e];
                    let oh = &mut o[head * e..(head + 1) * e];
                    attend_one(
                        qh,
                        &blocks[row_seq[r]],
                        head / group,
                        pos[r],
                        shape,
                        scores,
                        oh,
                    );
                }
            });
        Ok(Tensor::from_vec(out, (pos.len(), qw), &self.device)?)
    }
}
