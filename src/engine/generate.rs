//! The generation loop: continuous batching of ragged sequences through the packed forward.
//!
//! Each step takes every decoding sequence (one token each) plus prefill chunks of admitted
//! prompts under a token budget, runs one forward, samples on the host with each sequence's own
//! sampler, and retires finished sequences so waiting ones can join. Every decision depends only
//! on request order, never on timing, so the same requests always give the same schedule.

use super::error::{EngineError, Result};
use super::kv::KvCache;
use super::model::SeqStep;
use super::request::{Completion, GenRequest, StopReason};
use super::sampling::Sampler;
use super::stop::{StopCheck, StopMatcher};
use super::{Engine, StreamDelta};
use std::collections::VecDeque;

/// One running request.
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
    text: String,
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
    let model = engine.model.transformer();
    let ctx = model.cfg.ctx_len;
    let mut results: Vec<Option<Result<Completion>>> = (0..requests.len()).map(|_| None).collect();
    let mut waiting = VecDeque::new();
    for (i, req) in requests.iter().enumerate() {
        match admit(engine, i, req, ctx) {
            Ok(seq) => waiting.push_back(seq),
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    let mut running: Vec<Seq> = Vec::new();
    let settings = &engine.settings;
    while !waiting.is_empty() || !running.is_empty() {
        while running.len() < settings.max_running.max(1) {
            match waiting.pop_front() {
                Some(s) => running.push(s),
                None => break,
            }
        }
        if let Err(e) = step(engine, &mut running, settings.step_tokens.max(1)) {
            // A forward failure is systemic: every sequence in flight fails with it.
            let msg = e.to_string();
            for s in running.drain(..).chain(waiting.drain(..)) {
                results[s.request] = Some(Err(EngineError::Request(format!(
                    "generation failed: {msg}"
                ))));
            }
            break;
        }
        let mut i = 0;
        while i < running.len() {
            if let Some(done) = finish_if_done(engine, &mut running[i], ctx, on_delta) {
                let s = running.remove(i);
                results[s.request] = Some(Ok(done));
            } else {
                i += 1;
            }
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| Err(EngineError::Request("request was never scheduled".into())))
        })
        .collect()
}

fn admit(engine: &Engine, index: usize, req: &GenRequest, ctx: usize) -> Result<Seq> {
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
    Ok(Seq {
        request: index,
        prompt,
        fed: 0,
        cache: engine.model.transformer().new_cache(),
        generated: Vec::new(),
        sampler: Sampler::new(req.sampling),
        matcher: StopMatcher::new(&req.stop),
        max_new: req.max_new_tokens,
        text: String::new(),
    })
}

/// One forward over all decoding sequences plus as many prefill tokens as the budget allows.
fn step(engine: &Engine, running: &mut [Seq], budget: usize) -> Result<()> {
    let model = engine.model.transformer();
    let decoding = running
        .iter()
        .filter(|s| s.decoding() && s.max_new > 0)
        .count();
    let mut left = budget.saturating_sub(decoding);
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
                    want_logits: true,
                });
                owners.push((i, 0));
            }
        } else if left > 0 || steps.is_empty() {
            let n = (prompt.len() - *fed).min(left.max(1));
            left = left.saturating_sub(n);
            let done = *fed + n == prompt.len();
            steps.push(SeqStep {
                tokens: &prompt[*fed..*fed + n],
                cache,
                want_logits: done,
            });
            owners.push((i, n));
        }
    }
    if steps.is_empty() {
        return Ok(());
    }
    let logits = model.forward(&mut steps)?;
    drop(steps);
    for ((i, fed), row) in owners.into_iter().zip(logits) {
        let s = &mut running[i];
        s.fed += fed;
        if let Some(row) = row {
            let tok = s.sampler.sample(&row, &engine.banned_ids);
            s.generated.push(tok);
        }
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
    if !s.decoding() {
        return None;
    }
    let reason = if s.max_new == 0 {
        Some(StopReason::MaxTokens)
    } else if s
        .generated
        .last()
        .is_some_and(|t| engine.stop_ids.contains(t))
    {
        Some(StopReason::EndOfTurn)
    } else {
        None
    };
    let visible = match reason {
        Some(StopReason::EndOfTurn) => &s.generated[..s.generated.len() - 1],
        _ => &s.generated[..],
    };
    s.text = engine.tokenizer.decode(visible).unwrap_or_default();
    let request = s.request;
    let stop = match s.matcher.check(&s.text) {
        StopCheck::Stopped { stop, text, delta } => {
            emit(on_delta, request, &delta);
            s.text = text;
            Some(StopReason::StopString(stop))
        }
        StopCheck::Continue { delta } => {
            emit(on_delta, request, &delta);
            None
        }
    };
    let reason = stop.or(reason).or_else(|| {
        if s.generated.len() >= s.max_new {
            Some(StopReason::MaxTokens)
        } else if s.cache.len() + 1 >= ctx {
            Some(StopReason::ContextFull)
        } else {
            None
        }
    })?;
    if !matches!(reason, StopReason::StopString(_)) {
        let rest = s.matcher.flush(&s.text);
        emit(on_delta, request, &rest);
    }
    Some(Completion {
        text: std::mem::take(&mut s.text),
        token_ids: std::mem::take(&mut s.generated),
        prompt_tokens: s.prompt.len(),
        stop_reason: reason,
    })
}

fn emit(on_delta: &mut dyn FnMut(StreamDelta<'_>), request: usize, text: &str) {
    if !text.is_empty() {
        on_delta(StreamDelta { request, text });
    }
}
