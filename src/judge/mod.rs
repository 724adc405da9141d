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
