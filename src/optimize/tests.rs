//! The search's logic on a scripted evaluator: rollouts, proposals and verdicts are functions of
//! the prompts, so every score, acceptance, mined case and beam is known in advance.

use super::config::{JudgeOrder, OptimizeSettings, Schedule};
use super::evaluator::{Cost, Evaluator, JudgeJob, JudgeVerdict, ProposeJob, RolloutJob};
use super::meta::Choice;
use super::search::{keep_cases, next_unit, parts, priority, Search, SearchEvent, Unit};
use super::state::State;
use super::OptimizeError;
use crate::mas::{build, AgentGraph, NodeTrace, PromptSet, Topology, TopologyOptions, Trace};
use crate::tasks::{Example, Gold, TaskKind};
use std::cell::RefCell;

/// Outputs carry markers from the prompts: an agent whose prompt contains `GOOD` writes `good`,
/// `LOCALONLY` writes `good` but poisons its successors (`bad` downstream).
struct Scripted {
    graph: AgentGraph,
    pool: Vec<Example>,
    /// Text the mutator appends to the current prompt.
    proposal: RefCell<Vec<String>>,
    judged: RefCell<usize>,
    /// Report log-prob margins.
    margins: bool,
}

impl Scripted {
    fn new(proposals: &[&str]) -> Self {
        let graph = build(
            Topology::Reflect,
            TaskKind::Math,
            &TopologyOptions::default(),
        )
        .unwrap();
        let pool = (0..12)
            .map(|i| Example {
                id: format!("q{i}"),
                question: format!("question {i}"),
                gold: Gold::Answer("1".into()),
            })
            .collect();
        Self {
            graph,
            pool,
            proposal: RefCell::new(proposals.iter().map(|s| s.to_string()).collect()),
            judged: RefCell::new(0),
            margins: false,
        }
    }
}

fn output(prompt: &str, upstream: &str) -> String {
    if prompt.contains("WORSE") {
        "bad".into()
    } else if prompt.contains("LOCALONLY") {
        "good-local".into()
    } else if upstream.contains("good-local") {
        "bad".into()
    } else if prompt.contains("GOOD") || upstream == "good" {
        "good".into()
    } else {
        "plain".into()
    }
}

impl Evaluator for Scripted {
    fn graph(&self) -> &AgentGraph {
        &self.graph
    }
    fn kind(&self) -> TaskKind {
        TaskKind::Math
    }
    fn pool(&self) -> &[Example] {
        &self.pool
    }
    fn rollouts(&self, jobs: &[RolloutJob<'_>]) -> Result<Vec<Trace>, OptimizeError> {
        Ok(jobs
            .iter()
            .map(|j| {
                let mut nodes = vec![NodeTrace::default(); 2];
                let p0 = j.prompts.get("predictor").unwrap();
                let p1 = j.prompts.get("reflector").unwrap();
                nodes[0].raw = match j.base {
                    Some((b, 1)) => b.nodes[0].raw.clone(),
                    _ => output(p0, ""),
                };
                nodes[1].context = nodes[0].raw.clone();
                nodes[1].raw = output(p1, &nodes[0].raw);
                Trace {
                    example_id: self.pool[j.example].id.clone(),
                    final_output: nodes[1].raw.clone(),
                    final_answer: nodes[1].raw.clone(),
                    nodes,
                    ..Trace::default()
                }
            })
            .collect())
    }
    fn propose(&self, jobs: &[ProposeJob]) -> Vec<Result<String, String>> {
        jobs.iter()
            .map(|j| {
                let cur = j
                    .prompt
                    .split("<current_prompt>\n")
                    .nth(1)
                    .and_then(|s| s.split("\n</current_prompt>").next())
                    .unwrap()
                    .to_string();
                let mut p = self.proposal.borrow_mut();
                let add = if p.len() > 1 {
                    p.remove(0)
                } else {
                    p[0].clone()
                };
                if add == "FAIL" {
                    Ok("no tags".into())
                } else if j
                    .prompt
                    .contains("<delete>(the sentence's number)</delete>")
                {
                    let n = add.strip_prefix("DEL").unwrap_or("none");
                    Ok(format!(
                        "<reason>\nit misleads</reason>\n<delete>{n}</delete>"
                    ))
                } else if j.prompt.contains("between <advice> and </advice>") {
                    Ok(format!("<advice>{add}</advice>"))
                } else {
                    Ok(format!("<prompt>{cur} {add}</prompt>"))
                }
            })
            .collect()
    }
    fn judge(&self, jobs: &[JudgeJob]) -> Vec<JudgeVerdict> {
        *self.judged.borrow_mut() += jobs.len();
        jobs.iter()
            .map(|j| {
                let a = section(&j.prompt, "A");
                let b = section(&j.prompt, "B");
                let rank = |s: &str| match s {
                    "good" | "good-local" => 2,
                    "plain" => 1,
                    _ => 0,
                };
                let (ra, rb) = (rank(&a), rank(&b));
                // A position-biased judge: ties (and only ties) go to "A"; margins carry a
                // constant +1 bias towards "A".
                JudgeVerdict {
                    choice: Some(if ra >= rb { Choice::A } else { Choice::B }),
                    margin: self.margins.then(|| f64::from(ra - rb) + 1.0),
                }
            })
            .collect()
    }
    fn grade(&self, items: &[(usize, &Trace)]) -> Vec<Option<bool>> {
        vec![None; items.len()]
    }
    fn cost(&self) -> Cost {
        Cost::default()
    }
}

/// The text under "## Output A" / "## Answer A" / "## Response A".
fn section(prompt: &str, letter: &str) -> String {
    for head in ["Output", "Answer", "Response"] {
        let h = format!("## {head} {letter}\n");
        if let Some(i) = prompt.find(&h) {
            let rest = &prompt[i + h.len()..];
            return rest.split("\n\n").next().unwrap_or("").trim().to_string();
        }
    }
    panic!("no section {letter} in {prompt}")
}

fn settings() -> OptimizeSettings {
    let mut s = OptimizeSettings::preset("default", "paper").unwrap();
    s.pool = 12;
    s.batch = 4;
    s.steps_per_turn = 1;
    s.sweeps = 2;
    s.judge.order = JudgeOrder::CandidateFirst;
    // The scripts below hand out one reply per call in order; retries would shift them (the
    // retry test turns them on).
    s.proposal_retries = 0;
    // The scripts append to the whole prompt (the advice form is tested on its own).
    s.proposal_form = super::config::ProposalForm::Rewrite;
    s
}

fn run_units(
    ev: &dyn Evaluator,
    s: &OptimizeSettings,
    n: usize,
) -> (State, Vec<super::search::CandidateRecord>) {
    let search = Search::new(ev, s);
    let mut state = State::new(&PromptSet::seeds(ev.graph()), &search.agent_ids());
    let mut recs = Vec::new();
    for _ in 0..n {
        let Some(u) = next_unit(&mut state, s) else {
            break;
        };
        let rec = search
            .run_unit(u, &mut state, &mut |e| {
                if let SearchEvent::Candidate(c) = e {
                    recs.push(*c)
                }
            })
            .unwrap();
        state.history.push(rec);
        state.units += 1;
    }
    (state, recs)
}

#[test]
fn a_better_predictor_prompt_wins_every_term_and_is_committed() {
    let ev = Scripted::new(&["GOOD"]);
    let s = settings();
    let (state, recs) = run_units(&ev, &s, 1);
    // Two proposals, identical → one candidate, one duplicate.
    assert_eq!(recs.len(), 2);
    let c = &recs[0];
    assert_eq!(
        (c.status.as_str(), recs[1].status.as_str()),
        ("evaluated", "duplicate")
    );
    assert_eq!(
        (c.local, c.lookahead, c.global),
        (Some(1.0), Some(1.0), Some(1.0))
    );
    assert!((c.score.unwrap() - 0.5).abs() < 1e-12 && c.accepted);
    assert!(state.prompts.get("predictor").unwrap().ends_with("GOOD"));
    let st = &state.agents[0];
    assert!((st.best.cum - 0.5).abs() < 1e-12);
    // Beam: the child, then the deduplicated parent is not re-added (both proposals succeeded).
    assert_eq!(st.beam.len(), 1);
    assert_eq!(st.misalignment, vec![Some(0.0)]);
}

#[test]
fn local_win_with_downstream_loss_is_mined_scored_and_injected() {
    let ev = Scripted::new(&["LOCALONLY"]);
    let mut s = settings();
    // Local weight only: the candidate is accepted although it hurts downstream.
    s.weights = [1.0, 0.0, 0.0];
    s.inject_cap = 2;
    let (state, recs) = run_units(&ev, &s, 2);
    let c = &recs[0];
    assert_eq!(
        (c.local, c.lookahead, c.global),
        (Some(1.0), Some(0.0), Some(0.0))
    );
    assert!((c.score.unwrap() - 0.5).abs() < 1e-12);
    assert_eq!(c.misalignment, Some(1.0));
    // K_mis = 3 cases in priority order (both lost), from the candidate's batch.
    let mined = &state.agents[0].misleading;
    assert_eq!(mined.len(), 3);
    assert!(mined.iter().all(|q| c.questions.contains(q)));
    // The reflector's batch starts with at most `inject_cap` of them.
    let r = recs.iter().find(|r| r.agent == "reflector").unwrap();
    assert!(mined.contains(&r.questions[0]) && mined.contains(&r.questions[1]));
    assert!(
        !mined.contains(&r.questions[2])
            || r.questions[2..]
                .iter()
                .filter(|q| mined.contains(q))
                .count()
                <= 1
    );
    assert_eq!(r.questions.len(), 4);
    // With the paper's weights the same candidate is rejected: 0.4·1 + 0.4·0 + 0.2·0 − 0.5 < 0.
    let ev = Scripted::new(&["LOCALONLY"]);
    let (state, recs) = run_units(&ev, &settings(), 1);
    assert!((recs[0].score.unwrap() - (0.4 - 0.5)).abs() < 1e-12 && !recs[0].accepted);
    assert!(
        state.agents[0].misleading.is_empty(),
        "cases are kept only on improvement"
    );
    assert_eq!(state.prompts, PromptSet::seeds(&ev.graph));
}

#[test]
fn the_terminal_agent_is_judged_role_aware_only() {
    let ev = Scripted::new(&["GOOD"]);
    let s = settings();
    let (state, recs) = run_units(&ev, &s, 2);
    let r = recs
        .iter()
        .find(|r| r.agent == "reflector" && r.status == "evaluated")
        .unwrap();
    assert_eq!((r.local, r.lookahead, r.global), (None, None, None));
    // The predictor already writes "good", so the reflector's output is "good" either way:
    // identical outputs tie without the judge → win 0.5, score 0, rejected.
    assert_eq!(r.terminal, Some(0.5));
    assert!(!r.accepted);
    assert_eq!(state.agents[1].explored, 1);
}

#[test]
fn format_failures_keep_the_parent_and_refresh_rescored_the_beam() {
    let ev = Scripted::new(&["FAIL"]);
    let s = settings();
    let (state, recs) = run_units(&ev, &s, 2);
    assert!(recs.iter().all(|r| r.status == "format_failure"));
    assert_eq!(*ev.judged.borrow(), 0);
    assert_eq!(state.agents[0].beam.len(), 1);
    // Sweep 2 starts with a refresh of the predictor: the only beam member is the anchor.
    let ev = Scripted::new(&["GOOD", "GOOD", "FAIL"]);
    let (state, recs) = run_units(&ev, &s, 3);
    let refresh: Vec<_> = recs.iter().filter(|r| r.kind == "refresh").collect();
    assert_eq!(refresh.len(), 1);
    assert_eq!(refresh[0].status, "anchor");
    assert_eq!(
        state.agents[0].beam[0].cum, 0.0,
        "refresh resets the anchor's cumulative score"
    );
    assert_eq!(state.agents[0].kendall, vec![true]);
}

#[test]
fn faithful_mode_keeps_duplicate_beam_nodes() {
    // One proposal fails (the parent stands in) and one is rejected (score < 0, the parent is
    // re-added): the reference keeps both copies of the parent in the beam.
    let mut s = settings();
    s.dedupe_beam = false;
    let (state, recs) = run_units(&Scripted::new(&["FAIL", "LOCALONLY"]), &s, 1);
    assert_eq!(recs[0].status, "format_failure");
    assert!(!recs[1].accepted);
    let beam = &state.agents[0].beam;
    assert_eq!(beam.len(), 2);
    assert_eq!(beam[0], beam[1]);
    s.dedupe_beam = true;
    let (state, _) = run_units(&Scripted::new(&["FAIL", "LOCALONLY"]), &s, 1);
    assert_eq!(state.agents[0].beam.len(), 1);
}

#[test]
fn schedules_visit_agents_as_specified() {
    let ids = vec!["a".to_string(), "b".to_string()];
    let seeds = PromptSet(
        ids.iter()
            .map(|i| (i.clone(), "{question}".to_string()))
            .collect(),
    );
    let trace = |mut s: OptimizeSettings, improve: bool| {
        let mut st = State::new(&seeds, &ids);
        let mut out = Vec::new();
        while let Some(u) = next_unit(&mut st, &s) {
            match u {
                Unit::Step(p) => {
                    st.agents[p].explored += 1;
                    st.agents[p].turn_fails = if improve {
                        0
                    } else {
                        st.agents[p].turn_fails + 1
                    };
                    st.cursor.in_turn += 1;
                    out.push(format!("{}{}", ids[p], st.agents[p].explored));
                }
                Unit::Refresh(p) => {
                    st.cursor.refreshed = true;
                    out.push(format!("R{}", ids[p]));
                }
                Unit::Joint | Unit::TpePool | Unit::TpeTrial => {
                    unreachable!("MASPO schedules have no joint steps or trials")
                }
            }
            assert!(out.len() < 100);
        }
        s.seed = 0;
        out.join(" ")
    };
    let mut s = settings();
    s.steps_per_turn = 2;
    s.sweeps = 2;
    assert_eq!(trace(s.clone(), true), "a1 a2 b1 b2 Ra a3 a4 Rb b3 b4");
    s.beam_refresh = false;
    assert_eq!(trace(s.clone(), true), "a1 a2 b1 b2 a3 a4 b3 b4");
    s.schedule = Schedule::SingleCycle;
    assert_eq!(trace(s.clone(), true), "a1 a2 a3 a4 b1 b2 b3 b4");
    s.schedule = Schedule::RoundRobin;
    s.patience = 1;
    // Patience 1 without improvement: one step per turn until each agent used its depth (4).
    assert_eq!(trace(s.clone(), false), "a1 b1 a2 b2 a3 b3 a4 b4");
    assert_eq!(trace(s, true), "a1 a2 a3 a4 b1 b2 b3 b4");
}

#[test]
fn batch_parts_split_evenly() {
    assert_eq!(parts(10, 2), vec![0..5, 5..10]);
    assert_eq!(parts(5, 2), vec![0..3, 3..5]);
    assert_eq!(parts(1, 2), vec![0..1]);
}

#[test]
fn both_orders_cancel_a_position_biased_judge() {
    // The scripted judge prefers "A" on ties. Judged once with the candidate first, a
    // candidate that changes nothing downstream-visible would win every tie; in both orders
    // ties split to ½ and a real improvement still wins both.
    let mut s = settings();
    s.judge.order = JudgeOrder::Both;
    s.judge.identical_is_tie = false;
    let (_, recs) = run_units(&Scripted::new(&["GOOD"]), &s, 1);
    assert_eq!(recs[0].local, Some(1.0));
    // The reflector's candidate changes nothing (its input is already good): ties → ½ each.
    let (_, recs) = run_units(&Scripted::new(&["GOOD"]), &s, 2);
    let r = recs
        .iter()
        .find(|r| r.agent == "reflector" && r.status == "evaluated")
        .unwrap();
    assert_eq!(r.terminal, Some(0.5));
    s.judge.order = JudgeOrder::CandidateFirst;
    let (_, recs) = run_units(&Scripted::new(&["GOOD"]), &s, 2);
    let r = recs
        .iter()
        .find(|r| r.agent == "reflector" && r.status == "evaluated")
        .unwrap();
    assert_eq!(
        r.terminal,
        Some(1.0),
        "the reference's single order rewards position bias"
    );
    // Log-prob margins with a constant bias towards "A": summed over both orders it cancels.
    s.judge.order = JudgeOrder::Both;
    let mut ev = Scripted::new(&["GOOD"]);
    ev.margins = true;
    let (state, recs) = run_units(&ev, &s, 2);
    assert_eq!(recs[0].local, Some(1.0));
    let r = recs
        .iter()
        .find(|r| r.agent == "reflector" && r.status == "evaluated")
        .unwrap();
    assert_eq!(r.terminal, Some(0.5));
    assert!(state.judge.both_orders > 0);
}

#[test]
fn misalignment_cases_are_kept_by_priority() {
    assert_eq!(priority(true, true), Some(0));
    assert_eq!(priority(true, false), Some(1));
    assert_eq!(priority(false, true), Some(2));
    assert_eq!(priority(false, false), None);
    // Questions 7 (global only), 3 (both), 5 (lookahead only), 9 (both), 1 (global only):
    // both-lost first in batch order, then lookahead-only, then global-only; K_mis = 3.
    let cases = vec![(2, 7), (0, 3), (1, 5), (0, 9), (2, 1)];
    assert_eq!(keep_cases(cases.clone(), 3), vec![3, 9, 5]);
    assert_eq!(keep_cases(cases, 10), vec![3, 9, 5, 7, 1]);
}

#[test]
fn success_case_sampling_feeds_local_wins_that_held_downstream() {
    // A candidate that wins every comparison: nothing is misaligned, so MASPO mines no case…
    let ev = Scripted::new(&["GOOD"]);
    let (state, recs) = run_units(&ev, &settings(), 1);
    assert!(recs[0].accepted && state.agents[0].misleading.is_empty());
    // …while success-case sampling keeps K_mis of its (all successful) questions.
    let s = settings().ablate("success_sampling").unwrap();
    let ev = Scripted::new(&["GOOD"]);
    let (state, recs) = run_units(&ev, &s, 2);
    let mined = &state.agents[0].misleading;
    assert_eq!(mined.len(), 3);
    assert!(mined.iter().all(|q| recs[0].questions.contains(q)));
    let r = recs.iter().find(|r| r.agent == "reflector").unwrap();
    assert!(mined.contains(&r.questions[0]), "successes are injected");
    // A local win that poisons its successor is not a success case.
    let mut s = settings().ablate("success_sampling").unwrap();
    s.weights = [1.0, 0.0, 0.0];
    let ev = Scripted::new(&["LOCALONLY"]);
    let (state, recs) = run_units(&ev, &s, 1);
    assert!(recs[0].accepted && state.agents[0].misleading.is_empty());
}

#[test]
fn ablations_change_what_they_name() {
    let base = settings();
    let get = |name: &str| base.ablate(name).unwrap();
    assert_eq!(get("no_beam").beam, 1);
    assert_eq!(get("single_cycle").schedule, Schedule::SingleCycle);
    assert!(!get("no_refresh").beam_refresh);
    let nj = get("no_joint");
    assert!(!nj.lookahead && nj.weights == [1.0, 0.0, 0.0] && nj.fallback_weights == [1.0, 0.0]);
    assert!(!get("random_sampling").misalignment_sampling);
    assert_eq!(
        get("success_sampling").case_sampling,
        super::config::CaseSampling::Success
    );
    for (name, _) in super::config::ABLATIONS {
        let a = get(name);
        assert_eq!(a.ablation.as_deref(), Some(name));
        a.validate().unwrap();
        // Nothing else moves: with the changed keys and the record put back, it is the base.
        let mut back = a.clone();
        back.ablation = None;
        back.beam = base.beam;
        back.schedule = base.schedule;
        back.beam_refresh = base.beam_refresh;
        back.lookahead = base.lookahead;
        back.weights = base.weights;
        back.fallback_weights = base.fallback_weights;
        back.misalignment_sampling = base.misalignment_sampling;
        back.case_sampling = base.case_sampling;
        assert_eq!(back, base, "{name}");
    }
    assert_eq!(
        get("self_optimized").ablation.as_deref(),
        Some("self_optimized")
    );
    let err = base.ablate("no_such").unwrap_err();
    assert!(
        err.contains("no_such") && err.contains("success_sampling"),
        "{err}"
    );
    // Without joint evaluation a candidate that hurts downstream is accepted on its local win.
    let ev = Scripted::new(&["LOCALONLY"]);
    let (state, recs) = run_units(&ev, &get("no_joint"), 1);
    assert_eq!(recs[0].lookahead, None);
    assert!(recs[0].accepted);
    assert!(state
        .prompts
        .get("predictor")
        .unwrap()
        .ends_with("LOCALONLY"));
}

#[test]
fn spo_runs_one_turn_per_agent_with_a_local_only_judge_and_seed_runs_nothing() {
    let s = settings().with_method(super::config::Method::Spo);
    assert_eq!(
        (s.steps_per_turn, s.sweeps, s.beam, s.proposals, s.batch),
        (2, 1, 1, 1, 3)
    );
    s.validate().unwrap();
    let ev = Scripted::new(&["GOOD"]);
    let (state, recs) = run_units(&ev, &s, 10);
    // predictor, predictor, reflector, reflector: each agent's turn once, in topological order.
    let agents: Vec<&str> = state.history.iter().map(|h| h.agent.as_str()).collect();
    assert_eq!(agents, ["predictor", "predictor", "reflector", "reflector"]);
    assert!(state.history.iter().all(|h| h.kind == "step"));
    for r in recs.iter().filter(|r| r.status == "evaluated") {
        assert_eq!((r.lookahead, r.global), (None, None), "{r:?}");
        assert_eq!(r.questions.len(), 3);
    }
    let first = &recs[0];
    assert_eq!((first.local, first.accepted), (Some(1.0), true));
    assert!(state.prompts.get("predictor").unwrap().contains("GOOD"));
    // Only local comparisons reached the judge: 3 questions per evaluated candidate at most.
    let evaluated = recs.iter().filter(|r| r.status == "evaluated").count();
    assert!(*ev.judged.borrow() <= 3 * evaluated);
    assert!(state.agents.iter().all(|a| a.misleading.is_empty()));
    // A candidate that poisons its successor still wins SPO's local judge.
    let ev = Scripted::new(&["LOCALONLY"]);
    let (state, recs) = run_units(&ev, &s, 1);
    assert!(recs[0].accepted);
    assert!(state
        .prompts
        .get("predictor")
        .unwrap()
        .contains("LOCALONLY"));
    // The seed method has no unit at all.
    let seed = settings().with_method(super::config::Method::Seed);
    let ev = Scripted::new(&["GOOD"]);
    let (state, recs) = run_units(&ev, &seed, 10);
    assert!(recs.is_empty() && state.history.is_empty());
    assert_eq!(state.prompts, PromptSet::seeds(&ev.graph));
    assert_eq!(*ev.judged.borrow(), 0);
}

#[test]
fn naive_joint_rewrites_every_agent_and_is_judged_on_the_final_answer_only() {
    let s = settings().with_method(super::config::Method::NaiveJoint);
    let ev = Scripted::new(&["GOOD"]);
    let (state, recs) = run_units(&ev, &s, 10);
    // depth = 2 joint steps, then the schedule ends.
    assert_eq!(state.history.len(), 2);
    assert!(state
        .history
        .iter()
        .all(|h| h.kind == "joint" && h.agent == "all"));
    // Step 1: two parts × two agents; both parts propose the same pair, so one joint candidate.
    let first: Vec<_> = recs.iter().filter(|r| r.step == 0).collect();
    assert_eq!(first.len(), 4);
    let evaluated: Vec<_> = first.iter().filter(|r| r.status == "evaluated").collect();
    assert_eq!(
        evaluated.len(),
        2,
        "one joint candidate = both agents' rewrites"
    );
    assert!(first.iter().filter(|r| r.status == "duplicate").count() == 2);
    for r in &evaluated {
        assert_eq!((r.local, r.lookahead, r.global), (None, None, None));
        assert_eq!(r.terminal, Some(1.0));
        assert!(r.accepted);
    }
    // Committed together.
    for id in ["predictor", "reflector"] {
        assert!(state.prompts.get(id).unwrap().contains("GOOD"), "{id}");
    }
    // Only the final answers reached the judge: one comparison per question of the first step
    // (the second step's rewrites leave the outputs as they were: decided without the judge).
    assert_eq!(*ev.judged.borrow(), 4);
    // Rewrites that win the predictor's own output but ruin the final answer are rejected.
    let ev = Scripted::new(&["LOCALONLY", "TERSE", "LOCALONLY", "TERSE"]);
    let (state, recs) = run_units(&ev, &s, 1);
    let r = recs.iter().find(|r| r.status == "evaluated").unwrap();
    assert_eq!((r.terminal, r.accepted), (Some(0.0), false));
    assert_eq!(state.prompts, PromptSet::seeds(&ev.graph));
}

/// The scripted mutator records the meta-prompts it was sent (and each call's seed and
/// prefill).
struct Recording {
    inner: Scripted,
    sent: RefCell<Vec<String>>,
}

/// One mutator call as the recording evaluator saw it: its seed and prefill.
type Call = (u64, Option<(String, String)>);

thread_local! {
    static SEEDS: RefCell<Vec<Call>> = const { RefCell::new(Vec::new()) };
}

#[test]
fn failed_proposals_are_retried_with_derived_seeds() {
    let mut s = settings();
    s.proposal_retries = 2;
    s.proposal_form = super::config::ProposalForm::Mixed;
    s.sweeps = 1;
    // The first job's reply has no <prompt> block, the second's is good; the retry (of the
    // first only) gets GOOD too — then it duplicates the second.
    let ev = Recording {
        inner: Scripted::new(&["FAIL", "GOOD"]),
        sent: RefCell::new(Vec::new()),
    };
    SEEDS.with(|v| v.borrow_mut().clear());
    let (state, recs) = run_units(&ev, &s, 1);
    assert_eq!(state.proposals.requested, 2);
    assert_eq!(state.proposals.retries, 1);
    assert_eq!(state.proposals.format_failures, 0);
    assert_eq!(recs[0].retries, 1);
    assert_eq!(recs[1].retries, 0);
    assert!(recs[0].prompt.contains("GOOD"), "{:?}", recs[0]);
    let calls = SEEDS.with(|v| v.borrow().clone());
    assert_eq!(calls.len(), 3, "two first attempts and one retry");
    assert_ne!(calls[2].0, calls[0].0, "a retry samples with a new seed");
    // `mixed`: the step's first proposal asks for advice, the second for a rewrite, each
    // pre-filled with its opening tag and stopped at its closing one.
    let prefill = |i: usize| calls[i].1.clone().unwrap();
    assert_eq!(prefill(0), ("<advice>\n".into(), "</advice>".into()));
    assert_eq!(prefill(1), ("<analyse>\n".into(), "</prompt>".into()));
    assert_eq!(prefill(2), prefill(0), "the retry asks the same");
    assert!(ev.sent.borrow()[0].contains("between <advice> and </advice>"));
    assert!(ev.sent.borrow()[1].contains("<analyse>"));
    // Same seed, same run: retries are deterministic.
    SEEDS.with(|v| v.borrow_mut().clear());
    let ev2 = Recording {
        inner: Scripted::new(&["FAIL", "GOOD"]),
        sent: RefCell::new(Vec::new()),
    };
    let (_, recs2) = run_units(&ev2, &s, 1);
    assert_eq!(SEEDS.with(|v| v.borrow().clone()), calls);
    assert_eq!(
        recs.iter().map(|r| &r.prompt).collect::<Vec<_>>(),
        recs2.iter().map(|r| &r.prompt).collect::<Vec<_>>()
    );
    // Retries give up after `proposal_retries`: a mutator that never writes the block.
    let ev = Scripted::new(&["FAIL"]);
    let (state, recs) = run_units(&ev, &s, 1);
    assert_eq!(state.proposals.retries, 4);
    assert_eq!(state.proposals.format_failures, 2);
    assert!(recs
        .iter()
        .all(|r| r.retries == 2 && r.status == "format_failure"));
    // A greedy mutator is never retried (it would repeat itself).
    s.mutator_temperature = 0.0;
    let (state, _) = run_units(&Scripted::new(&["FAIL"]), &s, 1);
    assert_eq!(state.proposals.retries, 0);
}

impl Evaluator for Recording {
    fn graph(&self) -> &AgentGraph {
        self.inner.graph()
    }
    fn kind(&self) -> TaskKind {
        self.inner.kind()
    }
    fn pool(&self) -> &[Example] {
        self.inner.pool()
    }
    fn rollouts(&self, jobs: &[RolloutJob<'_>]) -> Result<Vec<Trace>, OptimizeError> {
        self.inner.rollouts(jobs)
    }
    fn propose(&self, jobs: &[ProposeJob]) -> Vec<Result<String, String>> {
        self.sent
            .borrow_mut()
            .extend(jobs.iter().map(|j| j.prompt.clone()));
        SEEDS.with(|v| {
            v.borrow_mut()
                .extend(jobs.iter().map(|j| (j.seed, j.prefill.clone())))
        });
        self.inner.propose(jobs)
    }
    fn judge(&self, jobs: &[JudgeJob]) -> Vec<JudgeVerdict> {
        self.inner.judge(jobs)
    }
    fn grade(&self, items: &[(usize, &Trace)]) -> Vec<Option<bool>> {
        self.inner.grade(items)
    }
    fn cost(&self) -> Cost {
        self.inner.cost()
    }
}

#[test]
fn opro_shows_the_scored_trajectory_and_judges_locally() {
    let s = settings().with_method(super::config::Method::Opro);
    // SPO's schedule with the budget's batch and proposals.
    assert_eq!(
        (s.steps_per_turn, s.sweeps, s.beam, s.proposals, s.batch),
        (2, 1, 1, 2, 4)
    );
    assert!(!s.lookahead && !s.misalignment_sampling && !s.beam_refresh);
    let ev = Recording {
        inner: Scripted::new(&["GOOD", "FAIL", "better", "worded"]),
        sent: RefCell::new(Vec::new()),
    };
    let (state, recs) = run_units(&ev, &s, 10);
    let agents: Vec<&str> = state.history.iter().map(|h| h.agent.as_str()).collect();
    assert_eq!(agents, ["predictor", "predictor", "reflector", "reflector"]);
    for r in recs.iter().filter(|r| r.status == "evaluated") {
        assert_eq!((r.lookahead, r.global), (None, None), "{r:?}");
    }
    // The predictor's trajectory: the seed at ½, then every evaluated candidate's win rate.
    let t = &state.agents[0].trajectory;
    let evaluated: Vec<_> = recs
        .iter()
        .filter(|r| r.agent == "predictor" && r.status == "evaluated")
        .collect();
    assert_eq!(t.len(), 1 + evaluated.len());
    assert_eq!(t[0].score, 0.5);
    for (x, r) in t[1..].iter().zip(&evaluated) {
        assert_eq!(x.prompt, r.prompt);
        assert!((x.score - (r.score.unwrap() + 0.5)).abs() < 1e-12);
    }
    // The GOOD proposal won every local comparison and was committed.
    assert!(state.prompts.get("predictor").unwrap().contains("GOOD"));
    // The second step's meta-prompt shows the trajectory with scores, worst first.
    let sent = ev.sent.borrow();
    let second = &sent[2];
    assert!(
        second.contains("Prompts written so far, with their scores"),
        "{second}"
    );
    let good = second.find("GOOD\n</text>\nscore: 100").expect(second);
    let seed = second.find("</text>\nscore: 50").expect(second);
    assert!(seed < good, "ascending order");
    assert!(!sent[0].contains("GOOD"));
}

#[test]
fn prompt_breeder_evolves_a_population_with_its_operators() {
    let s = settings().with_method(super::config::Method::PromptBreeder);
    assert_eq!((s.beam, s.proposals, s.batch, s.sweeps), (2, 2, 4, 1));
    let ev = Recording {
        inner: Scripted::new(&["GOOD"]),
        sent: RefCell::new(Vec::new()),
    };
    let (state, recs) = run_units(&ev, &s, 10);
    assert_eq!(state.history.len(), 4);
    let ops: Vec<&str> = recs.iter().filter_map(|r| r.operator).collect();
    assert_eq!(ops.len(), recs.len(), "every proposal names its operator");
    for r in &recs {
        let m = r.mutation.as_deref().unwrap();
        match r.operator.unwrap() {
            "direct" => assert!(
                super::breeder::MUTATION_PROMPTS.contains(&m) || m.ends_with("GOOD"),
                "{m}"
            ),
            // The scripted mutator appends its text to the mutation prompt too.
            "hypermutation" => assert!(m.ends_with(" GOOD"), "{m}"),
            "lineage" => {}
            other => panic!("{other}"),
        }
    }
    // Population members carry their mutation prompt (the seed none).
    let pred = &state.agents[0];
    assert!(!pred.beam.is_empty() && pred.beam.len() <= 2);
    assert!(pred.beam.iter().all(|n| n.mutation.is_some() || n.id == 0));
    assert!(pred.best.mutation.is_some());
    for r in recs.iter().filter(|r| r.status == "evaluated") {
        assert_eq!((r.lookahead, r.global), (None, None), "{r:?}");
    }
    assert!(state.prompts.get("predictor").unwrap().contains("GOOD"));
    // Mutator calls: proposals plus one rewrite per hypermutation.
    let hyper = ops.iter().filter(|o| **o == "hypermutation").count();
    assert_eq!(ev.sent.borrow().len(), recs.len() + hyper);
    // Seeded: the same run again gives the same records.
    let again = Recording {
        inner: Scripted::new(&["GOOD"]),
        sent: RefCell::new(Vec::new()),
    };
    let (state2, recs2) = run_units(&again, &s, 10);
    assert_eq!(recs, recs2);
    assert_eq!(state, state2);
}

#[test]
fn tpe_builds_a_pool_then_runs_trials_judged_on_the_final_answer_against_the_seed_system() {
    let s = settings().with_method(super::config::Method::Tpe);
    let (cands, trials, startup) = super::tpe::plan(2, s.proposals, s.depth());
    assert_eq!((cands, trials, startup), (4, 8, 2));
    let ev = Scripted::new(&["GOOD", "FAIL", "plain one", "GOOD"]);
    let (state, recs) = run_units(&ev, &s, 100);
    let kinds: Vec<&str> = state.history.iter().map(|h| h.kind.as_str()).collect();
    assert_eq!(kinds[0], "tpe_pool");
    assert_eq!(kinds[1..], ["trial"; 8]);
    let tpe = state.tpe.as_ref().unwrap();
    // Each agent's pool: its seed prompt, then distinct valid proposals (a FAIL and a repeated
    // GOOD dropped).
    for (pos, pool) in tpe.pool.iter().enumerate() {
        assert_eq!(pool[0], state.seeds.get(&state.agents[pos].agent).unwrap());
        let mut dedup = pool.clone();
        dedup.dedup();
        assert_eq!(&dedup, pool);
        assert!(pool.len() <= 5 && pool.len() >= 2, "{pool:?}");
    }
    assert_eq!(tpe.trials.len(), 8);
    let pooled = recs.iter().filter(|r| r.kind == "pool").count();
    assert_eq!(pooled, 8, "4 proposals per agent");
    // Trials are judged on the final answer only (role-aware terminal comparison).
    for r in recs.iter().filter(|r| r.kind == "trial") {
        assert!(r.local.is_none() && r.lookahead.is_none() && r.global.is_none());
        assert!(r.terminal.is_some());
    }
    assert!(*ev.judged.borrow() <= 8 * s.batch);
    // The committed system is the first best trial (if it beat the seed system).
    let best = tpe
        .trials
        .iter()
        .enumerate()
        .fold(None::<(usize, f64)>, |b, (i, t)| match b {
            Some((_, s)) if s >= t.score => b,
            _ => Some((i, t.score)),
        })
        .unwrap();
    assert!(
        best.1 > 0.5,
        "a GOOD predictor wins the final answer: {:?}",
        tpe.trials
    );
    for (pos, a) in state.agents.iter().enumerate() {
        let chosen = &tpe.pool[pos][tpe.trials[best.0].config[pos]];
        assert_eq!(state.prompts.get(&a.agent).unwrap(), chosen);
    }
    // Seeded: the same again.
    let again = Scripted::new(&["GOOD", "FAIL", "plain one", "GOOD"]);
    let (state2, recs2) = run_units(&again, &s, 100);
    assert_eq!((state2, recs2), (state.clone(), recs));
    // No valid proposal: nothing to search over, no trial.
    let none = Scripted::new(&["FAIL"]);
    let (state3, _) = run_units(&none, &s, 100);
    assert_eq!(state3.history.len(), 1);
    assert_eq!(state3.prompts, state3.seeds);
}

#[test]
fn racing_drops_hopeless_candidates_and_commits_the_same_prompts() {
    let script: Vec<&str> = ["WORSE", "GOOD"].iter().cycle().take(60).copied().collect();
    for method in [super::config::Method::Maspo, super::config::Method::Spo] {
        let plain = settings().with_method(method);
        let mut raced = plain.clone();
        raced.racing = true;
        let (ev1, ev2) = (Scripted::new(&script), Scripted::new(&script));
        let (s1, r1) = run_units(&ev1, &plain, 100);
        let (s2, r2) = run_units(&ev2, &raced, 100);
        assert_eq!(s1.prompts, s2.prompts, "{method:?}");
        assert_eq!(s1.history.len(), s2.history.len());
        for (a, b) in s1.agents.iter().zip(&s2.agents) {
            assert_eq!((&a.beam, &a.best), (&b.beam, &b.best), "{method:?}");
        }
        for (a, b) in s1.history.iter().zip(&s2.history) {
            assert_eq!(
                (a.accepted, a.improved, &a.beam),
                (b.accepted, b.improved, &b.beam)
            );
        }
        assert!(s2.proposals.raced_out > 0, "{method:?}");
        assert_eq!(s1.proposals.raced_out, 0);
        assert!(*ev2.judged.borrow() < *ev1.judged.borrow(), "{method:?}");
        // Dropped candidates were hopeless (never accepted); every other record is identical.
        assert_eq!(r1.len(), r2.len());
        for (x, y) in r1.iter().zip(&r2) {
            if y.raced_out {
                assert!(
                    !x.accepted && !y.accepted && x.prompt.contains("WORSE"),
                    "{y:?}"
                );
            } else {
                assert_eq!(x, y);
            }
        }
    }
}

#[test]
fn pareto_selection_keeps_a_specialist_over_a_dominated_member() {
    use super::search::select_beam;
    use super::state::BeamNode;
    let node = |p: &str, cum: f64| BeamNode {
        prompt: p.into(),
        cum,
        id: 0,
        mutation: None,
    };
    // A wins q1 and q2; C is as good as A on q1 only (dominated by A); B wins q3.
    let pool = vec![
        node("A", 1.0),
        node("C", 0.95),
        node("B", 0.9),
        node("A", 0.5),
    ];
    let q = vec![
        vec![(1, 1.0), (2, 1.0), (3, 0.0)],
        vec![(1, 1.0), (2, 0.5), (3, 0.0)],
        vec![(1, 0.5), (2, 0.5), (3, 1.0)],
        vec![(1, 0.5), (2, 0.5), (3, 0.5)],
    ];
    let names = |v: Vec<BeamNode>| v.into_iter().map(|n| n.prompt).collect::<Vec<_>>();
    assert_eq!(names(select_beam(&pool, &q, 2, true, false)), ["A", "C"]);
    assert_eq!(names(select_beam(&pool, &q, 2, true, true)), ["A", "B"]);
    // Without dedupe the top-K keeps the duplicate; with everything tied Pareto is top-K.
    assert_eq!(
        names(select_beam(&pool, &q, 3, false, false)),
        ["A", "C", "B"]
    );
    let tied = vec![vec![(1, 0.5)]; 4];
    assert_eq!(names(select_beam(&pool, &tied, 2, true, true)), ["A", "C"]);
    // A search with Pareto selection runs and keeps a beam of at most `beam`.
    let mut s = settings();
    s.pareto = true;
    let ev = Scripted::new(&["GOOD", "LOCALONLY", "plain words"]);
    let (state, _) = run_units(&ev, &s, 100);
    assert!(state.agents.iter().all(|a| a.beam.len() <= s.beam));
    assert!(state.prompts.get("predictor").unwrap().contains("GOOD"));
}

/// The scripted evaluator with a gold judge: a final output is correct when it equals
/// `correct`.
struct Graded {
    inner: Scripted,
    correct: &'static str,
    sent: RefCell<Vec<String>>,
}

impl Graded {
    fn new(proposals: &[&str], correct: &'static str) -> Self {
        Self {
            inner: Scripted::new(proposals),
            correct,
            sent: RefCell::new(Vec::new()),
        }
    }
}

impl Evaluator for Graded {
    fn graph(&self) -> &AgentGraph {
        self.inner.graph()
    }
    fn kind(&self) -> TaskKind {
        self.inner.kind()
    }
    fn pool(&self) -> &[Example] {
        self.inner.pool()
    }
    fn rollouts(&self, jobs: &[RolloutJob<'_>]) -> Result<Vec<Trace>, OptimizeError> {
        self.inner.rollouts(jobs)
    }
    fn propose(&self, jobs: &[ProposeJob]) -> Vec<Result<String, String>> {
        self.sent
            .borrow_mut()
            .extend(jobs.iter().map(|j| j.prompt.clone()));
        self.inner.propose(jobs)
    }
    fn judge(&self, jobs: &[JudgeJob]) -> Vec<JudgeVerdict> {
        self.inner.judge(jobs)
    }
    fn grade(&self, items: &[(usize, &Trace)]) -> Vec<Option<bool>> {
        items
            .iter()
            .map(|(_, t)| Some(t.final_output == self.correct))
            .collect()
    }
    fn cost(&self) -> Cost {
        Cost::default()
    }
}

#[test]
fn judge_agreement_with_gold_is_measured_on_pairs_with_one_correct_output() {
    let s = settings();
    // The GOOD predictor makes the final output "good" where the seed's is "plain"; the
    // scripted judge prefers "good".
    let ev = Graded::new(&["GOOD"], "good");
    let (state, _) = run_units(&ev, &s, 1);
    let j = &state.judge;
    assert!(j.gold_pairs > 0, "{j:?}");
    assert_eq!(j.gold_agree, j.gold_pairs as f64);
    assert_eq!(j.gold_verdicts_agree, j.gold_verdicts);
    // The same verdicts against a gold that says the seed's "plain" is right: no agreement.
    let ev = Graded::new(&["GOOD"], "plain");
    let (state, _) = run_units(&ev, &s, 1);
    assert!(state.judge.gold_pairs > 0);
    assert_eq!(state.judge.gold_agree, 0.0);
    assert_eq!(state.judge.gold_verdicts_agree, 0);
    // No gold judge: nothing measured.
    let (state, _) = run_units(&Scripted::new(&["GOOD"]), &s, 1);
    assert_eq!(state.judge.gold_pairs, 0);
}

#[test]
fn labels_show_the_mutator_which_final_answers_were_wrong() {
    // Label-free (the paper): no results in the meta-prompt.
    let s = settings();
    let ev = Graded::new(&["GOOD"], "good");
    run_units(&ev, &s, 1);
    assert!(!ev.sent.borrow()[0].contains("Result of the team"));
    // With labels: every shown problem carries the team's result (the seed's "plain" final
    // answers are wrong here).
    let mut s = settings();
    s.judge.labels = true;
    let ev = Graded::new(&["GOOD"], "good");
    run_units(&ev, &s, 1);
    let sent = ev.sent.borrow();
    assert_eq!(
        sent[0].matches("#### Result of the team\nWrong").count(),
        2,
        "{}",
        sent[0]
    );
    assert!(sent[0].contains("never mention a particular problem"));
}

#[test]
fn advice_is_added_before_the_question_and_judged_like_a_rewrite() {
    let mut s = settings();
    s.proposal_form = super::config::ProposalForm::Advice;
    let ev = Recording {
        inner: Scripted::new(&["GOOD"]),
        sent: RefCell::new(Vec::new()),
    };
    let (state, recs) = run_units(&ev, &s, 1);
    assert!(ev.sent.borrow()[0].contains("between <advice> and </advice>"));
    let seed = PromptSet::seeds(ev.graph());
    let seed = seed.get("predictor").unwrap();
    let committed = state.prompts.get("predictor").unwrap();
    // The seed with "GOOD" as its own paragraph before the question block.
    let at = seed.find("\n\nThe problem:").expect(seed);
    assert_eq!(
        committed,
        format!("{}\n\nGOOD{}", &seed[..at], &seed[at..]),
        "{recs:?}"
    );
    // Advice that runs on, or smuggles placeholders, is rejected.
    for bad in ["word ".repeat(200), "Use {question} twice.".to_string()] {
        let ev = Scripted::new(&[bad.trim()]);
        let (state, recs) = run_units(&ev, &s, 1);
        assert!(recs.iter().all(|r| r.status == "rejected"), "{recs:?}");
        assert!(state.proposals.rejected > 0);
    }
}

#[test]
fn labels_decide_the_terminal_agents_comparisons_by_gold() {
    // The reflector's "WORSE" proposal makes the final output "bad", the seed's is "plain";
    // the gold says "bad" is right, against the scripted judge's taste.
    let mut s = settings();
    s.steps_per_turn = 1;
    s.judge.labels = true;
    let ev = Graded::new(&["WORSE"], "bad");
    let (state, recs) = run_units(&ev, &s, 2);
    let reflector: Vec<_> = recs.iter().filter(|r| r.agent == "reflector").collect();
    assert!(!reflector.is_empty());
    assert!(
        reflector
            .iter()
            .any(|r| r.accepted && r.terminal == Some(1.0)),
        "{reflector:?}"
    );
    assert!(state.prompts.get("reflector").unwrap().contains("WORSE"));
    // Label-free, the judge keeps the seed.
    s.judge.labels = false;
    let (state, _) = run_units(&Graded::new(&["WORSE"], "bad"), &s, 2);
    assert!(!state.prompts.get("reflector").unwrap().contains("WORSE"));
}

#[test]
fn a_delete_proposal_removes_the_sentence_it_names() {
    let mut s = settings();
    s.proposal_form = super::config::ProposalForm::Delete;
    let ev = Recording {
        inner: Scripted::new(&["DEL2"]),
        sent: RefCell::new(Vec::new()),
    };
    SEEDS.with(|v| v.borrow_mut().clear());
    let (state, recs) = run_units(&ev, &s, 1);
    let seed = PromptSet::seeds(ev.graph());
    let seed = seed.get("predictor").unwrap();
    let sentences = super::edit::deletable_sentences(seed);
    assert!(sentences.len() >= 2, "{seed}");
    // The mutator saw the sentences numbered and was pre-filled for a reason.
    let sent = ev.sent.borrow()[0].clone();
    assert!(
        sent.contains(&format!("[2] {}", &seed[sentences[1].clone()])),
        "{sent}"
    );
    let calls = SEEDS.with(|v| v.borrow().clone());
    assert_eq!(
        calls[0].1,
        Some(("<reason>\n".to_string(), "</delete>".to_string()))
    );
    let r = &recs[0];
    assert_eq!(
        (r.form, r.status.as_str()),
        (Some("delete"), "evaluated"),
        "{r:?}"
    );
    assert_eq!(
        r.prompt,
        super::edit::without_sentence(seed, sentences[1].clone())
    );
    assert!(r.prompt.contains("{question}"));
    assert_eq!(state.proposals.forms["delete"].proposed, recs.len() as u64);
    // A number outside the list, or none, is a format failure.
    for bad in ["DEL99", "DELx"] {
        let (state, recs) = run_units(&Scripted::new(&[bad]), &s, 1);
        assert!(
            recs.iter().all(|r| r.status == "format_failure"),
            "{bad}: {recs:?}"
        );
        assert_eq!(state.proposals.format_failures, recs.len() as u64);
    }
}

#[test]
fn mixed_proposals_take_each_form_in_turn() {
    let mut s = settings();
    s.proposal_form = super::config::ProposalForm::Mixed;
    s.proposals = 3;
    s.batch = 6;
    let ev = Scripted::new(&["DEL1", "GOOD", "DEL1"]);
    let (state, recs) = run_units(&ev, &s, 1);
    let forms: Vec<_> = recs.iter().map(|r| r.form.unwrap()).collect();
    assert_eq!(forms, ["advice", "rewrite", "delete"], "{recs:?}");
    assert_eq!(state.proposals.forms.len(), 3);
}
