//! The optimizer's state between steps: beams, best prompts, hard cases, the schedule cursor,
//! counters and history. Saved whole as `checkpoint.json` after every step, so a run resumes
//! exactly where the last finished step left it.

use super::evaluator::Cost;
use crate::mas::PromptSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One beam member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BeamNode {
    /// The prompt.
    pub prompt: String,
    /// Cumulative score (sum of accepted step scores along its path, or a refresh score).
    pub cum: f64,
    /// Candidate id that produced it (0 = the seed prompt).
    pub id: u64,
    /// PromptBreeder: the mutation prompt this member carries (inherited by its mutants; a
    /// hypermutation replaces it). `None` elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutation: Option<String>,
}

/// A prompt the search judged, with its score (OPRO's trajectory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// The prompt.
    pub prompt: String,
    /// Its win rate against the prompt current when it was judged (0..1; ½ = as good).
    pub score: f64,
    /// The step it was judged in.
    pub step: usize,
}

/// A question where the candidate lost locally (shown downstream as feedback).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BadCase {
    /// Pool example id.
    pub example: String,
    /// The start of the agent's output.
    pub output: String,
}

/// Per-agent optimization state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// Agent id.
    pub agent: String,
    /// The beam.
    pub beam: Vec<BeamNode>,
    /// The best node found (its prompt is the agent's committed prompt).
    pub best: BeamNode,
    /// Steps done.
    pub explored: usize,
    /// Misalignment cases (pool example ids, priority order), injected into successors' batches.
    pub misleading: Vec<String>,
    /// Recent local losses (the `feedback` fix shows them to predecessors' mutator).
    pub bad_cases: Vec<BadCase>,
    /// Misalignment rate per step (mean over the step's candidates; non-terminal agents).
    pub misalignment: Vec<Option<f64>>,
    /// Beam refresh kept the top prompt (Kendall top-1), per refresh.
    pub kendall: Vec<bool>,
    /// Consecutive steps without improvement in the current turn (round robin).
    pub turn_fails: usize,
    /// Every prompt judged for this agent with its score (OPRO and PromptBreeder; empty for
    /// the other methods).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trajectory: Vec<Scored>,
}

/// Where the schedule stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Sweep (0-based).
    pub sweep: usize,
    /// Position in the topological order of optimizable agents.
    pub pos: usize,
    /// Steps done in the current turn.
    pub in_turn: usize,
    /// The current turn's refresh is done (or not needed).
    pub refreshed: bool,
}

/// Judging counters (position bias, unparsable replies).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JudgeStats {
    /// Judge replies (or scorings).
    pub verdicts: u64,
    /// Of those, the first position ("A") was chosen.
    pub chose_first: u64,
    /// Of those, verdicts by log-probability (they carry a margin, which both orders sum).
    #[serde(default)]
    pub scored: u64,
    /// Replies that named neither A nor B.
    pub unparsed: u64,
    /// Comparisons judged in both orders.
    pub both_orders: u64,
    /// Of those, the same output won in both orders.
    pub consistent: u64,
    /// Comparisons decided without the judge (identical or empty outputs).
    pub decided_without_judge: u64,
    /// Final-answer comparisons (global and terminal) the judge decided where exactly one of
    /// the two outputs is correct by the gold answer — the pairs its agreement is measured on.
    #[serde(default)]
    pub gold_pairs: u64,
    /// Of those, the judge's verdict favoured the correct output (a tie counts half).
    #[serde(default)]
    pub gold_agree: f64,
    /// Single verdicts (one order) on those pairs.
    #[serde(default)]
    pub gold_verdicts: u64,
    /// Of those, the verdict named the correct output.
    #[serde(default)]
    pub gold_verdicts_agree: u64,
}

/// Mutator counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProposalStats {
    /// Proposals requested.
    pub requested: u64,
    /// Replies without a `<prompt>` block (or failed calls).
    pub format_failures: u64,
    /// Proposals the sanitizer rejected.
    pub rejected: u64,
    /// Proposals identical to their parent or to the node's other proposal.
    pub duplicates: u64,
    /// Candidates evaluated.
    pub evaluated: u64,
    /// Candidates accepted (score > 0).
    pub accepted: u64,
    /// Candidates dropped by racing after half their batch (could not be accepted).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub raced_out: u64,
    /// Proposals whose wrappers (a lead-in, quotes, a fence, tags, a role label) were removed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cleaned: u64,
    /// Proposals rejected for copying optimization-question text (also counted in `rejected`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub overfit: u64,
    /// Mutator calls repeated for a failed or unchanged proposal (`proposal_retries`); not
    /// counted in `requested`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u64,
    /// Per proposal form asked for (`advice`, `rewrite`, `delete`): proposals, evaluated,
    /// accepted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub forms: BTreeMap<String, FormStats>,
}

/// One proposal form's outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormStats {
    /// Proposals asked in this form.
    pub proposed: u64,
    /// Of them, evaluated by the judge.
    pub evaluated: u64,
    /// Of them, accepted.
    pub accepted: u64,
}

impl ProposalStats {
    /// Counts `records`' forms (records without one, PromptBreeder's, are not counted).
    pub fn tally<'r>(&mut self, records: impl IntoIterator<Item = (&'r str, bool, bool)>) {
        for (form, evaluated, accepted) in records {
            let f = self.forms.entry(form.to_string()).or_default();
            f.proposed += 1;
            f.evaluated += u64::from(evaluated);
            f.accepted += u64::from(accepted);
        }
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One finished unit of work, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Unit index (0-based).
    pub unit: usize,
    /// `step` or `refresh`.
    pub kind: String,
    /// Agent id.
    pub agent: String,
    /// Sweep.
    pub sweep: usize,
    /// The agent's step index (its `explored` before the step).
    pub step: usize,
    /// Best step score among the candidates (None when none was evaluated).
    pub best_score: Option<f64>,
    /// The agent's best cumulative score after the unit.
    pub best_cum: f64,
    /// The beam's cumulative scores after the unit.
    pub beam: Vec<f64>,
    /// Mean misalignment rate of the step's candidates.
    pub misalignment: Option<f64>,
    /// Candidates evaluated / accepted.
    pub evaluated: usize,
    /// Accepted.
    pub accepted: usize,
    /// The best prompt changed.
    pub improved: bool,
    /// Cost so far.
    pub cost: Cost,
}

/// Everything a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Format version of this file.
    pub version: u32,
    /// The committed prompt set (P).
    pub prompts: PromptSet,
    /// The seed prompts.
    pub seeds: PromptSet,
    /// Per optimizable agent, in topological order.
    pub agents: Vec<AgentState>,
    /// The schedule's position.
    pub cursor: Cursor,
    /// Units finished.
    pub units: usize,
    /// Next candidate id.
    pub next_id: u64,
    /// Lines of `candidates.jsonl` that belong to finished units.
    pub candidate_lines: usize,
    /// Judging counters.
    pub judge: JudgeStats,
    /// Mutator counters.
    pub proposals: ProposalStats,
    /// One record per finished unit.
    pub history: Vec<StepRecord>,
    /// Cost so far (all sessions of this run).
    pub cost: Cost,
    /// Wall seconds of optimization so far (all sessions).
    pub elapsed_secs: f64,
    /// Why the optimization stopped early (budget), if it did.
    pub stopped: Option<String>,
    /// All units are done.
    pub finished: bool,
    /// `--method tpe`: its pool and trials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpe: Option<TpeState>,
}

/// The TPE / MIPRO-style search: the generated candidate pool and the trials so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TpeState {
    /// Per optimizable agent (topological order), its candidate prompts; index 0 is the
    /// starting prompt.
    pub pool: Vec<Vec<String>>,
    /// Finished trials (a candidate index per agent, the win rate against the seed system).
    pub trials: Vec<super::tpe::Trial>,
}

/// The current checkpoint format.
pub const STATE_VERSION: u32 = 1;

impl State {
    /// The initial state: every agent's beam holds its seed prompt.
    pub fn new(seeds: &PromptSet, order: &[String]) -> Self {
        let agents = order
            .iter()
            .map(|id| {
                let node = BeamNode {
                    prompt: seeds.get(id).unwrap_or_default().to_string(),
                    cum: 0.0,
                    id: 0,
                    mutation: None,
                };
                AgentState {
                    agent: id.clone(),
                    beam: vec![node.clone()],
                    best: node,
                    explored: 0,
                    misleading: Vec::new(),
                    bad_cases: Vec::new(),
                    misalignment: Vec::new(),
                    kendall: Vec::new(),
                    turn_fails: 0,
                    trajectory: Vec::new(),
                }
            })
            .collect();
        Self {
            version: STATE_VERSION,
            prompts: seeds.clone(),
            seeds: seeds.clone(),
            agents,
            cursor: Cursor::default(),
            units: 0,
            next_id: 1,
            candidate_lines: 0,
            judge: JudgeStats::default(),
            proposals: ProposalStats::default(),
            history: Vec::new(),
            cost: Cost::default(),
            elapsed_secs: 0.0,
            stopped: None,
            finished: false,
            tpe: None,
        }
    }
}
