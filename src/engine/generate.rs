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
use super::request::{Completion, GenRequest, StopReason, TokenLogprob};
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
    /// Alternatives to record per token, when log-probabilities were asked for.
    top_logprobs: Option<usize>,
    logprobs: Vec<TokenLogprob>,
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
    let mut first = Some(initial);
    run_intake(
        engine,
        &mut |_| Intake {
            requests: first.take().unwrap_or_default(),
            cancel: Vec::new(),
            closed: true,
        },
        on_delta,
        on_done,
    )
}

/// What an open-ended caller (a server) hands the generation loop between steps.
#[derive(Debug, Default)]
pub struct Intake {
    /// New requests, numbered after every earlier one.
    pub requests: Vec<GenRequest>,
    /// Requests to withdraw (their `on_done` gets [`EngineError::Cancelled`]).
    pub cancel: Vec<usize>,
    /// No more requests will come: the loop returns once everything submitted is done.
    pub closed: bool,
}

/// The continuous-batching loop with an open intake: before every step `poll(idle)` hands in
/// new requests and cancellations; `idle` says nothing is in flight, so the poller may block
/// until work arrives. Returns once the intake is closed and every request is done.
pub(super) fn run_intake(
    engine: &Engine,
    poll: &mut dyn FnMut(bool) -> Intake,
    on_delta: &mut dyn FnMut(StreamDelta<'_>),
    on_done: &mut dyn FnMut(usize, Result<Completion>) -> Vec<GenRequest>,
) {
    let ctx = engine.context_len();
    let mut incoming: VecDeque<GenRequest> = VecDeque::new();
    let mut next_index = 0usize;
    let mut waiting: VecDeque<Box<Seq>> = VecDeque::new();
    let mut running: Vec<Seq> = Vec::new();
    let mut closed = false;
    loop {
        if !closed {
            let idle = incoming.is_empty() && waiting.is_empty() && running.is_empty();
            // Called without the prefix-cache lock: the poller may block.
            let intake = poll(idle);
            closed = intake.closed;
            incoming.extend(intake.requests);
            for c in intake.cancel {
                // A request that already finished has nothing to withdraw.
                let before = waiting.len() + running.len();
                waiting.retain(|s| s.request != c);
                running.retain(|s| s.request != c);
                if waiting.len() + running.len() < before {
                    incoming.extend(on_done(c, Err(EngineError::Cancelled)));
                }
            }
        }
        let mut prefix = engine
            .prefix_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner());
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
            if closed {
                break;
            }
            continue;
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
    let prompt = engine.request_ids(req)?;
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
            let key = CompletionCache::key_on(
                engine.fingerprint()?,
                engine.backend_id.as_deref(),
                &prompt,
                req,
            );
            if let Some(mut c) = cache.get(&key) {
                c.from_cache = true;
                return Ok(Prepared::Cached(c));
            }
            Some(key)
        }
        None => None,
    };
    // Refused before anything is allocated (a cached answer above needs no KV).
    engine.check_kv(worst_case(prompt.len(), req.max_new_tokens, ctx))?;
    Ok(Prepared::Run(Box::new(Seq {
        request: index,
        prompt,
        fed: 0,
        cache: engine.model.new_cache(),
        generated: Vec::new(),
        sampler: Sampler::new(req.sampling),
        matcher: StopMatcher::new(&req.stop),
        max_new: req.max_new_tokens,
        ignore_eos: req.ignore_eos,
        text: String::new(),
        reused: 0,
        key,
        top_logprobs: req.logprobs,
        logprobs: Vec::new(),
    })))
}

/// Positions of KV a sequence may hold: its prompt and every new token the context allows.
fn worst_case(prompt: usize, max_new: usize, ctx: usize) -> usize {
    prompt + max_new.min(ctx.saturating_sub(prompt))
}

/// Moves waiting requests into the running set, in order, starting each from the longest cached
/// prefix. A request that would share a longer prefix with a prompt still being prefilled
/// waits one step or more, so the shared part is computed once. Admission stops, in order,
/// at the first request whose worst-case KV would not fit the budget beside the running ones
/// (each fits alone: [`prepare`] refused the others).
fn admit(
    engine: &Engine,
    prefix: &mut PrefixCache,
    waiting: &mut VecDeque<Box<Seq>>,
    running: &mut Vec<Seq>,
) {
    let max_running = engine.settings.max_running.max(1);
    let ctx = engine.context_len();
    let kv = |s: &Seq| engine.kv_bytes(worst_case(s.prompt.len(), s.max_new, ctx));
    let budget = engine.kv_budget_bytes();
    let mut reserved: usize = running.iter().map(kv).sum();
    let mut deferred = VecDeque::new();
    while running.len() < max_running {
        let Some(mut s) = waiting.pop_front() else {
            break;
        };
        if budget.is_some_and(|b| !running.is_empty() && reserved + kv(&s) > b) {
            waiting.push_front(s);
            break;
        }
        reserved += kv(&s);
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
        if budget.is_some() {
            // The prompt now; the new tokens once the prompt is frozen into a shared segment.
            s.cache.reserve(s.prompt.len() - s.fed);
        }
        running.push(*s);
    }
    while let Some(s) = deferred.pop_back() {
        waiting.push_front(s);
    }
}

impl Seq {
    fn cache_row(&self, engine: &Engine) -> usize {
        let c = &engine.model.config();
        c.n_kv_head * c.head_dim
    }
}

/// One forward over all decoding sequences plus as many prefill tokens as the budget allows.
fn step(engine: &Engine, prefix: &mut PrefixCache, running: &mut [Seq]) -> Result<()> {
    let model = &engine.model;
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
            if engine.kv_budget_bytes().is_some() {
                let ctx = engine.context_len();
                s.cache
                    .reserve(worst_case(s.prompt.len(), s.max_new, ctx) - s.prompt.len());
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
            if let Some(n) = s.top_logprobs {
                s.logprobs.push(token_logprob(&row, tok, n));
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    // Every position a sequence computed itself (its prompt stays its own even once frozen
    // into a shared segment); reused prefix positions belong to the prefix cache.
    let private: usize = running.iter().map(|s| s.cache.len() - s.reused).sum();
    let mut st = engine.stats.lock().unwrap_or_else(|p| p.into_inner());
    st.peak_running = st.peak_running.max(running.len() as u64);
    st.peak_kv_bytes = st.peak_kv_bytes.max(engine.kv_bytes(private) as u64);
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
        logprobs: s.top_logprobs.map(|_| std::mem::take(&mut s.logprobs)),
        remote_tokens: None,
    })
}

/// The log-softmax of `row` at `chosen`, with the `n` most likely tokens (ties: lower id first).
fn token_logprob(row: &[f32], chosen: u32, n: usize) -> TokenLogprob {
    let max = row
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max
        + row
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| (v as f64 - max).exp())
            .sum::<f64>()
            .ln();
    let lp = |v: f32| (v as f64 - lse) as f32;
    let mut top: Vec<(u32, f32)> = Vec::new();
    if n > 0 {
        let mut idx: Vec<u32> = (0..row.len() as u32).collect();
        let k = n.min(idx.len());
        let by = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
        if k < idx.len() {
            idx.select_nth_unstable_by(k, by);
            idx.truncate(k);
        }
        idx.sort_by(by);
        top = idx.into_iter().map(|i| (i, lp(row[i as usize]))).collect();
    }
    TokenLogprob {
        id: chosen,
        logprob: row
            .get(chosen as usize)
            .map_or(f32::NEG_INFINITY, |&v| lp(v)),
        top,
    }
}

fn emit(on_delta: &mut dyn FnMut(StreamDelta<'_>), request: usize, text: &str) {
    if !text.is_empty() {
        on_delta(StreamDelta { request, text });
    }
}
