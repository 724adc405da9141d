//! Model code: one file per GGUF architecture (`llama`, `qwen2`, `qwen3`: its conventions), the
//! shared packed transformer forward, and the host-side attention kernels.
//!
//! Owns weights (immutable, shareable: forward takes `&self`). Must not hold any per-sequence
//! state: every call gets the sequences' [`crate::engine::kv::KvCache`]s from the caller.

pub mod attention;
pub mod device_fwd;
mod llama;
pub mod loader;
mod qwen2;
mod qwen3;
pub mod safetensors;
pub mod synthetic;
pub mod transformer;

use crate::engine::device::DeviceSpec;
use crate::engine::error::{EngineError, Result};
use crate::engine::gguf::GgufFile;
use crate::engine::kv::KvCache;
use candle_core::DType;
pub use device_fwd::DeviceTransformer;
pub use transformer::{LogitRows, SeqStep, Transformer, TransformerConfig};

/// Architectures maspo implements, by their GGUF `general.architecture` name.
pub const SUPPORTED_ARCHS: &[&str] = &["llama", "qwen2", "qwen3"];

/// Every supported architecture's conventions, by its GGUF `general.architecture` name.
const ARCHS: [&loader::ArchConventions; 3] = [
    &llama::CONVENTIONS,
    &qwen2::CONVENTIONS,
    &qwen3::CONVENTIONS,
];

/// Where the forward runs.
pub enum Backend {
    /// maspo's CPU kernels.
    Cpu(Box<Transformer>),
    /// candle tensors on a device.
    Device(Box<DeviceTransformer>),
}

/// A loaded model of any supported architecture: the shared transformer read with that
/// architecture's conventions, on the CPU kernels or a candle device.
pub struct Model {
    arch: &'static str,
    inner: Backend,
    device: DeviceSpec,
}

/// Reads every weight through `reader` into maspo's CPU kernels.
fn cpu_backend<R: loader::WeightReader<Mat = crate::engine::cpu::QMatrix, Vec = Vec<f32>>>(
    reader: &R,
    cfg: TransformerConfig,
    conv: &loader::ArchConventions,
    threads: usize,
) -> Result<Backend> {
    let parts = loader::read_parts(reader, &cfg, conv)?;
    Ok(Backend::Cpu(Box::new(loader::cpu_transformer(
        parts, cfg, threads,
    ))))
}

/// Reads every weight through `reader` onto a candle device, activations in `act`.
fn device_backend<
    R: loader::WeightReader<Mat = device_fwd::DeviceMat, Vec = candle_core::Tensor>,
>(
    reader: &R,
    cfg: TransformerConfig,
    conv: &loader::ArchConventions,
    dev: &candle_core::Device,
    act: DType,
) -> Result<Backend> {
    let parts = loader::read_parts(reader, &cfg, conv)?;
    Ok(Backend::Device(Box::new(DeviceTransformer::new(
        cfg, parts, dev, act,
    )?)))
}

/// The conventions of a GGUF architecture name.
pub fn conventions(arch: &str) -> Option<&'static loader::ArchConventions> {
    ARCHS.into_iter().find(|c| c.prefix == arch)
}

impl Model {
    /// Loads the architecture that `general.architecture` names on maspo's CPU kernels;
    /// `threads` sizes the compute pool.
    pub fn load(gguf: &GgufFile, threads: usize) -> Result<Self> {
        Self::load_on(gguf, threads, DeviceSpec::Cpu)
    }

    /// Loads onto `device` (GGUF matrices stay quantized on a device: candle's kernels;
    /// activations and KV in f32).
    pub fn load_on(gguf: &GgufFile, threads: usize, device: DeviceSpec) -> Result<Self> {
        let arch = gguf.architecture().unwrap_or_default();
        if arch.is_empty() {
            return Err(EngineError::Metadata {
                path: gguf.path().to_path_buf(),
                arch: "any".into(),
                keys: "general.architecture".into(),
            });
        }
        let Some(conv) = conventions(&arch) else {
            return Err(EngineError::UnknownArch {
                path: gguf.path().to_path_buf(),
                arch,
                supported: SUPPORTED_ARCHS.join(", "),
            });
        };
        let cfg = loader::read_config(gguf, conv)?;
        let inner = if device.is_candle() {
            let dev = device.candle_device()?;
            let reader = device_fwd::GgufDevice {
                gguf,
                device: &dev,
                act: DType::F32,
            };
            device_backend(&reader, cfg, conv, &dev, DType::F32)?
        } else {
            cpu_backend(&loader::GgufCpu(gguf), cfg, conv, threads)?
        };
        Ok(Self {
            arch: conv.prefix,
            inner,
            device,
        })
    }

    /// Loads a Hugging Face checkpoint (safetensors) onto `device`: f32 matrices on the CPU
    /// kernels; on a device the checkpoint's own 16-bit type (bf16 when it is f32) on a GPU, f32
    /// on `candle-cpu`.
    pub fn load_hf(
        ckpt: &safetensors::HfCheckpoint,
        threads: usize,
        device: DeviceSpec,
    ) -> Result<Self> {
        let cfg = ckpt.transformer_config()?;
        let conv = &ckpt.conventions;
        let st = ckpt.mmap()?;
        let inner = if device.is_candle() {
            let dev = device.candle_device()?;
            // The embedding's stored type names the checkpoint's (its Debug name: `F16`, ...).
            let stored = st
                .get(&safetensors::hf_name("token_embd.weight"))
                .map(|v| format!("{:?}", v.dtype()))
                .unwrap_or_default();
            let act = match (dev.is_cuda(), stored.as_str()) {
                (false, _) => DType::F32,
                (true, "F16") => DType::F16,
                (true, _) => DType::BF16,
            };
            let reader = safetensors::HfDevice {
                ckpt,
                st: &st,
                device: &dev,
                act,
            };
            device_backend(&reader, cfg, conv, &dev, act)?
        } else {
            cpu_backend(&safetensors::HfCpu { ckpt, st: &st }, cfg, conv, threads)?
        };
        Ok(Self::from_backend(ckpt.arch, inner, device))
    }

    /// A synthetic model: `shape` with seeded random weights, built in memory on `device`
    /// (bf16 on a GPU, f32 on the CPU paths; the values are bf16 either way).
    pub fn synthetic(
        shape: &'static synthetic::Shape,
        seed: u64,
        threads: usize,
        device: DeviceSpec,
    ) -> Result<Self> {
        let cfg = shape.config();
        let conv = conventions(shape.arch).expect("every shape names a supported arch");
        let inner = if device.is_candle() {
            let dev = device.candle_device()?;
            let dtype = if dev.is_cuda() {
                DType::BF16
            } else {
                DType::F32
            };
            let reader = synthetic::SyntheticDevice {
                seed,
                shape,
                device: &dev,
                dtype,
            };
            device_backend(&reader, cfg, conv, &dev, dtype)?
        } else {
            cpu_backend(&synthetic::SyntheticCpu { seed, shape }, cfg, conv, threads)?
        };
        Ok(Self::from_backend(conv.prefix, inner, device))
    }

    /// A model from an already assembled backend (synthetic weights, other checkpoint formats).
    pub fn from_backend(arch: &'static str, inner: Backend, device: DeviceSpec) -> Self {
        Self {
            arch,
            inner,
            device,
        }
    }

    /// Where the forward runs.
    pub fn device(&self) -> DeviceSpec {
        self.device
    }

    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.inner
    }

    /// A fresh, empty KV cache where this model keeps K/V.
    pub fn new_cache(&self) -> KvCache {
        match &self.inner {
            Backend::Cpu(t) => t.new_cache(),
            Backend::Device(t) => t.new_cache(),
        }
    }

    /// Runs one packed step over several sequences. Returns, aligned with `seqs`, each
    /// sequence's requested logit rows concatenated (`rows × vocab`; empty for `None`).
    pub fn forward(&self, seqs: &mut [SeqStep<'_>]) -> Result<Vec<Vec<f32>>> {
        match &self.inner {
            Backend::Cpu(t) => t.forward(seqs),
            Backend::Device(t) => t.forward(seqs),
        }
    }

    /// Compute threads of the CPU kernels (0 on a device).
    pub fn threads(&self) -> usize {
        match &self.inner {
            Backend::Cpu(t) => t.threads(),
            Backend::Device(_) => 0,
        }
    }

    /// Weight formats in use, e.g. `["q4_1", "q8_0"]` (for reports).
    pub fn weight_formats(&self) -> Vec<String> {
        match &self.inner {
            Backend::Cpu(t) => t.weight_formats().iter().map(|s| s.to_string()).collect(),
            Backend::Device(t) => t.weight_formats(),
        }
    }

    /// What computes the forward when it is not maspo's CPU kernels (`candle-cuda-bf16`, ...):
    /// completion-cache keys include it, as results differ between backends.
    pub fn backend_id(&self) -> Option<String> {
        match &self.inner {
            Backend::Cpu(_) => None,
            Backend::Device(t) => Some(format!(
                "candle-{}-{}-{}",
                env!("CARGO_PKG_VERSION"),
                match self.device {
                    DeviceSpec::Cuda(_) => "cuda",
                    _ => "cpu",
                },
                format!("{:?}", t.act_dtype()).to_lowercase()
            )),
        }
    }

    /// Bytes of one K or V element in the cache.
    pub fn kv_elem_bytes(&self) -> usize {
        match &self.inner {
            Backend::Cpu(_) => 2,
            Backend::Device(t) => t.act_dtype().size_in_bytes(),
        }
    }

    /// Weight bytes one decode step reads.
    pub fn decode_weight_bytes(&self) -> usize {
        match &self.inner {
            Backend::Cpu(t) => t.decode_weight_bytes(),
            Backend::Device(t) => t.decode_weight_bytes(),
        }
    }

    /// The architecture name.
    pub fn arch(&self) -> &'static str {
        self.arch
    }

    /// Hyper-parameters.
    pub fn config(&self) -> &TransformerConfig {
        match &self.inner {
            Backend::Cpu(t) => &t.cfg,
            Backend::Device(t) => &t.cfg,
        }
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
