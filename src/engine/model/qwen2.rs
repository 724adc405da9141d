//! GGUF architecture `qwen2` (Qwen2 / Qwen2.5): biases on the Q/K/V projections, NEOX RoPE,
//! separate LM head when `output.weight` exists.

use super::attention::RopeStyle;
use super::loader::ArchConventions;

/// How this architecture reads.
pub const CONVENTIONS: ArchConventions = ArchConventions {
    prefix: "qwen2",
    rope_style: RopeStyle::Neox,
    qk_norm: false,
    qkv_bias: true,
    default_rope_base: 1_000_000.0,
};
