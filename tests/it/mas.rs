//! Every topology end to end on the real SmolLM2 engine: batched rollouts, the two-call
//! protocol, traces, partial re-run, batch invariance at the MAS level, and `evaluate` with each
//! judge family (answers, code in the sandbox).

use crate::common::{engine, fixture, heavy, SMOLLM2};
use maspo::eval::{evaluate, EvalInputs};
use maspo::judge::answer::AnswerJudge;
use maspo::judge::answer_extractor::TaskExtractor;
use maspo::judge::code::CodeJudge;
use maspo::judge::Judge;
use maspo::mas::{
    build, AgentKind, PromptSet, Protocol, Rollout, RunSettings, Runner, Topology, TopologyOptions,
    Trace,
};
use maspo::tasks::{load_jsonl, load_task, AnswerMode, FieldMap, Task, TaskKind};

fn settings(kind: TaskKind) -> RunSettings {
    RunSettings {
        kind,
        max_tokens: 64,
        summary_max_tokens: 24,
        seed: 3,
        ..RunSettings::default()
    }
}

fn small_opts() -> TopologyOptions {
    TopologyOptions {
        rounds: 1,
        agents: 2,
        debates: 2,
        ..TopologyOptions::default()
    }
}

/// One fresh rollout per example.
fn fresh<'a>(prompts: &'a PromptSet, examples: &'a [maspo::tasks::Example]) -> Vec<Rollout<'a>> {
    examples
        .iter()
        .map(|example| Rollout {
            prompts,
            example,
            base: None,
        })
        .collect()
}

/// Checks the structural invariants of a finished trace.
fn check_trace(graph: &maspo::mas::AgentGraph, t: &Trace, protocol: Protocol, max_tokens: usize) {
    let sep = "\n---\n";
    for (i, node) in t.nodes.iter().enumerate() {
        let agent = graph.agent(i);
        assert_eq!(node.agent, agent.id);
        assert!(node.error.is_none(), "{}: {:?}", agent.id, node.error);
        let expected_ctx: Vec<&str> = graph
            .predecessors(i)
            .iter()
            .map(|&p| t.nodes[p].short.as_str())
            .filter(|s| !s.trim().is_empty())
            .collect();
        assert_eq!(
            node.context,
            expected_ctx.join(sep),
            "context of {}",
            agent.id
        );
        match agent.kind {
            AgentKind::Vote => assert_eq!(node.calls, 0),
            AgentKind::Llm => {
                assert!(
                    node.input.contains(&node.context),
                    "{} input lacks its context",
                    agent.id
                );
                assert!(node.completion_tokens > 0 && node.completion_tokens <= max_tokens);
                let summarized = protocol == Protocol::Summary && i != graph.terminal();
                assert_eq!(
                    node.calls,
                    1 + usize::from(summarized),
                    "calls of {}",
                    agent.id
                );
                if summarized {
                    assert!(node.summary_tokens > 0);
                } else if i != graph.terminal() {
                    assert_eq!(node.short, node.raw);
                }
            }
        }
    }
    assert_eq!(t.final_output, t.nodes[graph.terminal()].raw);
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn every_topology_runs_end_to_end_on_smollm2() {
    let _g = heavy();
    let lm = engine(SMOLLM2);
    let task = load_task("gen:arithmetic:2:11", std::path::Path::new(".")).unwrap();
    let extractor = TaskExtractor::new(&task, AnswerMode::Strict);
    for topology in Topology::ALL {
        let graph = build(topology, task.kind, &small_opts()).unwrap();
        let prompts = PromptSet::seeds(&graph);
        let s = settings(task.kind);
        let runner = Runner::new(&graph, lm, &extractor, &s);
        let rollouts = fresh(&prompts, &task.examples);
        let mut batches = 0;
        let traces = runner
            .run(&rollouts, &mut |e| {
                if let maspo::mas::RunEvent::BatchStart { .. } = e {
                    batches += 1
                }
            })
            .unwrap();
        assert_eq!(traces.len(), 2);
        for t in &traces {
            check_trace(&graph, t, Protocol::Summary, 64);
        }
        // The whole run is one dataflow submission to the engine: the examples never run one
        // by one, and no level waits for another's slowest call.
        assert_eq!(batches, 1, "{topology:?}");
        eprintln!(
            "{:>15}: {} agents, {} calls, answers {:?}",
            topology.name(),
            graph.agents().len(),
            traces.iter().map(Trace::calls).sum::<usize>(),
            traces
                .iter()
                .map(|t| t.final_answer.as_str())
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn batched_rollouts_equal_single_rollouts_and_partial_rerun_reuses_upstream() {
    let _g = heavy();
    let lm = engine(SMOLLM2);
    let task = load_task("gen:arithmetic:3:5", std::path::Path::new(".")).unwrap();
    let extractor = TaskExtractor::new(&task, AnswerMode::Strict);
    let graph = build(Topology::Reflect, task.kind, &small_opts()).unwrap();
    let prompts = PromptSet::seeds(&graph);
    let s = settings(task.kind);
    let runner = Runner::new(&graph, lm, &extractor, &s);
    let all = fresh(&prompts, &task.examples);
    let batched = runner.run(&all, &mut |_| {}).unwrap();
    for (i, r) in all.iter().enumerate() {
        let alone = runner.run(std::slice::from_ref(r), &mut |_| {}).unwrap();
        assert_eq!(untimed(&alone[0]), untimed(&batched[i]), "example {i}");
    }
    // Re-running the reflector with the same prompt reproduces it from the recorded predictor;
    // a new prompt changes only the reflector.
    let reflector = graph.index_of("reflector").unwrap();
    let same = runner
        .run(
            &[Rollout {
                prompts: &prompts,
                example: &task.examples[0],
                base: Some((&batched[0], reflector)),
            }],
            &mut |_| {},
        )
        .unwrap();
    assert!(same[0].nodes[0].reused && !same[0].nodes[1].reused);
    assert_eq!(same[0].calls(), 1);
    assert_eq!(same[0].nodes[1].raw, batched[0].nodes[1].raw);
    let cand = prompts.with(
        "reflector",
        "Check this answer and reply with the final number in <answer></answer> tags.\nProblem: {question}\nAnswer: {context}",
    );
    let other = runner
        .run(
            &[Rollout {
                prompts: &cand,
                example: &task.examples[0],
                base: Some((&batched[0], reflector)),
            }],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(untimed(&other[0])[0], untimed(&same[0])[0]);
    assert!(other[0].nodes[1].input.starts_with("Check this answer"));
    assert_ne!(other[0].prompts_hash, same[0].prompts_hash);
}

/// The nodes without their batch wall times (which depend on what else shared the batch).
fn untimed(t: &Trace) -> Vec<maspo::mas::NodeTrace> {
    t.nodes
        .iter()
        .map(|n| maspo::mas::NodeTrace {
            batch_secs: 0.0,
            ..n.clone()
        })
        .collect()
}

fn code_task() -> Task {
    let map = FieldMap {
        question: "question".into(),
        answer: None,
        tests: Some("tests".into()),
        kind: TaskKind::Code,
        ..FieldMap::default()
    };
    load_jsonl(&fixture("tasks/code.jsonl"), &map).unwrap()
}

fn eval_with(
    task: &Task,
    topology: Topology,
    protocol: Protocol,
    judge: &dyn Judge,
) -> maspo::eval::EvalReport {
    let lm = engine(SMOLLM2);
    let extractor = TaskExtractor::new(task, AnswerMode::Strict);
    let graph = build(topology, task.kind, &small_opts()).unwrap();
    let prompts = PromptSet::seeds(&graph);
    let s = RunSettings {
        protocol,
        max_tokens: 160,
        ..settings(task.kind)
    };
    let inputs = EvalInputs {
        graph: &graph,
        prompts: &prompts,
        lm,
        extractor: &extractor,
        judge,
        run: &s,
        seed: 1,
    };
    let (report, traces) = evaluate(&inputs, &task.examples, &mut |_| {}).unwrap();
    for t in &traces {
        check_trace(&graph, t, protocol, 160);
    }
    report
}

#[test]
fn evaluate_code_task_with_the_sandboxed_judge() {
    let _g = heavy();
    let task = code_task();
    let judge = CodeJudge::new_default().unwrap();
    let r = eval_with(&task, Topology::Reflect, Protocol::Direct, &judge);
    assert_eq!(r.n, 2);
    for it in &r.items {
        // Every verdict comes from running the tests: the detail names the asserts or why
        // nothing could run.
        assert!(!it.verdict.detail.is_empty());
        assert!(it.verdict.score >= 0.0 && it.verdict.score <= 1.0);
        assert_eq!(
            it.verdict.correct,
            it.verdict.score == 1.0,
            "{:?}",
            it.verdict
        );
    }
    eprintln!(
        "code: {}/{} pass@1, mean {:.2}",
        r.correct, r.n, r.mean_score
    );
}

#[test]
fn evaluate_choice_task_with_the_answer_judge() {
    let _g = heavy();
    let map = FieldMap {
        kind: TaskKind::Choice,
        ..FieldMap::default()
    };
    let task = load_jsonl(&fixture("tasks/choice.jsonl"), &map).unwrap();
    let judge = AnswerJudge::for_task(&task, AnswerMode::Strict);
    let r = eval_with(&task, Topology::Hierarchical, Protocol::Summary, &judge);
    assert_eq!(r.n, 2);
    assert_eq!(r.cost.calls, 2 * (3 * 2 + 1));
    for it in &r.items {
        let letter_or_empty = it.prediction.is_empty() || it.prediction.len() == 1;
        assert!(letter_or_empty, "choice prediction `{}`", it.prediction);
    }
    assert!(r.accuracy.low <= r.accuracy.mean && r.accuracy.mean <= r.accuracy.high);
}

#[test]
fn the_llm_judge_grades_through_the_real_engine() {
    use maspo::judge::llm::LlmJudge;
    use maspo::judge::JudgeItem;
    let _g = heavy();
    let lm = engine(SMOLLM2);
    let task = load_task("gen:arithmetic:4:9", std::path::Path::new(".")).unwrap();
    let judge = LlmJudge::new(lm, task.kind);
    let outputs: Vec<String> = task
        .examples
        .iter()
        .map(|e| match &e.gold {
            maspo::tasks::Gold::Answer(a) => format!("The answer is <answer>{a}</answer>."),
            _ => unreachable!(),
        })
        .collect();
    let items: Vec<JudgeItem> = task
        .examples
        .iter()
        .zip(&outputs)
        .map(|(example, o)| JudgeItem {
            example,
            output: o,
            answer: o,
        })
        .collect();
    let verdicts = Judge::judge(&judge, &items);
    assert_eq!(verdicts.len(), 4);
    assert_eq!(judge.name(), "llm");
    for v in &verdicts {
        // Every reply is either parsed (the detail quotes it) or reported as unparsable: never
        // silently counted.
        assert!(
            v.detail.starts_with("llm judge said") || v.detail.contains("no verdict"),
            "{v:?}"
        );
        assert_eq!(v.correct, v.score == 1.0);
    }
    eprintln!(
        "llm judge on correct answers: {:?}",
        verdicts.iter().map(|v| v.correct).collect::<Vec<_>>()
    );
}
