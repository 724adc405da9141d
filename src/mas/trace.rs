//! Traces: what every agent of one rollout saw and said, with token counts and timing. A trace
//! is also the baseline a partial re-run reuses.

use crate::engine::StopReason;
use serde::{Deserialize, Serialize};

/// One agent's step in a rollout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeTrace {
    /// Agent id.
    pub agent: String,
    /// The filled prompt sent to the model (empty for vote agents).
    pub input: String,
    /// The context the agent saw (its predecessors' messages joined by the separator).
    pub context: String,
    /// The full output (for a vote agent: the winning answer).
    pub raw: String,
    /// What successors see: the summary (two-call protocol), the full output (direct passing),
    /// or for the terminal agent the extracted answer.
    pub short: String,
    /// Prompt tokens of the answer call.
    pub prompt_tokens: usize,
    /// Generated tokens of the answer call.
    pub completion_tokens: usize,
    /// Prompt + generated tokens of the summary call.
    pub summary_tokens: usize,
    /// LLM calls made for this node in this rollout (0 when reused or a vote).
    pub calls: usize,
    /// Calls answered from the persistent completion cache.
    pub cached_calls: usize,
    /// Why the answer call stopped.
    pub stop_reason: Option<StopReason>,
    /// Per-example failure (e.g. prompt over the context length); the rollout went on.
    pub error: Option<String>,
    /// Wall seconds of the engine batches this node's calls ran in (shared with the batch).
    pub batch_secs: f64,
    /// Copied from a baseline trace by a partial re-run (not recomputed).
    pub reused: bool,
}

/// One rollout of a MAS on one example.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The example's id.
    pub example_id: String,
    /// Hash of the prompt set used.
    pub prompts_hash: String,
    /// One entry per agent, in graph order.
    pub nodes: Vec<NodeTrace>,
    /// The terminal agent's full output.
    pub final_output: String,
    /// The answer extracted from it (answer or code).
    pub final_answer: String,
}

impl Trace {
    /// LLM calls made (reused nodes excluded).
    pub fn calls(&self) -> usize {
        self.nodes.iter().map(|n| n.calls).sum()
    }

    /// Tokens processed (prompt + generated, both calls; reused nodes excluded).
    pub fn tokens(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| !n.reused)
            .map(|n| n.prompt_tokens + n.completion_tokens + n.summary_tokens)
            .sum()
    }

    /// The first per-node error, if any.
    pub fn first_error(&self) -> Option<String> {
        self.nodes
            .iter()
            .find_map(|n| n.error.as_ref().map(|e| format!("{}: {e}", n.agent)))
    }
}
