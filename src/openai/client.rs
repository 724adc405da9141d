//! `RemoteModel`: a [`LanguageModel`] over an OpenAI-compatible HTTP server (vLLM, SGLang,
//! llama.cpp's `llama-server`, `maspo serve`, hosted APIs).
//!
//! Owns the HTTP side of one endpoint: bounded concurrency (a fixed set of worker threads),
//! timeouts, retries with exponential backoff and full jitter on 429, 5xx, connection errors,
//! timeouts and unreadable replies (other 4xx fail at once with the server's message), and the
//! persistent completion cache keyed by the endpoint's model id and the request. Jitter is
//! drawn from a seeded generator (request key, attempt), so even retry timing is reproducible.
//!
//! Reproducibility: a cached call is answered from disk exactly; a new call sends the request's
//! seed, and servers that honour `seed` (vLLM, llama.cpp's server, `maspo serve`) then return the
//! same text for the same request on the same build and hardware — batch composition on the
//! server may still change floating-point results (vLLM does not promise batch invariance).

use super::spec::RemoteSpec;
use super::wire::{ChatRequest, ChatResponse, ModelList, PromptField, TextResponse, WireMessage};
use crate::engine::completion_cache::CompletionCache;
use crate::engine::{Completion, EngineError, GenRequest, Prompt, StopReason};
use crate::mas::LanguageModel;
use crate::rng::{derive_seed, str_seed, SplitMix64};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

/// Counters of one endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RemoteStats {
    /// HTTP requests sent (retries included).
    pub http_requests: u64,
    /// Retries after a transient failure.
    pub retries: u64,
    /// Calls that failed for good.
    pub failed: u64,
    /// Calls answered from the completion cache.
    pub cache_hits: u64,
    /// Scored continuations absent from the returned top tokens (given a bound, see `score`).
    pub score_misses: u64,
}

/// One remote endpoint and model.
pub struct RemoteModel {
    spec: RemoteSpec,
    base: String,
    model: String,
    api_key: Option<String>,
    agent: ureq::Agent,
    cache: Option<CompletionCache>,
    http_requests: AtomicU64,
    retries: AtomicU64,
    failed: AtomicU64,
    cache_hits: AtomicU64,
    score_misses: AtomicU64,
}

impl std::fmt::Debug for RemoteModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("RemoteModel")
            .field("base", &self.base)
            .field("model", &self.model)
            .finish()
    }
}

/// Why one HTTP attempt failed.
enum Attempt {
    /// Worth retrying (429, 5xx, transport, unreadable reply); optional server-requested delay.
    Transient(String, Option<Duration>),
    /// Not worth retrying (4xx: the request itself is wrong).
    Fatal(String),
}

impl RemoteModel {
    /// Connects: reads the API key from its variable, asks `GET /models` (which also proves
    /// the server is up) and picks the model id. `cache_dir` turns the completion cache on.
    pub fn connect(spec: RemoteSpec, cache_dir: Option<PathBuf>) -> Result<Self, EngineError> {
        let base = spec.base_url();
        let api_key = match &spec.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| EngineError::Remote {
                endpoint: base.clone(),
                reason: format!("the API key variable `{var}` is not set (export it, or drop api_key_env for a server without keys)"),
            })?),
            None => None,
        };
        if spec.concurrency == 0 || spec.timeout_s.is_nan() || spec.timeout_s <= 0.0 {
            return Err(EngineError::Remote {
                endpoint: base,
                reason: "concurrency and timeout_s must be above 0".into(),
            });
        }
        let timeout = Duration::from_secs_f64(spec.timeout_s);
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .max_idle_connections_per_host(spec.concurrency)
            .build();
        let mut m = Self {
            base,
            model: spec.model.clone().unwrap_or_default(),
            api_key,
            agent,
            cache: cache_dir.map(CompletionCache::new),
            spec,
            http_requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            score_misses: AtomicU64::new(0),
        };
        let list: ModelList = m.with_retries(0, |m| m.get_json("/models"))?;
        if m.model.is_empty() {
            m.model =
                list.data
                    .first()
                    .map(|e| e.id.clone())
                    .ok_or_else(|| {
                        EngineError::Remote {
                    endpoint: m.base.clone(),
                    reason:
                        "GET /models lists no model (name one with `model = ...` or `URL#model`)"
                            .into(),
                }
                    })?;
        }
        Ok(m)
    }

    /// The model id requests name.
    pub fn model_id(&self) -> &str {
        &self.model
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Counters so far.
    pub fn stats(&self) -> RemoteStats {
        RemoteStats {
            http_requests: self.http_requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            score_misses: self.score_misses.load(Ordering::Relaxed),
        }
    }

    fn endpoint(&self) -> String {
        format!("{} ({})", self.base, self.model)
    }

    fn classify(&self, e: ureq::Error) -> Attempt {
        match e {
            ureq::Error::Status(code, resp) => {
                let retry_after = resp
                    .header("Retry-After")
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(|s| Duration::from_secs_f64(s.min(60.0)));
                let body = resp.into_string().unwrap_or_default();
                let msg = serde_json::from_str::<super::wire::ErrorBody>(&body)
                    .map(|b| b.error.message)
                    .unwrap_or_else(|_| body.chars().take(300).collect());
                let text = format!("HTTP {code}: {msg}");
                if code == 429 || code >= 500 {
                    Attempt::Transient(text, retry_after)
                } else {
                    Attempt::Fatal(text)
                }
            }
            ureq::Error::Transport(t) => {
                let hint = match t.kind() {
                    ureq::ErrorKind::ConnectionFailed => " (is the server running?)",
                    ureq::ErrorKind::Dns => " (check the host name)",
                    _ => "",
                };
                Attempt::Transient(format!("{t}{hint}"), None)
            }
        }
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, Attempt> {
        self.http_requests.fetch_add(1, Ordering::Relaxed);
        let mut req = self.agent.get(&format!("{}{path}", self.base));
        if let Some(k) = &self.api_key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        let resp = req.call().map_err(|e| self.classify(e))?;
        read_json(resp)
    }

    fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, Attempt> {
        self.http_requests.fetch_add(1, Ordering::Relaxed);
        let mut req = self
            .agent
            .post(&format!("{}{path}", self.base))
            .set("Content-Type", "application/json");
        if let Some(k) = &self.api_key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        let resp = req
            .send_string(&body.to_string())
            .map_err(|e| self.classify(e))?;
        read_json(resp)
    }

    /// Runs `f` until it succeeds, fails fatally, or the retries are spent. `seed` drives the
    /// jitter.
    fn with_retries<T>(
        &self,
        seed: u64,
        mut f: impl FnMut(&Self) -> Result<T, Attempt>,
    ) -> Result<T, EngineError> {
        let mut attempt = 0u32;
        loop {
            match f(self) {
                Ok(v) => return Ok(v),
                Err(Attempt::Fatal(reason)) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    return Err(EngineError::Remote {
                        endpoint: self.endpoint(),
                        reason,
                    });
                }
                Err(Attempt::Transient(reason, after)) => {
                    if attempt >= self.spec.max_retries {
                        self.failed.fetch_add(1, Ordering::Relaxed);
                        return Err(EngineError::Remote {
                            endpoint: self.endpoint(),
                            reason: format!("{reason} (gave up after {} attempts)", attempt + 1),
                        });
                    }
                    let cap = self
                        .spec
                        .backoff_ms
                        .saturating_mul(1u64 << attempt.min(16))
                        .min(30_000);
                    let mut rng = SplitMix64::new(derive_seed(&[seed, attempt as u64]));
                    let jitter = Duration::from_millis((rng.next_f64() * cap as f64) as u64);
                    let wait = after.map_or(jitter, |a| a.max(jitter));
                    tracing::debug!(endpoint = %self.base, %reason, ?wait, "retrying");
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(wait);
                    attempt += 1;
                }
            }
        }
    }

    /// The JSON body and path of one generation request.
    fn body(&self, req: &GenRequest) -> Result<(&'static str, serde_json::Value), EngineError> {
        let s = &req.sampling;
        let (temperature, top_p, top_k) = if s.is_greedy() {
            (0.0, None, None)
        } else {
            (
                s.temperature,
                (s.top_p < 1.0).then_some(s.top_p),
                (s.top_k > 0).then_some(s.top_k),
            )
        };
        let stop = (!req.stop.is_empty()).then(|| super::wire::Stop::Many(req.stop.clone()));
        let to_value = |v: Result<serde_json::Value, serde_json::Error>| {
            v.map_err(|e| EngineError::Request(format!("encoding the request: {e}")))
        };
        let (path, value) = match &req.prompt {
            Prompt::Chat(messages) => {
                let mut wire: Vec<WireMessage> = messages
                    .iter()
                    .map(|m| WireMessage {
                        role: serde_json::to_value(m.role)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_else(|| "user".into()),
                        content: Some(super::wire::Content::Text(m.content.clone())),
                    })
                    .collect();
                // A prefill travels as a final assistant message to continue: llama.cpp's
                // server and maspo serve continue it; vLLM needs the two flags below.
                let prefill = req.prefill.as_deref().filter(|p| !p.is_empty());
                if let Some(p) = prefill {
                    wire.push(WireMessage {
                        role: "assistant".into(),
                        content: Some(super::wire::Content::Text(p.to_string())),
                    });
                }
                let r = ChatRequest {
                    model: self.model.clone(),
                    messages: wire,
                    continue_final_message: prefill.map(|_| true),
                    add_generation_prompt: prefill.map(|_| false),
                    max_tokens: Some(req.max_new_tokens),
                    temperature: Some(temperature),
                    top_p,
                    top_k,
                    seed: Some(s.seed),
                    stop,
                    logprobs: req.logprobs.map(|_| true),
                    top_logprobs: req.logprobs.filter(|n| *n > 0),
                    ignore_eos: req.ignore_eos.then_some(true),
                    ..Default::default()
                };
                ("/chat/completions", to_value(serde_json::to_value(r))?)
            }
            Prompt::Tokens(_) if req.prefill.as_deref().is_some_and(|p| !p.is_empty()) => {
                return Err(EngineError::Request(
                    "a token-id prompt cannot carry a text prefill to a remote server: send a chat or text prompt".into(),
                ))
            }
            Prompt::Text(_) | Prompt::Tokens(_) => {
                let prompt = match &req.prompt {
                    Prompt::Text(t) => {
                        PromptField::Text(format!("{t}{}", req.prefill.as_deref().unwrap_or("")))
                    }
                    Prompt::Tokens(t) => PromptField::Tokens(t.clone()),
                    Prompt::Chat(_) => unreachable!("handled above"),
                };
                let r = super::wire::CompletionRequest {
                    model: self.model.clone(),
                    prompt,
                    max_tokens: Some(req.max_new_tokens),
                    temperature: Some(temperature),
                    top_p,
                    top_k,
                    seed: Some(s.seed),
                    stop,
                    stream: None,
                    logprobs: req.logprobs,
                    n: None,
                    ignore_eos: req.ignore_eos.then_some(true),
                };
                ("/completions", to_value(serde_json::to_value(r))?)
            }
        };
        Ok((path, value))
    }

    /// One generation call: the cache, then the server with retries.
    fn call(&self, req: &GenRequest) -> Result<Completion, EngineError> {
        req.sampling.validate().map_err(EngineError::Request)?;
        let key = CompletionCache::remote_key(&self.model, req);
        if let Some(c) = self.cache.as_ref().and_then(|c| c.get(&key)) {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Completion {
                from_cache: true,
                ..c
            });
        }
        let (path, body) = self.body(req)?;
        let seed = str_seed(&key);
        // (text, finish reason, usage) of the first choice, whichever endpoint answered.
        let first = if path == "/chat/completions" {
            let r: ChatResponse = self.with_retries(seed, |m| m.post_json(path, &body))?;
            let usage = r.usage;
            r.choices.into_iter().next().map(|c| {
                let text = c.message.content.unwrap_or_default();
                (text, c.finish_reason, usage)
            })
        } else {
            let r: TextResponse = self.with_retries(seed, |m| m.post_json(path, &body))?;
            let usage = r.usage;
            r.choices
                .into_iter()
                .next()
                .map(|c| (c.text, c.finish_reason, usage))
        };
        let (text, finish, usage) = first.ok_or_else(|| self.no_choice())?;
        let completion = completion(text, finish.as_deref(), usage);
        if let Some(c) = &self.cache {
            if let Err(e) = c.put(&key, &completion) {
                tracing::warn!("completion cache write failed: {e}");
            }
        }
        Ok(completion)
    }

    fn no_choice(&self) -> EngineError {
        self.failed.fetch_add(1, Ordering::Relaxed);
        EngineError::Remote {
            endpoint: self.endpoint(),
            reason: "the reply has no choices".into(),
        }
    }

    /// Log-probabilities of single-token continuations from one generated position: the
    /// server is asked for one token with its `top_logprobs` alternatives, and each
    /// continuation takes the log-probability of the alternative whose text it equals (or
    /// equals after trimming spaces). A continuation not among the alternatives gets the
    /// smallest listed value — an upper bound, counted in [`RemoteStats::score_misses`].
    /// Exact for what the log-prob judge scores (`A` vs `B`, single tokens in every common
    /// vocabulary); longer continuations are compared by their first token only.
    fn score_one(
        &self,
        prompt: &Prompt,
        continuations: &[String],
    ) -> Result<Vec<f64>, EngineError> {
        let Prompt::Chat(messages) = prompt else {
            return Err(EngineError::Request(
                "remote scoring takes chat prompts only".into(),
            ));
        };
        let req = GenRequest {
            logprobs: Some(self.spec.top_logprobs.max(1)),
            ..GenRequest::chat(messages.clone(), 1)
        };
        let (path, body) = self.body(&req)?;
        let seed = str_seed(&CompletionCache::remote_key(&self.model, &req));
        let r: ChatResponse = self.with_retries(seed, |m| m.post_json(path, &body))?;
        let top = r
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.logprobs)
            .and_then(|l| l.content)
            .and_then(|c| c.into_iter().next())
            .ok_or_else(|| EngineError::Remote {
                endpoint: self.endpoint(),
                reason: "the server returned no log-probabilities (it may not support `logprobs`; use generate judging)".into(),
            })?;
        let mut alts: Vec<(String, f32)> = vec![(top.token.clone(), top.logprob)];
        alts.extend(
            top.top_logprobs
                .iter()
                .map(|t| (t.token.clone(), t.logprob)),
        );
        let floor = alts
            .iter()
            .map(|a| a.1 as f64)
            .fold(f64::INFINITY, f64::min);
        Ok(continuations
            .iter()
            .map(|c| {
                let exact = alts.iter().find(|a| a.0 == *c);
                let trimmed = || alts.iter().find(|a| a.0.trim() == c.trim());
                match exact.or_else(trimmed) {
                    Some(a) => a.1 as f64,
                    None => {
                        self.score_misses.fetch_add(1, Ordering::Relaxed);
                        floor
                    }
                }
            })
            .collect())
    }

    /// Runs jobs on at most `concurrency` worker threads; `on_done(i, result)` runs on the
    /// calling thread and returns follow-up jobs.
    fn pool<J: Send + Sync, R: Send>(
        &self,
        initial: Vec<J>,
        work: &(dyn Fn(&J) -> R + Sync),
        on_done: &mut dyn FnMut(usize, R) -> Vec<J>,
    ) {
        let (job_tx, job_rx) = mpsc::channel::<(usize, J)>();
        let job_rx = Mutex::new(job_rx);
        let (done_tx, done_rx) = mpsc::channel::<(usize, R)>();
        std::thread::scope(|scope| {
            let mut outstanding = 0usize;
            let mut next = 0usize;
            let mut submit = |j: J, outstanding: &mut usize| {
                let _ = job_tx.send((next, j));
                next += 1;
                *outstanding += 1;
            };
            let workers = self.spec.concurrency.min(initial.len().max(1));
            for j in initial {
                submit(j, &mut outstanding);
            }
            for _ in 0..workers {
                let (rx, tx) = (&job_rx, done_tx.clone());
                scope.spawn(move || loop {
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    match job {
                        Ok((i, j)) => {
                            if tx.send((i, work(&j))).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                });
            }
            while outstanding > 0 {
                let Ok((i, r)) = done_rx.recv() else { break };
                outstanding -= 1;
                for j in on_done(i, r) {
                    submit(j, &mut outstanding);
                }
            }
            drop(job_tx);
        });
    }
}

fn read_json<T: serde::de::DeserializeOwned>(resp: ureq::Response) -> Result<T, Attempt> {
    let text = resp
        .into_string()
        .map_err(|e| Attempt::Transient(format!("reading the reply: {e}"), None))?;
    serde_json::from_str(&text).map_err(|e| {
        let head: String = text.chars().take(120).collect();
        Attempt::Transient(format!("unreadable reply ({e}): {head:?}"), None)
    })
}

fn completion(text: String, finish: Option<&str>, usage: Option<super::wire::Usage>) -> Completion {
    let u = usage.unwrap_or_default();
    Completion {
        text,
        token_ids: Vec::new(),
        prompt_tokens: u.prompt_tokens,
        stop_reason: match finish {
            Some("length") => StopReason::MaxTokens,
            _ => StopReason::EndOfTurn,
        },
        reused_prompt_tokens: 0,
        from_cache: false,
        logprobs: None,
        remote_tokens: Some(u.completion_tokens),
    }
}

impl LanguageModel for RemoteModel {
    fn generate(
        &self,
        requests: &[GenRequest],
        on_progress: &mut dyn FnMut(usize),
    ) -> Vec<Result<Completion, EngineError>> {
        let mut out: Vec<Option<Result<Completion, EngineError>>> =
            (0..requests.len()).map(|_| None).collect();
        let jobs: Vec<&GenRequest> = requests.iter().collect();
        self.pool(jobs, &|r: &&GenRequest| self.call(r), &mut |i, r| {
            on_progress(i);
            out[i] = Some(r);
            Vec::new()
        });
        out.into_iter()
            .map(|r| r.unwrap_or(Err(EngineError::Cancelled)))
            .collect()
    }

    fn generate_flow(
        &self,
        initial: Vec<GenRequest>,
        on_done: &mut dyn FnMut(usize, Result<Completion, EngineError>) -> Vec<GenRequest>,
    ) {
        self.pool(initial, &|r: &GenRequest| self.call(r), on_done);
    }

    fn describe(&self) -> String {
        format!("{} @ {}", self.model, self.base)
    }

    fn score(&self, prompt: &Prompt, continuations: &[String]) -> Result<Vec<f64>, EngineError> {
        self.score_one(prompt, continuations)
    }

    fn score_batch(&self, items: &[(Prompt, Vec<String>)]) -> Vec<Result<Vec<f64>, EngineError>> {
        let mut out: Vec<Option<Result<Vec<f64>, EngineError>>> =
            (0..items.len()).map(|_| None).collect();
        let jobs: Vec<&(Prompt, Vec<String>)> = items.iter().collect();
        self.pool(
            jobs,
            &|(p, c): &&(Prompt, Vec<String>)| self.score_one(p, c),
            &mut |i, r| {
                out[i] = Some(r);
                Vec::new()
            },
        );
        out.into_iter()
            .map(|r| r.unwrap_or(Err(EngineError::Cancelled)))
            .collect()
    }
}
