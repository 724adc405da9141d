//! Projection of an optimization's cost before it starts: calls by phase and role (upper bounds:
//! every proposal distinct and evaluated, no cache hits) and generated tokens at the configured
//! maxima; minutes from a measured generation speed when one is given.

use super::config::{JudgeMode, JudgeOrder, Method, OptimizeSettings, Schedule};
use crate::mas::{AgentGraph, AgentKind, Protocol, RunSettings};
use serde::Serialize;

/// Calls and tokens of one phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PhaseCost {
    /// Phase (`baseline`, `propose`, `rerun`, `judge`).
    pub phase: String,
    /// Model role (`agents`, `mutator`, `evaluator`).
    pub role: String,
    /// Calls (upper bound).
    pub calls: u64,
    /// Generated tokens (upper bound).
    pub max_generated_tokens: u64,
}

/// A projection.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Projection {
    /// Units (steps and refreshes).
    pub units: usize,
    /// Steps.
    pub steps: usize,
    /// Refreshes.
    pub refreshes: usize,
    /// Per phase.
    pub phases: Vec<PhaseCost>,
    /// All calls.
    pub calls: u64,
    /// Calls of the cheapest first step (baselines and proposals only); a call budget below it
    /// cannot finish one step.
    pub first_step_min_calls: u64,
    /// All generated tokens (upper bound).
    pub max_generated_tokens: u64,
    /// Minutes at the measured speed (upper bound), when a speed is known.
    pub max_minutes: Option<f64>,
}

fn llm_calls(g: &AgentGraph, run: &RunSettings, agents: &[usize]) -> (u64, u64) {
    // (answer calls, summary calls) for running these agents once.
    let llm: Vec<usize> = agents
        .iter()
        .copied()
        .filter(|&i| g.agent(i).kind == AgentKind::Llm)
        .collect();
    let answers = llm.len() as u64;
    let summaries = match run.protocol {
        Protocol::Direct => 0,
        Protocol::Summary => llm.iter().filter(|&&i| i != g.terminal()).count() as u64,
    };
    (answers, summaries)
}

/// LLM calls one run of the whole system makes per question (answers and summaries): the
/// sample count of CoT self-consistency at matched compute.
pub fn calls_per_question(g: &AgentGraph, run: &RunSettings) -> usize {
    let all: Vec<usize> = (0..g.agents().len()).collect();
    let (a, s) = llm_calls(g, run, &all);
    (a + s) as usize
}

/// Projects the cost of a whole run. `gen_tokens_per_sec`: measured batched generation speed.
pub fn project(
    g: &AgentGraph,
    run: &RunSettings,
    s: &OptimizeSettings,
    gen_tokens_per_sec: Option<f64>,
) -> Projection {
    let all: Vec<usize> = (0..g.agents().len()).collect();
    let (fa, fs) = llm_calls(g, run, &all);
    let orders: u64 = if s.judge.order == JudgeOrder::Both {
        2
    } else {
        1
    };
    let judge_tokens = |terminal: bool| -> u64 {
        if s.judge.mode == JudgeMode::Logprob {
            0
        } else if terminal {
            s.judge.max_tokens as u64
        } else {
            s.judge.short_max_tokens as u64
        }
    };
    let (batch, k, p) = (s.batch as u64, s.beam as u64, s.proposals as u64);
    let mut acc: std::collections::BTreeMap<(&str, &str), (u64, u64)> = Default::default();
    let mut add = |phase: &'static str, role: &'static str, calls: u64, toks: u64| {
        let e = acc.entry((phase, role)).or_default();
        e.0 += calls;
        e.1 += toks;
    };
    let agent_tok = s.agent_max_tokens as u64;
    let sum_tok = run.summary_max_tokens as u64;
    let mut steps = 0;
    let mut refreshes = 0;
    let mut first_min = None;
    // (calls, generated tokens) of `k` whole-system runs of a batch.
    let whole = |k: u64| {
        (
            k * batch * (fa + fs),
            k * batch * (fa * agent_tok + fs * sum_tok),
        )
    };
    if s.method == Method::NaiveJoint {
        // Per step: the current system on the batch, one rewrite per agent per part, whole
        // re-runs of each joint candidate, and the final answers judged.
        let n = g.optimizable().len() as u64;
        for _ in 0..s.depth() {
            steps += 1;
            let (c, t) = whole(1);
            add("baseline", "agents", c, t);
            add(
                "propose",
                "mutator",
                p * n,
                p * n * s.mutator_max_tokens as u64,
            );
            let (c, t) = whole(p);
            add("rerun", "agents", c, t);
            let jc = p * batch * orders;
            add("judge", "evaluator", jc, jc * judge_tokens(true));
            first_min.get_or_insert(batch * (fa + fs) + p * n);
        }
    }
    if s.method == Method::Tpe {
        // The pool: the starting system on one batch and `candidates` proposals per agent;
        // then per trial the seed system and the trial's system on a batch, final answers
        // judged.
        let n = g.optimizable().len() as u64;
        let (candidates, trials, _) = super::tpe::plan(n as usize, s.proposals, s.depth());
        steps += 1;
        let (wc, wt) = whole(1);
        add("baseline", "agents", wc, wt);
        let c = candidates as u64;
        add(
            "propose",
            "mutator",
            c * n,
            c * n * s.mutator_max_tokens as u64,
        );
        first_min.get_or_insert(batch * (fa + fs) + c * n);
        for _ in 0..trials {
            steps += 1;
            add("baseline", "agents", wc, wt);
            add("rerun", "agents", wc, wt);
            let jc = batch * orders;
            add("judge", "evaluator", jc, jc * judge_tokens(true));
        }
    }
    let agents = if matches!(s.method, Method::NaiveJoint | Method::Tpe) {
        Vec::new()
    } else {
        g.optimizable()
    };
    for a in agents {
        let mut sub = vec![a];
        sub.extend(g.descendants(a));
        let (ra, rs) = llm_calls(g, run, &sub);
        let terminal = a == g.terminal();
        // Local (or terminal), then global and each successor's lookahead when judged.
        let per_q_judge = if terminal {
            1
        } else {
            1 + u64::from(s.judges_global())
                + if s.judges_lookahead() {
                    g.successors(a).len() as u64
                } else {
                    0
                }
        };
        let depth = if s.method.is_fixed() { 0 } else { s.depth() };
        for step in 0..depth {
            let nodes = if step == 0 { 1 } else { k };
            steps += 1;
            add(
                "baseline",
                "agents",
                nodes * batch * (fa + fs),
                nodes * batch * (fa * agent_tok + fs * sum_tok),
            );
            // PromptBreeder's hypermutations ask the mutator twice.
            let asks = if s.method == Method::PromptBreeder {
                2
            } else {
                1
            };
            add(
                "propose",
                "mutator",
                asks * nodes * p,
                asks * nodes * p * s.mutator_max_tokens as u64,
            );
            add(
                "rerun",
                "agents",
                nodes * p * batch * (ra + rs),
                nodes * p * batch * (ra * agent_tok + rs * sum_tok),
            );
            let jc = nodes * p * batch * per_q_judge * orders;
            add("judge", "evaluator", jc, jc * judge_tokens(terminal));
            if first_min.is_none() {
                first_min = Some(nodes * batch * (fa + fs) + nodes * p);
            }
        }
        if s.schedule == Schedule::Maspo && s.beam_refresh && depth > 0 {
            let r = s.sweeps.saturating_sub(1) as u64;
            refreshes += r as usize;
            let others = k.saturating_sub(1);
            add(
                "baseline",
                "agents",
                r * batch * (fa + fs),
                r * batch * (fa * agent_tok + fs * sum_tok),
            );
            add(
                "rerun",
                "agents",
                r * others * batch * (ra + rs),
                r * others * batch * (ra * agent_tok + rs * sum_tok),
            );
            let jc = r * others * batch * per_q_judge * orders;
            add("judge", "evaluator", jc, jc * judge_tokens(terminal));
        }
    }
    let phases: Vec<PhaseCost> = ["baseline", "propose", "rerun", "judge"]
        .iter()
        .flat_map(|ph| {
            acc.iter()
                .filter(move |((p, _), _)| p == ph)
                .map(|((p, r), (c, t))| PhaseCost {
                    phase: p.to_string(),
                    role: r.to_string(),
                    calls: *c,
                    max_generated_tokens: *t,
                })
        })
        .collect();
    let calls = phases.iter().map(|p| p.calls).sum();
    let toks: u64 = phases.iter().map(|p| p.max_generated_tokens).sum();
    Projection {
        units: steps + refreshes,
        steps,
        refreshes,
        phases,
        calls,
        first_step_min_calls: first_min.unwrap_or(0),
        max_generated_tokens: toks,
        max_minutes: gen_tokens_per_sec
            .filter(|v| *v > 0.0)
            .map(|v| toks as f64 / v / 60.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mas::{build, Topology, TopologyOptions};
    use crate::tasks::TaskKind;

    /// The paper's Sequential MAS on a math task.
    fn reflect() -> AgentGraph {
        build(
            Topology::Reflect,
            TaskKind::Math,
            &TopologyOptions::default(),
        )
        .unwrap()
    }

    #[test]
    fn reflect_at_paper_defaults_matches_the_spec_order_of_magnitude() {
        let g = reflect();
        let mut s = OptimizeSettings::default();
        s.judge.order = JudgeOrder::CandidateFirst;
        let p = project(&g, &RunSettings::default(), &s, Some(100.0));
        assert_eq!((p.steps, p.refreshes), (18, 4));
        // docs/design/algorithm.md §10: about 5.3k calls (3.8k agent calls with terminal summaries; maspo skips
        // the terminal's summary call).
        assert!(p.calls > 3000 && p.calls < 6000, "{}", p.calls);
        let mutator: u64 = p
            .phases
            .iter()
            .filter(|x| x.role == "mutator")
            .map(|x| x.calls)
            .sum();
        assert_eq!(mutator, 68);
        assert!(p.max_minutes.unwrap() > 0.0);
        assert_eq!(p.first_step_min_calls, 10 * 3 + 2);
    }

    #[test]
    fn seed_costs_nothing_and_spo_judges_locally_only() {
        let g = reflect();
        let base = OptimizeSettings::default();
        let run = RunSettings::default();
        let p = project(&g, &run, &base.with_method(Method::Seed), None);
        assert_eq!((p.units, p.calls, p.first_step_min_calls), (0, 0, 0));
        for m in [Method::Cot, Method::CotSc, Method::SelfRefine] {
            assert_eq!(project(&g, &run, &base.with_method(m), None).calls, 0);
        }
        // Predictor (answer + summary) and reflector.
        assert_eq!(calls_per_question(&g, &run), 3);
        let p = project(&g, &run, &base.with_method(Method::Spo), None);
        // Two agents × the paper budget's 9 rounds, no refresh.
        assert_eq!((p.steps, p.refreshes), (18, 0));
        let calls = |phase: &str| -> u64 {
            p.phases
                .iter()
                .filter(|x| x.phase == phase)
                .map(|x| x.calls)
                .sum()
        };
        assert_eq!(calls("propose"), 18);
        // One comparison per question (local, or terminal), in both orders.
        assert_eq!(calls("judge"), 18 * 3 * 2);
    }

    #[test]
    fn tpe_and_the_per_agent_baselines_are_projected() {
        let g = reflect();
        let run = RunSettings::default();
        let base = OptimizeSettings::default();
        let phase = |p: &Projection, phase: &str| -> u64 {
            p.phases
                .iter()
                .filter(|x| x.phase == phase)
                .map(|x| x.calls)
                .sum()
        };
        // TPE at the paper budget: 2 × 9 = 18 candidates per agent, 36 trials of 10 questions.
        let p = project(&g, &run, &base.with_method(Method::Tpe), None);
        assert_eq!(p.steps, 1 + 36);
        assert_eq!(phase(&p, "propose"), 2 * 18);
        assert_eq!(phase(&p, "judge"), 36 * 10 * 2);
        assert_eq!(phase(&p, "rerun"), 36 * 10 * 3);
        // OPRO keeps the budget's batch and proposals on SPO's schedule; PromptBreeder also a
        // population of 2, and may ask the mutator twice per proposal (hypermutation).
        let opro = project(&g, &run, &base.with_method(Method::Opro), None);
        assert_eq!(opro.steps, 18);
        assert_eq!(phase(&opro, "propose"), 18 * 2);
        let pb = project(&g, &run, &base.with_method(Method::PromptBreeder), None);
        // Per agent: the first step from the seed alone, then 8 steps over 2 members.
        assert_eq!(phase(&pb, "propose"), 2 * 2 * 2 * (1 + 8 * 2));
    }

    #[test]
    fn naive_joint_projects_whole_runs_and_final_answer_judging() {
        let g = reflect();
        let s = OptimizeSettings::default().with_method(Method::NaiveJoint);
        let p = project(&g, &RunSettings::default(), &s, None);
        assert_eq!((p.steps, p.refreshes), (9, 0));
        let calls = |phase: &str| -> u64 {
            p.phases
                .iter()
                .filter(|x| x.phase == phase)
                .map(|x| x.calls)
                .sum()
        };
        // 2 parts × 2 agents proposals; 2 candidates × 10 questions × 2 orders judged.
        assert_eq!(calls("propose"), 9 * 4);
        assert_eq!(calls("judge"), 9 * 2 * 10 * 2);
    }
}
