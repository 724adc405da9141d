//! The one seam between the optimizer and the MAS: [`Evaluator`]. The search sees prompt sets,
//! traces and choices through it, never engines or tensors. [`MasEvaluator`] is the real one:
//! the batched [`Runner`] for rollouts, the mutator model for proposals, the evaluator model for
//! judgements (generated or by log-probability), the gold-answer judge (for `labels` and the
//! judge-agreement measurement),
//! and per-role metering (calls, tokens, cache hits, seconds, engine batches).

use super::meta::{self, parse_choice, Choice};
use super::OptimizeError;
use crate::engine::chat_template::Message;
use crate::engine::sampling::SamplingParams;
use crate::engine::{Completion, EngineError, GenRequest, Prompt, StopReason};
use crate::judge::{Judge, JudgeItem};
use crate::mas::{AgentGraph, AnswerExtractor, LanguageModel, PromptSet, Rollout, RunSettings};
use crate::mas::{Runner, Trace};
use crate::tasks::{Example, Gold, TaskKind};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Instant;

/// One rollout: a prompt set on a pool example, optionally re-running from an agent on a
/// baseline trace.
#[derive(Debug, Clone, Copy)]
pub struct RolloutJob<'a> {
    /// Prompts of every agent.
    pub prompts: &'a PromptSet,
    /// Index into the pool.
    pub example: usize,
    /// Partial re-run: (baseline trace, agent index).
    pub base: Option<(&'a Trace, usize)>,
}

/// One mutator call.
#[derive(Debug, Clone)]
pub struct ProposeJob {
    /// The meta-prompt.
    pub prompt: String,
    /// Seed of this call's sampling.
    pub seed: u64,
    /// The start of the reply and the closing tag that ends it, written for the mutator
    /// (`prefill_proposals`): the model continues the reply and stops at the tag.
    pub prefill: Option<(String, String)>,
}

/// A pre-filled mutator reply made whole again: the prefill, the continuation and the closing
/// tag `end` that stopped it. A continuation that starts over with the prefill's text (a server
/// that ignored the prefill) is taken as it is; one cut at the token limit is an error (the
/// block is unfinished), which the search retries.
pub fn prefilled_reply(prefill: &str, end: &str, c: &Completion) -> Result<String, String> {
    let mut text = if c.text.trim_start().starts_with(prefill.trim()) {
        c.text.clone()
    } else {
        format!("{prefill}{}", c.text)
    };
    match c.stop_reason {
        StopReason::MaxTokens | StopReason::ContextFull => Err(format!(
            "the reply was cut at the token limit ({} tokens) before {end}",
            c.generated_tokens()
        )),
        StopReason::EndOfTurn | StopReason::StopString(_) => {
            if !text.contains(end) {
                text.push_str(end);
            }
            Ok(text)
        }
    }
}

/// One judge call.
#[derive(Debug, Clone)]
pub struct JudgeJob {
    /// The judge prompt.
    pub prompt: String,
    /// Most tokens of the reply (generate mode).
    pub max_tokens: usize,
    /// Parse with the reference's rules.
    pub reference_parse: bool,
    /// The prompt asks for the verdict in `<choose>` tags: a reply without them is unparsable.
    pub tagged: bool,
}

/// A judge's answer to one job.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JudgeVerdict {
    /// The choice; `None` when the reply named neither.
    pub choice: Option<Choice>,
    /// ln p("A") − ln p("B") (log-prob judging only).
    pub margin: Option<f64>,
}

/// Cost of one model role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RoleCost {
    /// Calls (requests, or scorings).
    pub calls: u64,
    /// Calls answered from the completion cache.
    pub cached: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub generated_tokens: u64,
    /// Seconds inside the model.
    pub secs: f64,
    /// Engine submissions.
    pub batches: u64,
}

impl RoleCost {
    fn add(&mut self, o: &RoleCost) {
        self.calls += o.calls;
        self.cached += o.cached;
        self.prompt_tokens += o.prompt_tokens;
        self.generated_tokens += o.generated_tokens;
        self.secs += o.secs;
        self.batches += o.batches;
    }

    /// Prompt + generated tokens.
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.generated_tokens
    }
}

/// Cost by role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// The MAS's agents.
    pub agents: RoleCost,
    /// The mutator.
    pub mutator: RoleCost,
    /// The evaluator.
    pub evaluator: RoleCost,
}

impl Cost {
    /// Sum of two costs.
    pub fn plus(&self, o: &Cost) -> Cost {
        let mut c = *self;
        c.agents.add(&o.agents);
        c.mutator.add(&o.mutator);
        c.evaluator.add(&o.evaluator);
        c
    }

    /// All calls.
    pub fn calls(&self) -> u64 {
        self.agents.calls + self.mutator.calls + self.evaluator.calls
    }

    /// All tokens.
    pub fn tokens(&self) -> u64 {
        self.agents.tokens() + self.mutator.tokens() + self.evaluator.tokens()
    }
}

/// What the optimizer needs from the MAS and the models.
pub trait Evaluator {
    /// The MAS.
    fn graph(&self) -> &AgentGraph;
    /// The task kind.
    fn kind(&self) -> TaskKind;
    /// The optimization pool.
    fn pool(&self) -> &[Example];
    /// Runs rollouts (batched); one trace per job, in order.
    fn rollouts(&self, jobs: &[RolloutJob<'_>]) -> Result<Vec<Trace>, OptimizeError>;
    /// Mutator calls (batched): the reply text, or why the call failed.
    fn propose(&self, jobs: &[ProposeJob]) -> Vec<Result<String, String>>;
    /// Judge calls (batched).
    fn judge(&self, jobs: &[JudgeJob]) -> Vec<JudgeVerdict>;
    /// Gold-answer correctness of final outputs (`labels`, and the judge-agreement
    /// measurement); `None` where no gold exists.
    fn grade(&self, items: &[(usize, &Trace)]) -> Vec<Option<bool>>;
    /// [`Evaluator::grade`] in words for the mutator (`labels`): right or wrong, the answer
    /// given, the correct one and why.
    fn grade_explained(&self, items: &[(usize, &Trace)]) -> Vec<Option<String>> {
        self.grade(items)
            .into_iter()
            .map(|g| {
                g.map(|ok| {
                    if ok {
                        "Right: the team's final answer is correct.".to_string()
                    } else {
                        "Wrong: the team's final answer is incorrect.".to_string()
                    }
                })
            })
            .collect()
    }
    /// Cost since creation.
    fn cost(&self) -> Cost;
}

/// A gold verdict in words for the mutator.
fn explain(example: &Example, v: &crate::judge::Verdict) -> String {
    let given = if v.prediction.trim().is_empty() {
        "none could be read from the output".to_string()
    } else {
        meta::shown_short(&v.prediction, 200)
    };
    match (&example.gold, v.correct) {
        (_, true) => format!("Right: the team's final answer ({given}) is correct."),
        (Gold::Answer(gold), false) => format!(
            "Wrong: the team's final answer was {given}; the correct answer is {}.",
            meta::shown_short(gold, 200)
        ),
        (Gold::Code(_), false) => format!(
            "Wrong: the team's code fails the task's tests: {}",
            meta::shown_short(&v.detail, 300)
        ),
    }
}

/// A model wrapped with a cost meter; optionally submits one request at a time (the unbatched
/// reference point for speed comparisons).
pub struct Metered<'a> {
    lm: &'a dyn LanguageModel,
    cost: Mutex<RoleCost>,
    one_at_a_time: bool,
}

impl<'a> Metered<'a> {
    /// Meters `lm`.
    pub fn new(lm: &'a dyn LanguageModel, one_at_a_time: bool) -> Self {
        Self {
            lm,
            cost: Mutex::new(RoleCost::default()),
            one_at_a_time,
        }
    }

    /// Cost so far.
    pub fn cost(&self) -> RoleCost {
        *self.cost.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn account(&self, out: &[Result<Completion, EngineError>], secs: f64, batches: u64) {
        let mut c = self.cost.lock().unwrap_or_else(|p| p.into_inner());
        c.calls += out.len() as u64;
        c.secs += secs;
        c.batches += batches;
        for r in out.iter().flatten() {
            c.cached += u64::from(r.from_cache);
            c.prompt_tokens += r.prompt_tokens as u64;
            c.generated_tokens += r.generated_tokens() as u64;
        }
    }
}

impl LanguageModel for Metered<'_> {
    fn generate(
        &self,
        requests: &[GenRequest],
        on_progress: &mut dyn FnMut(usize),
    ) -> Vec<Result<Completion, EngineError>> {
        if requests.is_empty() {
            return Vec::new();
        }
        let t0 = Instant::now();
        let (out, batches) = if self.one_at_a_time {
            let mut out = Vec::with_capacity(requests.len());
            for (i, r) in requests.iter().enumerate() {
                let mut one = self
                    .lm
                    .generate(std::slice::from_ref(r), &mut |_| on_progress(i));
                out.push(one.pop().unwrap_or_else(|| {
                    Err(EngineError::Request("the model returned no result".into()))
                }));
            }
            (out, requests.len() as u64)
        } else {
            (self.lm.generate(requests, on_progress), 1)
        };
        self.account(&out, t0.elapsed().as_secs_f64(), batches);
        out
    }

    fn describe(&self) -> String {
        self.lm.describe()
    }

    fn generate_flow(
        &self,
        initial: Vec<GenRequest>,
        on_done: &mut dyn FnMut(usize, Result<Completion, EngineError>) -> Vec<GenRequest>,
    ) {
        let t0 = Instant::now();
        let mut calls = 0u64;
        if self.one_at_a_time {
            let mut queue: std::collections::VecDeque<GenRequest> = initial.into();
            while let Some(r) = queue.pop_front() {
                let out = self.lm.generate(std::slice::from_ref(&r), &mut |_| {});
                let r = out.into_iter().next().unwrap_or_else(|| {
                    Err(EngineError::Request("the model returned no result".into()))
                });
                self.account(std::slice::from_ref(&r), 0.0, 1);
                queue.extend(on_done(calls as usize, r));
                calls += 1;
            }
        } else {
            self.lm.generate_flow(initial, &mut |i, r| {
                self.account(std::slice::from_ref(&r), 0.0, 0);
                on_done(i, r)
            });
            let mut c = self.cost.lock().unwrap_or_else(|p| p.into_inner());
            c.batches += 1;
        }
        let mut c = self.cost.lock().unwrap_or_else(|p| p.into_inner());
        c.secs += t0.elapsed().as_secs_f64();
    }

    fn score_batch(&self, items: &[(Prompt, Vec<String>)]) -> Vec<Result<Vec<f64>, EngineError>> {
        let t0 = Instant::now();
        let out = if self.one_at_a_time {
            items.iter().map(|(p, c)| self.lm.score(p, c)).collect()
        } else {
            self.lm.score_batch(items)
        };
        let mut c = self.cost.lock().unwrap_or_else(|p| p.into_inner());
        c.calls += items.len() as u64;
        c.batches += if self.one_at_a_time {
            items.len() as u64
        } else {
            1
        };
        c.secs += t0.elapsed().as_secs_f64();
        out
    }

    fn score(&self, prompt: &Prompt, continuations: &[String]) -> Result<Vec<f64>, EngineError> {
        let t0 = Instant::now();
        let out = self.lm.score(prompt, continuations);
        let mut c = self.cost.lock().unwrap_or_else(|p| p.into_inner());
        c.calls += 1;
        c.batches += 1;
        c.secs += t0.elapsed().as_secs_f64();
        out
    }
}

/// The real evaluator.
pub struct MasEvaluator<'a> {
    /// The MAS.
    pub graph: &'a AgentGraph,
    /// The pool.
    pub pool: &'a [Example],
    /// Agents' model.
    pub agents: Metered<'a>,
    /// The mutator's model.
    pub mutator: Metered<'a>,
    /// The evaluator's model.
    pub evaluator: Metered<'a>,
    /// Answer extraction.
    pub extractor: &'a dyn AnswerExtractor,
    /// MAS execution settings.
    pub run: RunSettings,
    /// Mutator sampling temperature.
    pub mutator_temperature: f32,
    /// Most tokens of a proposal.
    pub mutator_max_tokens: usize,
    /// Judge by log-probability of "A" vs "B" instead of generating.
    pub logprob: bool,
    /// Gold-answer judge (`labels` scores with it; judge agreement with gold is measured with
    /// it either way).
    pub gold: Option<&'a dyn Judge>,
}

impl MasEvaluator<'_> {
    /// The gold judge's verdicts on the final outputs of `items` (pool index, trace); `None`
    /// without a gold judge.
    fn gold_verdicts(&self, items: &[(usize, &Trace)]) -> Option<Vec<crate::judge::Verdict>> {
        let judge = self.gold?;
        let ji: Vec<JudgeItem<'_>> = items
            .iter()
            .map(|(i, t)| JudgeItem {
                example: &self.pool[*i],
                output: &t.final_output,
                answer: &t.final_answer,
            })
            .collect();
        Some(judge.judge(&ji))
    }
}

impl Evaluator for MasEvaluator<'_> {
    fn graph(&self) -> &AgentGraph {
        self.graph
    }

    fn kind(&self) -> TaskKind {
        self.run.kind
    }

    fn pool(&self) -> &[Example] {
        self.pool
    }

    fn rollouts(&self, jobs: &[RolloutJob<'_>]) -> Result<Vec<Trace>, OptimizeError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let rollouts: Vec<Rollout<'_>> = jobs
            .iter()
            .map(|j| Rollout {
                prompts: j.prompts,
                example: &self.pool[j.example],
                base: j.base,
            })
            .collect();
        let runner = Runner::new(self.graph, &self.agents, self.extractor, &self.run);
        Ok(runner.run(&rollouts, &mut |_| {})?)
    }

    fn propose(&self, jobs: &[ProposeJob]) -> Vec<Result<String, String>> {
        let requests: Vec<GenRequest> = jobs
            .iter()
            .map(|j| {
                let mut r = GenRequest::chat(
                    vec![Message::user(j.prompt.clone())],
                    self.mutator_max_tokens,
                );
                if self.mutator_temperature > 0.0 {
                    r.sampling = SamplingParams {
                        temperature: self.mutator_temperature,
                        top_k: 0,
                        top_p: 1.0,
                        seed: j.seed,
                    };
                }
                if let Some((start, end)) = &j.prefill {
                    r.prefill = Some(start.clone());
                    r.stop = vec![end.clone()];
                }
                r
            })
            .collect();
        self.mutator
            .generate(&requests, &mut |_| {})
            .into_iter()
            .zip(jobs)
            .map(|(r, j)| {
                let c = r.map_err(|e| e.to_string())?;
                match &j.prefill {
                    None => Ok(c.text),
                    Some((start, end)) => prefilled_reply(start, end, &c),
                }
            })
            .collect()
    }

    fn judge(&self, jobs: &[JudgeJob]) -> Vec<JudgeVerdict> {
        if self.logprob {
            let items: Vec<(Prompt, Vec<String>)> = jobs
                .iter()
                .map(|j| {
                    let prompt = Prompt::Chat(vec![Message::user(j.prompt.clone())]);
                    (prompt, vec!["A".to_string(), "B".to_string()])
                })
                .collect();
            return self
                .evaluator
                .score_batch(&items)
                .into_iter()
                .map(|r| match r {
                    Ok(lp) if lp.len() == 2 => {
                        let margin = lp[0] - lp[1];
                        let choice = if margin > 0.0 {
                            Some(Choice::A)
                        } else if margin < 0.0 {
                            Some(Choice::B)
                        } else {
                            None
                        };
                        JudgeVerdict {
                            choice,
                            margin: Some(margin),
                        }
                    }
                    _ => JudgeVerdict::default(),
                })
                .collect();
        }
        let requests: Vec<GenRequest> = jobs
            .iter()
            .map(|j| GenRequest::chat(vec![Message::user(j.prompt.clone())], j.max_tokens))
            .collect();
        self.evaluator
            .generate(&requests, &mut |_| {})
            .into_iter()
            .zip(jobs)
            .map(|(r, j)| JudgeVerdict {
                choice: r
                    .ok()
                    .and_then(|c| parse_choice(&c.text, j.reference_parse, j.tagged)),
                margin: None,
            })
            .collect()
    }

    fn grade(&self, items: &[(usize, &Trace)]) -> Vec<Option<bool>> {
        match self.gold_verdicts(items) {
            Some(v) => v.into_iter().map(|v| Some(v.correct)).collect(),
            None => vec![None; items.len()],
        }
    }

    fn grade_explained(&self, items: &[(usize, &Trace)]) -> Vec<Option<String>> {
        match self.gold_verdicts(items) {
            Some(v) => v
                .iter()
                .zip(items)
                .map(|(v, (i, _))| Some(explain(&self.pool[*i], v)))
                .collect(),
            None => vec![None; items.len()],
        }
    }

    fn cost(&self) -> Cost {
        Cost {
            agents: self.agents.cost(),
            mutator: self.mutator.cost(),
            evaluator: self.evaluator.cost(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::Verdict;

    fn verdict(correct: bool, prediction: &str, detail: &str) -> Verdict {
        Verdict {
            correct,
            score: f64::from(u8::from(correct)),
            prediction: prediction.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn gold_verdicts_are_explained_to_the_mutator() {
        let ex = Example {
            id: "q1".into(),
            question: "Which?".into(),
            gold: Gold::Answer("C".into()),
        };
        assert_eq!(
            explain(&ex, &verdict(false, "B", "B != C")),
            "Wrong: the team's final answer was B; the correct answer is C."
        );
        assert_eq!(
            explain(&ex, &verdict(true, "C", "")),
            "Right: the team's final answer (C) is correct."
        );
        assert!(explain(&ex, &verdict(false, " ", "")).contains("none could be read"));
        let code = Example {
            gold: Gold::Code(Default::default()),
            ..ex
        };
        assert!(explain(
            &code,
            &verdict(false, "def f(): pass", "assert f(2) == 4 failed")
        )
        .contains("assert f(2) == 4 failed"));
    }
}
