//! GGUF architecture `qwen2` (Qwen2 / Qwen2.5): biases on the Q/K/V projections, NEOX RoPE,
//! separate LM head when `output.weight` exists.

use super::attention::RopeStyle;
use super::loader::{load_blocks, read_config, ArchConventions};
use super::transformer::{Transformer, TransformerConfig};
use crate::engine::error::Result;
use crate::engine::gguf::GgufFile;

const CONVENTIONS: ArchConventions = ArchConventions {
    prefix: "qwen2",
    rope_style: RopeStyle::Neox,
    qk_norm: false,
    qkv_bias: true,
    default_rope_base: 1_000_000.0,
};

/// A qwen2-architecture model.
pub struct Qwen2 {
    inner: Transformer,
}

impl Qwen2 {
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
