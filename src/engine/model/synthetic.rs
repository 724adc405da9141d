//! Synthetic models: the exact shapes of real checkpoints (`qwen2.5-0.5b`, `qwen3-8b`, ...) with
//! seeded random weights built in memory, for benchmarking and CPU/GPU parity without a
//! download (and the only way to run real shapes where nothing large can be carried).
//!
//! Owns the shape table and the weight values. Every value is a function of (seed, tensor name,
//! index) alone — counter-based, so the same model comes out on any machine, thread count or
//! device — and is rounded to bf16, so a bf16 device copy holds exactly the CPU copy's values.

use super::device_fwd::DeviceMat;
use super::loader::WeightReader;
use super::transformer::TransformerConfig;
use crate::engine::cpu::QMatrix;
use crate::engine::error::{EngineError, Result};
use crate::rng::{str_seed, SplitMix64};
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

/// The shape of a real checkpoint (from its `config.json`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Name used by `--synthetic`.
    pub name: &'static str,
    /// GGUF architecture name (conventions: biases, q/k norm, RoPE pairing).
    pub arch: &'static str,
    /// Decoder blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// KV heads.
    pub n_kv_head: usize,
    /// Width per head.
    pub head_dim: usize,
    /// Residual width.
    pub hidden: usize,
    /// MLP inner width.
    pub ffn: usize,
    /// Vocabulary.
    pub vocab: usize,
    /// Context window.
    pub ctx_len: usize,
    /// RoPE base.
    pub rope_base: f32,
    /// Whether the LM head is the embedding.
    pub tied: bool,
}

/// Every shape `--synthetic` knows.
pub const SHAPES: &[Shape] = &[
    Shape {
        name: "smollm2-135m",
        arch: "llama",
        n_layer: 30,
        n_head: 9,
        n_kv_head: 3,
        head_dim: 64,
        hidden: 576,
        ffn: 1536,
        vocab: 49152,
        ctx_len: 8192,
        rope_base: 100_000.0,
        tied: true,
    },
    Shape {
        name: "qwen2.5-0.5b",
        arch: "qwen2",
        n_layer: 24,
        n_head: 14,
        n_kv_head: 2,
        head_dim: 64,
        hidden: 896,
        ffn: 4864,
        vocab: 151_936,
        ctx_len: 32_768,
        rope_base: 1_000_000.0,
        tied: true,
    },
    Shape {
        name: "qwen3-0.6b",
        arch: "qwen3",
        n_layer: 28,
        n_head: 16,
        n_kv_head: 8,
        head_dim: 128,
        hidden: 1024,
        ffn: 3072,
        vocab: 151_936,
        ctx_len: 40_960,
        rope_base: 1_000_000.0,
        tied: true,
    },
    Shape {
        name: "qwen3-1.7b",
        arch: "qwen3",
        n_layer: 28,
        n_head: 16,
        n_kv_head: 8,
        head_dim: 128,
        hidden: 2048,
        ffn: 6144,
        vocab: 151_936,
        ctx_len: 40_960,
        rope_base: 1_000_000.0,
        tied: true,
    },
    Shape {
        name: "qwen3-4b",
        arch: "qwen3",
        n_layer: 36,
        n_head: 32,
        n_kv_head: 8,
        head_dim: 128,
        hidden: 2560,
        ffn: 9728,
        vocab: 151_936,
        ctx_len: 40_960,
        rope_base: 1_000_000.0,
        tied: true,
    },
    Shape {
        name: "qwen3-8b",
        arch: "qwen3",
        n_layer: 36,
        n_head: 32,
        n_kv_head: 8,
        head_dim: 128,
        hidden: 4096,
        ffn: 12288,
        vocab: 151_936,
        ctx_len: 40_960,
        rope_base: 1_000_000.0,
        tied: false,
    },
    // A few-MiB shape of the Qwen3 layout, for tests and quick checks. Its head is untied: with
    // random weights a tied head mostly echoes the input token (its own embedding dominates the
    // dot products), which would make every greedy choice trivial.
    Shape {
        name: "tiny-qwen3",
        arch: "qwen3",
        n_layer: 2,
        n_head: 4,
        n_kv_head: 2,
        head_dim: 32,
        hidden: 96,
        ffn: 160,
        vocab: 512,
        ctx_len: 1024,
        rope_base: 1_000_000.0,
        tied: false,
    },
];

impl Shape {
    /// The shape called `name`.
    pub fn named(name: &str) -> Result<&'static Shape> {
        SHAPES.iter().find(|s| s.name == name).ok_or_else(|| {
            EngineError::Request(format!(
                "unknown synthetic shape `{name}` (known: {})",
                SHAPES.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// Hyper-parameters (RMSNorm epsilon 1e-6 as in the Qwen configs; SmolLM2's 1e-5).
    pub fn config(&self) -> TransformerConfig {
        let conv = super::conventions(self.arch).expect("every shape names a supported arch");
        TransformerConfig {
            n_layer: self.n_layer,
            n_head: self.n_head,
            n_kv_head: self.n_kv_head,
            head_dim: self.head_dim,
            hidden: self.hidden,
            ffn: self.ffn,
            eps: if self.arch == "llama" { 1e-5 } else { 1e-6 },
            rope_base: self.rope_base,
            rope_style: conv.rope_style,
            ctx_len: self.ctx_len,
            vocab: self.vocab,
        }
    }

    /// Parameters in all (the embedding counted once when tied).
    pub fn params(&self) -> usize {
        let (d, e) = (self.hidden, self.head_dim);
        let attn = d * self.n_head * e * 2 + d * self.n_kv_head * e * 2;
        let mlp = 3 * d * self.ffn;
        let head = if self.tied { 0 } else { self.vocab * d };
        self.n_layer * (attn + mlp) + self.vocab * d + head
    }
}

/// Seeded weight values: uniform in ±`scale`, rounded to bf16.
fn values(seed: u64, name: &str, n: usize, scale: f32) -> Vec<f32> {
    let base = seed ^ str_seed(name);
    let mut out = vec![0f32; n];
    out.par_chunks_mut(1 << 16)
        .enumerate()
        .for_each(|(c, chunk)| {
            for (j, v) in chunk.iter_mut().enumerate() {
                let i = (c << 16) + j;
                let bits = SplitMix64::new(
                    base.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                )
                .next_u64();
                let u = (bits >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
                *v = half::bf16::from_f32((2.0 * u - 1.0) * scale).to_f32();
            }
        });
    out
}

/// The value layout of each named tensor, as `from_config` initialises a Hugging Face model
/// (what the transformers anchor measures): every matrix, the embedding included, with standard
/// deviation 0.02 (uniform ±0.02·√3 here), norm weights near 1, biases small. A large embedding
/// would make a tied head echo the input token at every step (every greedy choice trivial).
fn tensor_values(seed: u64, name: &str, rows: usize, cols: usize) -> Vec<f32> {
    if name.ends_with("norm.weight") {
        return values(seed, name, rows * cols, 0.1)
            .into_iter()
            .map(|v| half::bf16::from_f32(1.0 + v).to_f32())
            .collect();
    }
    if name.ends_with(".bias") {
        return values(seed, name, rows * cols, 0.1);
    }
    values(seed, name, rows * cols, 0.02 * 3f32.sqrt())
}

/// Synthetic weights for maspo's CPU kernels (f32 matrices holding the bf16 values).
pub struct SyntheticCpu {
    /// Weight seed.
    pub seed: u64,
    /// The shape (whether the head is tied).
    pub shape: &'static Shape,
}

impl WeightReader for SyntheticCpu {
    type Mat = QMatrix;
    type Vec = Vec<f32>;

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix> {
        Ok(QMatrix::from_f32(
            rows,
            cols,
            tensor_values(self.seed, name, rows, cols),
        ))
    }

    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        Ok(tensor_values(self.seed, name, n, 1))
    }

    fn has(&self, name: &str) -> bool {
        name != "output.weight" || !self.shape.tied
    }
}

/// Synthetic weights as dense tensors on a device, in `dtype` (bf16 values are exact).
pub struct SyntheticDevice<'a> {
    /// Weight seed.
    pub seed: u64,
    /// The shape.
    pub shape: &'static Shape,
    /// Where the weights go.
    pub device: &'a Device,
    /// Weight and activation type.
    pub dtype: DType,
}

impl SyntheticDevice<'_> {
    fn tensor(&self, name: &str, rows: usize, cols: usize) -> Result<Tensor> {
        let v = tensor_values(self.seed, name, rows, cols);
        // Convert on the host: a bf16 upload is half the bytes of an f32 one.
        let t = match self.dtype {
            DType::BF16 => {
                let h: Vec<half::bf16> = v.par_iter().map(|&x| half::bf16::from_f32(x)).collect();
                Tensor::from_vec(h, (rows, cols), self.device)?
            }
            DType::F16 => {
                let h: Vec<half::f16> = v.par_iter().map(|&x| half::f16::from_f32(x)).collect();
                Tensor::from_vec(h, (rows, cols), self.device)?
            }
            other => Tensor::from_vec(v, (rows, cols), self.device)?.to_dtype(other)?,
        };
        Ok(t)
    }
}

impl WeightReader for SyntheticDevice<'_> {
    type Mat = DeviceMat;
    type Vec = Tensor;

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<DeviceMat> {
        Ok(DeviceMat::Dense(self.tensor(name, rows, cols)?))
    }

    fn vector(&self, name: &str, n: usize) -> Result<Tensor> {
        Ok(self.tensor(name, n, 1)?.flatten_all()?)
    }

    fn has(&self, name: &str) -> bool {
        name != "output.weight" || !self.shape.tied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_their_published_parameter_counts_and_values_are_seeded() {
        // Published sizes (embedding included): Qwen2.5-0.5B 494M, Qwen3-0.6B 596M (tied),
        // Qwen3-8B 8.19B, SmolLM2-135M 134.5M.
        for (name, want) in [
            ("qwen2.5-0.5b", 494e6),
            ("qwen3-0.6b", 596e6),
            ("qwen3-8b", 8.19e9),
            ("smollm2-135m", 134.5e6),
        ] {
            let p = Shape::named(name).unwrap().params() as f64;
            // Norm weights and biases are not counted: within 1%.
            assert!((p / want - 1.0).abs() < 0.01, "{name}: {p} vs {want}");
        }
        let e = Shape::named("qwen9").unwrap_err().to_string();
        assert!(e.contains("qwen3-8b"), "{e}");
        // Counter-based: a prefix of a longer draw equals the shorter draw; seeds differ.
        let a = values(7, "blk.0.attn_q.weight", 100, 1.0);
        let b = values(7, "blk.0.attn_q.weight", 70_000, 1.0);
        assert_eq!(a[..], b[..100]);
        assert_ne!(a, values(8, "blk.0.attn_q.weight", 100, 1.0));
        assert!(a
            .iter()
            .all(|v| half::bf16::from_f32(*v).to_f32() == *v && v.abs() <= 1.0));
    }
}
