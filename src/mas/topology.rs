//! Built-in topologies (`reflect`, `hierarchical`, `debate`, `summarize`, `aggregate`,
//! `llm_agg`, `debate_llm_agg`, `self_refine`) and custom graphs from a TOML file.
//!
//! Agent ids are stable names (`predictor`, `reflector`, `predictor_2`, …); their position in
//! the agent list is the reference implementation's integer id, so prompt files move between
//! the two (see [`super::prompts`]).

use super::error::MasError;
use super::graph::{AgentGraph, AgentKind, AgentSpec};
use super::seeds::{role_description, seed_template};
use crate::tasks::TaskKind;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A built-in topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Topology {
    /// One predictor (the single-agent baseline: the paper's Vanilla/CoT rows).
    Single,
    /// Predictor → reflector, repeated for `rounds` rounds (the paper's Sequential MAS).
    Reflect,
    /// Mathematician, scientist and programmer in parallel → a summarizing lead (the paper's
    /// Hierarchical MAS).
    Hierarchical,
    /// Two predictors → a debater.
    Debate,
    /// A problem analyst → a predictor.
    Summarize,
    /// `agents` predictors → majority vote (no LLM).
    Aggregate,
    /// `agents` predictors → an LLM aggregator.
    LlmAgg,
    /// `debates` × (two predictors → debater) → an LLM aggregator.
    DebateLlmAgg,
    /// Solver → critic → refiner, repeated for `rounds` rounds (the reference declares this
    /// topology but builds no agents; ours works).
    SelfRefine,
}

impl Topology {
    /// All built-in topologies.
    pub const ALL: [Topology; 9] = [
        Topology::Single,
        Topology::Reflect,
        Topology::Hierarchical,
        Topology::Debate,
        Topology::Summarize,
        Topology::Aggregate,
        Topology::LlmAgg,
        Topology::DebateLlmAgg,
        Topology::SelfRefine,
    ];

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Topology::Single => "single",
            Topology::Reflect => "reflect",
            Topology::Hierarchical => "hierarchical",
            Topology::Debate => "debate",
            Topology::Summarize => "summarize",
            Topology::Aggregate => "aggregate",
            Topology::LlmAgg => "llm_agg",
            Topology::DebateLlmAgg => "debate_llm_agg",
            Topology::SelfRefine => "self_refine",
        }
    }
}

/// Size knobs of the built-in topologies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopologyOptions {
    /// Rounds of `reflect` and `self_refine` (the reference's `--nr`, default 1).
    pub rounds: usize,
    /// Parallel predictors of `aggregate` and `llm_agg`.
    pub agents: usize,
    /// Debates of `debate_llm_agg`.
    pub debates: usize,
    /// Temperature of parallel predictors in `aggregate`/`llm_agg`/`debate*` (each agent gets
    /// its own seed). The reference runs them all greedy, which makes them identical and the
    /// vote pointless; set 0 to reproduce that.
    pub parallel_temperature: f32,
}

impl Default for TopologyOptions {
    fn default() -> Self {
        Self {
            rounds: 1,
            agents: 3,
            debates: 2,
            parallel_temperature: 0.7,
        }
    }
}

fn seeded(id: &str, role: &str, kind: TaskKind) -> AgentSpec {
    let template = seed_template(role, kind).unwrap_or_default();
    AgentSpec::llm(id, role, &role_description(role, kind), &template)
}

fn edge(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

fn numbered(base: &str, i: usize) -> String {
    if i == 0 {
        base.to_string()
    } else {
        format!("{base}_{}", i + 1)
    }
}

/// Builds a built-in topology with the seed prompts for `kind`.
pub fn build(t: Topology, kind: TaskKind, opts: &TopologyOptions) -> Result<AgentGraph, MasError> {
    let mut agents = Vec::new();
    let mut edges = Vec::new();
    let rounds = opts.rounds.max(1);
    match t {
        Topology::Single => agents.push(seeded("predictor", "predictor", kind)),
        Topology::Reflect => {
            let mut prev: Option<String> = None;
            for r in 0..rounds {
                let p = numbered("predictor", r);
                let q = numbered("reflector", r);
                let mut pa = seeded(&p, "predictor", kind);
                if prev.is_some() {
                    // Later predictors see the previous reflector's summary.
                    pa.template = seed_template("reflector", kind).unwrap_or_default();
                }
                agents.push(pa);
                agents.push(seeded(&q, "reflector", kind));
                if let Some(pr) = prev {
                    edges.push(edge(&pr, &p));
                }
                edges.push(edge(&p, &q));
                prev = Some(q);
            }
        }
        Topology::SelfRefine => {
            let mut prev: Option<String> = None;
            for r in 0..rounds {
                let s = if r == 0 {
                    "solver".to_string()
                } else {
                    prev.clone().unwrap_or_default()
                };
                if r == 0 {
                    agents.push(seeded(&s, "solver", kind));
                }
                let c = numbered("critic", r);
                let f = numbered("refiner", r);
                agents.push(seeded(&c, "critic", kind));
                agents.push(seeded(&f, "refiner", kind));
                edges.push(edge(&s, &c));
                edges.push(edge(&s, &f));
                edges.push(edge(&c, &f));
                prev = Some(f);
            }
        }
        Topology::Hierarchical => {
            for role in ["math_agent", "science_agent", "code_agent"] {
                agents.push(seeded(role, role, kind));
                edges.push(edge(role, "task_summarizer"));
            }
            agents.push(seeded("task_summarizer", "task_summarizer", kind));
        }
        Topology::Debate => {
            debate_group(&mut agents, &mut edges, kind, opts, "", "debator");
        }
        Topology::Summarize => {
            agents.push(seeded("summarizer", "summarizer", kind));
            let mut p = seeded("predictor", "predictor", kind);
            p.template = predictor_with_context(kind);
            agents.push(p);
            edges.push(edge("summarizer", "predictor"));
        }
        Topology::Aggregate | Topology::LlmAgg => {
            let n = opts.agents.max(1);
            for i in 0..n {
                agents.push(parallel(&numbered("predictor", i), kind, opts));
                edges.push(edge(&numbered("predictor", i), "aggregator"));
            }
            if t == Topology::Aggregate {
                agents.push(AgentSpec {
                    kind: AgentKind::Vote,
                    template: String::new(),
                    ..AgentSpec::llm("aggregator", "vote", &role_description("vote", kind), "")
                });
            } else {
                agents.push(seeded("aggregator", "aggregator", kind));
            }
        }
        Topology::DebateLlmAgg => {
            for d in 0..opts.debates.max(1) {
                let suffix = format!("_{}", d + 1);
                let debator = format!("debator{suffix}");
                debate_group(&mut agents, &mut edges, kind, opts, &suffix, &debator);
                edges.push(edge(&debator, "aggregator"));
            }
            agents.push(seeded("aggregator", "aggregator", kind));
        }
    }
    AgentGraph::new(t.name(), agents, &edges)
}

fn parallel(id: &str, kind: TaskKind, opts: &TopologyOptions) -> AgentSpec {
    let mut a = seeded(id, "predictor", kind);
    a.temperature = opts.parallel_temperature;
    a
}

fn debate_group(
    agents: &mut Vec<AgentSpec>,
    edges: &mut Vec<(String, String)>,
    kind: TaskKind,
    opts: &TopologyOptions,
    suffix: &str,
    debator: &str,
) {
    for i in 0..2 {
        let id = format!("predictor{suffix}_{}", i + 1);
        agents.push(parallel(&id, kind, opts));
        edges.push(edge(&id, debator));
    }
    agents.push(seeded(debator, "debator", kind));
}

fn predictor_with_context(kind: TaskKind) -> String {
    let base = seed_template("predictor", kind).unwrap_or_default();
    format!("{base}\n\nAn analyst's notes on it:\n{{context}}")
}

/// A custom graph file (TOML): `name`, `[[agent]]` tables (id, role, template, kind, …) and
/// `edges = [["from", "to"], …]`. An agent without a template gets the seed of its role for the
/// task kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphFile {
    /// Graph name.
    pub name: String,
    /// Agents in order.
    #[serde(rename = "agent")]
    pub agents: Vec<AgentSpec>,
    /// Edges as `[from, to]` id pairs.
    #[serde(default)]
    pub edges: Vec<(String, String)>,
}

/// Loads and validates a custom graph file.
pub fn load_graph_file(path: &Path, kind: TaskKind) -> Result<AgentGraph, MasError> {
    let text = std::fs::read_to_string(path).map_err(|source| MasError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file: GraphFile = toml::from_str(&text).map_err(|e| MasError::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut agents = file.agents;
    for a in &mut agents {
        if a.kind == AgentKind::Llm && a.template.trim().is_empty() {
            a.template = seed_template(&a.role, kind).ok_or_else(|| MasError::Template {
                agent: a.id.clone(),
                reason: format!(
                    "no template and role `{}` has no built-in seed; give `template = \"...\"` with {{question}} (and {{context}} when it has inputs)",
                    a.role
                ),
            })?;
        }
        if a.description.is_empty() {
            a.description = role_description(&a.role, kind);
        }
    }
    AgentGraph::new(&file.name, agents, &file.edges).map_err(|e| MasError::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topology_builds_for_every_kind() {
        for t in Topology::ALL {
            for kind in [TaskKind::Math, TaskKind::Choice, TaskKind::Code] {
                let g = build(t, kind, &TopologyOptions::default()).unwrap();
                assert!(!g.agents().is_empty(), "{t:?}");
            }
        }
        let g = build(
            Topology::Reflect,
            TaskKind::Math,
            &TopologyOptions::default(),
        )
        .unwrap();
        let ids: Vec<&str> = g.agents().iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["predictor", "reflector"]);
        let g3 = build(
            Topology::Reflect,
            TaskKind::Math,
            &TopologyOptions {
                rounds: 3,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(g3.levels().len(), 6);
        assert_eq!(g3.agent(g3.terminal()).id, "reflector_3");
        let h = build(
            Topology::Hierarchical,
            TaskKind::Choice,
            &TopologyOptions::default(),
        )
        .unwrap();
        assert_eq!(h.levels()[0].len(), 3);
        let d = build(
            Topology::DebateLlmAgg,
            TaskKind::Code,
            &TopologyOptions::default(),
        )
        .unwrap();
        assert_eq!(d.agents().len(), 7);
        let s = build(
            Topology::SelfRefine,
            TaskKind::Math,
            &TopologyOptions {
                rounds: 2,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.agent(s.terminal()).id, "refiner_2");
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn shipped_graph_file_loads_with_seeds() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/graph-solve-check.toml");
        let g = load_graph_file(&p, TaskKind::Math).unwrap();
        assert_eq!(g.name(), "solve-check");
        assert_eq!(g.agent(g.terminal()).id, "judge");
        assert!(g.agent(1).template.contains("{context}"));
    }
}
