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

/// One prepared item of [`Engine::score_batch`].
struct ScoreItem {
    ids: Vec<u32>,
    conts: Vec<Vec<u32>>,
    cache: KvCache,
    fed: usize,
    first_row: Vec<f32>,
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
        let ids = self.prompt_ids(prompt)?;
        self.check_scoring(&ids, conts)?;
        let (cache, first_row) = self.prefill_for_scoring(&ids)?;
        self.continuations(ids.len(), cache, &first_row, conts)
    }

    /// Scores many (prompt, continuations) pairs: every prompt is prefilled in one packed forward
    /// per step (under the step-token budget, prefix cache reused), then each pair's
    /// continuations are scored as in [`Engine::score`]. Continuations of one token (an A/B
    /// judgement) need nothing beyond the prefill. One result per item, each with its own error.
    pub fn score_batch(&self, items: &[(Prompt, Vec<String>)]) -> Vec<Result<Vec<Scored>>> {
        let model = &self.model;
        // Validation and tokenization, per item.
        let prepared: Vec<Result<ScoreItem>> = items
            .iter()
            .map(|(prompt, conts)| {
                let ids = self.prompt_ids(prompt)?;
                let conts = conts
                    .iter()
                    .map(|c| self.tokenizer.encode_plain(c))
                    .collect::<Result<Vec<_>>>()?;
                self.check_scoring(&ids, &conts)?;
                Ok(ScoreItem {
                    ids,
                    conts,
                    cache: model.new_cache(),
                    fed: 0,
                    first_row: Vec::new(),
                })
            })
            .collect();
        // Groups whose KV fits the budget together (each item fits alone: checked above); the
        // results do not depend on the grouping, every row being computed on its own.
        let budget = self.kv_budget_bytes();
        let mut out = Vec::with_capacity(items.len());
        let mut group = Vec::new();
        let mut used = 0usize;
        for it in prepared {
            let need = it.as_ref().map_or(0, |it| {
                self.kv_bytes(it.ids.len() + it.conts.iter().map(Vec::len).sum::<usize>())
            });
            if !group.is_empty() && budget.is_some_and(|b| used + need > b) {
                out.extend(self.score_group(std::mem::take(&mut group)));
                used = 0;
            }
            used += need;
            group.push(it);
        }
        out.extend(self.score_group(group));
        out
    }

    /// [`Engine::score_batch`] on prepared items held in memory together.
    fn score_group(&self, mut prepared: Vec<Result<ScoreItem>>) -> Vec<Result<Vec<Scored>>> {
        let model = &self.model;
        let row = model.config().n_kv_head * model.config().head_dim;
        // Batched prefill.
        {
            let mut prefix = self.prefix_cache.lock().unwrap_or_else(|p| p.into_inner());
            for it in prepared.iter_mut().flatten() {
                // A lookup reuses fewer positions than the prompt has: its last token is always
                // computed, so its logits exist.
                if let Some((seg, n)) = prefix.lookup(&it.ids) {
                    it.cache = KvCache::from_prefix(seg, n, row);
                    it.fed = n;
                }
            }
            loop {
                let mut left = self.settings.step_tokens.max(1);
                let mut steps = Vec::new();
                let mut owners = Vec::new();
                for (i, it) in prepared.iter_mut().enumerate() {
                    let Ok(it) = it else { continue };
                    if it.fed == it.ids.len() || (left == 0 && !steps.is_empty()) {
                        continue;
                    }
                    let n = (it.ids.len() - it.fed).min(left.max(1));
                    left = left.saturating_sub(n);
                    let last = it.fed + n == it.ids.len();
                    steps.push(SeqStep {
                        tokens: &it.ids[it.fed..it.fed + n],
                        cache: &mut it.cache,
                        logits: if last {
                            LogitRows::Last
                        } else {
                            LogitRows::None
                        },
                    });
                    owners.push((i, n));
                }
                if steps.is_empty() {
                    break;
                }
                let rows = match model.forward(&mut steps) {
                    Ok(r) => r,
                    Err(e) => {
                        drop(steps);
                        let msg = e.to_string();
                        for (i, _) in owners {
                            prepared[i] =
                                Err(EngineError::Request(format!("scoring failed: {msg}")));
                        }
                        continue;
                    }
                };
                drop(steps);
                for ((i, n), r) in owners.into_iter().zip(rows) {
                    if let Ok(it) = &mut prepared[i] {
                        it.fed += n;
                        if it.fed == it.ids.len() {
                            it.first_row = r;
                            if let Some(seg) = it.cache.freeze() {
                                prefix.insert(seg);
                            }
                        }
                    }
                }
            }
        }
        prepared
            .into_iter()
            .map(|it| {
                let it = it?;
                self.continuations(it.ids.len(), it.cache, &it.first_row, &it.conts)
            })
            .collect()
    }

    /// A scoring request must have a prompt, known token ids and fit the context.
    fn check_scoring(&self, ids: &[u32], conts: &[Vec<u32>]) -> Result<()> {
        let vocab = self.model.config().vocab;
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
        // The prompt's KV plus one private tail per continuation.
        self.check_kv(ids.len() + conts.iter().map(Vec::len).sum::<usize>())
    }

    /// Log-probabilities of continuations after a prefilled prompt (`cache`, `first_row`).
    fn continuations(
        &self,
        prompt_len: usize,
        mut cache: KvCache,
        first_row: &[f32],
        conts: &[Vec<u32>],
    ) -> Result<Vec<Scored>> {
        let model = &self.model;
        let vocab = model.config().vocab;
        let base = cache.freeze();
        let row = model.config().n_kv_head * model.config().head_dim;
        let mut caches: Vec<KvCache> = conts
            .iter()
            .map(|_| match &base {
                Some(seg) => KvCache::from_prefix(seg.clone(), prompt_len, row),
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
                    .map(|&t| vec![log_softmax_at(first_row, t)])
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
        let model = &self.model;
        let row = model.config().n_kv_head * model.config().head_dim;
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
