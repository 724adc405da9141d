//! The in-process inference engine: load a GGUF (weights, tokenizer, chat template) and run many
//! generation requests at once.
//!
//! Owns everything that touches weights or token ids. The public surface is [`Engine`]:
//! `generate(&[GenRequest]) -> Vec<Result<Completion>>`, blocking, one engine per process, with
//! concurrency coming from batching inside (never from an async runtime).

pub mod chat_template;
pub mod completion_cache;
pub mod cpu;
pub mod device;
pub mod error;
mod generate;
pub mod gguf;
mod gguf_diagnose;
pub mod kv;
pub mod model;
pub mod prefix_cache;
pub mod request;
pub mod sampling;
mod score;
pub mod stop;
pub mod tokenizer;

use chat_template::{ChatTemplate, Message, CHATML_TEMPLATE};
use completion_cache::{CompletionCache, CompletionStats};
pub use error::{EngineError, Result};
pub use generate::Intake;
use gguf::GgufFile;
use model::Model;
use prefix_cache::{PrefixCache, PrefixStats};
pub use request::{Completion, GenRequest, Prompt, StopReason, TokenLogprob};
pub use score::Scored;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use tokenizer::Tokenizer;

/// Engine options (resolved; the CLI and config files fill them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// Compute threads (0 = every available core).
    pub threads: usize,
    /// Most sequences decoded together in one step.
    pub max_running: usize,
    /// Most tokens (decode + prefill chunks) in one forward step; bounds activation memory.
    pub step_tokens: usize,
    /// Memory for reusable prefix KV, in MiB (0 disables prefix reuse).
    pub prefix_cache_mb: usize,
    /// Memory for the KV of sequences in flight, in MiB (0: unbounded). A sequence is admitted
    /// only while the worst case of all running ones (prompt plus max new tokens) fits, and a
    /// request that cannot fit alone is refused before anything is allocated.
    pub kv_mb: usize,
    /// Directory of the persistent completion cache (`None` disables it).
    pub completion_cache_dir: Option<PathBuf>,
    /// Renders chat prompts with `enable_thinking = true` (hybrid-thinking templates such as
    /// Qwen3's open a reasoning block); off by default, as the paper runs Qwen3 non-thinking.
    /// Templates without the switch ignore it.
    pub thinking: bool,
    /// Where the forward runs: `cpu` (maspo's kernels), `cuda[:N]` (candle's CUDA backend;
    /// needs a build with the `cuda` feature) or `candle-cpu` (the device code on the host).
    pub device: device::DeviceSpec,
}

impl Default for EngineSettings {
    fn default() -> Self {
        // docs/design/engine.md §2.5: throughput keeps rising to ~64 sequences on 2 cores.
        Self {
            threads: 0,
            max_running: 64,
            step_tokens: 512,
            prefix_cache_mb: 2048,
            kv_mb: 4096,
            completion_cache_dir: None,
            thinking: false,
            device: device::DeviceSpec::Cpu,
        }
    }
}

/// Compute threads for a setting (0 = every available core).
fn resolve_threads(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// A loaded model ready to generate.
pub struct Engine {
    model: Model,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    stop_ids: Vec<u32>,
    banned_ids: Vec<u32>,
    /// Text of every control token (non-empty), to spot it inside message contents.
    control_texts: Vec<String>,
    /// `banned_ids` plus the stop ids, for `ignore_eos` requests.
    no_eos_banned: Vec<u32>,
    settings: EngineSettings,
    path: PathBuf,
    prefix_cache: Mutex<PrefixCache>,
    completion_cache: Option<CompletionCache>,
    fingerprint: OnceLock<String>,
    /// The device backend's name for completion-cache keys (`None`: the CPU kernels).
    backend_id: Option<String>,
    stats: Mutex<EngineStats>,
}

/// Work counters of the generation loop (since load or the last reset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct EngineStats {
    /// Forward steps run.
    pub steps: u64,
    /// Prompt tokens computed (prefix-cache hits excluded).
    pub prefill_tokens: u64,
    /// Tokens generated.
    pub decode_tokens: u64,
    /// Seconds spent in forward steps.
    pub forward_secs: f64,
    /// Tokens generated in steps that had no prefill work (pure decode).
    pub decode_only_tokens: u64,
    /// Seconds of those pure-decode steps, sampling included.
    pub decode_only_secs: f64,
    /// Most sequences in one generation step.
    pub peak_running: u64,
    /// Most KV bytes held privately by the sequences of one step (shared prefixes excluded:
    /// the prefix cache bounds those).
    pub peak_kv_bytes: u64,
}

/// The engine's memory under its settings: fixed weights, bounded KV, bounded prefix cache and
/// the activations of one forward step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MemoryPlan {
    /// The model file (weights dominate it).
    pub weights_bytes: u64,
    /// KV per token.
    pub kv_bytes_per_token: usize,
    /// Bound on the KV of sequences in flight (`None`: unbounded).
    pub kv_budget_bytes: Option<u64>,
    /// Bound on the prefix cache.
    pub prefix_cache_bytes: u64,
    /// Activations of one forward step at the step-token budget (attention scratch excluded).
    pub step_bytes: u64,
    /// The step-token budget.
    pub step_tokens: usize,
}

impl std::fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MIB: f64 = (1u64 << 20) as f64;
        let mib = |b: u64| b as f64 / MIB;
        write!(f, "weights {:.0} MiB + KV ", mib(self.weights_bytes))?;
        match self.kv_budget_bytes {
            Some(b) => write!(
                f,
                "≤ {:.0} MiB ({:.1} KiB/token, {} tokens in flight)",
                mib(b),
                self.kv_bytes_per_token as f64 / 1024.0,
                b / self.kv_bytes_per_token.max(1) as u64
            )?,
            None => write!(
                f,
                "unbounded ({:.1} KiB/token)",
                self.kv_bytes_per_token as f64 / 1024.0
            )?,
        }
        write!(
            f,
            " + prefix cache ≤ {:.0} MiB + activations ≈ {:.0} MiB ({} tokens/step)",
            mib(self.prefix_cache_bytes),
            mib(self.step_bytes),
            self.step_tokens
        )?;
        if let Some(b) = self.kv_budget_bytes {
            let total = self.weights_bytes + b + self.prefix_cache_bytes + self.step_bytes;
            write!(f, " = ≤ {:.0} MiB", mib(total))?;
        }
        Ok(())
    }
}

/// A streamed piece of output.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamDelta<'a> {
    /// Index of the request in the submitted slice.
    pub request: usize,
    /// Newly final text.
    pub text: &'a str,
}

impl Engine {
    /// Loads a GGUF model file (metadata is checked first, then weights, tokenizer and template)
    /// or, given a directory, a Hugging Face checkpoint ([`Engine::load_hf`]).
    pub fn load(path: &Path, settings: EngineSettings) -> Result<Self> {
        if path.is_dir() {
            return Self::load_hf(path, settings);
        }
        let gguf = GgufFile::open(path)?;
        let threads = resolve_threads(settings.threads);
        let model = Model::load_on(&gguf, threads, settings.device)?;
        let tokenizer = Tokenizer::load(&gguf)?;
        // A GGUF without a template gets plain ChatML (documented fallback, not a guess by name).
        let source = gguf
            .opt_str("tokenizer.chat_template")
            .unwrap_or_else(|| CHATML_TEMPLATE.to_string());
        Self::assemble(
            model,
            tokenizer,
            &source,
            settings,
            path.to_path_buf(),
            None,
        )
    }

    /// Loads a Hugging Face checkpoint directory (`config.json`, safetensors weights,
    /// `tokenizer.json`, the chat template of `tokenizer_config.json`; ChatML when it has none).
    pub fn load_hf(dir: &Path, settings: EngineSettings) -> Result<Self> {
        let ckpt = model::safetensors::HfCheckpoint::open(dir)?;
        let config_eos = match &ckpt.config.eos_token_id {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|v| v as u32),
            Some(serde_json::Value::Array(a)) => {
                a.first().and_then(|v| v.as_u64()).map(|v| v as u32)
            }
            _ => None,
        };
        let (tokenizer, template) = Tokenizer::from_hf_dir(dir, config_eos)?;
        let model = Model::load_hf(&ckpt, resolve_threads(settings.threads), settings.device)?;
        let source = template.unwrap_or_else(|| CHATML_TEMPLATE.to_string());
        Self::assemble(model, tokenizer, &source, settings, dir.to_path_buf(), None)
    }

    /// A synthetic model (`shape` with weights from `seed`, built in memory: see
    /// [`model::synthetic`]) with a byte-level tokenizer and ChatML: for benchmarks and parity
    /// checks where no checkpoint can be downloaded. Its path reads `synthetic:SHAPE:SEED`.
    pub fn synthetic(shape: &str, seed: u64, settings: EngineSettings) -> Result<Self> {
        let shape = model::synthetic::Shape::named(shape)?;
        let model = Model::synthetic(
            shape,
            seed,
            resolve_threads(settings.threads),
            settings.device,
        )?;
        let tokenizer = Tokenizer::byte_level(shape.vocab)?;
        let label = format!("synthetic:{}:{seed}", shape.name);
        let fingerprint = format!("{:016x}", crate::rng::str_seed(&label));
        Self::assemble(
            model,
            tokenizer,
            CHATML_TEMPLATE,
            settings,
            PathBuf::from(label),
            Some(fingerprint),
        )
    }

    fn assemble(
        model: Model,
        tokenizer: Tokenizer,
        source: &str,
        settings: EngineSettings,
        path: PathBuf,
        fingerprint: Option<String>,
    ) -> Result<Self> {
        let token_str = |id: Option<u32>| {
            id.and_then(|i| tokenizer.decode(&[i]).ok())
                .unwrap_or_default()
        };
        let (bos, eos) = (token_str(tokenizer.bos_id), token_str(tokenizer.eos_id));
        let template = ChatTemplate::new(source, &bos, &eos)?.with_thinking(settings.thinking);
        let control_texts: Vec<String> = tokenizer
            .control_ids
            .iter()
            .filter_map(|&i| tokenizer.decode(&[i]).ok())
            .filter(|t| !t.is_empty())
            .collect();
        // Stop on the template's end-of-turn token and on the file's eos (docs/design/engine.md §2.7).
        let mut stop_ids: Vec<u32> = template
            .end_of_turn_markers(&control_texts)
            .iter()
            .filter_map(|s| tokenizer.token_id(s))
            .collect();
        stop_ids.extend(tokenizer.eos_id);
        stop_ids.extend(tokenizer.token_id("<|endoftext|>"));
        stop_ids.sort_unstable();
        stop_ids.dedup();
        let banned_ids = tokenizer.unused_ids.clone();
        let mut no_eos_banned = banned_ids.clone();
        no_eos_banned.extend(&stop_ids);
        let backend_id = model.backend_id();
        let prefix_cache = Mutex::new(PrefixCache::new(settings.prefix_cache_mb << 20));
        let completion_cache = settings
            .completion_cache_dir
            .as_ref()
            .map(CompletionCache::new);
        Ok(Self {
            model,
            tokenizer,
            template,
            stop_ids,
            banned_ids,
            control_texts,
            no_eos_banned,
            settings,
            path,
            prefix_cache,
            completion_cache,
            fingerprint: fingerprint.map_or_else(OnceLock::new, OnceLock::from),
            backend_id,
            stats: Mutex::new(EngineStats::default()),
        })
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The settings the engine was loaded with.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Bytes of KV one token takes (keys and values of every layer: f16 on the CPU kernels,
    /// the activation type on a device).
    pub fn kv_bytes_per_token(&self) -> usize {
        let c = &self.model.config();
        c.n_layer * 2 * c.n_kv_head * c.head_dim * self.model.kv_elem_bytes()
    }

    /// Bytes of KV `tokens` positions take.
    pub fn kv_bytes(&self, tokens: usize) -> usize {
        tokens.saturating_mul(self.kv_bytes_per_token())
    }

    /// The KV budget of sequences in flight, in bytes (`None`: unbounded).
    pub fn kv_budget_bytes(&self) -> Option<usize> {
        (self.settings.kv_mb > 0).then_some(self.settings.kv_mb.saturating_mul(1 << 20))
    }

    /// Refuses a request whose `tokens` positions of KV cannot fit the budget even alone.
    pub(crate) fn check_kv(&self, tokens: usize) -> Result<()> {
        match self.kv_budget_bytes() {
            Some(budget) if self.kv_bytes(tokens) > budget => Err(EngineError::KvBudget {
                tokens,
                need_mib: self.kv_bytes(tokens).div_ceil(1 << 20),
                budget_mib: self.settings.kv_mb,
            }),
            _ => Ok(()),
        }
    }

    /// What the engine may hold in memory under its settings (reported when a command starts).
    pub fn memory_plan(&self) -> MemoryPlan {
        let c = &self.model.config();
        // Per token of a forward step: the residual, normed copy, q/k/v, attention output and
        // the MLP's gate, up and product rows, in f32.
        let per_token = (4 * c.hidden + 2 * c.n_kv_head * c.head_dim + 3 * c.ffn) * 4;
        MemoryPlan {
            weights_bytes: std::fs::metadata(&self.path)
                .map_or(self.model.decode_weight_bytes() as u64, |m| m.len()),
            kv_bytes_per_token: self.kv_bytes_per_token(),
            kv_budget_bytes: self.kv_budget_bytes().map(|b| b as u64),
            prefix_cache_bytes: (self.settings.prefix_cache_mb as u64) << 20,
            step_bytes: (self.settings.step_tokens.max(1) * per_token) as u64,
            step_tokens: self.settings.step_tokens.max(1),
        }
    }

    /// sha256 of the model file (computed once, on first use).
    pub fn fingerprint(&self) -> Result<&str> {
        if let Some(f) = self.fingerprint.get() {
            return Ok(f);
        }
        let io = |source| EngineError::Io {
            path: self.path.clone(),
            source,
        };
        let fp = if self.path.is_dir() {
            // A checkpoint directory: every file's name and digest, in name order.
            let mut names: Vec<PathBuf> = std::fs::read_dir(&self.path)
                .map_err(io)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            names.sort();
            let mut all = String::new();
            for p in names {
                let digest = crate::fsutil::sha256_file(&p).map_err(io)?;
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                all += &format!("{} {digest}\n", name.unwrap_or_default());
            }
            crate::fsutil::sha256_reader(all.as_bytes()).map_err(io)?
        } else {
            crate::fsutil::sha256_file(&self.path).map_err(io)?
        };
        Ok(self.fingerprint.get_or_init(|| fp))
    }

    /// Prefix-cache counters.
    pub fn prefix_stats(&self) -> PrefixStats {
        self.prefix_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stats()
    }

    /// Completion-cache counters (`None` when the cache is off).
    pub fn completion_stats(&self) -> Option<CompletionStats> {
        self.completion_cache.as_ref().map(|c| c.stats())
    }

    /// Forgets every cached prefix and sets the cache's memory cap (0 turns reuse off).
    pub fn reset_prefix_cache(&self, cap_mb: usize) {
        *self.prefix_cache.lock().unwrap_or_else(|p| p.into_inner()) =
            PrefixCache::new(cap_mb << 20);
    }

    /// Work counters since load or the last [`Engine::reset_stats`].
    pub fn stats(&self) -> EngineStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Zeroes the work counters.
    pub fn reset_stats(&self) {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = EngineStats::default();
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template.
    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// The loaded model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Token ids that end a generation.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// Context window in tokens.
    pub fn context_len(&self) -> usize {
        self.model.config().ctx_len
    }

    /// Renders chat messages with the generation prompt.
    pub fn render_chat(&self, messages: &[Message]) -> Result<String> {
        self.template.render(messages, true)
    }

    fn render_chat_with(&self, messages: &[Message], thinking: Option<bool>) -> Result<String> {
        match thinking {
            Some(on) => self.template.render_with(messages, true, on),
            None => self.render_chat(messages),
        }
    }

    /// Token ids of a prompt.
    ///
    /// Chat contents must not smuggle control tokens: when a message contains special-token
    /// text, the template is rendered around placeholders and each content is tokenized as
    /// plain text. Otherwise the whole rendering is tokenized at once, exactly as llama.cpp does.
    pub fn prompt_ids(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        self.prompt_ids_with(prompt, None)
    }

    /// [`Engine::prompt_ids`] with the chat template's `enable_thinking` set to `thinking`
    /// (`None`: the engine's setting) — a request's `thinking`.
    pub fn prompt_ids_with(&self, prompt: &Prompt, thinking: Option<bool>) -> Result<Vec<u32>> {
        match prompt {
            Prompt::Tokens(t) => Ok(t.clone()),
            Prompt::Text(s) => self.tokenizer.encode_with_specials(s),
            Prompt::Chat(messages) => {
                let contains_special =
                    |s: &str| self.control_texts.iter().any(|sp| s.contains(sp.as_str()));
                if !messages.iter().any(|m| contains_special(&m.content)) {
                    return self
                        .tokenizer
                        .encode_with_specials(&self.render_chat_with(messages, thinking)?);
                }
                self.chat_ids_isolated(messages, thinking)
            }
        }
    }

    /// The token ids a generation request starts from: its prompt ([`Engine::prompt_ids_with`]
    /// with the request's `thinking`) followed by its `prefill`, tokenized as plain text.
    pub fn request_ids(&self, req: &GenRequest) -> Result<Vec<u32>> {
        let mut ids = self.prompt_ids_with(&req.prompt, req.thinking)?;
        if let Some(p) = req.prefill.as_deref().filter(|p| !p.is_empty()) {
            ids.extend(self.tokenizer.encode_plain(p)?);
        }
        Ok(ids)
    }

    fn chat_ids_isolated(&self, messages: &[Message], thinking: Option<bool>) -> Result<Vec<u32>> {
        let marker = |i: usize| format!("\u{E000}{i}\u{E001}");
        let masked: Vec<Message> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| Message {
                role: m.role,
                content: marker(i),
            })
            .collect();
        let mut rest = self.render_chat_with(&masked, thinking)?;
        let mut ids = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let mk = marker(i);
            let Some(at) = rest.find(&mk) else { continue };
            ids.extend(self.tokenizer.encode_with_specials(&rest[..at])?);
            ids.extend(self.tokenizer.encode_plain(&m.content)?);
            rest = rest[at + mk.len()..].to_string();
        }
        ids.extend(self.tokenizer.encode_with_specials(&rest)?);
        Ok(ids)
    }

    /// Runs all requests to completion, batched. One result per request, in order; a request
    /// that cannot run (e.g. its prompt exceeds the context) gets its own error and the others
    /// still complete.
    pub fn generate(&self, requests: &[GenRequest]) -> Vec<Result<Completion>> {
        self.generate_streaming(requests, &mut |_| {})
    }

    /// Like [`Engine::generate`], calling `on_delta` with text as it becomes final.
    pub fn generate_streaming(
        &self,
        requests: &[GenRequest],
        on_delta: &mut dyn FnMut(StreamDelta<'_>),
    ) -> Vec<Result<Completion>> {
        generate::run(self, requests, on_delta)
    }

    /// Dataflow generation: runs `initial`, and whenever a request finishes, calls
    /// `on_done(index, result)` and runs the requests it returns (numbered after all earlier
    /// ones) in the same continuous batch. `on_done` must not call back into the engine.
    pub fn generate_flow(
        &self,
        initial: Vec<GenRequest>,
        on_delta: &mut dyn FnMut(StreamDelta<'_>),
        on_done: &mut dyn FnMut(usize, Result<Completion>) -> Vec<GenRequest>,
    ) {
        generate::run_flow(self, initial, on_delta, on_done)
    }

    /// The continuous-batching loop with an open intake (a server's scheduler): before every
    /// step `poll(idle)` hands in new requests (numbered in arrival order) and cancellations;
    /// when `idle` is true nothing is in flight and the poller may block until work arrives.
    /// Every request gets exactly one `on_done` call. Returns once the intake is closed and
    /// everything submitted has finished.
    pub fn serve_loop(
        &self,
        poll: &mut dyn FnMut(bool) -> Intake,
        on_delta: &mut dyn FnMut(StreamDelta<'_>),
        on_done: &mut dyn FnMut(usize, Result<Completion>),
    ) {
        generate::run_intake(self, poll, on_delta, &mut |i, r| {
            on_done(i, r);
            Vec::new()
        })
    }
}
