//! `maspo eval`: run a MAS on a task split, judge every final answer, and report accuracy with a
//! bootstrap confidence interval, per-example results and cost.
//!
//! Owns the evaluation loop and its report; the MAS runtime, tasks and judges are used through
//! their own modules. Nothing here prints: progress goes to an observer, results to the caller
//! (and to files through [`output`]).

pub mod compare;
pub mod output;
pub mod plan;
pub mod stats;

use crate::judge::{Judge, JudgeItem, Verdict};
use crate::mas::{AgentGraph, MasError, PromptSet, Rollout, RunEvent, RunSettings, Runner, Trace};
use crate::mas::{AnswerExtractor, LanguageModel};
use crate::tasks::Example;
use serde::{Deserialize, Serialize};
use stats::{bootstrap_mean, Interval};
use std::time::Instant;

/// One judged example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalItem {
    /// Example id.
    pub id: String,
    /// The extracted final answer (or code).
    pub prediction: String,
    /// The judge's verdict.
    pub verdict: Verdict,
    /// Index of this example's trace in `traces.jsonl`.
    pub trace: usize,
    /// LLM calls of the rollout.
    pub calls: usize,
    /// Tokens of the rollout (prompt + generated, all calls).
    pub tokens: usize,
    /// The first per-node failure of the rollout, if any.
    pub error: Option<String>,
}

/// Cost of an evaluation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// LLM calls made.
    pub calls: usize,
    /// Tokens processed (prompt + generated).
    pub tokens: usize,
    /// Generated tokens.
    pub generated_tokens: usize,
    /// Seconds running the MAS.
    pub rollout_secs: f64,
    /// Seconds judging.
    pub judge_secs: f64,
}

/// The result of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Examples evaluated.
    pub n: usize,
    /// Examples judged correct.
    pub correct: usize,
    /// Accuracy (pass@1 for code) with a 95% bootstrap interval.
    pub accuracy: Interval,
    /// Mean partial credit (fraction of asserts for code).
    pub mean_score: f64,
    /// Rollouts with a per-node failure (counted wrong unless the judge found an answer).
    pub failed_rollouts: usize,
    /// Judge used.
    pub judge: String,
    /// Cost.
    pub cost: Cost,
    /// Per-example results.
    pub items: Vec<EvalItem>,
}

/// Progress of an evaluation, for observers (progress bars, logs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EvalEvent {
    /// Running the MAS.
    Run(RunEvent),
    /// Judging `n` predictions.
    Judging {
        /// Predictions to judge.
        n: usize,
    },
}

/// Everything `evaluate` needs.
pub struct EvalInputs<'a> {
    /// The MAS.
    pub graph: &'a AgentGraph,
    /// Its prompts.
    pub prompts: &'a PromptSet,
    /// The model every agent uses.
    pub lm: &'a dyn LanguageModel,
    /// Final-answer extraction for the task kind.
    pub extractor: &'a dyn AnswerExtractor,
    /// The judge.
    pub judge: &'a dyn Judge,
    /// Execution settings.
    pub run: &'a RunSettings,
    /// Seed of the bootstrap.
    pub seed: u64,
}

/// Runs the MAS on every example (all batched together), judges the final answers and returns
/// the report and the traces (aligned with `examples`). Per-example failures are in the report;
/// an error means the MAS itself could not run.
pub fn evaluate(
    inputs: &EvalInputs<'_>,
    examples: &[Example],
    observe: &mut dyn FnMut(EvalEvent),
) -> Result<(EvalReport, Vec<Trace>), MasError> {
    let t0 = Instant::now();
    let rollouts: Vec<Rollout<'_>> = examples
        .iter()
        .map(|example| Rollout {
            prompts: inputs.prompts,
            example,
            base: None,
        })
        .collect();
    let runner = Runner::new(inputs.graph, inputs.lm, inputs.extractor, inputs.run);
    let traces = runner.run(&rollouts, &mut |e| observe(EvalEvent::Run(e)))?;
    let rollout_secs = t0.elapsed().as_secs_f64();
    observe(EvalEvent::Judging { n: examples.len() });
    let t1 = Instant::now();
    let judge_items: Vec<JudgeItem<'_>> = examples
        .iter()
        .zip(&traces)
        .map(|(example, t)| JudgeItem {
            example,
            output: &t.final_output,
            answer: &t.final_answer,
        })
        .collect();
    let verdicts = inputs.judge.judge(&judge_items);
    let judge_secs = t1.elapsed().as_secs_f64();
    let report = report(
        inputs,
        examples,
        &traces,
        verdicts,
        rollout_secs,
        judge_secs,
    );
    Ok((report, traces))
}

fn report(
    inputs: &EvalInputs<'_>,
    examples: &[Example],
    traces: &[Trace],
    verdicts: Vec<Verdict>,
    rollout_secs: f64,
    judge_secs: f64,
) -> EvalReport {
    let items: Vec<EvalItem> = examples
        .iter()
        .zip(traces)
        .zip(verdicts)
        .enumerate()
        .map(|(i, ((ex, t), verdict))| EvalItem {
            id: ex.id.clone(),
            prediction: t.final_answer.clone(),
            verdict,
            trace: i,
            calls: t.calls(),
            tokens: t.tokens(),
            error: t.first_error(),
        })
        .collect();
    let correct: Vec<f64> = items
        .iter()
        .map(|it| f64::from(u8::from(it.verdict.correct)))
        .collect();
    let n = items.len();
    let cost = Cost {
        calls: traces.iter().map(Trace::calls).sum(),
        tokens: traces.iter().map(Trace::tokens).sum(),
        generated_tokens: traces
            .iter()
            .flat_map(|t| &t.nodes)
            .filter(|nd| !nd.reused)
            .map(|nd| nd.completion_tokens)
            .sum(),
        rollout_secs,
        judge_secs,
    };
    EvalReport {
        n,
        correct: items.iter().filter(|it| it.verdict.correct).count(),
        accuracy: bootstrap_mean(&correct, 2000, 0.95, inputs.seed),
        mean_score: if n == 0 {
            0.0
        } else {
            items.iter().map(|it| it.verdict.score).sum::<f64>() / n as f64
        },
        failed_rollouts: items.iter().filter(|it| it.error.is_some()).count(),
        judge: inputs.judge.name().to_string(),
        cost,
        items,
    }
}
