//! The search: MASPO's evolutionary beam search over each agent's prompt, visiting agents in
//! topological order (docs/design/algorithm.md §4.2), with the round-robin and single-cycle schedules.
//!
//! A unit of work is a beam step or a beam refresh of one agent. Every phase of a step is one
//! batch through the [`Evaluator`] across all beam nodes, batch parts, candidates and questions:
//! baseline rollouts, proposals, partial re-runs, judgements. Every random draw derives its seed
//! from (run seed, purpose, agent, step, node, part, …), never from call order, so a unit
//! recomputed after a resume gives the same result.

use super::breeder::{self, Operator};
use super::clean::{clean_proposal, copied_question_text, echoed_instructions, same_words};
use super::config::{CaseSampling, JudgeOrder, Method, OptimizeSettings, ProposalForm, Schedule};
use super::edit;
use super::evaluator::{Evaluator, JudgeJob, JudgeVerdict, ProposeJob, RolloutJob};
use super::meta::{self, Choice, Comparison, Form, JudgeInput, ProposalInput, Sample};
use super::opro;
use super::sanitize::{check_answer_format, check_substance, sanitize};

/// A proposal that repeats this many consecutive words of an optimization question it was
/// written from is rejected as overfit.
const COPIED_WORDS: usize = 8;
use super::state::{BadCase, BeamNode, Scored, State, StepRecord, TpeState};
use super::tpe;
use super::OptimizeError;
use crate::mas::seeds::role_description;
use crate::mas::{PromptSet, Trace};
use crate::rng::{derive_seed, sample_indices, str_seed};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Improvement threshold of the best cumulative score.
const EPS: f64 = 1e-6;

/// What the next unit of work is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Re-score agent `pos`'s beam against its committed prompt.
    Refresh(usize),
    /// One beam step of agent `pos`.
    Step(usize),
    /// One step of naive joint optimization: every agent rewritten together.
    Joint,
    /// TPE: generate the candidate pool.
    TpePool,
    /// TPE: one trial.
    TpeTrial,
}

/// The next unit, advancing the cursor past finished turns; `None` when the schedule is done.
pub fn next_unit(state: &mut State, s: &OptimizeSettings) -> Option<Unit> {
    match s.method {
        Method::Seed | Method::Cot | Method::CotSc | Method::SelfRefine => return None,
        Method::NaiveJoint => {
            let depth = s.depth();
            return state
                .agents
                .iter()
                .any(|a| a.explored < depth)
                .then_some(Unit::Joint);
        }
        Method::Tpe => {
            let (_, trials, _) = tpe::plan(state.agents.len(), s.proposals, s.depth());
            return match &state.tpe {
                None => Some(Unit::TpePool),
                // Every proposal failed: nothing to choose between.
                Some(t) if t.pool.iter().all(|p| p.len() <= 1) => None,
                Some(t) if t.trials.len() < trials => Some(Unit::TpeTrial),
                Some(_) => None,
            };
        }
        Method::Maspo | Method::Spo | Method::Opro | Method::PromptBreeder => {}
    }
    let n = state.agents.len();
    let depth = s.depth();
    loop {
        if state.agents.iter().all(|a| a.explored >= depth) {
            return None;
        }
        let c = &mut state.cursor;
        let max_sweeps = match s.schedule {
            Schedule::Maspo => s.sweeps,
            Schedule::SingleCycle => 1,
            // Each turn does at least one step, so sweeps end.
            Schedule::RoundRobin => usize::MAX,
        };
        if c.sweep >= max_sweeps || n == 0 {
            return None;
        }
        let a = &state.agents[c.pos];
        let turn_len = match s.schedule {
            Schedule::Maspo => s.steps_per_turn,
            Schedule::SingleCycle | Schedule::RoundRobin => depth,
        };
        let turn_over = a.explored >= depth
            || c.in_turn >= turn_len
            || (s.schedule == Schedule::RoundRobin && a.turn_fails >= s.patience.max(1));
        if !turn_over {
            let refresh = s.schedule == Schedule::Maspo
                && s.beam_refresh
                && c.in_turn == 0
                && !c.refreshed
                && a.explored > 0
                && !a.beam.is_empty();
            if refresh {
                return Some(Unit::Refresh(c.pos));
            }
            return Some(Unit::Step(c.pos));
        }
        state.agents[c.pos].turn_fails = 0;
        let c = &mut state.cursor;
        c.pos += 1;
        c.in_turn = 0;
        c.refreshed = false;
        if c.pos >= n {
            c.pos = 0;
            c.sweep += 1;
        }
    }
}

/// Progress of the search, for observers.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SearchEvent {
    /// A phase is submitted.
    Phase {
        /// Phase name.
        phase: &'static str,
        /// Calls (jobs) in it.
        jobs: usize,
    },
    /// A candidate was decided.
    Candidate(Box<CandidateRecord>),
}

/// One line of `candidates.jsonl` (no wall-clock values: the file is compared for identity).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateRecord {
    /// Candidate id.
    pub id: u64,
    /// `proposal` or `refresh`.
    pub kind: &'static str,
    /// Agent id.
    pub agent: String,
    /// Sweep.
    pub sweep: usize,
    /// The agent's step.
    pub step: usize,
    /// Parent candidate id (0 = seed).
    pub parent: u64,
    /// Which part of the batch fed the proposal.
    pub part: usize,
    /// The prompt.
    pub prompt: String,
    /// `evaluated`, `format_failure`, `rejected`, `duplicate`, `unchanged` or `anchor`.
    pub status: String,
    /// Why a proposal was not evaluated.
    pub reason: Option<String>,
    /// Local win rate.
    pub local: Option<f64>,
    /// Lookahead win rate.
    pub lookahead: Option<f64>,
    /// Global win rate.
    pub global: Option<f64>,
    /// Terminal (role-aware) win rate.
    pub terminal: Option<f64>,
    /// Score (win − 0.5).
    pub score: Option<f64>,
    /// Score > 0.
    pub accepted: bool,
    /// Questions of the batch (pool example ids).
    pub questions: Vec<String>,
    /// Per question of `questions` (same order): the candidate's joint win there, the values
    /// Pareto selection compares; `null` for a question it was not judged on (raced out).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub question_wins: Vec<Option<f64>>,
    /// Misalignment rate of this candidate.
    pub misalignment: Option<f64>,
    /// Dropped by racing after half its batch (its rates cover that half).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub raced_out: bool,
    /// Wrappers removed from the mutator's proposal (`lead-in`, `quotes`, …), comma separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleaned: Option<String>,
    /// Mutator calls this proposal took beyond the first (`proposal_retries`).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub retries: u32,
    /// The form the mutator was asked for (`advice`, `rewrite` or `delete`, see `proposal_form`);
    /// `null` for PromptBreeder's operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<&'static str>,
    /// PromptBreeder: the operator that made it and the mutation prompt it carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<&'static str>,
    /// PromptBreeder: the mutation prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mutation: Option<String>,
}

impl CandidateRecord {
    /// A record with no scores yet (status `evaluated`).
    fn new(id: u64, kind: &'static str, agent: &str, at: (usize, usize), parent: u64) -> Self {
        Self {
            id,
            kind,
            agent: agent.to_string(),
            sweep: at.0,
            step: at.1,
            parent,
            part: 0,
            prompt: String::new(),
            status: "evaluated".into(),
            reason: None,
            local: None,
            lookahead: None,
            global: None,
            terminal: None,
            score: None,
            accepted: false,
            questions: Vec::new(),
            question_wins: Vec::new(),
            misalignment: None,
            raced_out: false,
            cleaned: None,
            retries: 0,
            form: None,
            operator: None,
            mutation: None,
        }
    }
}

/// Counts the proposal forms of `records` in `state` (report.md's per-form line).
fn tally_forms(state: &mut State, records: &[CandidateRecord]) {
    state.proposals.tally(
        records
            .iter()
            .filter_map(|r| r.form.map(|f| (f, r.status == "evaluated", r.accepted))),
    );
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// What one mutator reply comes to, before anything is counted.
struct Outcome {
    /// The sanitized prompt (the parent's own text when only whitespace or punctuation
    /// changed), or the status (`format_failure`, `rejected`) and reason.
    prompt: Result<String, (&'static str, String)>,
    /// Wrappers removed, comma separated.
    cleaned: Option<String>,
    /// Rejected for copying optimization-question text.
    overfit: bool,
}

/// Result of evaluating one candidate against its baseline.
#[derive(Debug, Clone, Default)]
struct Eval {
    local: Option<f64>,
    lookahead: Option<f64>,
    global: Option<f64>,
    terminal: Option<f64>,
    score: f64,
    bad: Vec<BadCase>,
    misleading: Vec<String>,
    misalignment: Option<f64>,
    /// Dropped by racing after half its batch.
    raced_out: bool,
    /// Per judged question (pool index): the candidate's joint win there (Pareto selection).
    per_q: Vec<(usize, f64)>,
}

/// Re-runs and judged comparisons of some (candidate, question) pairs.
struct Judged {
    /// The candidate's trace per (candidate, batch position).
    new_of: HashMap<(usize, usize), Trace>,
    /// The comparisons.
    pend: Vec<Pending>,
    /// Candidate win per comparison (0, ½ or 1).
    win: Vec<f64>,
}

/// A pending pairwise comparison of one candidate on one question.
struct Pending {
    cand: usize,
    q: usize,
    comparison: Comparison,
    /// Successor index for lookahead.
    succ: usize,
    /// Job indices: (job, candidate shown first).
    jobs: Vec<(usize, bool)>,
    /// Decided without the judge.
    fixed: Option<f64>,
}

/// The search over one evaluator.
pub struct Search<'a> {
    ev: &'a dyn Evaluator,
    s: &'a OptimizeSettings,
    /// Optimizable agents (graph indices) in topological order.
    order: Vec<usize>,
    index_of: HashMap<String, usize>,
}

/// One candidate in a step.
struct Cand {
    node: usize,
    prompt: String,
    id: u64,
    /// PromptBreeder: the mutation prompt the child carries.
    mutation: Option<String>,
}

/// How one proposal is asked for: the mutator's prompt, and for PromptBreeder the operator and
/// the mutation prompt the child will carry (a hypermutation's is rewritten first).
struct Ask {
    prompt: String,
    operator: Option<Operator>,
    mutation: Option<String>,
    style: &'static str,
    /// What MASPO's meta-prompt asks for (`None`: OPRO's and PromptBreeder's own prompts).
    form: Option<Form>,
}

impl<'a> Search<'a> {
    /// A search of `ev`'s graph with settings `s`.
    pub fn new(ev: &'a dyn Evaluator, s: &'a OptimizeSettings) -> Self {
        let order = ev.graph().optimizable();
        let index_of = ev
            .pool()
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        Self {
            ev,
            s,
            order,
            index_of,
        }
    }

    /// Agent ids in optimization order.
    pub fn agent_ids(&self) -> Vec<String> {
        self.order
            .iter()
            .map(|&i| self.ev.graph().agent(i).id.clone())
            .collect()
    }

    fn seed(&self, parts: &[u64]) -> u64 {
        let mut all = vec![self.s.seed];
        all.extend_from_slice(parts);
        derive_seed(&all)
    }

    /// The prompts peers run with while agent `pos` is optimized.
    fn peers(&self, state: &State) -> PromptSet {
        match self.s.schedule {
            Schedule::SingleCycle => state.seeds.clone(),
            _ => state.prompts.clone(),
        }
    }

    /// Runs one unit, updating `state`; candidates go to `observe`.
    pub fn run_unit(
        &self,
        unit: Unit,
        state: &mut State,
        observe: &mut dyn FnMut(SearchEvent),
    ) -> Result<StepRecord, OptimizeError> {
        match unit {
            Unit::Step(pos) => self.step(pos, state, observe),
            Unit::Refresh(pos) => self.refresh(pos, state, observe),
            Unit::Joint => self.joint_step(state, observe),
            Unit::TpePool => self.tpe_pool(state, observe),
            Unit::TpeTrial => self.tpe_trial(state, observe),
        }
    }

    /// The mini-batch of beam node `node`: injected hard cases first, then a seeded sample.
    /// Returns (questions, which of them are random draws).
    fn draw_batch(&self, state: &State, pos: usize, node: usize) -> (Vec<usize>, Vec<bool>) {
        let g = self.ev.graph();
        let a = self.order[pos];
        let explored = state.agents[pos].explored as u64;
        let mut injected: Vec<usize> = Vec::new();
        if self.s.misalignment_sampling {
            for &p in g.predecessors(a) {
                let Some(ppos) = self.order.iter().position(|&o| o == p) else {
                    continue;
                };
                for id in &state.agents[ppos].misleading {
                    if let Some(&i) = self.index_of.get(id) {
                        if !injected.contains(&i) {
                            injected.push(i);
                        }
                    }
                }
            }
            let cap = self.s.inject_cap.min(self.s.batch);
            if injected.len() > cap {
                let pick = sample_indices(
                    injected.len(),
                    cap,
                    self.seed(&[str_seed("inject"), a as u64, explored, node as u64]),
                );
                injected = pick.into_iter().map(|i| injected[i]).collect();
            }
        }
        let rest: Vec<usize> = (0..self.ev.pool().len())
            .filter(|i| !injected.contains(i))
            .collect();
        let want = self.s.batch.saturating_sub(injected.len());
        let drawn = sample_indices(
            rest.len(),
            want,
            self.seed(&[str_seed("batch"), a as u64, explored, node as u64]),
        );
        let mut batch = injected.clone();
        let mut random = vec![false; injected.len()];
        for i in drawn {
            batch.push(rest[i]);
            random.push(true);
        }
        (batch, random)
    }

    /// Rollouts with identical (prompts, question) computed once.
    fn baselines(
        &self,
        sets: &[PromptSet],
        batches: &[Vec<usize>],
        observe: &mut dyn FnMut(SearchEvent),
    ) -> Result<Vec<Vec<Trace>>, OptimizeError> {
        let mut key_of: BTreeMap<(String, usize), usize> = BTreeMap::new();
        let mut jobs = Vec::new();
        let hashes: Vec<String> = sets.iter().map(PromptSet::hash).collect();
        let mut slots = Vec::new();
        for (n, batch) in batches.iter().enumerate() {
            let mut row = Vec::new();
            for &q in batch {
                let k = (hashes[n].clone(), q);
                let idx = *key_of.entry(k).or_insert_with(|| {
                    jobs.push(RolloutJob {
                        prompts: &sets[n],
                        example: q,
                        base: None,
                    });
                    jobs.len() - 1
                });
                row.push(idx);
            }
            slots.push(row);
        }
        observe(SearchEvent::Phase {
            phase: "baseline",
            jobs: jobs.len(),
        });
        let traces = self.ev.rollouts(&jobs)?;
        Ok(slots
            .into_iter()
            .map(|row| row.into_iter().map(|i| traces[i].clone()).collect())
            .collect())
    }

    /// Agent `a`'s role description (its own, or the role's default for the task kind).
    fn description(&self, a: usize) -> String {
        let agent = self.ev.graph().agent(a);
        if agent.description.is_empty() {
            role_description(&agent.role, self.ev.kind())
        } else {
            agent.description.clone()
        }
    }

    /// Whether `prompt` copies a run of words from one of the pool questions `ids`.
    fn copies_a_question(&self, prompt: &str, ids: &[String]) -> bool {
        let questions: Vec<&str> = self
            .ev
            .pool()
            .iter()
            .filter(|e| ids.contains(&e.id))
            .map(|e| e.question.as_str())
            .collect();
        copied_question_text(prompt, &questions, COPIED_WORDS).is_some()
    }

    /// What a mutator reply proposing a replacement of `parent` comes to, asked on the pool
    /// questions `questions` (their ids). Counts nothing.
    fn outcome(
        &self,
        reply: &Result<String, String>,
        parent: &str,
        questions: &[String],
    ) -> Outcome {
        let mut cleaned = None;
        let mut overfit = false;
        let parsed = match reply {
            Err(e) => Err(("format_failure", format!("mutator call failed: {e}"))),
            Ok(text) => match self.proposal_in(text, parent, &mut cleaned) {
                Err(e) => Err(e),
                Ok(p) => {
                    let p = if self.s.clean_proposals {
                        let c = clean_proposal(&p);
                        if !c.removed.is_empty() {
                            cleaned = Some(c.removed.join(", "));
                        }
                        c.prompt
                    } else {
                        p
                    };
                    sanitize(&p, parent, self.s.literal_braces)
                        .and_then(|p| check_substance(&p, self.s.min_prompt_words).map(|_| p))
                        .and_then(|p| {
                            if self.s.keep_answer_format {
                                check_answer_format(&p, parent, self.ev.kind())?;
                            }
                            Ok(p)
                        })
                        .and_then(|p| match echoed_instructions(&p, parent) {
                            Some(piece) if self.s.clean_proposals => Err(format!(
                                "the proposal echoes the mutator's instructions (`{piece}`) instead of following them"
                            )),
                            _ => Ok(p),
                        })
                        .and_then(|p| {
                            if self.s.clean_proposals && self.copies_a_question(&p, questions) {
                                overfit = true;
                                return Err(format!("the proposal copies {COPIED_WORDS} or more consecutive words of an optimization question: overfit to its batch"));
                            }
                            Ok(p)
                        })
                        .map_err(|why| ("rejected", why))
                }
            },
        };
        let prompt = match parsed {
            // Whitespace or punctuation alone does not make a new prompt: the callers count
            // it as unchanged.
            Ok(p) if self.s.clean_proposals && p != parent && same_words(&p, parent) => {
                Ok(parent.to_string())
            }
            other => other,
        };
        Outcome {
            prompt,
            cleaned,
            overfit,
        }
    }

    /// The proposed prompt in a mutator reply: its `<prompt>` block, `parent` without the
    /// sentence its `<delete>` block names, or `parent` with the advice of its `<advice>` block
    /// (cleaned first with `clean_proposals`; what was removed goes to `cleaned`).
    fn proposal_in(
        &self,
        text: &str,
        parent: &str,
        cleaned: &mut Option<String>,
    ) -> Result<String, (&'static str, String)> {
        if let Some(p) = meta::parse_proposal(text) {
            return Ok(p);
        }
        if text.contains("<delete>") {
            let sentences = edit::deletable_sentences(parent);
            return match edit::parse_delete(text) {
                Some(n) if (1..=sentences.len()).contains(&n) => {
                    Ok(edit::without_sentence(parent, sentences[n - 1].clone()))
                }
                Some(n) => Err((
                    "format_failure",
                    format!(
                        "the reply deletes sentence {n}, but the prompt has {} numbered sentences",
                        sentences.len()
                    ),
                )),
                None => Err((
                    "format_failure",
                    format!(
                        "no sentence number in the <delete> block: {}",
                        snippet(text, 300)
                    ),
                )),
            };
        }
        let Some(advice) = meta::parse_advice(text) else {
            return Err((
                "format_failure",
                format!(
                    "no <prompt>…</prompt>, <advice>…</advice> or <delete>…</delete> block in the reply: {}",
                    snippet(text, 300)
                ),
            ));
        };
        let advice = if self.s.clean_proposals {
            let c = clean_proposal(&advice);
            if !c.removed.is_empty() {
                *cleaned = Some(c.removed.join(", "));
            }
            c.prompt
        } else {
            advice
        };
        let words = advice.split_whitespace().count();
        if words > 2 * meta::MAX_ADVICE_WORDS {
            return Err((
                "rejected",
                format!(
                    "the advice runs to {words} words (asked for at most {}): {}",
                    meta::MAX_ADVICE_WORDS,
                    snippet(&advice, 200)
                ),
            ));
        }
        if advice.contains('{') || advice.contains('}') {
            return Err((
                "rejected",
                format!(
                    "the advice holds braces or placeholders: {}",
                    snippet(&advice, 200)
                ),
            ));
        }
        Ok(meta::with_advice(parent, &advice))
    }

    /// A mutator reply as a sanitized prompt replacing `parent`; on failure the record gets
    /// its status and reason and the proposal counters count it.
    fn parse_reply(
        &self,
        reply: Result<String, String>,
        parent: &str,
        state: &mut State,
        rec: &mut CandidateRecord,
    ) -> Option<String> {
        let o = self.outcome(&reply, parent, &rec.questions);
        if o.cleaned.is_some() {
            state.proposals.cleaned += 1;
            rec.cleaned = o.cleaned;
        }
        match o.prompt {
            Ok(p) => Some(p),
            Err((status, why)) => {
                if status == "format_failure" {
                    state.proposals.format_failures += 1;
                } else {
                    state.proposals.rejected += 1;
                    if o.overfit {
                        state.proposals.overfit += 1;
                    }
                }
                rec.status = status.into();
                rec.reason = Some(why);
                None
            }
        }
    }

    /// The mutator's replies to `jobs` (job `j` proposes a replacement of `parents[j]` from the
    /// pool questions `questions[j]`), with `proposal_retries`: a reply that fails or changes
    /// nothing is asked again — all such jobs of an attempt in one batch — with a seed derived
    /// from the job's and the attempt. Returns each job's last reply and its retries.
    fn propose(
        &self,
        jobs: &[ProposeJob],
        parents: &[&str],
        questions: &[&[String]],
        state: &mut State,
    ) -> Vec<(Result<String, String>, u32)> {
        state.proposals.requested += jobs.len() as u64;
        let mut out: Vec<(Result<String, String>, u32)> =
            self.ev.propose(jobs).into_iter().map(|r| (r, 0)).collect();
        out.resize_with(jobs.len(), || {
            (Err("the mutator returned no reply".into()), 0)
        });
        // A greedy mutator would answer a retry with the same reply.
        let retries = if self.s.mutator_temperature > 0.0 {
            self.s.proposal_retries
        } else {
            0
        };
        for attempt in 1..=retries as u64 {
            let again: Vec<usize> = (0..jobs.len())
                .filter(
                    |&j| match self.outcome(&out[j].0, parents[j], questions[j]).prompt {
                        Ok(p) => p == parents[j],
                        Err(_) => true,
                    },
                )
                .collect();
            if again.is_empty() {
                break;
            }
            let retry: Vec<ProposeJob> = again
                .iter()
                .map(|&j| ProposeJob {
                    seed: derive_seed(&[jobs[j].seed, str_seed("retry"), attempt]),
                    ..jobs[j].clone()
                })
                .collect();
            state.proposals.retries += retry.len() as u64;
            let replies = self.ev.propose(&retry);
            for (&j, r) in again.iter().zip(replies) {
                out[j] = (r, attempt as u32);
            }
        }
        out
    }

    /// PromptBreeder's lineage: the seed prompt and the prompts that won their tournament
    /// since (at most the last four), oldest first.
    fn elites<'s>(&self, state: &'s State, pos: usize, agent: &str) -> Vec<&'s str> {
        let mut v: Vec<&str> = state.seeds.get(agent).into_iter().collect();
        let won: Vec<&str> = state.agents[pos]
            .trajectory
            .iter()
            .filter(|t| t.score > 0.5 && !v.contains(&t.prompt.as_str()))
            .map(|t| t.prompt.as_str())
            .collect();
        v.extend(won.iter().skip(won.len().saturating_sub(4)));
        v
    }

    /// PromptBreeder's first-order hypermutation: the mutation prompts of the `Hyper` asks are
    /// rewritten by the mutator (one batch), then applied as a direct mutation; a reply without
    /// a `<prompt>` block keeps the old mutation prompt.
    #[allow(clippy::too_many_arguments)]
    fn hypermutate(
        &self,
        asks: &mut [Ask],
        jobs: &[ProposeJob],
        nodes: &[BeamNode],
        job_of: &[(usize, usize)],
        role: &str,
        description: &str,
        observe: &mut dyn FnMut(SearchEvent),
    ) {
        let hyper: Vec<usize> = (0..asks.len())
            .filter(|&j| asks[j].operator == Some(Operator::Hyper))
            .collect();
        if hyper.is_empty() {
            return;
        }
        let hyper_jobs: Vec<ProposeJob> = hyper
            .iter()
            .map(|&j| ProposeJob {
                prompt: breeder::hyper_prompt(asks[j].mutation.as_deref().unwrap_or_default()),
                seed: derive_seed(&[jobs[j].seed, str_seed("hypermutate")]),
                prefill: None,
            })
            .collect();
        observe(SearchEvent::Phase {
            phase: "hypermutate",
            jobs: hyper_jobs.len(),
        });
        let replies = self.ev.propose(&hyper_jobs);
        for (&j, reply) in hyper.iter().zip(replies) {
            if let Some(m) = reply.ok().as_deref().and_then(meta::parse_proposal) {
                asks[j].mutation = Some(m);
            }
            let node = &nodes[job_of[j].0];
            let who = breeder::Agent {
                kind: self.ev.kind(),
                role,
                description,
                prompt: &node.prompt,
            };
            asks[j].prompt = breeder::direct_prompt(
                &who,
                asks[j].mutation.as_deref().unwrap_or_default(),
                asks[j].style,
            );
        }
    }

    /// What proposal `part` of an agent's step `step` asks the mutator for, to change
    /// `parent` (deletion needs two deletable sentences; advice stands in otherwise).
    fn form(&self, part: usize, step: usize, parent: &str) -> Form {
        let form = match self.s.proposal_form {
            ProposalForm::Rewrite => Form::Rewrite,
            ProposalForm::Advice => Form::Advice,
            ProposalForm::Delete => Form::Delete,
            ProposalForm::Mixed => [Form::Advice, Form::Rewrite, Form::Delete][(part + step) % 3],
        };
        if form == Form::Delete && edit::deletable_sentences(parent).len() < 2 {
            Form::Advice
        } else {
            form
        }
    }

    /// The pre-filled start and closing tag of a `form` reply (`prefill_proposals`).
    fn prefill(&self, form: Form) -> Option<(String, String)> {
        self.s.prefill_proposals.then(|| {
            let (start, end) = form.prefill();
            (start.to_string(), end.to_string())
        })
    }

    /// With `labels`: each baseline trace's result in words (right or wrong by the gold
    /// answer, the correct answer), shown to the mutator; without, nothing (label-free).
    fn results(&self, batch: &[usize], traces: &[Trace]) -> Vec<Option<String>> {
        if !self.s.judge.labels {
            return vec![None; batch.len()];
        }
        let items: Vec<(usize, &Trace)> = batch.iter().copied().zip(traces).collect();
        self.ev.grade_explained(&items)
    }

    fn feedback(&self, state: &State, a: usize) -> Option<String> {
        if !self.s.feedback {
            return None;
        }
        let g = self.ev.graph();
        let mut out = String::new();
        for &succ in g.successors(a) {
            let Some(spos) = self.order.iter().position(|&o| o == succ) else {
                continue;
            };
            for case in state.agents[spos].bad_cases.iter().take(2) {
                let q = self
                    .index_of
                    .get(&case.example)
                    .map(|&i| snippet(&self.ev.pool()[i].question, 200))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "- {} was judged weaker than with its previous prompt on: {q}\n  its output there began: {}\n",
                    g.agent(succ).id,
                    case.output
                ));
            }
        }
        (!out.is_empty()).then_some(out)
    }

    fn step(
        &self,
        pos: usize,
        state: &mut State,
        observe: &mut dyn FnMut(SearchEvent),
    ) -> Result<StepRecord, OptimizeError> {
        let g = self.ev.graph();
        let a = self.order[pos];
        let agent = g.agent(a).clone();
        let kind = self.ev.kind();
        let explored = state.agents[pos].explored;
        let sweep = state.cursor.sweep;
        let nodes: Vec<BeamNode> = {
            let st = &state.agents[pos];
            if explored == 0 {
                vec![BeamNode {
                    cum: 0.0,
                    ..st.best.clone()
                }]
            } else if st.beam.is_empty() {
                vec![st.best.clone()]
            } else {
                st.beam.clone()
            }
        };
        let peers = self.peers(state);
        let sets: Vec<PromptSet> = nodes
            .iter()
            .map(|n| peers.with(&agent.id, &n.prompt))
            .collect();
        let drawn: Vec<(Vec<usize>, Vec<bool>)> = (0..nodes.len())
            .map(|i| self.draw_batch(state, pos, i))
            .collect();
        let batches: Vec<Vec<usize>> = drawn.iter().map(|d| d.0.clone()).collect();
        let base = self.baselines(&sets, &batches, observe)?;

        // Proposals: one per part of each node's batch.
        let results: Vec<Vec<Option<String>>> = batches
            .iter()
            .zip(&base)
            .map(|(b, traces)| self.results(b, traces))
            .collect();
        let feedback = self.feedback(state, a);
        let description = self.description(a);
        let trajectory = opro::shown_trajectory(&state.agents[pos].trajectory);
        let elites = self.elites(state, pos, &agent.id);
        let mut asks: Vec<Ask> = Vec::new();
        let mut jobs = Vec::new();
        let mut job_of = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            for (part, range) in parts(batches[i].len(), self.s.proposals)
                .into_iter()
                .enumerate()
            {
                let seed = self.seed(&[
                    str_seed("propose"),
                    a as u64,
                    explored as u64,
                    i as u64,
                    part as u64,
                ]);
                let samples: Vec<Sample<'_>> = range
                    .map(|k| Sample {
                        question: &self.ev.pool()[batches[i][k]].question,
                        context: &base[i][k].nodes[a].context,
                        output: &base[i][k].nodes[a].raw,
                        result: results[i].get(k).cloned().flatten(),
                    })
                    .collect();
                let who = breeder::Agent {
                    kind,
                    role: &agent.role,
                    description: &description,
                    prompt: &node.prompt,
                };
                let ask = match self.s.method {
                    Method::Opro => {
                        let questions: Vec<&str> = samples.iter().map(|x| x.question).collect();
                        Ask {
                            prompt: opro::opro_prompt(&opro::OproInput {
                                kind,
                                role: &agent.role,
                                description: &description,
                                trajectory: &trajectory,
                                questions: &questions,
                                prompt: &node.prompt,
                            }),
                            operator: None,
                            mutation: None,
                            style: "",
                            form: None,
                        }
                    }
                    Method::PromptBreeder => {
                        let (op, style, drawn) =
                            breeder::draw(derive_seed(&[seed, str_seed("breed")]), elites.len());
                        let mutation = node.mutation.clone().unwrap_or_else(|| drawn.to_string());
                        let prompt = match op {
                            Operator::Direct => breeder::direct_prompt(&who, &mutation, style),
                            Operator::Lineage => breeder::lineage_prompt(&who, &elites),
                            // Built once the mutation prompt is rewritten.
                            Operator::Hyper => String::new(),
                        };
                        Ask {
                            prompt,
                            operator: Some(op),
                            mutation: Some(mutation),
                            style,
                            form: None,
                        }
                    }
                    _ => {
                        let form = self.form(part, explored, &node.prompt);
                        Ask {
                            prompt: meta::proposal_prompt(&ProposalInput {
                                kind,
                                role: &agent.role,
                                description: &description,
                                samples: &samples,
                                prompt: &node.prompt,
                                feedback: feedback.clone(),
                                form,
                            }),
                            operator: None,
                            mutation: None,
                            style: "",
                            form: Some(form),
                        }
                    }
                };
                asks.push(ask);
                jobs.push(ProposeJob {
                    prompt: String::new(),
                    seed,
                    prefill: None,
                });
                job_of.push((i, part));
            }
        }
        self.hypermutate(
            &mut asks,
            &jobs,
            &nodes,
            &job_of,
            &agent.role,
            &description,
            observe,
        );
        for (job, ask) in jobs.iter_mut().zip(&asks) {
            job.prompt = ask.prompt.clone();
            job.prefill = ask.form.and_then(|f| self.prefill(f));
        }
        observe(SearchEvent::Phase {
            phase: "propose",
            jobs: jobs.len(),
        });
        let questions: Vec<Vec<String>> = batches
            .iter()
            .map(|b| b.iter().map(|&q| self.ev.pool()[q].id.clone()).collect())
            .collect();
        let replies = self.propose(
            &jobs,
            &job_of
                .iter()
                .map(|&(i, _)| nodes[i].prompt.as_str())
                .collect::<Vec<_>>(),
            &job_of
                .iter()
                .map(|&(i, _)| questions[i].as_slice())
                .collect::<Vec<_>>(),
            state,
        );

        // Candidates: parsed, sanitized, deduplicated per node.
        let mut cands: Vec<Cand> = Vec::new();
        let mut records: Vec<CandidateRecord> = Vec::new();
        let mut rec_of_cand: Vec<usize> = Vec::new();
        // A proposal that failed or equals its parent stands for the parent (reference: the
        // parent survives once among the node's deduplicated candidates).
        let mut parent_kept = vec![false; nodes.len()];
        for (((i, part), (reply, retries)), ask) in job_of.into_iter().zip(replies).zip(&asks) {
            let node = &nodes[i];
            let id = state.next_id;
            state.next_id += 1;
            let mut rec =
                CandidateRecord::new(id, "proposal", &agent.id, (sweep, explored), node.id);
            rec.part = part;
            rec.operator = ask.operator.map(Operator::name);
            rec.mutation = ask.mutation.clone();
            rec.questions = questions[i].clone();
            rec.retries = retries;
            rec.form = ask.form.map(Form::name);
            match self.parse_reply(reply, &node.prompt, state, &mut rec) {
                None => {
                    rec.prompt = node.prompt.clone();
                    parent_kept[i] = true;
                }
                Some(p) => {
                    rec.prompt = p.clone();
                    if p == node.prompt {
                        parent_kept[i] = true;
                        rec.status = "unchanged".into();
                        state.proposals.duplicates += 1;
                    } else if cands.iter().any(|c| c.node == i && c.prompt == p) {
                        rec.status = "duplicate".into();
                        state.proposals.duplicates += 1;
                    } else {
                        cands.push(Cand {
                            node: i,
                            prompt: p,
                            id,
                            mutation: ask.mutation.clone(),
                        });
                        rec_of_cand.push(records.len());
                    }
                }
            }
            records.push(rec);
        }

        // Partial re-runs and judgements of every candidate.
        let cand_sets: Vec<PromptSet> = cands
            .iter()
            .map(|c| sets[c.node].with(&agent.id, &c.prompt))
            .collect();
        let evals = self.evaluate(
            a,
            &cands.iter().map(|c| (c.node, c.id)).collect::<Vec<_>>(),
            &cand_sets,
            &batches,
            &drawn.iter().map(|d| d.1.clone()).collect::<Vec<_>>(),
            &base,
            self.s.lookahead,
            self.s.racing,
            state,
            observe,
        )?;
        state.proposals.evaluated += evals.len() as u64;
        if matches!(self.s.method, Method::Opro | Method::PromptBreeder) {
            // The trajectory: the parent as judged against itself (½) on the first step, then
            // every evaluated candidate with its win rate.
            let st = &mut state.agents[pos];
            if st.trajectory.is_empty() {
                st.trajectory.push(Scored {
                    prompt: nodes[0].prompt.clone(),
                    score: 0.5,
                    step: explored,
                });
            }
            for (c, e) in cands.iter().zip(&evals) {
                st.trajectory.push(Scored {
                    prompt: c.prompt.clone(),
                    score: e.score + 0.5,
                    step: explored,
                });
            }
        }

        // Children, the node's best, the new beam.
        let mut pool: Vec<BeamNode> = Vec::new();
        // Per pool member: its per-question wins (a parent ties itself on its batch).
        let mut pool_q: Vec<Vec<(usize, f64)>> = Vec::new();
        let parent_q =
            |i: usize| -> Vec<(usize, f64)> { batches[i].iter().map(|&q| (q, 0.5)).collect() };
        // (cum, prompt, id, eval idx, mutation prompt)
        let mut best_step: Option<(f64, String, u64, usize, Option<String>)> = None;
        let mut mis_rates = Vec::new();
        let mut best_score: Option<f64> = None;
        let mut accepted = 0;
        for (i, node) in nodes.iter().enumerate() {
            // The node's candidate slots in proposal order; failed proposals stand for the parent
            // (reference: the parent survives once per failed candidate, deduplicated as a set).
            let mine: Vec<usize> = (0..cands.len()).filter(|&c| cands[c].node == i).collect();
            let mut local_best: (f64, Option<usize>) = (0.0, None);
            if mine.is_empty() || parent_kept[i] {
                pool.push(node.clone());
                pool_q.push(parent_q(i));
            }
            for &c in &mine {
                let e = &evals[c];
                if let Some(m) = e.misalignment {
                    mis_rates.push(m);
                }
                best_score = Some(best_score.map_or(e.score, |b: f64| b.max(e.score)));
                if e.score > 0.0 {
                    accepted += 1;
                    pool.push(BeamNode {
                        prompt: cands[c].prompt.clone(),
                        cum: node.cum + e.score,
                        id: cands[c].id,
                        mutation: cands[c].mutation.clone(),
                    });
                    pool_q.push(e.per_q.clone());
                } else {
                    pool.push(node.clone());
                    pool_q.push(parent_q(i));
                }
                if e.score > local_best.0 {
                    local_best = (e.score, Some(c));
                }
                let r = &mut records[rec_of_cand[c]];
                r.local = e.local;
                r.lookahead = e.lookahead;
                r.global = e.global;
                r.terminal = e.terminal;
                r.score = Some(e.score);
                r.accepted = e.score > 0.0;
                r.misalignment = e.misalignment;
                r.raced_out = e.raced_out;
                r.question_wins = batches[i]
                    .iter()
                    .map(|&q| e.per_q.iter().find(|x| x.0 == q).map(|x| x.1))
                    .collect();
            }
            let cum = node.cum + local_best.0.max(0.0);
            let (prompt, id, ev, mutation) = match local_best.1 {
                Some(c) => (
                    cands[c].prompt.clone(),
                    cands[c].id,
                    c,
                    cands[c].mutation.clone(),
                ),
                None => (
                    node.prompt.clone(),
                    node.id,
                    usize::MAX,
                    node.mutation.clone(),
                ),
            };
            if best_step.as_ref().is_none_or(|b| cum > b.0) {
                best_step = Some((cum, prompt, id, ev, mutation));
            }
        }
        state.proposals.accepted += accepted as u64;
        let pool = select_beam(
            &pool,
            &pool_q,
            self.s.beam,
            self.s.dedupe_beam,
            self.s.pareto,
        );
        let st = &mut state.agents[pos];
        st.beam = pool;
        let mut improved = false;
        if let Some((cum, prompt, id, ev, mutation)) = best_step {
            if cum > st.best.cum + EPS {
                improved = true;
                st.best = BeamNode {
                    prompt: prompt.clone(),
                    cum,
                    id,
                    mutation,
                };
                state.prompts = state.prompts.with(&agent.id, &prompt);
                if let Some(e) = evals.get(ev) {
                    if !e.bad.is_empty() {
                        st.bad_cases = e.bad.clone();
                    }
                    if !e.misleading.is_empty() {
                        st.misleading = e.misleading.clone();
                    }
                }
            }
        }
        let mis =
            (!mis_rates.is_empty()).then(|| mis_rates.iter().sum::<f64>() / mis_rates.len() as f64);
        st.misalignment.push(mis);
        st.explored += 1;
        st.turn_fails = if improved { 0 } else { st.turn_fails + 1 };
        state.cursor.in_turn += 1;
        let record = StepRecord {
            unit: state.units,
            kind: "step".into(),
            agent: agent.id.clone(),
            sweep,
            step: explored,
            best_score,
            best_cum: st.best.cum,
            beam: st.beam.iter().map(|n| n.cum).collect(),
            misalignment: mis,
            evaluated: cands.len(),
            accepted,
            improved,
            cost: Default::default(),
        };
        tally_forms(state, &records);
        for r in records {
            observe(SearchEvent::Candidate(Box::new(r)));
        }
        Ok(record)
    }

    /// A mutator job rewriting agent `a`'s prompt in the system `current`, from its traces
    /// `base` on the questions `range` of `batch` (naive joint steps and TPE's pool).
    fn rewrite_job(
        &self,
        a: usize,
        current: &PromptSet,
        batch: &[usize],
        base: &[Trace],
        range: std::ops::Range<usize>,
        seed: u64,
    ) -> (ProposeJob, Form) {
        let agent = self.ev.graph().agent(a);
        let form = self.form(range.start, a, current.get(&agent.id).unwrap_or_default());
        let results = self.results(&batch[range.clone()], &base[range.clone()]);
        let samples: Vec<Sample<'_>> = range
            .enumerate()
            .map(|(n, k)| Sample {
                question: &self.ev.pool()[batch[k]].question,
                context: &base[k].nodes[a].context,
                output: &base[k].nodes[a].raw,
                result: results.get(n).cloned().flatten(),
            })
            .collect();
        let job = ProposeJob {
            prompt: meta::proposal_prompt(&ProposalInput {
                kind: self.ev.kind(),
                role: &agent.role,
                description: &self.description(a),
                samples: &samples,
                prompt: current.get(&agent.id).unwrap_or_default(),
                feedback: None,
                form,
            }),
            seed,
            prefill: self.prefill(form),
        };
        (job, form)
    }

    /// Naive joint optimization (a baseline): the mutator rewrites every agent's prompt at once
    /// from the current system's traces (one rewrite per agent per batch part), and each joint
    /// candidate is scored by the final answer only — the terminal agent's output on whole
    /// re-runs, judged role-aware against the current system's — and committed when it wins
    /// more than half. No beam, lookahead or mined cases.
    fn joint_step(
        &self,
        state: &mut State,
        observe: &mut dyn FnMut(SearchEvent),
    ) -> Result<StepRecord, OptimizeError> {
        let g = self.ev.graph();
        let t = g.terminal();
        let explored = state.agents.iter().map(|a| a.explored).min().unwrap_or(0);
        let current = state.prompts.clone();
        let batch = sample_indices(
            self.ev.pool().len(),
            self.s.batch,
            self.seed(&[str_seed("joint"), explored as u64]),
        );
        let base = self.baselines(
            std::slice::from_ref(&current),
            std::slice::from_ref(&batch),
            observe,
        )?;
        let ranges = parts(batch.len(), self.s.proposals);
        let mut jobs = Vec::new();
        for (part, range) in ranges.iter().enumerate() {
            for &a in &self.order {
                jobs.push(self.rewrite_job(
                    a,
                    &current,
                    &batch,
                    &base[0],
                    range.clone(),
                    self.seed(&[
                        str_seed("joint-propose"),
                        a as u64,
                        explored as u64,
                        part as u64,
                    ]),
                ));
            }
        }
        let (jobs, forms): (Vec<ProposeJob>, Vec<Form>) = jobs.into_iter().unzip();
        let mut forms = forms.into_iter().map(Form::name);
        observe(SearchEvent::Phase {
            phase: "propose",
            jobs: jobs.len(),
        });
        let questions: Vec<String> = batch
            .iter()
            .map(|&q| self.ev.pool()[q].id.clone())
            .collect();
        let parents: Vec<&str> = (0..ranges.len())
            .flat_map(|_| self.order.iter())
            .map(|&a| current.get(&g.agent(a).id).unwrap_or_default())
            .collect();
        let mut replies = self
            .propose(
                &jobs,
                &parents,
                &vec![questions.as_slice(); jobs.len()],
                state,
            )
            .into_iter();
        // One joint candidate per part: every agent's valid rewrite, the current prompt where
        // the proposal failed.
        let mut records: Vec<CandidateRecord> = Vec::new();
        let mut sets: Vec<PromptSet> = Vec::new();
        let mut cands: Vec<(usize, u64)> = Vec::new();
        let mut recs_of: Vec<Vec<usize>> = Vec::new();
        for part in 0..ranges.len() {
            let mut set = current.clone();
            let mut mine = Vec::new();
            let joint_id = state.next_id;
            for &a in &self.order {
                let agent = g.agent(a);
                let parent = current.get(&agent.id).unwrap_or_default().to_string();
                let id = state.next_id;
                state.next_id += 1;
                let mut rec = CandidateRecord::new(id, "joint", &agent.id, (0, explored), 0);
                rec.part = part;
                rec.questions = questions.clone();
                rec.prompt = parent.clone();
                rec.form = forms.next();
                let (reply, retries) = replies
                    .next()
                    .unwrap_or_else(|| (Err("no reply".into()), 0));
                rec.retries = retries;
                match self.parse_reply(reply, &parent, state, &mut rec) {
                    None => {}
                    Some(p) if p == parent => {
                        rec.status = "unchanged".into();
                        state.proposals.duplicates += 1;
                    }
                    Some(p) => {
                        set = set.with(&agent.id, &p);
                        rec.prompt = p;
                        mine.push(records.len());
                    }
                }
                records.push(rec);
            }
            if mine.is_empty() {
                continue;
            }
            if sets.contains(&set) {
                for &r in &mine {
                    records[r].status = "duplicate".into();
                }
                state.proposals.duplicates += 1;
                continue;
            }
            state.proposals.evaluated += 1;
            cands.push((0, joint_id));
            sets.push(set);
            recs_of.push(mine);
        }
        let evals = self.evaluate(
            t,
            &cands,
            &sets,
            std::slice::from_ref(&batch),
            &[vec![true; batch.len()]],
            &base,
            false,
            self.s.racing,
            state,
            observe,
        )?;
        let mut best: Option<(f64, usize)> = None;
        for (c, e) in evals.iter().enumerate() {
            for &r in &recs_of[c] {
                let rec = &mut records[r];
                rec.terminal = e.terminal;
                rec.score = Some(e.score);
                rec.accepted = e.score > 0.0;
                rec.raced_out = e.raced_out;
            }
            if e.score > 0.0 && best.is_none_or(|b| e.score > b.0) {
                best = Some((e.score, c));
            }
        }
        let accepted = evals.iter().filter(|e| e.score > 0.0).count();
        state.proposals.accepted += accepted as u64;
        let improved = best.is_some();
        if let Some((score, c)) = best {
            state.prompts = sets[c].clone();
            for (pos, &a) in self.order.iter().enumerate() {
                let id = &g.agent(a).id;
                let st = &mut state.agents[pos];
                let prompt = sets[c].get(id).unwrap_or_default().to_string();
                if prompt != st.best.prompt {
                    st.best = BeamNode {
                        prompt,
                        cum: st.best.cum + score,
                        id: cands[c].1,
                        mutation: None,
                    };
                    st.beam = vec![st.best.clone()];
                }
            }
        }
        for st in &mut state.agents {
            st.explored += 1;
            st.misalignment.push(None);
        }
        let record = StepRecord {
            unit: state.units,
            kind: "joint".into(),
            agent: "all".into(),
            sweep: 0,
            step: explored,
            best_score: evals.iter().map(|e| e.score).reduce(f64::max),
            best_cum: state.agents.iter().map(|a| a.best.cum).fold(0.0, f64::max),
            beam: Vec::new(),
            misalignment: None,
            evaluated: evals.len(),
            accepted,
            improved,
            cost: Default::default(),
        };
        tally_forms(state, &records);
        for r in records {
            observe(SearchEvent::Candidate(Box::new(r)));
        }
        Ok(record)
    }

    /// TPE's first unit: `candidates` proposals per agent from the starting system's traces on
    /// one batch (each proposal sees one part of it, with its own seed); valid, distinct ones
    /// join the agent's pool after its starting prompt.
    fn tpe_pool(
        &self,
        state: &mut State,
        observe: &mut dyn FnMut(SearchEvent),
    ) -> Result<StepRecord, OptimizeError> {
        let g = self.ev.graph();
        let (candidates, _, _) = tpe::plan(self.order.len(), self.s.proposals, self.s.depth());
        let current = state.prompts.clone();
        let batch = sample_indices(
            self.ev.pool().len(),
            self.s.batch,
            self.seed(&[str_seed("tpe-pool")]),
        );
        let base = self.baselines(
            std::slice::from_ref(&current),
            std::slice::from_ref(&batch),
            observe,
        )?;
        let ranges = parts(batch.len(), candidates.min(batch.len()).max(1));
        let mut jobs = Vec::new();
        for &a in &self.order {
            for c in 0..candidates {
                jobs.push(self.rewrite_job(
                    a,
                    &current,
                    &batch,
                    &base[0],
                    ranges[c % ranges.len()].clone(),
                    self.seed(&[str_seed("tpe-propose"), a as u64, c as u64]),
                ));
            }
        }
        let (jobs, forms): (Vec<ProposeJob>, Vec<Form>) = jobs.into_iter().unzip();
        let mut forms = forms.into_iter().map(Form::name);
        observe(SearchEvent::Phase {
            phase: "propose",
            jobs: jobs.len(),
        });
        let questions: Vec<String> = batch
            .iter()
            .map(|&q| self.ev.pool()[q].id.clone())
            .collect();
        let parents: Vec<&str> = self
            .order
            .iter()
            .flat_map(|&a| std::iter::repeat_n(a, candidates))
            .map(|a| current.get(&g.agent(a).id).unwrap_or_default())
            .collect();
        let mut replies = self
            .propose(
                &jobs,
                &parents,
                &vec![questions.as_slice(); jobs.len()],
                state,
            )
            .into_iter();
        let mut records = Vec::new();
        let mut pool = Vec::new();
        for &a in &self.order {
            let agent = g.agent(a);
            let parent = current.get(&agent.id).unwrap_or_default().to_string();
            let mut options = vec![parent.clone()];
            for c in 0..candidates {
                let id = state.next_id;
                state.next_id += 1;
                let mut rec = CandidateRecord::new(id, "pool", &agent.id, (0, 0), 0);
                rec.part = c % ranges.len();
                rec.questions = questions.clone();
                rec.prompt = parent.clone();
                rec.form = forms.next();
                let (reply, retries) = replies
                    .next()
                    .unwrap_or_else(|| (Err("no reply".into()), 0));
                rec.retries = retries;
                match self.parse_reply(reply, &parent, state, &mut rec) {
                    None => {}
                    Some(p) if options.contains(&p) => {
                        rec.status = if p == parent {
                            "unchanged"
                        } else {
                            "duplicate"
                        }
                        .into();
                        state.proposals.duplicates += 1;
                        rec.prompt = p;
                    }
                    Some(p) => {
                        rec.status = "pooled".into();
                        rec.prompt = p.clone();
                        options.push(p);
                    }
                }
                records.push(rec);
            }
            pool.push(options);
        }
        let sizes: Vec<usize> = pool.iter().map(Vec::len).collect();
        state.tpe = Some(TpeState {
            pool,
            trials: Vec::new(),
        });
        let record = StepRecord {
            unit: state.units,
            kind: "tpe_pool".into(),
            agent: "all".into(),
            sweep: 0,
            step: 0,
            best_score: None,
            best_cum: 0.0,
            beam: sizes.iter().map(|&n| n as f64).collect(),
            misalignment: None,
            evaluated: 0,
            accepted: 0,
            improved: false,
            cost: Default::default(),
        };
        tally_forms(state, &records);
        for r in records {
            observe(SearchEvent::Candidate(Box::new(r)));
        }
        Ok(record)
    }

    /// One TPE trial: a candidate per agent chosen by TPE from the trials so far, the whole
    /// system run on a fresh batch and judged on the final answer against the seed system; the
    /// best trial above ½ is the committed system.
    fn tpe_trial(
        &self,
        state: &mut State,
        observe: &mut dyn FnMut(SearchEvent),
    ) -> Result<StepRecord, OptimizeError> {
        let g = self.ev.graph();
        let t = g.terminal();
        let tpe_state = state.tpe.clone().unwrap_or_default();
        let k = tpe_state.trials.len();
        let (_, _, startup) = tpe::plan(self.order.len(), self.s.proposals, self.s.depth());
        let dims: Vec<usize> = tpe_state.pool.iter().map(|p| p.len().max(1)).collect();
        let config = tpe::suggest(
            &tpe_state.trials,
            &dims,
            startup,
            self.seed(&[str_seed("tpe-suggest"), k as u64]),
        );
        let anchor = state.seeds.clone();
        let mut set = anchor.clone();
        for (pos, &a) in self.order.iter().enumerate() {
            if let Some(p) = tpe_state.pool.get(pos).and_then(|o| o.get(config[pos])) {
                set = set.with(&g.agent(a).id, p);
            }
        }
        let batch = sample_indices(
            self.ev.pool().len(),
            self.s.batch,
            self.seed(&[str_seed("tpe-trial"), k as u64]),
        );
        let base = self.baselines(
            std::slice::from_ref(&anchor),
            std::slice::from_ref(&batch),
            observe,
        )?;
        let id = state.next_id;
        state.next_id += 1;
        let evals = self.evaluate(
            t,
            &[(0, id)],
            std::slice::from_ref(&set),
            std::slice::from_ref(&batch),
            &[vec![true; batch.len()]],
            &base,
            false,
            // TPE learns from every trial's score: no racing.
            false,
            state,
            observe,
        )?;
        let e = evals.into_iter().next().unwrap_or_default();
        let score = e.score + 0.5;
        state.proposals.evaluated += 1;
        let before = tpe_state
            .trials
            .iter()
            .map(|t| t.score)
            .fold(f64::NEG_INFINITY, f64::max);
        let improved = score > 0.5 && score > before + EPS;
        if let Some(ts) = state.tpe.as_mut() {
            ts.trials.push(tpe::Trial {
                config: config.clone(),
                score,
            });
        }
        if improved {
            state.proposals.accepted += 1;
            state.prompts = set.clone();
            for (pos, &a) in self.order.iter().enumerate() {
                let st = &mut state.agents[pos];
                st.best = BeamNode {
                    prompt: set.get(&g.agent(a).id).unwrap_or_default().to_string(),
                    cum: e.score,
                    id,
                    mutation: None,
                };
                st.beam = vec![st.best.clone()];
            }
        }
        for st in &mut state.agents {
            st.explored += 1;
            st.misalignment.push(None);
        }
        let questions: Vec<String> = batch
            .iter()
            .map(|&q| self.ev.pool()[q].id.clone())
            .collect();
        for (pos, &a) in self.order.iter().enumerate() {
            let mut rec = CandidateRecord::new(id, "trial", &g.agent(a).id, (0, k), 0);
            rec.part = config[pos];
            rec.prompt = set.get(&g.agent(a).id).unwrap_or_default().to_string();
            rec.questions = questions.clone();
            rec.terminal = e.terminal;
            rec.score = Some(e.score);
            rec.accepted = improved;
            observe(SearchEvent::Candidate(Box::new(rec)));
        }
        Ok(StepRecord {
            unit: state.units,
            kind: "trial".into(),
            agent: "all".into(),
            sweep: 0,
            step: k,
            best_score: Some(e.score),
            best_cum: state.agents.iter().map(|a| a.best.cum).fold(0.0, f64::max),
            beam: Vec::new(),
            misalignment: None,
            evaluated: 1,
            accepted: usize::from(improved),
            improved,
            cost: Default::default(),
        })
    }

    fn refresh(
        &self,
        pos: usize,
        state: &mut State,
        observe: &mut dyn FnMut(SearchEvent),
    ) -> Result<StepRecord, OptimizeError> {
        let g = self.ev.graph();
        let a = self.order[pos];
        let agent = g.agent(a).clone();
        let explored = state.agents[pos].explored;
        let sweep = state.cursor.sweep;
        let anchor = state.prompts.get(&agent.id).unwrap_or_default().to_string();
        let before_top = {
            let mut b = state.agents[pos].beam.clone();
            b.sort_by(|x, y| y.cum.total_cmp(&x.cum));
            b.first().map(|n| n.prompt.clone())
        };
        let batch = sample_indices(
            self.ev.pool().len(),
            self.s.batch,
            self.seed(&[str_seed("refresh"), a as u64, explored as u64]),
        );
        let peers = self.peers(state).with(&agent.id, &anchor);
        let base = self.baselines(
            std::slice::from_ref(&peers),
            std::slice::from_ref(&batch),
            observe,
        )?;
        let beam = state.agents[pos].beam.clone();
        let others: Vec<usize> = (0..beam.len())
            .filter(|&i| beam[i].prompt != anchor)
            .collect();
        let sets: Vec<PromptSet> = others
            .iter()
            .map(|&i| peers.with(&agent.id, &beam[i].prompt))
            .collect();
        let evals = self.evaluate(
            a,
            &others.iter().map(|&i| (0, beam[i].id)).collect::<Vec<_>>(),
            &sets,
            std::slice::from_ref(&batch),
            &[vec![true; batch.len()]],
            &base,
            false,
            // A refresh re-ranks the beam by these scores: no racing.
            false,
            state,
            observe,
        )?;
        let mut new_beam = beam.clone();
        for (k, node) in new_beam.iter_mut().enumerate() {
            let mut rec =
                CandidateRecord::new(node.id, "refresh", &agent.id, (sweep, explored), node.id);
            rec.prompt = node.prompt.clone();
            rec.status = "anchor".into();
            rec.questions = batch
                .iter()
                .map(|&q| self.ev.pool()[q].id.clone())
                .collect();
            match others.iter().position(|&o| o == k) {
                None => node.cum = 0.0,
                Some(j) => {
                    let e = &evals[j];
                    node.cum = e.score;
                    rec.status = "evaluated".into();
                    rec.local = e.local;
                    rec.global = e.global;
                    rec.terminal = e.terminal;
                    rec.score = Some(e.score);
                    rec.accepted = e.score > 0.0;
                }
            }
            observe(SearchEvent::Candidate(Box::new(rec)));
        }
        new_beam.sort_by(|x, y| y.cum.total_cmp(&x.cum));
        if self.s.dedupe_beam {
            let mut seen = Vec::new();
            new_beam.retain(|n| {
                let dup = seen.contains(&n.prompt);
                seen.push(n.prompt.clone());
                !dup
            });
        }
        let st = &mut state.agents[pos];
        let top = new_beam.first().cloned();
        st.kendall
            .push(top.as_ref().map(|t| &t.prompt) == before_top.as_ref());
        st.beam = new_beam;
        let mut improved = false;
        if let Some(top) = top {
            improved = top.prompt != anchor;
            st.best = top.clone();
            state.prompts = state.prompts.with(&agent.id, &top.prompt);
        }
        state.cursor.refreshed = true;
        Ok(StepRecord {
            unit: state.units,
            kind: "refresh".into(),
            agent: agent.id.clone(),
            sweep,
            step: explored,
            best_score: evals.iter().map(|e| e.score).reduce(f64::max),
            best_cum: st.best.cum,
            beam: st.beam.iter().map(|n| n.cum).collect(),
            misalignment: None,
            evaluated: evals.len(),
            accepted: evals.iter().filter(|e| e.score > 0.0).count(),
            improved,
            cost: Default::default(),
        })
    }

    /// Re-runs each candidate (`cands[i] = (node, id)`, prompts `sets[i]`) on its node's batch
    /// from agent `a` and judges it against the node's baseline. With `race`, every candidate
    /// first gets the first half of its batch; one that cannot be accepted even by winning
    /// everything left is dropped there (see [`OptimizeSettings::racing`]).
    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &self,
        a: usize,
        cands: &[(usize, u64)],
        sets: &[PromptSet],
        batches: &[Vec<usize>],
        random: &[Vec<bool>],
        base: &[Vec<Trace>],
        lookahead: bool,
        race: bool,
        state: &mut State,
        observe: &mut dyn FnMut(SearchEvent),
    ) -> Result<Vec<Eval>, OptimizeError> {
        let lens: Vec<usize> = cands.iter().map(|&(n, _)| batches[n].len()).collect();
        let span = |ci: usize, from: usize, to: usize| (from..to).map(move |k| (ci, k));
        if !race || lens.iter().all(|&n| n < 2) {
            let all: Vec<(usize, usize)> = (0..cands.len())
                .flat_map(|ci| span(ci, 0, lens[ci]))
                .collect();
            let j = self.judge_pairs(
                a, cands, sets, batches, base, lookahead, &all, state, observe,
            )?;
            return Ok(self.score_evals(a, cands, batches, random, lookahead, &j, &lens));
        }
        let half: Vec<usize> = lens.iter().map(|n| n.div_ceil(2)).collect();
        let first: Vec<(usize, usize)> = (0..cands.len())
            .flat_map(|ci| span(ci, 0, half[ci]))
            .collect();
        let mut j = self.judge_pairs(
            a, cands, sets, batches, base, lookahead, &first, state, observe,
        )?;
        let alive: Vec<bool> = (0..cands.len())
            .map(|ci| self.may_win(a, ci, lens[ci] - half[ci], lens[ci], lookahead, &j))
            .collect();
        let rest: Vec<(usize, usize)> = (0..cands.len())
            .filter(|&ci| alive[ci])
            .flat_map(|ci| span(ci, half[ci], lens[ci]))
            .collect();
        if !rest.is_empty() {
            let more = self.judge_pairs(
                a, cands, sets, batches, base, lookahead, &rest, state, observe,
            )?;
            j.new_of.extend(more.new_of);
            j.pend.extend(more.pend);
            j.win.extend(more.win);
        }
        let judged: Vec<usize> = (0..cands.len())
            .map(|ci| if alive[ci] { lens[ci] } else { half[ci] })
            .collect();
        let mut out = self.score_evals(a, cands, batches, random, lookahead, &j, &judged);
        for (e, alive) in out.iter_mut().zip(&alive) {
            e.raced_out = !alive;
        }
        state.proposals.raced_out += alive.iter().filter(|x| !**x).count() as u64;
        Ok(out)
    }

    /// Whether candidate `ci`, judged so far in `j` on `n − remaining` of its `n` questions,
    /// could still be accepted (joint win rate above ½) if it won every comparison left.
    fn may_win(
        &self,
        a: usize,
        ci: usize,
        remaining: usize,
        n: usize,
        lookahead: bool,
        j: &Judged,
    ) -> bool {
        let g = self.ev.graph();
        let sum = |c: Comparison| -> (f64, usize) {
            j.pend
                .iter()
                .zip(&j.win)
                .filter(|(p, _)| p.cand == ci && p.comparison == c)
                .fold((0.0, 0), |(s, k), (_, w)| (s + w, k + 1))
        };
        let (n, rem) = (n.max(1) as f64, remaining as f64);
        if a == g.terminal() {
            return (sum(Comparison::Terminal).0 + rem) / n > 0.5;
        }
        let [wl, wn, wg] = self.s.joint_weights();
        let [fl, fg] = self.s.fallback();
        let rl = (sum(Comparison::Local).0 + rem) / n;
        let rg = if self.s.judges_global() {
            (sum(Comparison::Global).0 + rem) / n
        } else {
            0.0
        };
        let (nx, nn) = sum(Comparison::Lookahead);
        let more = if lookahead && self.s.judges_lookahead() {
            rem * g.successors(a).len() as f64
        } else {
            0.0
        };
        let mut best = f64::NEG_INFINITY;
        if lookahead && nn as f64 + more > 0.0 {
            let rn = (nx + more) / (nn as f64 + more);
            best = wl * rl + wn * rn + wg * rg;
        }
        if !(lookahead && nn > 0) {
            // No lookahead comparison may exist in the end: the fallback weights apply.
            best = best.max(fl * rl + fg * rg);
        }
        best > 0.5
    }

    /// Re-runs and judgements of the (candidate, batch position) `pairs`.
    #[allow(clippy::too_many_arguments)]
    fn judge_pairs(
        &self,
        a: usize,
        cands: &[(usize, u64)],
        sets: &[PromptSet],
        batches: &[Vec<usize>],
        base: &[Vec<Trace>],
        lookahead: bool,
        pairs: &[(usize, usize)],
        state: &mut State,
        observe: &mut dyn FnMut(SearchEvent),
    ) -> Result<Judged, OptimizeError> {
        let g = self.ev.graph();
        let kind = self.ev.kind();
        let terminal = a == g.terminal();
        let agent = g.agent(a);
        let description = self.description(a);
        let succ: Vec<usize> = if lookahead && !terminal {
            g.successors(a).to_vec()
        } else {
            Vec::new()
        };
        // Re-runs.
        let mut jobs = Vec::new();
        let mut at = Vec::new();
        for &(ci, k) in pairs {
            let node = cands[ci].0;
            let q = batches[node][k];
            // Naive joint and TPE candidates change every agent: a whole run.
            let whole = matches!(self.s.method, Method::NaiveJoint | Method::Tpe);
            let from = (!whole).then(|| (&base[node][k], a));
            jobs.push(RolloutJob {
                prompts: &sets[ci],
                example: q,
                base: from,
            });
            at.push((ci, k));
        }
        observe(SearchEvent::Phase {
            phase: "rerun",
            jobs: jobs.len(),
        });
        let new = self.ev.rollouts(&jobs)?;
        // Labels: grade final outputs of baselines and re-runs.
        let graded: Option<HashMap<(usize, usize, bool), Option<bool>>> = if self.s.judge.labels {
            let mut items = Vec::new();
            let mut keys = Vec::new();
            for (&(ci, k), t) in at.iter().zip(&new) {
                let node = cands[ci].0;
                items.push((batches[node][k], t));
                keys.push((ci, k, true));
                items.push((batches[node][k], &base[node][k]));
                keys.push((ci, k, false));
            }
            let v = self.ev.grade(&items);
            Some(keys.into_iter().zip(v).collect())
        } else {
            None
        };
        let new_of: HashMap<(usize, usize), Trace> = at.into_iter().zip(new).collect();
        // Judgements.
        let mut pend: Vec<Pending> = Vec::new();
        let mut jj: Vec<JudgeJob> = Vec::new();
        for &(ci, k) in pairs {
            let (node, id) = cands[ci];
            let q = batches[node][k];
            {
                let n = &new_of[&(ci, k)];
                let b = &base[node][k];
                let question = &self.ev.pool()[q].question;
                let mut comps: Vec<(Comparison, usize, &str, &str)> = Vec::new();
                if terminal {
                    comps.push((Comparison::Terminal, 0, &n.nodes[a].raw, &b.nodes[a].raw));
                } else {
                    comps.push((Comparison::Local, 0, &n.nodes[a].raw, &b.nodes[a].raw));
                    // Comparisons nothing reads are not judged (SPO's local-only judge).
                    for &s in succ.iter().filter(|_| self.s.judges_lookahead()) {
                        let (x, y) = (&n.nodes[s].raw, &b.nodes[s].raw);
                        if !x.trim().is_empty() && !y.trim().is_empty() {
                            comps.push((Comparison::Lookahead, s, x, y));
                        }
                    }
                    if self.s.judges_global() {
                        comps.push((Comparison::Global, 0, &n.final_output, &b.final_output));
                    }
                }
                for (comparison, s, cand_out, base_out) in comps {
                    let mut p = Pending {
                        cand: ci,
                        q: k,
                        comparison,
                        succ: s,
                        jobs: Vec::new(),
                        fixed: None,
                    };
                    // With labels, a final-answer comparison (the global term, or the terminal
                    // agent's own) is decided by the gold answers: a win for the one correct
                    // output, a tie when both are right or both wrong.
                    if matches!(comparison, Comparison::Global | Comparison::Terminal) {
                        if let Some(gr) = &graded {
                            if let (Some(Some(x)), Some(Some(y))) =
                                (gr.get(&(ci, k, true)), gr.get(&(ci, k, false)))
                            {
                                p.fixed = Some(match (x, y) {
                                    (true, false) => 1.0,
                                    (false, true) => 0.0,
                                    _ => 0.5,
                                });
                                pend.push(p);
                                continue;
                            }
                        }
                    }
                    if let Some(v) = self.decided(cand_out, base_out) {
                        state.judge.decided_without_judge += 1;
                        p.fixed = Some(v);
                        pend.push(p);
                        continue;
                    }
                    let orders: Vec<bool> = match self.s.judge.order {
                        JudgeOrder::CandidateFirst => vec![true],
                        JudgeOrder::Both => vec![true, false],
                        JudgeOrder::Random => {
                            let coin = self.seed(&[
                                str_seed("order"),
                                id,
                                q as u64,
                                comparison as u64,
                                s as u64,
                            ]);
                            vec![coin & 1 == 0]
                        }
                    };
                    for cand_first in orders {
                        let (x, y) = if cand_first {
                            (cand_out, base_out)
                        } else {
                            (base_out, cand_out)
                        };
                        let letter_only = self.s.judge.mode == super::config::JudgeMode::Logprob;
                        let prompt = meta::judge_prompt(&JudgeInput {
                            kind,
                            comparison,
                            role: &agent.role,
                            description: &description,
                            question,
                            a: x,
                            b: y,
                            letter_only,
                        });
                        let max_tokens = if comparison == Comparison::Terminal && !letter_only {
                            self.s.judge.max_tokens
                        } else {
                            self.s.judge.short_max_tokens
                        };
                        p.jobs.push((jj.len(), cand_first));
                        jj.push(JudgeJob {
                            prompt,
                            max_tokens,
                            reference_parse: self.s.judge.unparsed_is_a,
                            tagged: comparison == Comparison::Terminal && !letter_only,
                        });
                    }
                    pend.push(p);
                }
            }
        }
        observe(SearchEvent::Phase {
            phase: "judge",
            jobs: jj.len(),
        });
        let verdicts = self.ev.judge(&jj);
        // Wins per pending comparison.
        let mut win: Vec<f64> = Vec::with_capacity(pend.len());
        for p in &pend {
            if let Some(v) = p.fixed {
                win.push(v);
                continue;
            }
            let mut vals = Vec::new();
            // Candidate preference in log-odds per order (log-prob judging).
            let mut margins = Vec::new();
            for &(j, cand_first) in &p.jobs {
                let verdict = verdicts.get(j).copied().unwrap_or_default();
                let v = verdict.choice;
                if let Some(m) = verdict.margin {
                    margins.push(if cand_first { m } else { -m });
                    state.judge.scored += 1;
                }
                state.judge.verdicts += 1;
                match v {
                    Some(Choice::A) => state.judge.chose_first += 1,
                    Some(Choice::B) => {}
                    None => state.judge.unparsed += 1,
                }
                vals.push(match (v, cand_first) {
                    (Some(Choice::A), true) | (Some(Choice::B), false) => 1.0,
                    (Some(_), _) => 0.0,
                    (None, _) => 0.5,
                });
            }
            if p.jobs.len() == 2 {
                state.judge.both_orders += 1;
                if vals[0] == vals[1] && vals[0] != 0.5 {
                    state.judge.consistent += 1;
                }
                if margins.len() == 2 {
                    // Both orders by log-probability: a position bias adds the same log-odds
                    // to "A" in both orders and cancels in the sum; the sign of what remains
                    // is the judge's preference.
                    let d = margins[0] + margins[1];
                    win.push(if d > 0.0 {
                        1.0
                    } else if d < 0.0 {
                        0.0
                    } else {
                        0.5
                    });
                    continue;
                }
            }
            win.push(vals.iter().sum::<f64>() / vals.len().max(1) as f64);
        }
        self.measure_agreement(cands, batches, base, &new_of, &pend, &win, &verdicts, state);
        Ok(Judged { new_of, pend, win })
    }

    /// Judge agreement with gold (measured, never used to score): the final-answer
    /// comparisons the judge decided are graded against the gold answers; where exactly one
    /// output is correct, the judgement (and each single verdict) is counted as agreeing when
    /// it favours that one. Nothing is graded when the evaluator has no gold judge.
    #[allow(clippy::too_many_arguments)]
    fn measure_agreement(
        &self,
        cands: &[(usize, u64)],
        batches: &[Vec<usize>],
        base: &[Vec<Trace>],
        new_of: &HashMap<(usize, usize), Trace>,
        pend: &[Pending],
        win: &[f64],
        verdicts: &[JudgeVerdict],
        state: &mut State,
    ) {
        let measured: Vec<usize> = (0..pend.len())
            .filter(|&i| {
                pend[i].fixed.is_none()
                    && matches!(
                        pend[i].comparison,
                        Comparison::Global | Comparison::Terminal
                    )
            })
            .collect();
        if measured.is_empty() {
            return;
        }
        let mut items = Vec::with_capacity(2 * measured.len());
        for &i in &measured {
            let p = &pend[i];
            let node = cands[p.cand].0;
            let q = batches[node][p.q];
            items.push((q, &new_of[&(p.cand, p.q)]));
            items.push((q, &base[node][p.q]));
        }
        let graded = self.ev.grade(&items);
        for (n, &i) in measured.iter().enumerate() {
            let (Some(Some(cand_ok)), Some(Some(base_ok))) =
                (graded.get(2 * n).copied(), graded.get(2 * n + 1).copied())
            else {
                continue;
            };
            if cand_ok == base_ok {
                continue;
            }
            let j = &mut state.judge;
            j.gold_pairs += 1;
            j.gold_agree += if cand_ok { win[i] } else { 1.0 - win[i] };
            for &(v, cand_first) in &pend[i].jobs {
                j.gold_verdicts += 1;
                let chose_cand = match verdicts.get(v).and_then(|v| v.choice) {
                    Some(Choice::A) => cand_first,
                    Some(Choice::B) => !cand_first,
                    None => continue,
                };
                if chose_cand == cand_ok {
                    j.gold_verdicts_agree += 1;
                }
            }
        }
    }

    /// Each candidate's rates, score, bad cases and mined cases from its judged comparisons
    /// (`judged[ci]`: how many of its batch's questions, a prefix, were judged).
    #[allow(clippy::too_many_arguments)]
    fn score_evals(
        &self,
        a: usize,
        cands: &[(usize, u64)],
        batches: &[Vec<usize>],
        random: &[Vec<bool>],
        lookahead: bool,
        j: &Judged,
        judged: &[usize],
    ) -> Vec<Eval> {
        let g = self.ev.graph();
        let terminal = a == g.terminal();
        let (pend, win, new_of) = (&j.pend, &j.win, &j.new_of);
        // Scores.
        let [wl, wn, wg] = self.s.joint_weights();
        let [fl, fg] = self.s.fallback();
        let mut out = Vec::new();
        for (ci, &(node, _)) in cands.iter().enumerate() {
            let nq = judged[ci].max(1) as f64;
            let asked = &batches[node][..judged[ci]];
            let mine: Vec<(&Pending, f64)> = pend
                .iter()
                .zip(win.iter())
                .filter(|(p, _)| p.cand == ci)
                .map(|(p, w)| (p, *w))
                .collect();
            let sum = |c: Comparison| -> (f64, usize) {
                mine.iter()
                    .filter(|(p, _)| p.comparison == c)
                    .fold((0.0, 0), |(s, n), (_, w)| (s + w, n + 1))
            };
            let mut e = Eval::default();
            let lost = |c: Comparison, k: usize| {
                mine.iter()
                    .find(|(p, _)| p.comparison == c && p.q == k)
                    .map(|(_, w)| *w < 0.5)
            };
            if terminal {
                let (t, _) = sum(Comparison::Terminal);
                e.terminal = Some(t / nq);
                e.score = t / nq - 0.5;
            } else {
                let (l, _) = sum(Comparison::Local);
                let (gl, gn) = sum(Comparison::Global);
                let (nx, nn) = sum(Comparison::Lookahead);
                let (rl, rg) = (l / nq, gl / nq);
                e.local = Some(rl);
                e.global = (gn > 0).then_some(rg);
                let w = if lookahead && nn > 0 {
                    let rn = nx / nn as f64;
                    e.lookahead = Some(rn);
                    wl * rl + wn * rn + wg * rg
                } else {
                    fl * rl + fg * rg
                };
                e.score = w - 0.5;
            }
            // Per question: the same weights over that question's comparisons.
            let at = |c: Comparison, k: usize| -> Vec<f64> {
                mine.iter()
                    .filter(|(p, _)| p.comparison == c && p.q == k)
                    .map(|(_, w)| *w)
                    .collect()
            };
            let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
            for (k, &q) in asked.iter().enumerate() {
                let v = if terminal {
                    mean(&at(Comparison::Terminal, k)).unwrap_or(0.5)
                } else {
                    let l = mean(&at(Comparison::Local, k)).unwrap_or(0.5);
                    let gq = if self.s.judges_global() {
                        mean(&at(Comparison::Global, k)).unwrap_or(0.5)
                    } else {
                        0.0
                    };
                    match mean(&at(Comparison::Lookahead, k)).filter(|_| lookahead) {
                        Some(n) => wl * l + wn * n + wg * gq,
                        None => fl * l + fg * gq,
                    }
                };
                e.per_q.push((q, v));
            }
            // Bad cases: local (or terminal) losses, first three in batch order.
            let c = if terminal {
                Comparison::Terminal
            } else {
                Comparison::Local
            };
            for (k, &q) in asked.iter().enumerate() {
                if e.bad.len() >= 3 {
                    break;
                }
                if lost(c, k) == Some(true) {
                    e.bad.push(BadCase {
                        example: self.ev.pool()[q].id.clone(),
                        output: snippet(&new_of[&(ci, k)].nodes[a].raw, 200),
                    });
                }
            }
            // Misalignment mining (non-terminal): local win, lookahead or global loss.
            if !terminal {
                let mut denom = 0usize;
                let mut mis = 0usize;
                let mut cases: Vec<(u8, usize)> = Vec::new();
                for (k, &q) in asked.iter().enumerate() {
                    let local = mine
                        .iter()
                        .find(|(p, _)| p.comparison == Comparison::Local && p.q == k)
                        .map(|(_, w)| *w);
                    let Some(lw) = local else { continue };
                    let is_random = random[node].get(k).copied().unwrap_or(true);
                    if is_random {
                        denom += 1;
                    }
                    if lw <= 0.5 {
                        continue;
                    }
                    let glob_lost = lost(Comparison::Global, k).unwrap_or(false);
                    let next_lost = mine
                        .iter()
                        .filter(|(p, _)| p.comparison == Comparison::Lookahead && p.q == k)
                        .max_by_key(|(p, _)| p.succ)
                        .map(|(_, w)| *w < 0.5)
                        .unwrap_or(false);
                    if is_random && (next_lost || glob_lost) {
                        mis += 1;
                    }
                    match self.s.case_sampling {
                        CaseSampling::Misaligned => {
                            if let Some(pri) = priority(next_lost, glob_lost) {
                                cases.push((pri, q));
                            }
                        }
                        CaseSampling::Success => {
                            if !next_lost && !glob_lost {
                                cases.push((0, q));
                            }
                        }
                    }
                }
                e.misleading = keep_cases(cases, self.s.k_mis)
                    .into_iter()
                    .map(|q| self.ev.pool()[q].id.clone())
                    .collect();
                e.misalignment = (denom > 0).then(|| mis as f64 / denom as f64);
            }
            out.push(e);
        }
        out
    }

    /// A comparison decided without asking the judge (the default fixes): identical outputs tie,
    /// an empty output loses to a non-empty one. `None` in the reference mode.
    fn decided(&self, cand: &str, base: &str) -> Option<f64> {
        if !self.s.judge.identical_is_tie {
            return None;
        }
        let (c, b) = (cand.trim(), base.trim());
        match (c.is_empty(), b.is_empty()) {
            (true, true) => Some(0.5),
            (true, false) => Some(0.0),
            (false, true) => Some(1.0),
            _ if c == b => Some(0.5),
            _ => None,
        }
    }
}

/// Priority of a local win as a misalignment case: 0 when both lookahead and global were lost,
/// 1 lookahead only, 2 global only; `None` when neither was lost (no misalignment).
pub fn priority(lookahead_lost: bool, global_lost: bool) -> Option<u8> {
    match (lookahead_lost, global_lost) {
        (true, true) => Some(0),
        (true, false) => Some(1),
        (false, true) => Some(2),
        (false, false) => None,
    }
}

/// The next beam from a step's pool (children and surviving parents, with their per-question
/// wins): by cumulative score (duplicates dropped when `dedupe`), or with `pareto` GEPA's
/// selection — the members that are best on at least one question and not dominated by another
/// such member on the questions both were judged on, most questions won first, then the rest by
/// cumulative score. Questions every member ties on decide nothing.
pub fn select_beam(
    pool: &[BeamNode],
    per_q: &[Vec<(usize, f64)>],
    k: usize,
    dedupe: bool,
    pareto: bool,
) -> Vec<BeamNode> {
    let mut idx: Vec<usize> = (0..pool.len()).collect();
    idx.sort_by(|&x, &y| pool[y].cum.total_cmp(&pool[x].cum));
    if dedupe {
        let mut seen: Vec<&str> = Vec::new();
        idx.retain(|&i| {
            if seen.contains(&pool[i].prompt.as_str()) {
                false
            } else {
                seen.push(&pool[i].prompt);
                true
            }
        });
    }
    if pareto && idx.len() > k {
        let score = |i: usize, q: usize| per_q[i].iter().find(|x| x.0 == q).map(|x| x.1);
        let questions: std::collections::BTreeSet<usize> = idx
            .iter()
            .flat_map(|&i| per_q[i].iter().map(|x| x.0))
            .collect();
        let mut wins = vec![0usize; pool.len()];
        for q in questions {
            let have: Vec<(usize, f64)> = idx
                .iter()
                .filter_map(|&i| score(i, q).map(|v| (i, v)))
                .collect();
            let best = have.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
            if have.iter().all(|x| (x.1 - best).abs() < 1e-9) {
                continue;
            }
            for (i, v) in have {
                if v >= best - 1e-9 {
                    wins[i] += 1;
                }
            }
        }
        let dominates = |a: usize, b: usize| {
            let mut shared = false;
            let mut strictly = false;
            for &(q, vb) in &per_q[b] {
                if let Some(va) = score(a, q) {
                    shared = true;
                    if va < vb - 1e-9 {
                        return false;
                    }
                    if va > vb + 1e-9 {
                        strictly = true;
                    }
                }
            }
            shared && strictly
        };
        let winners: Vec<usize> = idx.iter().copied().filter(|&i| wins[i] > 0).collect();
        let mut front: Vec<usize> = winners
            .iter()
            .copied()
            .filter(|&b| !winners.iter().any(|&a| a != b && dominates(a, b)))
            .collect();
        // Most questions won first; the cumulative order breaks ties (stable sort).
        front.sort_by(|&x, &y| wins[y].cmp(&wins[x]));
        let rest: Vec<usize> = idx.iter().copied().filter(|i| !front.contains(i)).collect();
        front.extend(rest);
        idx = front;
    }
    idx.truncate(k);
    idx.into_iter().map(|i| pool[i].clone()).collect()
}

/// The `k` most severe cases (lowest priority number; batch order among equals).
pub fn keep_cases(mut cases: Vec<(u8, usize)>, k: usize) -> Vec<usize> {
    cases.sort_by_key(|c| c.0);
    cases.into_iter().take(k).map(|(_, q)| q).collect()
}

/// `n` items split into `k` contiguous parts (the first parts one larger when uneven).
pub fn parts(n: usize, k: usize) -> Vec<std::ops::Range<usize>> {
    let k = k.max(1).min(n.max(1));
    let (q, r) = (n / k, n % k);
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..k {
        let len = q + usize::from(i < r);
        out.push(start..start + len);
        start += len;
    }
    out
}

fn snippet(s: &str, n: usize) -> String {
    let t: String = s.chars().take(n).collect();
    if s.chars().count() > n {
        format!("{t}…")
    } else {
        t
    }
}
