//! Judging predictions against gold references: answer extraction + normalized comparison for
//! math and choice tasks, sandboxed test execution for code, and an LLM judge.
//!
//! A judge never fails an evaluation: anything that goes wrong with one prediction (nothing to
//! extract, code that crashes or hangs) is a [`Verdict`] with score 0 and the reason.

use serde::{Deserialize, Serialize};

/// The judgement of one prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Counted as correct (accuracy / pass@1).
    pub correct: bool,
    /// Partial credit in [0, 1] (fraction of asserts passed for code; 0 or 1 otherwise).
    pub score: f64,
    /// What was extracted from the output and compared (answer or code).
    pub prediction: String,
    /// Why: the normalized forms compared, the failing asserts, the sandbox outcome.
    pub detail: String,
}

pub mod answer;
pub mod answer_extractor;
pub mod code;
pub mod llm;
pub mod sandbox;

use crate::tasks::Example;

/// One prediction to judge.
#[derive(Debug, Clone, Copy)]
pub struct JudgeItem<'a> {
    /// The example (question and gold).
    pub example: &'a Example,
    /// The MAS's full final output.
    pub output: &'a str,
    /// The answer extracted from it by the runtime (answer or code).
    pub answer: &'a str,
}

/// Judges many predictions at once (code judges run programs in parallel, the LLM judge batches
/// its calls). One verdict per item, in order; per-item problems are verdicts, not errors.
pub trait Judge: Sync {
    /// A short name for reports (`exact`, `code`, `llm`).
    fn name(&self) -> &str;
    /// The verdicts.
    fn judge(&self, items: &[JudgeItem<'_>]) -> Vec<Verdict>;
}
