//! `maspo bench parity`: the same weights and prompts on two backends (maspo's CPU kernels as
//! the reference, a device as the candidate): logit differences, top-1 agreement per step, and
//! whether greedy decoding stays identical up to the first near-tie.
//!
//! Owns the comparison. The reference decodes greedily (all prompts in one ragged batch); the
//! candidate is teacher-forced on the reference's tokens, batched and then each prompt alone,
//! so every step compares logits of identical inputs, and the candidate's own greedy choice is
//! the argmax of its row (the two greedy runs agree exactly up to the first step where those
//! argmaxes differ). Numbers are reported, never asserted here.

use crate::engine::kv::KvCache;
use crate::engine::model::{LogitRows, Model, SeqStep};
use crate::engine::{Engine, EngineError};
use serde::Serialize;
use std::time::Instant;

/// What to compare.
#[derive(Debug, Clone, Serialize)]
pub struct ParityOptions {
    /// Greedy tokens decoded per prompt.
    pub max_tokens: usize,
    /// A divergence counts as a near-tie when the reference's margin between its token and the
    /// candidate's is at most this fraction of the row's largest |logit|.
    pub tie_margin: f32,
}

impl Default for ParityOptions {
    fn default() -> Self {
        Self {
            max_tokens: 32,
            tie_margin: 0.02,
        }
    }
}

/// One prompt's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct PromptParity {
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// Largest |Δlogit| over the prompt's rows (prefill, every position).
    pub prefill_max_abs: f32,
    /// Largest |Δlogit| over the decode steps.
    pub decode_max_abs: f32,
    /// Largest |Δlogit| / max |logit| of the row, over every compared row.
    pub max_rel: f32,
    /// Decode steps whose argmax agrees with the reference's token.
    pub top1_agree: usize,
    /// Decode steps compared.
    pub steps: usize,
    /// First decode step where the candidate's greedy token differs (`None`: identical).
    pub first_divergence: Option<usize>,
    /// The reference's margin at that step (its token's logit minus the candidate's token's,
    /// over max |logit|).
    pub divergence_margin: Option<f32>,
    /// Identical, or the first divergence is at a near-tie.
    pub ok: bool,
    /// The reference's greedy tokens.
    pub reference_tokens: Vec<u32>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ParityReport {
    /// Model (file or `synthetic:SHAPE:SEED`).
    pub model: String,
    /// Reference backend.
    pub reference: String,
    /// Candidate backend.
    pub candidate: String,
    /// Options.
    pub options: ParityOptions,
    /// Per prompt.
    pub prompts: Vec<PromptParity>,
    /// Largest |Δlogit| of the candidate batched vs each prompt alone (batch invariance on the
    /// candidate; 0 when bit-identical).
    pub candidate_batch_max_abs: f32,
    /// Every prompt ok.
    pub pass: bool,
    /// Seconds: reference decode, candidate batched, candidate alone.
    pub secs: [f64; 3],
}

impl ParityReport {
    /// A short table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{}: {} vs reference {} ({} greedy tokens per prompt)\n",
            self.model, self.candidate, self.reference, self.options.max_tokens
        );
        s += "prompt  tokens  prefill max|Δ|  decode max|Δ|  max rel  top-1   first divergence\n";
        for (i, p) in self.prompts.iter().enumerate() {
            let div = match (p.first_divergence, p.divergence_margin) {
                (Some(d), Some(m)) => format!(
                    "step {d} (margin {:.4}{})",
                    m,
                    if p.ok {
                        ", near-tie"
                    } else {
                        ", NOT a near-tie"
                    }
                ),
                _ => "none".into(),
            };
            s += &format!(
                "{i:>6}  {:>6}  {:>14.4}  {:>13.4}  {:>7.4}  {:>2}/{:<3}  {div}\n",
                p.prompt_tokens,
                p.prefill_max_abs,
                p.decode_max_abs,
                p.max_rel,
                p.top1_agree,
                p.steps
            );
        }
        s += &format!(
            "candidate batched vs alone: max |Δlogit| {:.3e}\nresult: {}\n",
            self.candidate_batch_max_abs,
            if self.pass {
                "PASS (greedy identical up to near-ties)"
            } else {
                "FAIL"
            }
        );
        s
    }
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}

fn max_abs(row: &[f32]) -> f32 {
    row.iter().fold(0f32, |m, v| m.max(v.abs()))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// Logit rows of a lockstep run: `rows[prompt][step]`, step 0 being the prompt (all rows).
type Rows = Vec<Vec<Vec<f32>>>;

/// Runs `prompts` in lockstep on `model`: the prompts in one packed step (every row's logits),
/// then single-token steps, each fed `feed(prompt, step, last_row)`, until `steps` tokens are
/// chosen (`steps` forward steps in all; at least the prompt's).
fn lockstep(
    model: &Model,
    prompts: &[&[u32]],
    steps: usize,
    mut feed: impl FnMut(usize, usize, &[f32]) -> u32,
) -> Result<Rows, EngineError> {
    let vocab = model.config().vocab;
    let mut caches: Vec<KvCache> = prompts.iter().map(|_| model.new_cache()).collect();
    let mut rows: Rows = vec![Vec::new(); prompts.len()];
    let mut next: Vec<Vec<u32>> = prompts.iter().map(|p| p.to_vec()).collect();
    for step in 0..steps.max(1) {
        let mut seqs: Vec<SeqStep<'_>> = next
            .iter()
            .zip(caches.iter_mut())
            .map(|(t, cache)| SeqStep {
                tokens: t,
                cache,
                logits: if step == 0 {
                    LogitRows::All
                } else {
                    LogitRows::Last
                },
            })
            .collect();
        let out = model.forward(&mut seqs)?;
        drop(seqs);
        for (p, logits) in out.into_iter().enumerate() {
            let last = &logits[logits.len() - vocab..];
            if step < steps {
                next[p] = vec![feed(p, step, last)];
            }
            rows[p].push(logits);
        }
    }
    Ok(rows)
}

/// Compares `candidate` against `reference` (same weights) on `prompts` (token ids).
pub fn run(
    reference: &Engine,
    candidate: &Engine,
    prompts: &[Vec<u32>],
    opts: &ParityOptions,
) -> Result<ParityReport, EngineError> {
    let (rm, cm) = (reference.model(), candidate.model());
    if rm.config() != cm.config() {
        return Err(EngineError::Request(
            "parity needs the same model on both backends (configs differ)".into(),
        ));
    }
    let vocab = rm.config().vocab;
    let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let n = opts.max_tokens;
    // Reference: greedy, all prompts together (maspo's CPU kernels are batch-invariant).
    let t0 = Instant::now();
    let mut tokens: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    let want = lockstep(rm, &refs, n, |p, _, row| {
        let t = argmax(row);
        tokens[p].push(t);
        t
    })?;
    let t_ref = t0.elapsed().as_secs_f64();
    // Candidate: teacher-forced on the reference's tokens, batched, then each prompt alone.
    let t1 = Instant::now();
    let got = lockstep(cm, &refs, n, |p, s, _| tokens[p][s])?;
    let t_batch = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let mut batch_diff = 0f32;
    for (p, prompt) in refs.iter().enumerate() {
        let alone = lockstep(cm, std::slice::from_ref(prompt), n, |_, s, _| tokens[p][s])?;
        for (a, b) in alone[0].iter().zip(&got[p]) {
            batch_diff = batch_diff.max(max_diff(a, b));
        }
    }
    let t_alone = t2.elapsed().as_secs_f64();
    let mut out = Vec::new();
    for (p, prompt) in refs.iter().enumerate() {
        let (w, g) = (&want[p], &got[p]);
        let mut r = PromptParity {
            prompt_tokens: prompt.len(),
            prefill_max_abs: max_diff(&w[0], &g[0]),
            decode_max_abs: 0.0,
            max_rel: 0.0,
            top1_agree: 0,
            steps: n,
            first_divergence: None,
            divergence_margin: None,
            ok: true,
            reference_tokens: tokens[p].clone(),
        };
        for (wr, gr) in w[0].chunks_exact(vocab).zip(g[0].chunks_exact(vocab)) {
            r.max_rel = r.max_rel.max(max_diff(wr, gr) / max_abs(wr).max(1e-6));
        }
        // Step s's token came from the last row of logits entry s (entry 0: the prompt).
        for s in 0..n {
            let wr = &w[s][w[s].len() - vocab..];
            let gr = &g[s][g[s].len() - vocab..];
            let d = max_diff(wr, gr);
            if s > 0 {
                r.decode_max_abs = r.decode_max_abs.max(d);
            }
            let scale = max_abs(wr).max(1e-6);
            r.max_rel = r.max_rel.max(d / scale);
            let (rt, ct) = (tokens[p][s], argmax(gr));
            if rt == ct {
                r.top1_agree += 1;
            } else if r.first_divergence.is_none() {
                let margin = (wr[rt as usize] - wr[ct as usize]) / scale;
                r.first_divergence = Some(s);
                r.divergence_margin = Some(margin);
                r.ok = margin <= opts.tie_margin;
            }
        }
        out.push(r);
    }
    Ok(ParityReport {
        model: reference.path().display().to_string(),
        reference: rm.device().to_string(),
        candidate: cm.device().to_string(),
        options: opts.clone(),
        pass: out.iter().all(|p| p.ok),
        prompts: out,
        candidate_batch_max_abs: batch_diff,
        secs: [t_ref, t_batch, t_alone],
    })
}
