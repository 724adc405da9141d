//! Tiny GGUF files written by the tests (random weights, both architectures): the model code,
//! tokenizer-from-GGUF, batching invariants and every load-time error path, without downloads.

use crate::common::heavy;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use maspo::engine::chat_template::Message;
use maspo::engine::device::DeviceSpec;
use maspo::engine::sampling::{SamplingParams, SplitMix64};
use maspo::engine::{Engine, EngineError, EngineSettings, GenRequest, Prompt};
use std::path::{Path, PathBuf};

const HIDDEN: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const FFN: usize = 96;
const LAYERS: usize = 2;

/// GPT-2's byte → printable-char table (the alphabet of byte-level BPE vocabularies).
fn byte_alphabet() -> Vec<String> {
    let direct: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut out = vec![String::new(); 256];
    let mut extra = 0;
    for b in 0..256u32 {
        let c = if direct.contains(&b) {
            b
        } else {
            extra += 1;
            255 + extra
        };
        out[b as usize] = char::from_u32(c).unwrap().to_string();
    }
    out
}

/// What to write; fields let tests break the file on purpose.
pub struct TinySpec {
    pub arch: &'static str,
    pub drop_keys: Vec<&'static str>,
    pub seed: u64,
}

impl TinySpec {
    pub fn new(arch: &'static str) -> Self {
        Self {
            arch,
            drop_keys: Vec::new(),
            seed: 1,
        }
    }
}

fn random(rng: &mut SplitMix64, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * scale)
        .collect()
}

/// Writes a tiny model of `spec.arch` (llama or qwen2 layout) to `path`.
pub fn write_tiny(path: &Path, spec: &TinySpec) {
    let dev = Device::Cpu;
    let mut rng = SplitMix64::new(spec.seed);
    let mut tokens = byte_alphabet();
    let merges = ["Ġ t", "h e", "Ġt he"];
    tokens.extend(["Ġt", "he", "Ġthe"].map(String::from));
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    tokens.extend(specials.map(String::from));
    let vocab = tokens.len();
    let mut types = vec![1i32; vocab];
    for t in &mut types[vocab - 3..] {
        *t = 3;
    }
    let q8 = |rows: usize, cols: usize, rng: &mut SplitMix64| {
        let t = Tensor::from_vec(random(rng, rows * cols, 0.3), (rows, cols), &dev).unwrap();
        QTensor::quantize(&t, GgmlDType::Q8_0).unwrap()
    };
    let f32v = |n: usize, rng: &mut SplitMix64, base: f32| {
        let v: Vec<f32> = random(rng, n, 0.1).into_iter().map(|x| x + base).collect();
        QTensor::quantize(&Tensor::from_vec(v, n, &dev).unwrap(), GgmlDType::F32).unwrap()
    };
    // Qwen3's heads are wider than hidden / heads (`attention.key_length`).
    let head_dim = if spec.arch == "qwen3" {
        2 * HIDDEN / HEADS
    } else {
        HIDDEN / HEADS
    };
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), q8(vocab, HIDDEN, &mut rng)),
        ("output_norm.weight".into(), f32v(HIDDEN, &mut rng, 1.0)),
    ];
    for l in 0..LAYERS {
        let n = |t: &str| format!("blk.{l}.{t}");
        tensors.push((n("attn_norm.weight"), f32v(HIDDEN, &mut rng, 1.0)));
        tensors.push((n("attn_q.weight"), q8(HEADS * head_dim, HIDDEN, &mut rng)));
        tensors.push((
            n("attn_k.weight"),
            q8(KV_HEADS * head_dim, HIDDEN, &mut rng),
        ));
        tensors.push((
            n("attn_v.weight"),
            q8(KV_HEADS * head_dim, HIDDEN, &mut rng),
        ));
        tensors.push((
            n("attn_output.weight"),
            q8(HIDDEN, HEADS * head_dim, &mut rng),
        ));
        tensors.push((n("ffn_norm.weight"), f32v(HIDDEN, &mut rng, 1.0)));
        tensors.push((n("ffn_gate.weight"), q8(FFN, HIDDEN, &mut rng)));
        tensors.push((n("ffn_up.weight"), q8(FFN, HIDDEN, &mut rng)));
        tensors.push((n("ffn_down.weight"), q8(HIDDEN, FFN, &mut rng)));
        if spec.arch == "qwen3" {
            tensors.push((n("attn_q_norm.weight"), f32v(head_dim, &mut rng, 1.0)));
            tensors.push((n("attn_k_norm.weight"), f32v(head_dim, &mut rng, 1.0)));
        }
        if spec.arch == "qwen2" {
            tensors.push((n("attn_q.bias"), f32v(HEADS * head_dim, &mut rng, 0.0)));
            tensors.push((n("attn_k.bias"), f32v(KV_HEADS * head_dim, &mut rng, 0.0)));
            tensors.push((n("attn_v.bias"), f32v(KV_HEADS * head_dim, &mut rng, 0.0)));
        }
    }
    if spec.arch == "qwen2" {
        tensors.push(("output.weight".into(), q8(vocab, HIDDEN, &mut rng)));
    }
    use gguf_file::Value as V;
    let a = spec.arch;
    let strs = |v: &[String]| V::Array(v.iter().map(|s| V::String(s.clone())).collect());
    let mut meta: Vec<(String, V)> = vec![
        ("general.architecture".into(), V::String(a.into())),
        (format!("{a}.block_count"), V::U32(LAYERS as u32)),
        (format!("{a}.context_length"), V::U32(256)),
        (format!("{a}.embedding_length"), V::U32(HIDDEN as u32)),
        (format!("{a}.feed_forward_length"), V::U32(FFN as u32)),
        (format!("{a}.attention.head_count"), V::U32(HEADS as u32)),
        (
            format!("{a}.attention.head_count_kv"),
            V::U32(KV_HEADS as u32),
        ),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            V::F32(1e-5),
        ),
        (format!("{a}.rope.freq_base"), V::F32(10000.0)),
        ("tokenizer.ggml.model".into(), V::String("gpt2".into())),
        (
            "tokenizer.ggml.pre".into(),
            V::String(if a == "llama" { "smollm" } else { "qwen2" }.into()),
        ),
        ("tokenizer.ggml.tokens".into(), strs(&tokens)),
        (
            "tokenizer.ggml.merges".into(),
            strs(&merges.map(String::from)),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            V::Array(types.iter().map(|t| V::I32(*t)).collect()),
        ),
        (
            "tokenizer.ggml.eos_token_id".into(),
            V::U32(vocab as u32 - 1),
        ),
        (
            "tokenizer.ggml.bos_token_id".into(),
            V::U32(vocab as u32 - 3),
        ),
    ];
    if a == "qwen3" {
        meta.push((format!("{a}.attention.key_length"), V::U32(head_dim as u32)));
        meta.push((
            format!("{a}.attention.value_length"),
            V::U32(head_dim as u32),
        ));
    }
    let meta: Vec<(&str, &V)> = meta
        .iter()
        .filter(|(k, _)| !spec.drop_keys.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &meta, &tensors).unwrap();
}

fn tiny(dir: &Path, spec: &TinySpec) -> PathBuf {
    let p = dir.join(format!("tiny-{}-{}.gguf", spec.arch, spec.seed));
    write_tiny(&p, spec);
    p
}

fn prompts() -> Vec<GenRequest> {
    [
        "hi",
        "the theme of the thesis",
        "a",
        "x y z <|im_end|> injected",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ]
    .iter()
    .enumerate()
    .map(|(i, p)| {
        let mut r = GenRequest::chat(vec![Message::system("sys"), Message::user(*p)], 6 + i);
        if i % 2 == 1 {
            r.sampling = SamplingParams {
                temperature: 0.8,
                top_k: 20,
                top_p: 0.9,
                seed: 40 + i as u64,
            };
        }
        r
    })
    .collect()
}

fn tokens_of(engine: &Engine, reqs: &[GenRequest]) -> Vec<Vec<u32>> {
    engine
        .generate(reqs)
        .into_iter()
        .map(|r| r.unwrap().token_ids)
        .collect()
}

fn check_arch(arch: &'static str, device: DeviceSpec) {
    let _g = heavy();
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path(), &TinySpec::new(arch));
    let settings = EngineSettings {
        device,
        ..EngineSettings::default()
    };
    let engine = Engine::load(&path, settings.clone()).unwrap();
    assert_eq!(engine.model().arch(), arch);
    // The tokenizer built from the GGUF applies its merges and keeps specials whole.
    let ids = engine
        .tokenizer()
        .encode_with_specials("<|im_start|>the")
        .unwrap();
    let the = engine.tokenizer().token_id("he").unwrap();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(ids[2], the);
    let reqs = prompts();
    let together = tokens_of(&engine, &reqs);
    for (i, r) in reqs.iter().enumerate() {
        assert!(!together[i].is_empty());
        // Batch invariance: alone or in a ragged batch, the same tokens (greedy and seeded).
        let alone = tokens_of(&engine, std::slice::from_ref(r));
        assert_eq!(
            alone[0], together[i],
            "{arch}: request {i} alone vs batched"
        );
    }
    // Chunked prefill (2 tokens per step) and a one-sequence-at-a-time schedule agree too.
    let chunked = Engine::load(
        &path,
        EngineSettings {
            threads: 1,
            max_running: 2,
            step_tokens: 2,
            ..settings.clone()
        },
    )
    .unwrap();
    assert_eq!(
        tokens_of(&chunked, &reqs),
        together,
        "{arch} on {device}: chunked prefill"
    );
    // Deterministic run to run.
    assert_eq!(tokens_of(&engine, &reqs), together);
}

#[test]
fn tiny_llama_loads_runs_and_is_batch_invariant() {
    check_arch("llama", DeviceSpec::Cpu);
}

#[test]
fn tiny_qwen2_loads_runs_and_is_batch_invariant() {
    check_arch("qwen2", DeviceSpec::Cpu);
}

#[test]
fn tiny_qwen3_loads_runs_and_is_batch_invariant() {
    check_arch("qwen3", DeviceSpec::Cpu);
}

/// A plain f32 forward written from the architectures' definitions (no KV cache, no packing,
/// no quantized activations), over the same dequantized weights: the engine's logits must
/// match it for every architecture — for `llama` and `qwen2` this also checks the reference
/// against the engine that matches llama.cpp on the real models (`golden`).
/// A deliberate mistake in the reference, to show the comparison catches one.
#[derive(Clone, Copy, PartialEq)]
enum Mistake {
    None,
    /// Skip Qwen3's per-head q/k norm.
    NoQkNorm,
    /// Pair RoPE dimensions the llama way on a NEOX model.
    InterleavedRope,
}

fn reference_logits(path: &Path, tokens: &[u32], mistake: Mistake) -> Vec<Vec<f32>> {
    let mut f = std::fs::File::open(path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let arch = content.metadata["general.architecture"]
        .to_string()
        .unwrap()
        .clone();
    let u =
        |k: &str| -> usize { content.metadata[&format!("{arch}.{k}")].to_u32().unwrap() as usize };
    let (d, n_head, n_kv, layers) = (
        u("embedding_length"),
        u("attention.head_count"),
        u("attention.head_count_kv"),
        u("block_count"),
    );
    let e = content
        .metadata
        .get(&format!("{arch}.attention.key_length"))
        .map_or(d / n_head, |v| v.to_u32().unwrap() as usize);
    let base = content.metadata[&format!("{arch}.rope.freq_base")]
        .to_f32()
        .unwrap();
    let eps = content.metadata[&format!("{arch}.attention.layer_norm_rms_epsilon")]
        .to_f32()
        .unwrap() as f64;
    let mut w = |name: &str| -> Option<Vec<f32>> {
        content.tensor_infos.get(name)?;
        let t = content.tensor(&mut f, name, &Device::Cpu).unwrap();
        Some(
            t.dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
        )
    };
    // y = W x for W stored (rows, cols) row-major.
    let mv = |m: &[f32], x: &[f32]| -> Vec<f32> {
        m.chunks_exact(x.len())
            .map(|r| r.iter().zip(x).map(|(a, b)| a * b).sum())
            .collect()
    };
    let rms = |x: &[f32], g: &[f32]| -> Vec<f32> {
        x.chunks_exact(g.len())
            .flat_map(|c| {
                let ss: f64 = c.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / c.len() as f64;
                let s = (1.0 / (ss + eps).sqrt()) as f32;
                c.iter()
                    .zip(g)
                    .map(move |(v, g)| v * s * g)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    // RoPE on one head: llama pairs (2i, 2i+1), the NEOX convention (qwen2, qwen3) (i, i+e/2).
    let rope = |h: &mut [f32], p: usize| {
        for i in 0..e / 2 {
            let theta = p as f32 * base.powf(-2.0 * i as f32 / e as f32);
            let (s, c) = theta.sin_cos();
            let interleaved = arch == "llama" || mistake == Mistake::InterleavedRope;
            let (a, b) = if interleaved {
                (2 * i, 2 * i + 1)
            } else {
                (i, i + e / 2)
            };
            let (x, y) = (h[a], h[b]);
            h[a] = x * c - y * s;
            h[b] = x * s + y * c;
        }
    };
    let embed = w("token_embd.weight").unwrap();
    let head = w("output.weight").unwrap_or_else(|| embed.clone());
    let mut xs: Vec<Vec<f32>> = tokens
        .iter()
        .map(|&t| embed[t as usize * d..(t as usize + 1) * d].to_vec())
        .collect();
    for l in 0..layers {
        let n = |t: &str| format!("blk.{l}.{t}");
        let [an, wq, wk, wv, wo, fnorm, wg, wu, wd] = [
            "attn_norm.weight",
            "attn_q.weight",
            "attn_k.weight",
            "attn_v.weight",
            "attn_output.weight",
            "ffn_norm.weight",
            "ffn_gate.weight",
            "ffn_up.weight",
            "ffn_down.weight",
        ]
        .map(|t| w(&n(t)).unwrap());
        let bias = |t: &str, w: &mut dyn FnMut(&str) -> Option<Vec<f32>>, v: &mut Vec<f32>| {
            if let Some(b) = w(&n(t)) {
                v.iter_mut().zip(b).for_each(|(v, b)| *v += b);
            }
        };
        let (qn, kn) = (w(&n("attn_q_norm.weight")), w(&n("attn_k_norm.weight")));
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (p, x) in xs.iter().enumerate() {
            let h = rms(x, &an);
            let (mut q, mut k, mut v) = (mv(&wq, &h), mv(&wk, &h), mv(&wv, &h));
            bias("attn_q.bias", &mut w, &mut q);
            bias("attn_k.bias", &mut w, &mut k);
            bias("attn_v.bias", &mut w, &mut v);
            if let (Some(qn), Some(kn), false) = (&qn, &kn, mistake == Mistake::NoQkNorm) {
                q = rms(&q, qn);
                k = rms(&k, kn);
            }
            q.chunks_exact_mut(e).for_each(|h| rope(h, p));
            k.chunks_exact_mut(e).for_each(|h| rope(h, p));
            qs.push(q);
            ks.push(k);
            vs.push(v);
        }
        for p in 0..xs.len() {
            let mut att = vec![0f32; n_head * e];
            for hq in 0..n_head {
                let hk = hq / (n_head / n_kv);
                let q = &qs[p][hq * e..(hq + 1) * e];
                let scores: Vec<f32> = (0..=p)
                    .map(|j| {
                        let k = &ks[j][hk * e..(hk + 1) * e];
                        q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() / (e as f32).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let ex: Vec<f32> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f32 = ex.iter().sum();
                for (j, a) in ex.iter().enumerate() {
                    let v = &vs[j][hk * e..(hk + 1) * e];
                    for (o, v) in att[hq * e..(hq + 1) * e].iter_mut().zip(v) {
                        *o += a / z * v;
                    }
                }
            }
            let o = mv(&wo, &att);
            xs[p].iter_mut().zip(o).for_each(|(x, o)| *x += o);
            let h = rms(&xs[p], &fnorm);
            let (g, up) = (mv(&wg, &h), mv(&wu, &h));
            let act: Vec<f32> = g
                .iter()
                .zip(&up)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let down = mv(&wd, &act);
            xs[p].iter_mut().zip(down).for_each(|(x, o)| *x += o);
        }
    }
    let norm = w("output_norm.weight").unwrap();
    xs.iter().map(|x| mv(&head, &rms(x, &norm))).collect()
}

/// Max |Δlogit| / max |logit| of the engine against the reference, asserting top-1 agreement
/// (unless the reference's top two are within 2% of the scale) when `strict`.
fn engine_vs_reference(path: &Path, mistake: Mistake, strict: bool, device: DeviceSpec) -> f32 {
    let settings = EngineSettings {
        device,
        ..EngineSettings::default()
    };
    let engine = Engine::load(path, settings).unwrap();
    let arch = engine.model().arch();
    let tokens: Vec<u32> = engine
        .tokenizer()
        .encode_plain("the theme of the thesis is the")
        .unwrap();
    assert!(tokens.len() > 8, "{tokens:?}");
    let t = engine.model();
    let mut cache = t.new_cache();
    let got = t
        .forward(&mut [maspo::engine::model::SeqStep {
            tokens: &tokens,
            cache: &mut cache,
            logits: maspo::engine::model::LogitRows::All,
        }])
        .unwrap()
        .remove(0);
    let want = reference_logits(path, &tokens, mistake);
    let vocab = want[0].len();
    let mut worst = 0f32;
    for (p, want) in want.iter().enumerate() {
        let got = &got[p * vocab..(p + 1) * vocab];
        let scale = want.iter().map(|v| v.abs()).fold(0f32, f32::max);
        let diff = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        worst = worst.max(diff / scale);
        let top = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
        let (tg, tw) = (top(got), top(want));
        assert!(
            !strict || tg == tw || (want[tw] - want[tg]).abs() <= 0.02 * scale,
            "{arch} position {p}: top-1 {tg} vs reference {tw}"
        );
    }
    worst
}

#[test]
fn every_architecture_matches_a_plain_reference_forward() {
    let _g = heavy();
    let dir = tempfile::tempdir().unwrap();
    for arch in ["llama", "qwen2", "qwen3"] {
        let path = tiny(dir.path(), &TinySpec::new(arch));
        // The engine quantizes activations to 8 bits for its Q8_0 matmuls (as llama.cpp does);
        // the reference stays in f32: 3–5% of the logits' scale when measured, for the two
        // architectures that match llama.cpp on real models as for qwen3.
        let worst = engine_vs_reference(&path, Mistake::None, true, DeviceSpec::Cpu);
        eprintln!("{arch}: max |Δlogit| / max |logit| = {worst:.4}");
        assert!(worst < 0.08, "{arch}: max |Δlogit| / max |logit| = {worst}");
    }
    // The comparison catches a wrong convention: each of these mistakes in the reference is far
    // outside the tolerance.
    let path = tiny(dir.path(), &TinySpec::new("qwen3"));
    for mistake in [Mistake::NoQkNorm, Mistake::InterleavedRope] {
        let worst = engine_vs_reference(&path, mistake, false, DeviceSpec::Cpu);
        eprintln!("qwen3 with a mistaken reference: {worst:.4}");
        assert!(worst > 0.24, "a mistaken reference still matched: {worst}");
    }
}

/// The device forward (candle tensors: what `--device cuda` runs), on candle's CPU backend:
/// every architecture matches the plain reference as the CPU kernels do, and the engine on it
/// keeps the batching invariants (alone vs ragged batch, chunked prefill, prefix reuse, run to
/// run) with its K/V in device tensors.
#[test]
fn the_device_forward_matches_the_reference_and_keeps_the_engine_invariants() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["llama", "qwen2", "qwen3"] {
        let path = tiny(dir.path(), &TinySpec::new(arch));
        let worst = {
            let _g = heavy();
            engine_vs_reference(&path, Mistake::None, true, DeviceSpec::CandleCpu)
        };
        eprintln!("{arch} on candle-cpu: max |Δlogit| / max |logit| = {worst:.4}");
        assert!(worst < 0.08, "{arch}: max |Δlogit| / max |logit| = {worst}");
        check_arch(arch, DeviceSpec::CandleCpu);
    }
}

#[test]
fn a_tokenizer_json_beside_the_model_replaces_the_gguf_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path(), &TinySpec::new("llama"));
    let engine = Engine::load(&path, EngineSettings::default()).unwrap();
    let merged = engine.tokenizer().encode_plain(" the").unwrap();
    assert_eq!(merged.len(), 1, "the GGUF merges make ' the' one token");
    // Export, drop the merges, and put it beside the model: the file must win.
    let json_path = dir.path().join("tokenizer.json");
    engine.tokenizer().save_json(&json_path).unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    json["model"]["merges"] = serde_json::json!([]);
    std::fs::write(&json_path, json.to_string()).unwrap();
    let engine = Engine::load(&path, EngineSettings::default()).unwrap();
    assert_eq!(
        engine.tokenizer().encode_plain(" the").unwrap().len(),
        4,
        "bytes only without merges"
    );
    // A broken tokenizer.json is named in the error.
    std::fs::write(&json_path, "{not json").unwrap();
    let err = Engine::load(&path, EngineSettings::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
}

#[test]
fn prompt_over_context_is_a_per_request_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path(), &TinySpec::new("llama"));
    let engine = Engine::load(&path, EngineSettings::default()).unwrap();
    let long = GenRequest::chat(vec![Message::user("x ".repeat(400))], 4);
    let short = GenRequest::chat(vec![Message::user("hi")], 4);
    let out = engine.generate(&[long, short]);
    let err = out[0].as_ref().unwrap_err().to_string();
    assert!(err.contains("exceeds the context length 256"), "{err}");
    assert!(out[1].is_ok());
    let empty = engine.generate(&[GenRequest {
        prompt: Prompt::Tokens(vec![]),
        ..GenRequest::chat(vec![], 1)
    }]);
    assert!(empty[0].as_ref().unwrap_err().to_string().contains("empty"));
}

#[test]
fn missing_file_names_the_path_and_the_fix() {
    let err = Engine::load(
        Path::new("/nonexistent/model.gguf"),
        EngineSettings::default(),
    )
    .err()
    .unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/model.gguf") && msg.contains("maspo models fetch"),
        "{msg}"
    );
}

#[test]
fn truncated_gguf_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path(), &TinySpec::new("llama"));
    let bytes = std::fs::read(&path).unwrap();
    for cut in [10, 2000, bytes.len() - 100] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = Engine::load(&path, EngineSettings::default())
            .err()
            .unwrap();
        assert!(
            matches!(err, EngineError::BadGguf { .. }),
            "cut at {cut}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("fetch again"),
            "{msg}"
        );
    }
}

#[test]
fn unknown_architecture_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path(), &TinySpec::new("mamba"));
    let msg = Engine::load(&path, EngineSettings::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("`mamba`") && msg.contains("llama, qwen2, qwen3"),
        "{msg}"
    );
}

#[test]
fn missing_metadata_keys_are_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TinySpec {
        drop_keys: vec!["llama.block_count", "llama.embedding_length"],
        ..TinySpec::new("llama")
    };
    let path = tiny(dir.path(), &spec);
    let msg = Engine::load(&path, EngineSettings::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("llama.block_count") && msg.contains("llama.embedding_length"),
        "{msg}"
    );
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    let spec = TinySpec {
        drop_keys: vec!["tokenizer.ggml.tokens"],
        ..TinySpec::new("qwen2")
    };
    let path = tiny(dir.path(), &spec);
    let msg = Engine::load(&path, EngineSettings::default())
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("tokenizer.ggml.tokens"), "{msg}");
}
