//! Hugging Face checkpoints (config.json + safetensors + tokenizer.json): the tiny GGUFs of
//! `tiny` exported as HF directories (names mapped, llama's Q/K un-permuted, sharded with an
//! index) must give the same tokens and logits as the GGUF, on the CPU kernels and on the device
//! path; a broken directory is a clear error.

use crate::common::heavy;
use crate::tiny::{write_tiny, TinySpec};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use maspo::engine::chat_template::{Message, CHATML_TEMPLATE};
use maspo::engine::device::DeviceSpec;
use maspo::engine::model::safetensors::hf_name;
use maspo::engine::model::{LogitRows, SeqStep};
use maspo::engine::{Engine, EngineSettings, GenRequest, Prompt};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A GGUF's metadata and its tensors as f32.
type GgufParts = (Vec<(String, gguf_file::Value)>, Vec<(String, Tensor)>);

/// Reads every tensor of a GGUF as f32, with its metadata.
fn read_gguf(path: &Path) -> GgufParts {
    let mut f = std::fs::File::open(path).unwrap();
    let c = gguf_file::Content::read(&mut f).unwrap();
    let mut names: Vec<String> = c.tensor_infos.keys().cloned().collect();
    names.sort();
    let tensors = names
        .into_iter()
        .map(|n| {
            let t = c.tensor(&mut f, &n, &Device::Cpu).unwrap();
            (n, t.dequantize(&Device::Cpu).unwrap())
        })
        .collect();
    let meta = c.metadata.into_iter().collect();
    (meta, tensors)
}

/// The same model as an f32 GGUF (what the f32 safetensors must match exactly).
fn write_f32_gguf(src: &Path, dst: &Path) {
    let (meta, tensors) = read_gguf(src);
    let q: Vec<(String, QTensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), QTensor::quantize(t, GgmlDType::F32).unwrap()))
        .collect();
    let meta: Vec<(&str, &gguf_file::Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let q: Vec<(&str, &QTensor)> = q.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut std::fs::File::create(dst).unwrap(), &meta, &q).unwrap();
}

/// GGUF `llama` stores Q/K rows permuted for interleaved RoPE; HF stores them in NEOX order.
fn unpermute(t: &Tensor, heads: usize) -> Tensor {
    let (rows, cols) = t.dims2().unwrap();
    let hd = rows / heads;
    let v = t.to_vec2::<f32>().unwrap();
    let mut out = vec![vec![0f32; cols]; rows];
    for h in 0..heads {
        for i in 0..hd / 2 {
            for s in 0..2 {
                out[h * hd + s * (hd / 2) + i] = v[h * hd + 2 * i + s].clone();
            }
        }
    }
    Tensor::new(out, &Device::Cpu).unwrap()
}

/// Exports the tiny GGUF at `gguf` as an HF checkpoint directory, in `dtype`, in two shards.
pub fn export_hf(gguf: &Path, arch: &str, dir: &Path, dtype: DType) {
    std::fs::create_dir_all(dir).unwrap();
    let (_, tensors) = read_gguf(gguf);
    let (heads, kv_heads) = (4, 2);
    let mut shards: [HashMap<String, Tensor>; 2] = [HashMap::new(), HashMap::new()];
    let mut index = serde_json::Map::new();
    for (i, (name, t)) in tensors.iter().enumerate() {
        let t = match (arch, name.rsplit('.').nth(1)) {
            ("llama", Some("attn_q")) => unpermute(t, heads),
            ("llama", Some("attn_k")) => unpermute(t, kv_heads),
            _ => t.clone(),
        };
        let shard = i % 2;
        index.insert(
            hf_name(name),
            format!("model-0000{}-of-00002.safetensors", shard + 1).into(),
        );
        shards[shard].insert(hf_name(name), t.to_dtype(dtype).unwrap());
    }
    for (s, m) in shards.iter().enumerate() {
        candle_core::safetensors::save(
            m,
            dir.join(format!("model-0000{}-of-00002.safetensors", s + 1)),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::json!({ "metadata": {}, "weight_map": index }).to_string(),
    )
    .unwrap();
    let vocab = tensors
        .iter()
        .find(|(n, _)| n == "token_embd.weight")
        .unwrap()
        .1
        .dims()[0];
    let (class, head_dim) = match arch {
        "llama" => ("LlamaForCausalLM", 16),
        "qwen2" => ("Qwen2ForCausalLM", 16),
        _ => ("Qwen3ForCausalLM", 32),
    };
    let config = serde_json::json!({
        "architectures": [class],
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 256,
        "vocab_size": vocab,
        "tie_word_embeddings": arch != "qwen2",
        "torch_dtype": "bfloat16",
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let engine = Engine::load(gguf, EngineSettings::default()).unwrap();
    engine
        .tokenizer()
        .save_json(&dir.join("tokenizer.json"))
        .unwrap();
    let tok_cfg = serde_json::json!({
        "chat_template": CHATML_TEMPLATE,
        "eos_token": "<|im_end|>",
        "bos_token": { "content": "<|endoftext|>" },
    });
    std::fs::write(dir.join("tokenizer_config.json"), tok_cfg.to_string()).unwrap();
}

fn all_logits(e: &Engine, ids: &[u32]) -> Vec<f32> {
    let m = e.model();
    let mut cache = m.new_cache();
    m.forward(&mut [SeqStep {
        tokens: ids,
        cache: &mut cache,
        logits: LogitRows::All,
    }])
    .unwrap()
    .remove(0)
}

fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn greedy(e: &Engine) -> Vec<u32> {
    let req = GenRequest::chat(
        vec![
            Message::system("sys"),
            Message::user("the theme of the thesis"),
        ],
        12,
    );
    e.generate(&[req]).remove(0).unwrap().token_ids
}

fn setup(dir: &Path, arch: &'static str) -> (PathBuf, PathBuf) {
    let q8 = dir.join(format!("{arch}-q8.gguf"));
    write_tiny(&q8, &TinySpec::new(arch));
    let f32_gguf = dir.join(format!("{arch}-f32.gguf"));
    write_f32_gguf(&q8, &f32_gguf);
    let hf = dir.join(format!("{arch}-hf"));
    export_hf(&q8, arch, &hf, DType::F32);
    (f32_gguf, hf)
}

#[test]
fn hf_checkpoints_match_the_same_weights_as_gguf_on_both_backends() {
    let _g = heavy();
    let dir = tempfile::tempdir().unwrap();
    for arch in ["llama", "qwen2", "qwen3"] {
        let (gguf, hf) = setup(dir.path(), arch);
        let a = Engine::load(&gguf, EngineSettings::default()).unwrap();
        let b = Engine::load(&hf, EngineSettings::default()).unwrap();
        assert_eq!(b.model().arch(), arch);
        assert_eq!(b.model().config().vocab, a.model().config().vocab);
        // Same tokenizer, template and stop ids.
        let prompt = Prompt::Chat(vec![Message::system("s"), Message::user("the thesis")]);
        let ids = a.prompt_ids(&prompt).unwrap();
        assert_eq!(b.prompt_ids(&prompt).unwrap(), ids);
        assert_eq!(a.stop_ids(), b.stop_ids());
        let (la, lb) = (all_logits(&a, &ids), all_logits(&b, &ids));
        let d = rel_diff(&lb, &la);
        eprintln!("{arch}: HF vs GGUF max |Δlogit| / max |logit| = {d:.2e}");
        if arch == "llama" {
            // NEOX on un-permuted rows vs interleaved on permuted ones: same math, other
            // summation order.
            assert!(d < 1e-4, "{arch}: {d}");
        } else {
            assert_eq!(la, lb, "{arch}: same f32 weights, same kernels");
        }
        assert_eq!(greedy(&a), greedy(&b), "{arch}");
        // The device path reads the checkpoint too.
        let c = Engine::load(
            &hf,
            EngineSettings {
                device: DeviceSpec::CandleCpu,
                ..EngineSettings::default()
            },
        )
        .unwrap();
        let d = rel_diff(&all_logits(&c, &ids), &lb);
        eprintln!("{arch}: HF on candle-cpu vs CPU kernels = {d:.2e}");
        // The CPU kernels keep K/V in f16 (6.6e-4 measured), the device path in f32.
        assert!(d < 3e-3, "{arch}: {d}");
        assert_eq!(greedy(&c), greedy(&b), "{arch} on candle-cpu");
        // A directory's fingerprint covers its files.
        assert_eq!(b.fingerprint().unwrap().len(), 64);
    }
    // bf16 storage loads and stays close (values rounded to 8 bits of mantissa).
    let q8 = dir.path().join("qwen3-q8.gguf");
    let bf = dir.path().join("qwen3-bf16");
    export_hf(&q8, "qwen3", &bf, DType::BF16);
    let a = Engine::load(
        &dir.path().join("qwen3-f32.gguf"),
        EngineSettings::default(),
    )
    .unwrap();
    let b = Engine::load(&bf, EngineSettings::default()).unwrap();
    let ids = a
        .tokenizer()
        .encode_plain("the theme of the thesis")
        .unwrap();
    let d = rel_diff(&all_logits(&b, &ids), &all_logits(&a, &ids));
    eprintln!("qwen3 bf16 vs f32: {d:.3}");
    assert!(d < 0.05, "{d}");
}

#[test]
fn broken_checkpoints_are_clear_errors() {
    let _g = heavy();
    let dir = tempfile::tempdir().unwrap();
    let (_, hf) = setup(dir.path(), "qwen3");
    let err = |p: &Path| {
        Engine::load(p, EngineSettings::default())
            .err()
            .expect("loading should fail")
            .to_string()
    };
    // A missing shard.
    let shard = hf.join("model-00002-of-00002.safetensors");
    let saved = std::fs::read(&shard).unwrap();
    std::fs::remove_file(&shard).unwrap();
    let e = err(&hf);
    assert!(
        e.contains("model-00002-of-00002.safetensors") && e.contains("missing"),
        "{e}"
    );
    std::fs::write(&shard, saved).unwrap();
    // An unsupported architecture, rope scaling, a missing tokenizer.
    let cfg_path = hf.join("config.json");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(
        &cfg_path,
        cfg.replace("Qwen3ForCausalLM", "GPT2LMHeadModel"),
    )
    .unwrap();
    let e = err(&hf);
    assert!(
        e.contains("GPT2LMHeadModel") && e.contains("Qwen3ForCausalLM"),
        "{e}"
    );
    let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    v["rope_scaling"] = serde_json::json!({"type": "yarn", "factor": 4.0});
    std::fs::write(&cfg_path, v.to_string()).unwrap();
    assert!(err(&hf).contains("rope_scaling"));
    std::fs::write(&cfg_path, &cfg).unwrap();
    std::fs::rename(hf.join("tokenizer.json"), hf.join("t.json")).unwrap();
    let e = err(&hf);
    assert!(e.contains("tokenizer.json") && e.contains("missing"), "{e}");
    std::fs::rename(hf.join("t.json"), hf.join("tokenizer.json")).unwrap();
    // A tensor of the wrong shape names the tensor.
    let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    v["intermediate_size"] = serde_json::json!(100);
    std::fs::write(&cfg_path, v.to_string()).unwrap();
    let e = err(&hf);
    assert!(e.contains("mlp.") && e.contains("shape"), "{e}");
    std::fs::write(&cfg_path, &cfg).unwrap();
    assert!(Engine::load(&hf, EngineSettings::default()).is_ok());
}

/// A Qwen3-style hybrid template: `enable_thinking` off (the default) closes an empty reasoning
/// block in the generation prompt; a request (the server's `chat_template_kwargs`) or the
/// engine setting can switch it on.
#[test]
fn requests_can_switch_a_hybrid_template_s_thinking() {
    let _g = heavy();
    let dir = tempfile::tempdir().unwrap();
    let (_, hf) = setup(dir.path(), "qwen3");
    let hybrid = CHATML_TEMPLATE.replace(
        "{{ '<|im_start|>assistant\n' }}",
        "{{ '<|im_start|>assistant\n' }}{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\n\n</think>\n\n' }}{% endif %}",
    );
    assert_ne!(hybrid, CHATML_TEMPLATE);
    let cfg = serde_json::json!({ "chat_template": hybrid, "eos_token": "<|im_end|>" });
    std::fs::write(hf.join("tokenizer_config.json"), cfg.to_string()).unwrap();
    let e = Engine::load(&hf, EngineSettings::default()).unwrap();
    let prompt = Prompt::Chat(vec![Message::user("hi")]);
    let off = e.prompt_ids(&prompt).unwrap();
    assert_eq!(e.prompt_ids_with(&prompt, Some(false)).unwrap(), off);
    let on = e.prompt_ids_with(&prompt, Some(true)).unwrap();
    assert!(
        on.len() < off.len(),
        "thinking on drops the empty <think> block"
    );
    let think = EngineSettings {
        thinking: true,
        ..EngineSettings::default()
    };
    let e2 = Engine::load(&hf, think).unwrap();
    assert_eq!(e2.prompt_ids(&prompt).unwrap(), on);
    assert_eq!(e2.prompt_ids_with(&prompt, Some(false)).unwrap(), off);
    // Through generate: the request's switch decides the prompt.
    let mut req = GenRequest::chat(vec![Message::user("hi")], 2);
    req.thinking = Some(true);
    let a = e.generate(std::slice::from_ref(&req)).remove(0).unwrap();
    let b = e2
        .generate(&[GenRequest::chat(vec![Message::user("hi")], 2)])
        .remove(0)
        .unwrap();
    assert_eq!(a.token_ids, b.token_ids);
    assert_eq!(a.prompt_tokens, on.len());
}
