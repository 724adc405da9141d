//! GGUF architecture `llama` (SmolLM2, Llama-2/3 style): no projection biases, interleaved RoPE
//! (the converter permutes Q/K rows for it), optional tied LM head.

use super::attention::RopeStyle;
use super::loader::{load_blocks, read_config, ArchConventions};
use super::transformer::{Transformer, TransformerConfig};
use crate::engine::error::Result;
use crate::engine::gguf::GgufFile;

const CONVENTIONS: ArchConventions = ArchConventions {
    prefix: "llama",
    rope_style: RopeStyle::Interleaved,
    qk_norm: false,
    qkv_bias: false,
    // llama.cpp's default when `llama.rope.freq_base` is absent.
    default_rope_base: 10_000.0,
};

/// A llama-architecture model.
pub struct Llama {
    inner: Transformer,
}

impl Llama {
    /// Loads weights and hyper-parameters, reporting every missing metadata key at once.
    pub fn load(gguf: &GgufFile, threads: usize) -> Result<Self> {
        let cfg = read_config(gguf, &CONVENTIONS)?;
        Ok(Self {
            inner: load_blocks(gguf, cfg, &CONVENTIONS, threads)?,
        })
    }

    /// The shared transformer (forward pass, config).
    pub fn transformer(&self) -> &Transformer {
        &self.inner
    }

    /// Hyper-parameters.
    pub fn config(&self) -> &TransformerConfig {
        &self.inner.cfg
    }
}
