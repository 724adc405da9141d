//! GGUF architecture `llama` (SmolLM2, Llama-2/3 style): no projection biases, interleaved RoPE
//! (the converter permutes Q/K rows for it), optional tied LM head.

use super::attention::RopeStyle;
use super::loader::ArchConventions;

/// How this architecture reads.
pub const CONVENTIONS: ArchConventions = ArchConventions {
    prefix: "llama",
    rope_style: RopeStyle::Interleaved,
    qk_norm: false,
    qkv_bias: false,
    // llama.cpp's default when `llama.rope.freq_base` is absent.
    default_rope_base: 10_000.0,
};
