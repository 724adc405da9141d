//! GGUF architecture `qwen3` (Qwen3 dense): no projection biases, a per-head RMSNorm of queries
//! and keys before NEOX RoPE, heads wider than `embedding_length / head_count`
//! (`attention.key_length`), tied LM head unless `output.weight` exists.

use super::attention::RopeStyle;
use super::loader::ArchConventions;

/// How this architecture reads.
pub const CONVENTIONS: ArchConventions = ArchConventions {
    prefix: "qwen3",
    rope_style: RopeStyle::Neox,
    qk_norm: true,
    qkv_bias: false,
    default_rope_base: 1_000_000.0,
};
