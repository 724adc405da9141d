//! Model code: one file per GGUF architecture (`llama`, `qwen2`, `qwen3`), the shared packed transformer
//! forward, and the host-side attention kernels.
//!
//! Owns weights (immutable, shareable: forward takes `&self`). Must not hold any per-sequence
//! state: every call gets the sequences' [`crate::engine::kv::KvCache`]s from the caller.

pub mod attention;
pub mod llama;
mod loader;
pub mod qwen2;
pub mod qwen3;
pub mod transformer;

use crate::engine::error::{EngineError, Result};
use crate::engine::gguf::GgufFile;
pub use transformer::{LogitRows, SeqStep, Transformer, TransformerConfig};

/// Architectures maspo implements, by their GGUF `general.architecture` name.
pub const SUPPORTED_ARCHS: &[&str] = &["llama", "qwen2", "qwen3"];

/// A loaded model of any supported architecture.
pub enum Model {
    /// GGUF `llama`.
    Llama(llama::Llama),
    /// GGUF `qwen2`.
    Qwen2(qwen2::Qwen2),
    /// GGUF `qwen3`.
    Qwen3(qwen3::Qwen3),
}

impl Model {
    /// Loads the architecture that `general.architecture` names; `threads` sizes the compute pool.
    pub fn load(gguf: &GgufFile, threads: usize) -> Result<Self> {
        let arch = gguf.architecture().unwrap_or_default();
        match arch.as_str() {
            "llama" => Ok(Self::Llama(llama::Llama::load(gguf, threads)?)),
            "qwen2" => Ok(Self::Qwen2(qwen2::Qwen2::load(gguf, threads)?)),
            "qwen3" => Ok(Self::Qwen3(qwen3::Qwen3::load(gguf, threads)?)),
            "" => Err(EngineError::Metadata {
                path: gguf.path().to_path_buf(),
                arch: "any".into(),
                keys: "general.architecture".into(),
            }),
            other => Err(EngineError::UnknownArch {
                path: gguf.path().to_path_buf(),
                arch: other.to_string(),
                supported: SUPPORTED_ARCHS.join(", "),
            }),
        }
    }

    /// The architecture name.
    pub fn arch(&self) -> &'static str {
        match self {
            Self::Llama(_) => "llama",
            Self::Qwen2(_) => "qwen2",
            Self::Qwen3(_) => "qwen3",
        }
    }

    /// The transformer that runs the forward pass.
    pub fn transformer(&self) -> &Transformer {
        match self {
            Self::Llama(m) => m.transformer(),
            Self::Qwen2(m) => m.transformer(),
            Self::Qwen3(m) => m.transformer(),
        }
    }
}
