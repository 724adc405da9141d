//! Hugging Face checkpoints: a directory with `config.json` and `model.safetensors` (or
//! `model.safetensors.index.json` plus shards), f32/bf16/f16, read under the GGUF naming scheme
//! of [`super::loader::read_parts`].
//!
//! Owns `config.json` (hyper-parameters, architecture, tied head) and the HF ↔ GGUF tensor name
//! map. Hugging Face stores Q/K unpermuted, so every HF architecture pairs RoPE dimensions
//! NEOX-style (GGUF `llama` files are permuted for the interleaved form instead).

use super::attention::RopeStyle;
use super::device_fwd::DeviceMat;
use super::loader::{ArchConventions, WeightReader};
use super::transformer::TransformerConfig;
use crate::engine::cpu::QMatrix;
use crate::engine::error::{EngineError, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The `config.json` keys maspo reads.
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    /// e.g. `["Qwen3ForCausalLM"]`.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// Residual width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// KV heads (default: query heads).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Head width (default: hidden / heads).
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Context window.
    pub max_position_embeddings: usize,
    /// Vocabulary.
    pub vocab_size: usize,
    /// Whether the LM head is the embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Whether Q/K/V (and O) carry biases (Llama-family option).
    #[serde(default)]
    pub attention_bias: Option<bool>,
    /// RoPE scaling (YaRN, linear, ...): not supported.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// End-of-sequence id(s).
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
}

/// A checkpoint directory: its config and weight files.
pub struct HfCheckpoint {
    /// The directory.
    pub dir: PathBuf,
    /// Parsed `config.json`.
    pub config: HfConfig,
    /// GGUF architecture whose conventions apply (`llama`, `qwen2`, `qwen3`).
    pub arch: &'static str,
    /// Conventions (RoPE always NEOX here).
    pub conventions: ArchConventions,
    /// The safetensors files (one, or the shards of the index).
    pub files: Vec<PathBuf>,
}

fn bad(dir: &Path, what: impl Into<String>) -> EngineError {
    EngineError::Checkpoint {
        path: dir.to_path_buf(),
        reason: what.into(),
    }
}

impl HfCheckpoint {
    /// Reads `config.json` and finds the weight files of a checkpoint directory.
    pub fn open(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|source| EngineError::Io {
            path: cfg_path.clone(),
            source,
        })?;
        let config: HfConfig =
            serde_json::from_str(&text).map_err(|e| bad(dir, format!("config.json: {e}")))?;
        let name = config.architectures.first().cloned().unwrap_or_default();
        let (arch, base): (&'static str, &ArchConventions) = match name.as_str() {
            "Qwen2ForCausalLM" => ("qwen2", &super::qwen2::CONVENTIONS),
            "Qwen3ForCausalLM" => ("qwen3", &super::qwen3::CONVENTIONS),
            "LlamaForCausalLM" | "MistralForCausalLM" => ("llama", &super::llama::CONVENTIONS),
            other => {
                return Err(bad(
                    dir,
                    format!(
                        "config.json: architecture `{other}` is not supported (supported: Qwen2ForCausalLM, Qwen3ForCausalLM, LlamaForCausalLM, MistralForCausalLM)"
                    ),
                ))
            }
        };
        if config.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(bad(
                dir,
                "config.json: rope_scaling is not supported (remove it to run at the native context)",
            ));
        }
        let conventions = ArchConventions {
            prefix: base.prefix,
            rope_style: RopeStyle::Neox,
            qkv_bias: config.attention_bias.unwrap_or(base.qkv_bias),
            qk_norm: base.qk_norm,
            default_rope_base: base.default_rope_base,
        };
        let files = weight_files(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            arch,
            conventions,
            files,
        })
    }

    /// Hyper-parameters, checked like a GGUF header's.
    pub fn transformer_config(&self) -> Result<TransformerConfig> {
        let c = &self.config;
        let n_kv = c.num_key_value_heads.unwrap_or(c.num_attention_heads);
        if c.num_attention_heads == 0 || n_kv == 0 || !c.num_attention_heads.is_multiple_of(n_kv) {
            return Err(bad(
                &self.dir,
                format!(
                    "config.json: num_key_value_heads {n_kv} does not divide num_attention_heads {}",
                    c.num_attention_heads
                ),
            ));
        }
        let head_dim = match c.head_dim {
            Some(e) => e,
            None if c.hidden_size.is_multiple_of(c.num_attention_heads) => {
                c.hidden_size / c.num_attention_heads
            }
            None => {
                return Err(bad(
                    &self.dir,
                    "config.json: hidden_size is not a multiple of num_attention_heads and head_dim is missing",
                ))
            }
        };
        for (k, v, max) in [
            ("num_hidden_layers", c.num_hidden_layers, 4096),
            ("hidden_size", c.hidden_size, 1 << 17),
            ("intermediate_size", c.intermediate_size, 1 << 20),
            ("vocab_size", c.vocab_size, 1 << 22),
            ("head_dim", head_dim, 4096),
        ] {
            if v == 0 || v > max {
                return Err(bad(
                    &self.dir,
                    format!("config.json: {k} = {v} is not a plausible size (1..={max})"),
                ));
            }
        }
        // RoPE tables hold ctx × head_dim floats: keep them under 1 GiB.
        let ctx = c.max_position_embeddings.min((1 << 28) / head_dim.max(1));
        Ok(TransformerConfig {
            n_layer: c.num_hidden_layers,
            n_head: c.num_attention_heads,
            n_kv_head: n_kv,
            head_dim,
            hidden: c.hidden_size,
            ffn: c.intermediate_size,
            eps: c.rms_norm_eps,
            rope_base: c
                .rope_theta
                .map_or(self.conventions.default_rope_base, |v| v as f32),
            rope_style: RopeStyle::Neox,
            ctx_len: ctx,
            vocab: c.vocab_size,
        })
    }

    /// Memory-maps the weight files.
    pub fn mmap(&self) -> Result<MmapedSafetensors> {
        // SAFETY: the files are only read; maspo never writes a checkpoint while reading it.
        unsafe { MmapedSafetensors::multi(&self.files) }
            .map_err(|e| bad(&self.dir, format!("reading the safetensors files: {e}")))
    }
}

/// `model.safetensors`, or the shards `model.safetensors.index.json` names (in sorted order).
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|source| EngineError::Io {
            path: index.clone(),
            source,
        })?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| bad(dir, format!("model.safetensors.index.json: {e}")))?;
        let map = v["weight_map"].as_object().ok_or_else(|| {
            bad(
                dir,
                "model.safetensors.index.json has no `weight_map` object",
            )
        })?;
        let mut files: Vec<String> = map
            .values()
            .filter_map(|f| f.as_str().map(String::from))
            .collect();
        files.sort();
        files.dedup();
        let mut out = Vec::new();
        for f in files {
            if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                return Err(bad(
                    dir,
                    format!("index names a file outside the directory: `{f}`"),
                ));
            }
            let p = dir.join(&f);
            if !p.is_file() {
                return Err(bad(
                    dir,
                    format!("shard `{f}` named by the index is missing (the download may be incomplete)"),
                ));
            }
            out.push(p);
        }
        return Ok(out);
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(bad(
        dir,
        "no model.safetensors or model.safetensors.index.json (a Hugging Face checkpoint directory has one)",
    ))
}

/// The Hugging Face name of a GGUF-named tensor.
pub fn hf_name(gguf: &str) -> String {
    let top = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return t.to_string();
    }
    let Some(rest) = gguf.strip_prefix("blk.") else {
        return gguf.to_string();
    };
    let Some((layer, t)) = rest.split_once('.') else {
        return gguf.to_string();
    };
    let (stem, suffix) = t.rsplit_once('.').unwrap_or((t, ""));
    let hf = match stem {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        other => other,
    };
    format!("model.layers.{layer}.{hf}.{suffix}")
}

/// Reads one tensor by GGUF name and checks its shape.
fn load(
    st: &MmapedSafetensors,
    dir: &Path,
    name: &str,
    dims: &[usize],
    dev: &Device,
) -> Result<Tensor> {
    let hf = hf_name(name);
    let t = st.load(&hf, dev).map_err(|e| EngineError::Tensor {
        path: dir.to_path_buf(),
        name: hf.clone(),
        reason: e.to_string(),
    })?;
    if t.dims() != dims {
        return Err(EngineError::Tensor {
            path: dir.to_path_buf(),
            name: hf,
            reason: format!("shape {:?}, expected {dims:?}", t.dims()),
        });
    }
    Ok(t)
}

fn has(st: &MmapedSafetensors, ckpt: &HfCheckpoint, name: &str) -> bool {
    // A tied checkpoint may still ship `lm_head.weight`; the config decides.
    if name == "output.weight" && ckpt.config.tie_word_embeddings {
        return false;
    }
    st.get(&hf_name(name)).is_ok()
}

/// A checkpoint read into maspo's CPU kernels (f32 matrices: bf16/f16 values widened exactly).
pub struct HfCpu<'a> {
    /// The checkpoint.
    pub ckpt: &'a HfCheckpoint,
    /// Its mapped files.
    pub st: &'a MmapedSafetensors,
}

impl WeightReader for HfCpu<'_> {
    type Mat = QMatrix;
    type Vec = Vec<f32>;

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix> {
        let t = load(self.st, &self.ckpt.dir, name, &[rows, cols], &Device::Cpu)?;
        let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(QMatrix::from_f32(rows, cols, v))
    }

    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        let t = load(self.st, &self.ckpt.dir, name, &[n], &Device::Cpu)?;
        Ok(t.to_dtype(DType::F32)?.to_vec1::<f32>()?)
    }

    fn has(&self, name: &str) -> bool {
        has(self.st, self.ckpt, name)
    }
}

/// A checkpoint read onto a candle device in the activation type.
pub struct HfDevice<'a> {
    /// The checkpoint.
    pub ckpt: &'a HfCheckpoint,
    /// Its mapped files.
    pub st: &'a MmapedSafetensors,
    /// Where the weights go.
    pub device: &'a Device,
    /// Weight and activation type.
    pub act: DType,
}

impl WeightReader for HfDevice<'_> {
    type Mat = DeviceMat;
    type Vec = Tensor;

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<DeviceMat> {
        let t = load(self.st, &self.ckpt.dir, name, &[rows, cols], self.device)?;
        Ok(DeviceMat::Dense(t.to_dtype(self.act)?))
    }

    fn vector(&self, name: &str, n: usize) -> Result<Tensor> {
        let t = load(self.st, &self.ckpt.dir, name, &[n], self.device)?;
        Ok(t.to_dtype(self.act)?)
    }

    fn has(&self, name: &str) -> bool {
        has(self.st, self.ckpt, name)
    }
}

#[cfg(test)]
mod tests {
    use super::hf_name;

    #[test]
    fn gguf_names_map_to_hugging_face_names() {
        for (g, h) in [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output.weight", "lm_head.weight"),
            ("output_norm.weight", "model.norm.weight"),
            ("blk.3.attn_q.bias", "model.layers.3.self_attn.q_proj.bias"),
            (
                "blk.0.attn_k_norm.weight",
                "model.layers.0.self_attn.k_norm.weight",
            ),
            (
                "blk.11.ffn_down.weight",
                "model.layers.11.mlp.down_proj.weight",
            ),
            (
                "blk.2.ffn_norm.weight",
                "model.layers.2.post_attention_layernorm.weight",
            ),
        ] {
            assert_eq!(hf_name(g), h);
        }
    }
}
