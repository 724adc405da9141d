//! Executing a MAS over many rollouts at once.
//!
//! Every rollout (a prompt set × an example, optionally re-running one agent and its
//! descendants on top of a baseline trace) is a small dataflow: an agent's answer call is
//! submitted as soon as its predecessors' messages exist, its summary call as soon as its answer
//! does. All rollouts share one continuous engine batch ([`LanguageModel::generate_flow`]), so
//! one engine batch serves every candidate and example, no call waits for an unrelated slower
//! one, and shared prompt prefixes (an agent's template across examples) hit the prefix cache.

use super::error::MasError;
use super::graph::{fill, AgentGraph, AgentKind};
use super::lm::LanguageModel;
use super::prompts::PromptSet;
use super::seeds::summary_prompt;
use super::trace::{NodeTrace, Trace};
use super::vote::majority;
use crate::engine::chat_template::Message;
use crate::engine::sampling::SamplingParams;
use crate::engine::{Completion, EngineError, GenRequest};
use crate::rng::{derive_seed, str_seed};
use crate::tasks::{Example, TaskKind};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// What an agent passes to its successors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Protocol {
    /// The paper's protocol: a second call summarizes the output (≤30 words, ≤50 for code)
    /// and successors see only the summary. Deviation: the terminal agent's summary call is not
    /// made — the reference makes it and then replaces its result with the extracted answer, so
    /// it changes nothing but cost (a partial re-run here costs 2·|re-run agents| − 1 calls,
    /// the reference's 2·|re-run agents|).
    #[default]
    Summary,
    /// Successors see the full output; one call per agent.
    Direct,
}

/// Settings of MAS execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSettings {
    /// Task kind (summary prompt, answer extraction).
    pub kind: TaskKind,
    /// Summary or direct passing.
    pub protocol: Protocol,
    /// Most tokens of an agent's answer (an agent's own `max_tokens` wins).
    pub max_tokens: usize,
    /// Most tokens of a summary.
    pub summary_max_tokens: usize,
    /// Separator between predecessors' messages in `{context}`.
    pub separator: String,
    /// Seed of sampled agents (each agent × example derives its own).
    pub seed: u64,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            kind: TaskKind::Math,
            protocol: Protocol::Summary,
            max_tokens: 1024,
            summary_max_tokens: 96,
            separator: "\n---\n".into(),
            seed: 0,
        }
    }
}

/// Turns an agent's raw output into the answer compared by judges and votes (extracted answer
/// or code). Supplied by the judging side so the runtime stays task-agnostic.
pub trait AnswerExtractor: Sync {
    /// The answer in `raw` ("" when none).
    fn extract(&self, raw: &str) -> String;
    /// The key under which answers are counted in a vote (normalized form).
    fn vote_key(&self, answer: &str) -> String {
        answer.trim().to_string()
    }
}

/// One rollout to execute.
#[derive(Debug, Clone)]
pub struct Rollout<'a> {
    /// Prompts of every LLM agent.
    pub prompts: &'a PromptSet,
    /// The example.
    pub example: &'a Example,
    /// Partial re-run: reuse this trace for every agent except `from` and its descendants.
    pub base: Option<(&'a Trace, usize)>,
}

/// Progress of a run, for observers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RunEvent {
    /// A batch of `calls` LLM calls is about to start.
    BatchStart {
        /// Calls in the batch.
        calls: usize,
    },
    /// Some request produced text.
    Progress,
    /// One call finished.
    CallDone,
    /// A batch finished.
    BatchDone {
        /// Calls in the batch.
        calls: usize,
    },
}

/// Executes MAS rollouts, batched across rollouts level by level.
pub struct Runner<'a> {
    graph: &'a AgentGraph,
    lm: &'a dyn LanguageModel,
    extractor: &'a dyn AnswerExtractor,
    settings: &'a RunSettings,
}

/// One submitted call of a dataflow run.
struct Call {
    rollout: usize,
    node: usize,
    /// Answer call (else the summary call).
    answer: bool,
    started: Instant,
    done: bool,
}

/// The state of one dataflow run.
struct Flow {
    traces: Vec<Trace>,
    /// Per rollout: which agents run (the rest are reused from the baseline).
    fresh: Vec<Vec<bool>>,
    /// Per rollout and agent: fresh predecessors not finished yet.
    waiting_on: Vec<Vec<usize>>,
    /// Every call, in submission order (the model's request numbering).
    calls: Vec<Call>,
}

impl Flow {
    /// Marks `node` finished; returns the successors that are now ready.
    fn node_done(&mut self, g: &AgentGraph, ri: usize, node: usize) -> Vec<usize> {
        let mut ready = Vec::new();
        for &s in g.successors(node) {
            if self.fresh[ri][s] {
                self.waiting_on[ri][s] -= 1;
                if self.waiting_on[ri][s] == 0 {
                    ready.push(s);
                }
            }
        }
        ready
    }
}

impl<'a> Runner<'a> {
    /// A runner for one graph and model.
    pub fn new(
        graph: &'a AgentGraph,
        lm: &'a dyn LanguageModel,
        extractor: &'a dyn AnswerExtractor,
        settings: &'a RunSettings,
    ) -> Self {
        Self {
            graph,
            lm,
            extractor,
            settings,
        }
    }

    /// Runs every rollout to the end; one trace per rollout, in order. Per-call failures are
    /// recorded in the node traces; nothing here fails the whole run.
    ///
    /// All rollouts run as one dataflow through the model: every call is submitted as soon as
    /// its inputs exist (an agent's answer when its predecessors' messages are in, its summary
    /// when its answer is), so no call waits for unrelated slower ones.
    ///
    /// Fails only when a partial re-run's baseline does not fit (wrong agent index, a trace of
    /// another graph or example).
    pub fn run(
        &self,
        rollouts: &[Rollout<'_>],
        observe: &mut dyn FnMut(RunEvent),
    ) -> Result<Vec<Trace>, MasError> {
        self.check(rollouts)?;
        let g = self.graph;
        let n = g.agents().len();
        let mut flow = Flow {
            traces: rollouts.iter().map(|r| self.start(r)).collect(),
            fresh: rollouts
                .iter()
                .map(|r| match r.base {
                    None => vec![true; n],
                    Some((_, from)) => {
                        let mut v = vec![false; n];
                        v[from] = true;
                        for d in g.descendants(from) {
                            v[d] = true;
                        }
                        v
                    }
                })
                .collect(),
            waiting_on: Vec::new(),
            calls: Vec::new(),
        };
        flow.waiting_on = flow
            .fresh
            .iter()
            .map(|f| {
                (0..n)
                    .map(|i| g.predecessors(i).iter().filter(|&&p| f[p]).count())
                    .collect()
            })
            .collect();
        let mut initial = Vec::new();
        for ri in 0..rollouts.len() {
            for &node in g.order() {
                if flow.fresh[ri][node] && flow.waiting_on[ri][node] == 0 {
                    initial.extend(self.activate(rollouts, ri, node, &mut flow));
                }
            }
        }
        if !initial.is_empty() {
            observe(RunEvent::BatchStart {
                calls: initial.len(),
            });
            self.lm.generate_flow(initial, &mut |i, result| {
                observe(RunEvent::CallDone);
                self.finished(rollouts, i, result, &mut flow)
            });
            observe(RunEvent::BatchDone {
                calls: flow.calls.len(),
            });
        }
        let mut traces = flow.traces;
        // A model that returned too few results fails the missing calls, never drops them.
        for c in &flow.calls {
            if !c.done {
                let nt = &mut traces[c.rollout].nodes[c.node];
                nt.error = Some("the model returned no result for this call".into());
            }
        }
        for t in &mut traces {
            let term = &t.nodes[g.terminal()];
            t.final_output = term.raw.clone();
            t.final_answer = match g.agent(g.terminal()).kind {
                AgentKind::Vote => term.raw.clone(),
                AgentKind::Llm => term.short.clone(),
            };
        }
        Ok(traces)
    }

    /// Starts `node` of rollout `ri` (its inputs exist): returns its answer request, or runs a
    /// vote at once and starts the successors it unblocks.
    fn activate(
        &self,
        rollouts: &[Rollout<'_>],
        ri: usize,
        node: usize,
        flow: &mut Flow,
    ) -> Vec<GenRequest> {
        let g = self.graph;
        let mut out = Vec::new();
        let mut work = vec![node];
        while let Some(node) = work.pop() {
            let r = &rollouts[ri];
            let context = self.context(&flow.traces[ri], node);
            let agent = g.agent(node);
            flow.traces[ri].nodes[node] = NodeTrace {
                agent: agent.id.clone(),
                context: context.clone(),
                ..NodeTrace::default()
            };
            match agent.kind {
                AgentKind::Vote => {
                    self.vote(&mut flow.traces[ri], node);
                    work.extend(flow.node_done(g, ri, node));
                }
                AgentKind::Llm => {
                    let template = r.prompts.get(&agent.id).unwrap_or(&agent.template);
                    let input = fill(template, &r.example.question, &context);
                    flow.traces[ri].nodes[node].input = input.clone();
                    out.push(self.answer_request(node, &r.example.id, input));
                    flow.calls.push(Call {
                        rollout: ri,
                        node,
                        answer: true,
                        started: Instant::now(),
                        done: false,
                    });
                }
            }
        }
        out
    }

    /// Records a finished call; returns the calls it unblocks.
    fn finished(
        &self,
        rollouts: &[Rollout<'_>],
        i: usize,
        result: Result<Completion, EngineError>,
        flow: &mut Flow,
    ) -> Vec<GenRequest> {
        let g = self.graph;
        let Some(call) = flow.calls.get_mut(i) else {
            return Vec::new();
        };
        call.done = true;
        let (ri, node, answer) = (call.rollout, call.node, call.answer);
        let secs = call.started.elapsed().as_secs_f64();
        let nt = &mut flow.traces[ri].nodes[node];
        record(nt, result, secs, answer);
        if answer {
            if node == g.terminal() {
                nt.short = self.extractor.extract(&nt.raw);
            } else if self.settings.protocol == Protocol::Direct || nt.raw.is_empty() {
                nt.short = nt.raw.clone();
            } else {
                let req = self.summary_request(&nt.raw);
                flow.calls.push(Call {
                    rollout: ri,
                    node,
                    answer: false,
                    started: Instant::now(),
                    done: false,
                });
                return vec![req];
            }
        }
        let mut out = Vec::new();
        for s in flow.node_done(g, ri, node) {
            out.extend(self.activate(rollouts, ri, s, flow));
        }
        out
    }

    /// Partial re-runs must start from a trace of this graph and example.
    fn check(&self, rollouts: &[Rollout<'_>]) -> Result<(), MasError> {
        let n = self.graph.agents().len();
        for r in rollouts {
            let Some((base, from)) = r.base else { continue };
            let bad = if from >= n {
                Some(format!(
                    "agent index {from} is out of range (the graph has {n} agents)"
                ))
            } else if base.nodes.len() != n {
                Some(format!(
                    "the baseline trace has {} nodes, the graph {n}",
                    base.nodes.len()
                ))
            } else if base.example_id != r.example.id {
                Some(format!(
                    "the baseline trace is of example `{}`, not `{}`",
                    base.example_id, r.example.id
                ))
            } else {
                None
            };
            if let Some(why) = bad {
                return Err(MasError::Graph(format!(
                    "partial re-run of `{}`: {why}",
                    self.graph.name()
                )));
            }
        }
        Ok(())
    }

    fn start(&self, r: &Rollout<'_>) -> Trace {
        let nodes = match r.base {
            Some((base, _)) => base
                .nodes
                .iter()
                .map(|n| NodeTrace {
                    reused: true,
                    calls: 0,
                    cached_calls: 0,
                    ..n.clone()
                })
                .collect(),
            None => vec![NodeTrace::default(); self.graph.agents().len()],
        };
        Trace {
            example_id: r.example.id.clone(),
            prompts_hash: r.prompts.hash(),
            nodes,
            ..Trace::default()
        }
    }

    /// Predecessors' messages that exist, joined by the separator.
    fn context(&self, trace: &Trace, node: usize) -> String {
        self.graph
            .predecessors(node)
            .iter()
            .map(|&p| trace.nodes[p].short.as_str())
            .filter(|s| !s.trim().is_empty())
            .collect::<Vec<_>>()
            .join(&self.settings.separator)
    }

    fn vote(&self, trace: &mut Trace, node: usize) {
        let answers: Vec<String> = self
            .graph
            .predecessors(node)
            .iter()
            .map(|&p| self.extractor.extract(&trace.nodes[p].raw))
            .collect();
        let winner = majority(&answers, |a| self.extractor.vote_key(a));
        let nt = &mut trace.nodes[node];
        nt.raw = winner.clone();
        nt.short = winner;
    }

    fn answer_request(&self, node: usize, example_id: &str, input: String) -> GenRequest {
        let agent = self.graph.agent(node);
        let mut req = GenRequest::chat(
            vec![Message::user(input)],
            agent.max_tokens.unwrap_or(self.settings.max_tokens),
        );
        if agent.temperature > 0.0 {
            req.sampling = SamplingParams {
                temperature: agent.temperature,
                top_k: 0,
                top_p: 1.0,
                seed: derive_seed(&[
                    self.settings.seed,
                    str_seed(&agent.id),
                    str_seed(example_id),
                ]),
            };
        }
        req
    }

    fn summary_request(&self, raw: &str) -> GenRequest {
        GenRequest::chat(
            vec![Message::user(summary_prompt(self.settings.kind, raw))],
            self.settings.summary_max_tokens,
        )
    }
}

fn record(nt: &mut NodeTrace, result: Result<Completion, EngineError>, secs: f64, answer: bool) {
    nt.batch_secs += secs;
    match result {
        Ok(c) => {
            nt.calls += 1;
            nt.cached_calls += usize::from(c.from_cache);
            if answer {
                nt.completion_tokens = c.generated_tokens();
                nt.raw = c.text;
                nt.prompt_tokens = c.prompt_tokens;
                nt.stop_reason = Some(c.stop_reason);
            } else {
                nt.short = c.text.trim().to_string();
                nt.summary_tokens = c.prompt_tokens + c.generated_tokens();
            }
        }
        Err(e) => {
            let what = if answer { "answer" } else { "summary" };
            nt.error = Some(format!("{what} call failed: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Prompt, StopReason};
    use crate::mas::topology::{build, Topology, TopologyOptions};
    use crate::tasks::Gold;
    use std::sync::Mutex;

    /// Echoes a tag of the prompt; records batch sizes.
    struct Echo(Mutex<Vec<usize>>);

    impl LanguageModel for Echo {
        fn generate(
            &self,
            requests: &[GenRequest],
            _: &mut dyn FnMut(usize),
        ) -> Vec<Result<Completion, EngineError>> {
            self.0.lock().unwrap().push(requests.len());
            requests
                .iter()
                .map(|r| {
                    let Prompt::Chat(m) = &r.prompt else {
                        unreachable!()
                    };
                    let text = &m[0].content;
                    let out = if text.starts_with("Summarize") {
                        "short".to_string()
                    } else if text.contains("reviewer") {
                        format!(
                            "review of [{}] <answer>7</answer>",
                            text.lines().last().unwrap()
                        )
                    } else {
                        format!("solve {} <answer>6</answer>", text.len())
                    };
                    Ok(Completion {
                        token_ids: vec![1; 3],
                        text: out,
                        prompt_tokens: 10,
                        stop_reason: StopReason::EndOfTurn,
                        reused_prompt_tokens: 0,
                        from_cache: false,
                        logprobs: None,
                        remote_tokens: None,
                    })
                })
                .collect()
        }
        fn describe(&self) -> String {
            "echo".into()
        }
    }

    struct Tags;
    impl AnswerExtractor for Tags {
        fn extract(&self, raw: &str) -> String {
            raw.rsplit_once("<answer>")
                .and_then(|(_, r)| r.split_once("</answer>"))
                .map(|(a, _)| a.to_string())
                .unwrap_or_default()
        }
    }

    fn ex(id: &str) -> Example {
        Example {
            id: id.into(),
            question: format!("question {id}"),
            gold: Gold::Answer("7".into()),
        }
    }

    #[test]
    fn levels_are_batched_across_rollouts_and_partial_rerun_reuses_upstream() {
        let g = build(
            Topology::Reflect,
            TaskKind::Math,
            &TopologyOptions::default(),
        )
        .unwrap();
        let lm = Echo(Mutex::new(Vec::new()));
        let settings = RunSettings::default();
        let runner = Runner::new(&g, &lm, &Tags, &settings);
        let seeds = PromptSet::seeds(&g);
        let exs = [ex("a"), ex("b"), ex("c")];
        let rollouts: Vec<Rollout> = exs
            .iter()
            .map(|e| Rollout {
                prompts: &seeds,
                example: e,
                base: None,
            })
            .collect();
        let traces = runner.run(&rollouts, &mut |_| {}).unwrap();
        // Level 0 answers, level 0 summaries, level 1 answers (no summary for the terminal).
        assert_eq!(*lm.0.lock().unwrap(), vec![3, 3, 3]);
        let t = &traces[0];
        assert_eq!(t.nodes[1].context, "short");
        assert!(t.nodes[1].input.contains("question a"));
        assert_eq!(t.final_answer, "7");
        assert_eq!(t.calls(), 3);

        lm.0.lock().unwrap().clear();
        let cand = seeds.with("reflector", "Reviewer v2 {question} {context}");
        let rerun = runner
            .run(
                &[Rollout {
                    prompts: &cand,
                    example: &exs[0],
                    base: Some((&traces[0], 1)),
                }],
                &mut |_| {},
            )
            .unwrap();
        assert_eq!(*lm.0.lock().unwrap(), vec![1]);
        // A baseline of another example, or an agent index out of range, is refused.
        for (example, from) in [(&exs[1], 1), (&exs[0], 9)] {
            let bad = Rollout {
                prompts: &cand,
                example,
                base: Some((&traces[0], from)),
            };
            let e = runner.run(&[bad], &mut |_| {}).unwrap_err().to_string();
            assert!(e.contains("partial re-run"), "{e}");
        }
        assert!(rerun[0].nodes[0].reused);
        assert_eq!(rerun[0].nodes[0].raw, traces[0].nodes[0].raw);
        assert!(rerun[0].nodes[1].input.starts_with("Reviewer v2"));
        assert_eq!(rerun[0].calls(), 1);
    }

    #[test]
    fn direct_protocol_and_vote() {
        let g = build(
            Topology::Aggregate,
            TaskKind::Math,
            &TopologyOptions::default(),
        )
        .unwrap();
        let lm = Echo(Mutex::new(Vec::new()));
        let settings = RunSettings {
            protocol: Protocol::Direct,
            ..RunSettings::default()
        };
        let seeds = PromptSet::seeds(&g);
        let e = ex("z");
        let t = Runner::new(&g, &lm, &Tags, &settings)
            .run(
                &[Rollout {
                    prompts: &seeds,
                    example: &e,
                    base: None,
                }],
                &mut |_| {},
            )
            .unwrap();
        assert_eq!(*lm.0.lock().unwrap(), vec![3]);
        assert_eq!(t[0].final_answer, "6");
        assert_eq!(t[0].nodes[3].calls, 0);
    }
}
