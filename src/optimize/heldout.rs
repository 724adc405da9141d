//! The held-out comparison: seed prompts vs optimized prompts on the same test items, through the
//! evaluation code `maspo eval` uses, with a paired bootstrap interval of the difference.

use crate::eval::stats::{paired_bootstrap_diff, Interval};
use crate::eval::{evaluate, EvalInputs, EvalReport};
use crate::mas::{MasError, PromptSet, Trace};
use crate::tasks::Example;
use serde::{Deserialize, Serialize};

/// Before/after on held-out items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOut {
    /// Split the items come from.
    pub split: String,
    /// Items.
    pub n: usize,
    /// Accuracy with the seed prompts.
    pub before: Interval,
    /// Accuracy with the optimized prompts.
    pub after: Interval,
    /// After − before, paired bootstrap.
    pub diff: Interval,
    /// Items only the optimized prompts got right.
    pub gained: usize,
    /// Items only the seed prompts got right.
    pub lost: usize,
    /// Rollouts with a failed call (seed, optimized).
    pub failed: (usize, usize),
    /// LLM calls of both evaluations.
    pub calls: usize,
    /// Seconds of both evaluations.
    pub secs: f64,
    /// Per item: (id, seed correct, optimized correct).
    pub items: Vec<(String, bool, bool)>,
    /// The "after" system when it is not the MAS with other prompts (`--method cot|cot_sc`).
    #[serde(default)]
    pub after_system: Option<String>,
}

/// One side of the comparison: its evaluation report and traces.
pub type Side = (EvalReport, Vec<Trace>);

/// Evaluates `before` (the inputs' prompts) and `after` on `examples`.
pub fn compare(
    inputs: &EvalInputs<'_>,
    after: &PromptSet,
    examples: &[Example],
    split: &str,
) -> Result<(HeldOut, Side, Side), MasError> {
    let ia = EvalInputs {
        prompts: after,
        ..*inputs
    };
    compare_systems(inputs, &ia, examples, split)
}

/// Evaluates two systems (graphs and prompts; the same model, judge and settings) on
/// `examples`: the seed MAS against an optimized one, or against a baseline system (CoT).
pub fn compare_systems(
    before: &EvalInputs<'_>,
    after: &EvalInputs<'_>,
    examples: &[Example],
    split: &str,
) -> Result<(HeldOut, Side, Side), MasError> {
    let inputs = before;
    let (rb, tb) = evaluate(before, examples, &mut |_| {})?;
    // The same system (an optimization that kept every seed prompt): evaluation is
    // deterministic, so its result is the seed's — computed once. Without a completion cache
    // (protected tasks) this halves the held-out work of such runs.
    let same = std::ptr::eq(before.graph, after.graph)
        && before.prompts == after.prompts
        && before.seed == after.seed;
    let (ra, ta) = if same {
        (rb.clone(), tb.clone())
    } else {
        evaluate(after, examples, &mut |_| {})?
    };
    let b: Vec<f64> = rb
        .items
        .iter()
        .map(|i| f64::from(u8::from(i.verdict.correct)))
        .collect();
    let a: Vec<f64> = ra
        .items
        .iter()
        .map(|i| f64::from(u8::from(i.verdict.correct)))
        .collect();
    let items: Vec<(String, bool, bool)> = rb
        .items
        .iter()
        .zip(&ra.items)
        .map(|(x, y)| (x.id.clone(), x.verdict.correct, y.verdict.correct))
        .collect();
    let h = HeldOut {
        split: split.into(),
        n: examples.len(),
        before: rb.accuracy,
        after: ra.accuracy,
        diff: paired_bootstrap_diff(&b, &a, 2000, 0.95, inputs.seed),
        gained: items.iter().filter(|(_, x, y)| !x && *y).count(),
        lost: items.iter().filter(|(_, x, y)| *x && !y).count(),
        failed: (rb.failed_rollouts, ra.failed_rollouts),
        calls: rb.cost.calls + if same { 0 } else { ra.cost.calls },
        secs: rb.cost.rollout_secs
            + rb.cost.judge_secs
            + if same {
                0.0
            } else {
                ra.cost.rollout_secs + ra.cost.judge_secs
            },
        items,
        after_system: None,
    };
    Ok((h, (rb, tb), (ra, ta)))
}
