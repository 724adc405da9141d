//! Model code: one file per GGUF architecture (`llama`, `qwen2`, `qwen3`: its conventions), the
//! shared packed transformer forward, and the host-side attention kernels.
//!
//! Owns weights (immutable, shareable: forward takes `&self`). Must not hold any per-sequence
//! state: every call gets the sequences' [`crate::engine::kv::KvCache`]s from the caller.

pub mod attention;
mod llama;
mod loader;
mod qwen2;
mod qwen3;
pub mod transformer;

use crate::engine::error::{EngineError, Result};
use crate::engine::gguf::GgufFile;
pub use transformer::{LogitRows, SeqStep, Transformer, TransformerConfig};

/// Architectures maspo implements, by their GGUF `general.architecture` name.
pub const SUPPORTED_ARCHS: &[&str] = &["llama", "qwen2", "qwen3"];

/// Every supported architecture's conventions, by its GGUF `general.architecture` name.
const ARCHS: [&loader::ArchConventions; 3] = [
    &llama::CONVENTIONS,
    &qwen2::CONVENTIONS,
    &qwen3::CONVENTIONS,
];

/// A loaded model of any supported architecture: the shared transformer read with that
/// architecture's conventions.
pub struct Model {
    arch: &'static str,
    inner: Transformer,
}

impl Model {
    /// Loads the architecture that `general.architecture` names; `threads` sizes the compute pool.
    pub fn load(gguf: &GgufFile, threads: usize) -> Result<Self> {
        let arch = gguf.architecture().unwrap_or_default();
        if arch.is_empty() {
            return Err(EngineError::Metadata {
                path: gguf.path().to_path_buf(),
                arch: "any".into(),
                keys: "general.architecture".into(),
            });
        }
        let Some(conv) = ARCHS.into_iter().find(|c| c.prefix == arch) else {
            return Err(EngineError::UnknownArch {
                path: gguf.path().to_path_buf(),
                arch,
                supported: SUPPORTED_ARCHS.join(", "),
            });
        };
        let cfg = loader::read_config(gguf, conv)?;
        Ok(Self {
            arch: conv.prefix,
            inner: loader::load_blocks(gguf, cfg, conv, threads)?,
        })
    }

    /// The architecture name.
    pub fn arch(&self) -> &'static str {
        self.arch
    }

    /// The transformer that runs the forward pass.
    pub fn transformer(&self) -> &Transformer {
        &self.inner
    }

    /// Hyper-parameters.
    pub fn config(&self) -> &TransformerConfig {
        &self.inner.cfg
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_supported_name_has_conventions() {
        let names: Vec<&str> = super::ARCHS.iter().map(|c| c.prefix).collect();
        assert_eq!(names, super::SUPPORTED_ARCHS);
    }
}
