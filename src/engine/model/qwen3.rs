//! GGUF architecture `qwen3` (Qwen3 dense): no projection biases, a per-head RMSNorm of queries
//! and keys before NEOX RoPE, heads wider than `embedding_length / head_count`
//! (`attention.key_length`), tied LM head unless `output.weight` exists.

use super::attention::RopeStyle;
use super::loader::{load_blocks, read_config, ArchConventions};
use super::transformer::{Transformer, TransformerConfig};
use crate::engine::error::Result;
use crate::engine::gguf::GgufFile;

const CONVENTIONS: ArchConventions = ArchConventions {
    prefix: "qwen3",
    rope_style: RopeStyle::Neox,
    qk_norm: true,
    qkv_bias: false,
    default_rope_base: 1_000_000.0,
};

/// A qwen3-architecture model.
pub struct Qwen3 {
    inner: Transformer,
}

impl Qwen3 {
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
