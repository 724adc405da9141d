//! Scoring without generating: log-probabilities of given continuations after a prompt.
//!
//! The prompt is computed once (or taken from the prefix cache); every continuation then forks
//! from its KV and all continuations run together in one packed forward, with logits for every
//! continuation token. Used by log-prob judges and A/B preference by token probability.

use super::error::{EngineError, Result};
use super::kv::KvCache;
use super::model::{LogitRows, SeqStep};
use super::{Engine, Prompt};
use serde::Serialize;

/// Log-probabilities of one continuation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    /// The continuation's token ids.
    pub token_ids: Vec<u32>,
    /// ln p(token | prompt, previous continuation tokens), one per token.
    pub token_logprobs: Vec<f64>,
}

impl Scored {
    /// Sum of the token log-probabilities.
    pub fn total(&self) -> f64 {
        self.token_logprobs.iter().sum()
    }
}

fn log_softmax_at(row: &[f32], token: u32) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = row
        .iter()
        .map(|&v| (v as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    row[token as usize] as f64 - lse
}

impl Engine {
    /// Scores each continuation (tokenized as plain text, no special tokens) after `prompt`.
    pub fn score(&self, prompt: &Prompt, continuations: &[String]) -> Result<Vec<Scored>> {
        let conts = continuations
            .iter()
            .map(|c| self.tokenizer.encode_plain(c))
            .collect::<Result<Vec<_>>>()?;
        self.score_tokens(prompt, &conts)
    }

    /// Scores continuations given as token ids.
    pub fn score_tokens(&self, prompt: &Prompt, conts: &[Vec<u32>]) -> Result<Vec<Scored>> {
        let model = self.model.transformer();
        let vocab = model.cfg.vocab;
        let ids = self.prompt_ids(prompt)?;
        if ids.is_empty() {
            return Err(EngineError::Request("the prompt is empty".into()));
        }
        if let Some(bad) = conts.iter().flatten().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::Request(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let longest = conts.iter().map(Vec::len).max().unwrap_or(0);
        if ids.len() + longest > self.context_len() {
            return Err(EngineError::ContextOverflow {
                prompt: ids.len(),
                max_new: longest,
                ctx: self.context_len(),
            });
        }
        let (mut cache, first_row) = self.prefill_for_scoring(&ids)?;
        let base = cache.freeze();
        let row = model.cfg.n_kv_head * model.cfg.head_dim;
        let mut caches: Vec<KvCache> = conts
            .iter()
            .map(|_| match &base {
                Some(seg) => KvCache::from_prefix(seg.clone(), ids.len(), row),
                None => model.new_cache(),
            })
            .collect();
        // Continuation token j (j ≥ 1) is predicted by the row of token j − 1.
        let mut steps: Vec<SeqStep<'_>> = Vec::new();
        let mut which = Vec::new();
        for (i, (c, cache)) in conts.iter().zip(caches.iter_mut()).enumerate() {
            if c.len() > 1 {
                steps.push(SeqStep {
                    tokens: &c[..c.len() - 1],
                    cache,
                    logits: LogitRows::All,
                });
                which.push(i);
            }
        }
        let rows = if steps.is_empty() {
            Vec::new()
        } else {
            model.forward(&mut steps)?
        };
        drop(steps);
        let mut out: Vec<Scored> = conts
            .iter()
            .map(|c| Scored {
                token_ids: c.clone(),
                token_logprobs: c
                    .first()
                    .map(|&t| vec![log_softmax_at(&first_row, t)])
                    .unwrap_or_default(),
            })
            .collect();
        for (i, logits) in which.into_iter().zip(rows) {
            let c = &conts[i];
            for (j, r) in logits.chunks_exact(vocab).enumerate() {
                out[i].token_logprobs.push(log_softmax_at(r, c[j + 1]));
            }
        }
        Ok(out)
    }

    /// Computes the prompt's KV (reusing a cached prefix) and the logits after its last token.
    fn prefill_for_scoring(&self, ids: &[u32]) -> Result<(KvCache, Vec<f32>)> {
        let model = self.model.transformer();
        let row = model.cfg.n_kv_head * model.cfg.head_dim;
        let mut prefix = self.prefix_cache.lock().unwrap_or_else(|p| p.into_inner());
        let (mut cache, start) = match prefix.lookup(ids) {
            Some((seg, n)) => (KvCache::from_prefix(seg, n, row), n),
            None => (model.new_cache(), 0),
        };
        let mut logits = Vec::new();
        let chunk = self.settings.step_tokens.max(1);
        let mut fed = start;
        while fed < ids.len() {
            let n = (ids.len() - fed).min(chunk);
            let last = fed + n == ids.len();
            let mut steps = [SeqStep {
                tokens: &ids[fed..fed + n],
                cache: &mut cache,
                logits: if last {
                    LogitRows::Last
                } else {
                    LogitRows::None
                },
            }];
            logits = model.forward(&mut steps)?.pop().unwrap_or_default();
            fed += n;
        }
        if let Some(seg) = cache.freeze() {
            prefix.insert(seg);
        }
        Ok((cache, logits))
    }
}
