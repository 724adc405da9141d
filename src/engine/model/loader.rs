//! Reading a decoder-only transformer out of a GGUF: metadata checked at the door (every missing
//! key reported together), then tensors by their standard GGUF names with shape checks.
//!
//! Owns the GGUF tensor naming scheme shared by `llama`, `qwen2` and `qwen3`; the architecture
//! files own their conventions (metadata prefix, RoPE style, biases, q/k norm).

use super::attention::RopeStyle;
use super::transformer::{Block, Linear, Transformer, TransformerConfig};
use crate::engine::cpu::QMatrix;
use crate::engine::error::{EngineError, Result};
use crate::engine::gguf::GgufFile;
use candle_core::Device;

/// What differs between architectures that share the layout.
pub struct ArchConventions {
    /// Metadata key prefix (`llama`, `qwen2`, `qwen3`).
    pub prefix: &'static str,
    /// RoPE pairing.
    pub rope_style: RopeStyle,
    /// Whether Q/K/V carry biases.
    pub qkv_bias: bool,
    /// Whether queries and keys get a per-head RMSNorm before RoPE (`attn_q_norm`,
    /// `attn_k_norm`: Qwen3).
    pub qk_norm: bool,
    /// RoPE base when the file does not say.
    pub default_rope_base: f32,
}

/// Reads and validates hyper-parameters.
pub fn read_config(gguf: &GgufFile, conv: &ArchConventions) -> Result<TransformerConfig> {
    let p = conv.prefix;
    let key = |k: &str| format!("{p}.{k}");
    let n_layer = gguf.req_usize(&key("block_count"));
    let n_head = gguf.req_usize(&key("attention.head_count"));
    let hidden = gguf.req_usize(&key("embedding_length"));
    let ffn = gguf.req_usize(&key("feed_forward_length"));
    let eps = gguf.req_f64(&key("attention.layer_norm_rms_epsilon"));
    let ctx_len = gguf.req_usize(&key("context_length"));
    gguf.check(p)?;
    // Optional keys: GQA defaults to plain multi-head; the head dim to hidden / heads.
    let n_kv_head = gguf
        .opt_u64(&key("attention.head_count_kv"))
        .map_or(n_head, |v| v as usize);
    let rope_base = gguf
        .opt_f64(&key("rope.freq_base"))
        .map_or(conv.default_rope_base, |v| v as f32);
    let bad = |k: &str, why: String| EngineError::Metadata {
        path: gguf.path().to_path_buf(),
        arch: p.to_string(),
        keys: format!("{} ({why})", key(k)),
    };
    // Sizes decide allocations before any tensor is read: a corrupt or hostile header must be
    // an error, not an allocation of terabytes (found by the property tests).
    for (k, v, max) in [
        ("block_count", n_layer, 4096),
        ("attention.head_count", n_head, 4096),
        ("embedding_length", hidden, 1 << 17),
        ("feed_forward_length", ffn, 1 << 20),
        ("context_length", ctx_len, 1 << 24),
        ("attention.head_count_kv", n_kv_head, 4096),
    ] {
        if v == 0 || v > max {
            return Err(bad(k, format!("{v} is not a plausible size (1..={max})")));
        }
    }
    // The head width: `attention.key_length` when the file says (Qwen3's heads are wider than
    // embedding_length / head_count), else embedding_length / head_count.
    let key_length = gguf
        .opt_u64(&key("attention.key_length"))
        .map(|v| v as usize);
    if let Some(e) = key_length {
        if e == 0 || e > 4096 || e % 2 == 1 {
            return Err(bad(
                "attention.key_length",
                format!("{e} is not a plausible head width (even, 2..=4096)"),
            ));
        }
        let value_length = gguf
            .opt_u64(&key("attention.value_length"))
            .map_or(e, |v| v as usize);
        if value_length != e {
            return Err(bad(
                "attention.value_length",
                format!("{value_length} differs from attention.key_length {e} (not supported)"),
            ));
        }
    } else if n_head == 0 || !hidden.is_multiple_of(n_head) {
        return Err(bad(
            "attention.head_count",
            format!("{n_head} does not divide embedding_length {hidden}"),
        ));
    }
    let full_head = key_length.unwrap_or(hidden / n_head);
    if n_kv_head == 0 || !n_head.is_multiple_of(n_kv_head) {
        return Err(bad(
            "attention.head_count_kv",
            format!("{n_kv_head} does not divide head_count {n_head}"),
        ));
    }
    let head_dim = gguf
        .opt_u64(&key("rope.dimension_count"))
        .map_or(full_head, |v| v as usize);
    // The RoPE tables hold ctx × head_dim floats: keep them under 1 GiB.
    if head_dim != full_head {
        return Err(bad(
            "rope.dimension_count",
            format!("partial rotary ({head_dim} of {full_head}) is not supported"),
        ));
    }
    if ctx_len.saturating_mul(head_dim).saturating_mul(4) > 1 << 30 {
        return Err(bad(
            "context_length",
            format!("{ctx_len} positions × head dim {head_dim} need RoPE tables over 1 GiB"),
        ));
    }
    let vocab = gguf
        .tensor_dims("token_embd.weight")
        .and_then(|d| d.first().copied())
        .ok_or_else(|| EngineError::Tensor {
            path: gguf.path().to_path_buf(),
            name: "token_embd.weight".into(),
            reason: "missing from the file".into(),
        })?;
    Ok(TransformerConfig {
        n_layer,
        n_head,
        n_kv_head,
        head_dim,
        hidden,
        ffn,
        eps,
        rope_base,
        rope_style: conv.rope_style,
        ctx_len,
        vocab,
    })
}

/// How weights are read: the GGUF naming scheme is walked once ([`read_parts`]) and each
/// backend (maspo's CPU kernels, candle tensors on a device) or source (a GGUF file, seeded
/// synthetic weights) says how one matrix or vector becomes its own type.
pub trait WeightReader {
    /// A `rows × cols` matrix (`rows` outputs).
    type Mat;
    /// A vector (norm weights, biases).
    type Vec;
    /// The matrix called `name` (GGUF naming) of that shape.
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Self::Mat>;
    /// The vector called `name` of that length.
    fn vector(&self, name: &str, n: usize) -> Result<Self::Vec>;
    /// Whether a tensor exists (`output.weight`: an untied LM head).
    fn has(&self, name: &str) -> bool;
}

/// A projection as read: weight plus optional bias.
pub struct LinearParts<M, V> {
    /// Weight (`rows × cols`).
    pub w: M,
    /// Bias (`rows`).
    pub bias: Option<V>,
}

/// One decoder block as read.
pub struct BlockParts<M, V> {
    /// Pre-attention RMSNorm.
    pub attn_norm: V,
    /// Per-head query norm (Qwen3).
    pub q_norm: Option<V>,
    /// Per-head key norm (Qwen3).
    pub k_norm: Option<V>,
    /// Projections.
    pub wq: LinearParts<M, V>,
    /// Key projection.
    pub wk: LinearParts<M, V>,
    /// Value projection.
    pub wv: LinearParts<M, V>,
    /// Attention output.
    pub wo: LinearParts<M, V>,
    /// Pre-MLP RMSNorm.
    pub ffn_norm: V,
    /// MLP gate.
    pub gate: LinearParts<M, V>,
    /// MLP up.
    pub up: LinearParts<M, V>,
    /// MLP down.
    pub down: LinearParts<M, V>,
}

/// A whole model as read.
pub struct ModelParts<M, V> {
    /// Token embedding (`vocab × hidden`).
    pub embed: M,
    /// Decoder blocks.
    pub blocks: Vec<BlockParts<M, V>>,
    /// Final norm.
    pub norm: V,
    /// Untied LM head (`None`: the embedding).
    pub lm_head: Option<M>,
}

/// Reads every tensor of a model with `cfg`'s shapes under the GGUF naming scheme.
pub fn read_parts<R: WeightReader>(
    r: &R,
    cfg: &TransformerConfig,
    conv: &ArchConventions,
) -> Result<ModelParts<R::Mat, R::Vec>> {
    let (d, e) = (cfg.hidden, cfg.head_dim);
    let (qn, kn) = (cfg.n_head * e, cfg.n_kv_head * e);
    let embed = r.matrix("token_embd.weight", cfg.vocab, d)?;
    let mut blocks = Vec::with_capacity(cfg.n_layer);
    for i in 0..cfg.n_layer {
        let name = |t: &str| format!("blk.{i}.{t}");
        let lin = |t: &str, rows: usize, cols: usize, bias: bool| -> Result<LinearParts<_, _>> {
            Ok(LinearParts {
                w: r.matrix(&name(&format!("{t}.weight")), rows, cols)?,
                bias: if bias {
                    Some(r.vector(&name(&format!("{t}.bias")), rows)?)
                } else {
                    None
                },
            })
        };
        let head_norm = |t: &str| -> Result<Option<R::Vec>> {
            if conv.qk_norm {
                Ok(Some(r.vector(&name(&format!("{t}.weight")), e)?))
            } else {
                Ok(None)
            }
        };
        blocks.push(BlockParts {
            attn_norm: r.vector(&name("attn_norm.weight"), d)?,
            q_norm: head_norm("attn_q_norm")?,
            k_norm: head_norm("attn_k_norm")?,
            wq: lin("attn_q", qn, d, conv.qkv_bias)?,
            wk: lin("attn_k", kn, d, conv.qkv_bias)?,
            wv: lin("attn_v", kn, d, conv.qkv_bias)?,
            wo: lin("attn_output", d, qn, false)?,
            ffn_norm: r.vector(&name("ffn_norm.weight"), d)?,
            gate: lin("ffn_gate", cfg.ffn, d, false)?,
            up: lin("ffn_up", cfg.ffn, d, false)?,
            down: lin("ffn_down", d, cfg.ffn, false)?,
        });
    }
    let norm = r.vector("output_norm.weight", d)?;
    // Tied embeddings: no `output.weight` means the LM head is the embedding matrix.
    let lm_head = if r.has("output.weight") {
        Some(r.matrix("output.weight", cfg.vocab, d)?)
    } else {
        None
    };
    Ok(ModelParts {
        embed,
        blocks,
        norm,
        lm_head,
    })
}

/// A GGUF file read into maspo's CPU weight formats.
pub struct GgufCpu<'a>(pub &'a GgufFile);

impl WeightReader for GgufCpu<'_> {
    type Mat = QMatrix;
    type Vec = Vec<f32>;

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix> {
        let t = self.0.tensor(name, &[rows, cols], &Device::Cpu)?;
        QMatrix::from_qtensor(&t).map_err(|e| EngineError::Tensor {
            path: self.0.path().to_path_buf(),
            name: name.to_string(),
            reason: e.to_string(),
        })
    }

    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        Ok(self
            .0
            .tensor(name, &[n], &Device::Cpu)?
            .dequantize(&Device::Cpu)?
            .to_vec1::<f32>()?)
    }

    fn has(&self, name: &str) -> bool {
        self.0.has_tensor(name)
    }
}

/// Assembles the CPU transformer from parts; `threads` sizes its compute pool.
pub fn cpu_transformer(
    parts: ModelParts<QMatrix, Vec<f32>>,
    cfg: TransformerConfig,
    threads: usize,
) -> Transformer {
    let lin = |l: LinearParts<QMatrix, Vec<f32>>| Linear::new(l.w, l.bias);
    let blocks = parts
        .blocks
        .into_iter()
        .map(|b| Block {
            attn_norm: b.attn_norm,
            q_norm: b.q_norm,
            k_norm: b.k_norm,
            wq: lin(b.wq),
            wk: lin(b.wk),
            wv: lin(b.wv),
            wo: lin(b.wo),
            ffn_norm: b.ffn_norm,
            gate: lin(b.gate),
            up: lin(b.up),
            down: lin(b.down),
        })
        .collect();
    let lm_head = parts.lm_head.map(|w| Linear::new(w, None));
    Transformer::new(cfg, parts.embed, blocks, parts.norm, lm_head, threads)
}
