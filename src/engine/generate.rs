//! The generation loop: continuous batching of ragged sequences through the packed forward,
//! with prefix-KV reuse and the persistent completion cache in front.
//!
//! Each step takes every decoding sequence (one token each) plus prefill chunks of admitted
//! prompts under a token budget, runs one forward, samples on the host with each sequence's own
//! sampler, and retires finished sequences so waiting ones join. A request that shares a long
//! prefix with a prompt still being prefilled waits for it, then starts from its KV. Every
//! decision depends only on request order, never on timing, so the same requests always give
//! the same schedule — and, because every row is computed independently, the same tokens.

use super::completion_cache::CompletionCache;
use super::error::{EngineError, Result};
use super::kv::KvCache;
use super::model::{LogitRows, SeqStep};
use super::prefix_cache::PrefixCache;
use super::request::{Completion, GenRequest, StopReason};
use super::sampling::Sampler;
use super::stop::{StopCheck, StopMatcher};
use super::{Engine, StreamDelta};
use std::collections::VecDeque;

/// A request waits for a prefilling one when it would reuse at least this many more tokens.
const MIN_SHARED_TO_WAIT: usize = 16;

/// One request in flight.
struct Seq {
    request: usize,
    prompt: Vec<u32>,
    /// Prompt tokens already in the cache.
    fed: usize,
    cache: KvCache,
    generated: Vec<u32>,
    sampler: Sampler,
    matcher: StopMatcher,
    max_new: usize,
    ignore_eos: bool,
    text: String,
    reused: usize,
    /// Completion-cache key, when the cache is on.
    key: Option<String>,
}

impl Seq {
    fn decoding(&self) -> bool {
        self.fed == self.prompt.len()
    }
}

pub(super) fn run(
    engine: &Engine,
    requests: &[GenRequest],
    on_delta: &mut dyn FnMut(StreamDelta<'_>),
) -> Vec<Result<Completion>> {
    let mut results: Vec<Option<Result<Completion>>> = (0..requests.len()).map(|_| None).collect();
    run_flow(engine, requests.to_vec(), on_delta, &mut |i, r| {
        results[i] = Some(r);
        Vec::new()
    });
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| Err(EngineError::Request("request was never scheduled".into())))
        })
        .collect()
}

/// Dataflow generation: runs `initial` and every request `on_done` returns when a request
/// finishes (its dependants), in one continuous batch, so the engine never waits for the
/// slowest request of a "level". Requests are numbered in submission order (`initial` first);
/// every request gets exactly one `on_done` call, with its completion or its own error.
pub(super) fn run_flow(
    engine: &Engine,
    initial: Vec<GenRequest>,
    on_delta: &mut dyn FnMut(StreamDelta<'_>),
    on_done: &mut dyn FnMut(usize, Result<Completion>) -> Vec<GenRequest>,
) {
    let ctx = engine.context_len();
    let mut incoming: VecDeque<GenRequest> = initial.into();
    let mut next_index = 0usize;
    let mut waiting = VecDeque::new();
    let mut prefix = engine
        .prefix_cache
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let mut running: Vec<Seq> = Vec::new();
    loop {
        while let Some(req) = incoming.pop_front() {
            let i = next_index;
            next_index += 1;
            match prepare(engine, i, &req, ctx) {
                Ok(Prepared::Cached(c)) => {
                    emit(on_delta, i, &c.text);
                    incoming.extend(on_done(i, Ok(c)));
                }
                Ok(Prepared::Run(seq)) => waiting.push_back(seq),
                Err(e) => incoming.extend(on_done(i, Err(e))),
            }
        }
        if waiting.is_empty() && running.is_empty() {
            break;
        }
        admit(engine, &mut prefix, &mut waiting, &mut running);
        if let Err(e) = step(engine, &mut prefix, &mut running) {
            // A forward failure is systemic: every sequence in flight fails with it.
            let msg = e.to_string();
            let failed: Vec<usize> = running
                .drain(..)
                .map(|s| s.request)
                .chain(waiting.drain(..).map(|s| s.request))
                .collect();
            for request in failed {
                let err = EngineError::Request(format!("generation failed: {msg}"));
                incoming.extend(on_done(request, Err(err)));
            }
            continue;
        }
        let mut i = 0;
        while i < running.len() {
            if let Some(done) = finish_if_done(engine, &mut running[i], ctx, on_delta) {
                let mut s = running.remove(i);
                // The conversation so far may be the next turn's prefix.
                if let Some(seg) = s.cache.freeze() {
                    prefix.insert(seg);
                }
                if let (Some(cache), Some(key)) = (&engine.completion_cache, &s.key) {
                    if let Err(e) = cache.put(key, &done) {
                        tracing::warn!("completion cache write failed: {e}");
                    }
                }
                incoming.extend(on_done(s.request, Ok(done)));
            } else {
                i += 1;
            }
        }
    }
}

enum Prepared {
    Cached(Completion),
    Run(Box<Seq>),
}

fn prepare(engine: &Engine, index: usize, req: &GenRequest, ctx: usize) -> Result<Prepared> {
    req.sampling.validate().map_err(EngineError::Request)?;
    let prompt = engine.prompt_ids(&req.prompt)?;
    if prompt.is_empty() {
        return Err(EngineError::Request("the prompt is empty".into()));
    }
    if prompt.len() >= ctx {
        return Err(EngineError::ContextOverflow {
            prompt: prompt.len(),
            max_new: req.max_new_tokens,
            ctx,
        });
    }
    let key = match &engine.completion_cache {
        Some(cache) => {
            let key = CompletionCache::key(engine.fingerprint()?, &prompt, req);
            if let Some(mut c) = cache.get(&key) {
                c.from_cache = true;
                return Ok(Prepared::Cached(c));
            }
            Some(key)
        }
        None => None,
    };
    Ok(Prepared::Run(Box::new(Seq {
        request: index,
        prompt,
        fed: 0,
        cache: engine.model.transformer().new_cache(),
        generated: Vec::new(),
        sampler: Sampler::new(req.sampling),
        matcher: StopMatcher::new(&req.stop),
        max_new: req.max_new_tokens,
        ignore_eos: req.ignore_eos,
        text: String::new(),
        reused: 0,
        key,
    })))
}

/// Moves waiting requests into the running set, in order, starting each from the longest cached
/// prefix. A request that would share a longer prefix with a prompt still being prefilled
/// waits one step or more, so the shared part is computed once.
fn admit(
    engine: &Engine,
    prefix: &mut PrefixCache,
    waiting: &mut VecDeque<Box<Seq>>,
    running: &mut Vec<Seq>,
) {
    let max_running = engine.settings.max_running.max(1);
    let mut deferred = VecDeque::new();
    while running.len() < max_running {
        let Some(mut s) = waiting.pop_front() else {
            break;
        };
        let cached = prefix.peek(&s.prompt);
        let pending = running
            .iter()
            .filter(|r| !r.decoding())
            .map(|r| {
                r.prompt
                    .iter()
                    .zip(&s.prompt)
                    .take_while(|(a, b)| a == b)
                    .count()
            })
            .max()
            .unwrap_or(0)
            .min(s.prompt.len() - 1);
        if prefix.enabled() && pending >= cached + MIN_SHARED_TO_WAIT {
            deferred.push_back(s);
            continue;
        }
        if let Some((seg, n)) = prefix.lookup(&s.prompt) {
            s.cache = KvCache::from_prefix(seg, n, s.cache_row(engine));
            s.fed = n;
            s.reused = n;
        }
        running.push(*s);
    }
    while let Some(s) = deferred.pop_back() {
        waiting.push_front(s);
    }
}

impl Seq {
    fn cache_row(&self, engine: &Engine) -> usize {
        let c = &engine.model.transformer().cfg;
        c.n_kv_head * c.head_dim
    }
}

/// One forward over all decoding sequences plus as many prefill tokens as the budget allows.
fn step(engine: &Engine, prefix: &mut PrefixCache, running: &mut [Seq]) -> Result<()> {
    let model = engine.model.transformer();
    let decoding = running.iter().filter(|s| s.decoding()).count();
    let mut left = engine.settings.step_tokens.max(1).saturating_sub(decoding);
    let mut steps = Vec::new();
    let mut owners = Vec::new();
    for (i, s) in running.iter_mut().enumerate() {
        let Seq {
            prompt,
            fed,
            cache,
            generated,
            ..
        } = s;
        if *fed == prompt.len() {
            // Decode: feed the last sampled token.
            if let Some(last) = generated.last() {
                steps.push(SeqStep {
                    tokens: std::slice::from_ref(last),
                    cache,
                    logits: LogitRows::Last,
                });
                owners.push((i, 0));
            }
        } else if left > 0 || steps.is_empty() {
            let n = (prompt.len() - *fed).min(left.max(1));
            left = left.saturating_sub(n);
            let done = *fed + n == prompt.len();
            let logits = if done {
                LogitRows::Last
            } else {
                LogitRows::None
            };
            steps.push(SeqStep {
                tokens: &prompt[*fed..*fed + n],
                cache,
                logits,
            });
            owners.push((i, n));
        }
    }
    if steps.is_empty() {
        return Ok(());
    }
    let t0 = std::time::Instant::now();
    let logits = model.forward(&mut steps)?;
    drop(steps);
    let prefill: usize = owners.iter().map(|(_, n)| n).sum();
    let sampled = logits.iter().filter(|r| !r.is_empty()).count();
    for ((i, fed), row) in owners.into_iter().zip(logits) {
        let s = &mut running[i];
        s.fed += fed;
        if fed > 0 && s.decoding() {
            // The whole prompt is in the cache now: share it with later requests.
            if let Some(seg) = s.cache.freeze() {
                prefix.insert(seg);
            }
        }
        if !row.is_empty() {
            let banned: &[u32] = if s.ignore_eos {
                &engine.no_eos_banned
            } else {
                &engine.banned_ids
            };
            let tok = s.sampler.sample(&row, banned);
            s.generated.push(tok);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut st = engine.stats.lock().unwrap_or_else(|p| p.into_inner());
    st.steps += 1;
    st.prefill_tokens += prefill as u64;
    st.decode_tokens += sampled as u64;
    st.forward_secs += secs;
    if prefill == 0 {
        st.decode_only_tokens += sampled as u64;
        st.decode_only_secs += secs;
    }
    Ok(())
}

/// Checks stop conditions after a step; returns the completion when the sequence is done.
fn finish_if_done(
    engine: &Engine,
    s: &mut Seq,
    ctx: usize,
    on_delta: &mut dyn FnMut(StreamDelta<'_>),
) -> Option<Completion> {
    if !s.decoding() || s.generated.is_empty() {
        return None;
    }
    if s.max_new == 0 {
        s.generated.clear();
    }
    let eot = !s.ignore_eos
        && s.generated
            .last()
            .is_some_and(|t| engine.stop_ids.contains(t));
    let visible = if eot {
        &s.generated[..s.generated.len() - 1]
    } else {
        &s.generated[..]
    };
    s.text = engine.tokenizer.decode(visible).unwrap_or_default();
    let request = s.request;
    let reason = match s.matcher.check(&s.text) {
        StopCheck::Stopped { stop, text, delta } => {
            emit(on_delta, request, &delta);
            s.text = text;
            Some(StopReason::StopString(stop))
        }
        StopCheck::Continue { delta } => {
            emit(on_delta, request, &delta);
            if eot {
                Some(StopReason::EndOfTurn)
            } else if s.generated.len() >= s.max_new {
                Some(StopReason::MaxTokens)
            } else if s.cache.len() + 1 >= ctx {
                Some(StopReason::ContextFull)
            } else {
                None
            }
        }
    }?;
    if !matches!(reason, StopReason::StopString(_)) {
        let rest = s.matcher.flush(&s.text);
        emit(on_delta, request, &rest);
    }
    Some(Completion {
        text: std::mem::take(&mut s.text),
        token_ids: std::mem::take(&mut s.generated),
        prompt_tokens: s.prompt.len(),
        stop_reason: reason,
        reused_prompt_tokens: s.reused,
        from_cache: false,
    })
}

fn emit(on_delta: &mut dyn FnMut(StreamDelta<'_>), request: usize, text: &str) {
    if !text.is_empty() {
        on_delta(StreamDelta { request, text });
    }
}
