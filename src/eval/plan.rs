//! The resolved plan of a run on a task: which examples (task, split), which MAS (graph, prompts,
//! execution settings) and how answers are matched. One place that `maspo eval` and
//! `maspo optimize` both call, so both read tasks, splits and graphs the same way.

use crate::config::EvalFile;
use crate::mas::topology::load_graph_file;
use crate::mas::TopologyOptions;
use crate::mas::{build, AgentGraph, MasError, PromptSet, Protocol, RunSettings, Topology};
use crate::tasks::{self, AnswerMode, TaskError, TaskKind};
use clap::ValueEnum;

/// Why a plan could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A setting has a value outside its allowed set.
    #[error("{key} = `{value}` is not one of: {allowed}")]
    Value {
        /// The setting.
        key: String,
        /// What was given.
        value: String,
        /// The allowed values, comma-separated.
        allowed: String,
    },
    /// A required setting is missing.
    #[error("{0}")]
    Missing(String),
    /// The selected split has no examples.
    #[error("split `{split}` of {task} is empty (try --split all or a larger dataset)")]
    EmptySplit {
        /// The split.
        split: String,
        /// The task.
        task: String,
    },
    /// The task could not be loaded.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// The graph or prompts are unusable.
    #[error(transparent)]
    Mas(#[from] MasError),
}

/// Parses an enum setting, listing the allowed values on failure.
pub fn parse_enum<T: ValueEnum>(key: &str, value: &str) -> Result<T, PlanError> {
    T::from_str(value, true).map_err(|_| {
        let allowed: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
            .collect();
        PlanError::Value {
            key: key.into(),
            value: value.into(),
            allowed: allowed.join(", "),
        }
    })
}

/// What to run, resolved from the config layers.
pub struct Plan {
    /// The whole task.
    pub task: tasks::Task,
    /// The examples of the selected split (after `limit`).
    pub examples: Vec<tasks::Example>,
    /// The MAS.
    pub graph: AgentGraph,
    /// Its prompts (seeds unless a prompts file was given).
    pub prompts: PromptSet,
    /// Execution settings.
    pub run: RunSettings,
    /// Answer matching.
    pub answer_mode: AnswerMode,
    /// `heldout` or `paper`.
    pub split_mode: String,
    /// Seed of the split assignment.
    pub split_seed: u64,
    /// The resolved settings that `config.json` records.
    pub record: serde_json::Value,
    /// The dataset folder (the code sandbox hides it: its files hold the tests).
    pub data_dir: std::path::PathBuf,
}

/// Resolves the task, split, graph, prompts and settings of an `[eval]` layer.
pub fn resolve_plan(cfg: &EvalFile) -> Result<Plan, PlanError> {
    let task_name = cfg.task.clone().ok_or_else(|| {
        PlanError::Missing(
            "no task: pass --task NAME (e.g. aqua, mbpp, gen:arithmetic) or set `task` in the config"
                .into(),
        )
    })?;
    let data_dir = cfg.data_dir.clone().unwrap_or_else(tasks::default_data_dir);
    let task = match (task_name.strip_prefix("jsonl:"), &cfg.fields) {
        (Some(path), Some(fields)) => {
            tasks::load_jsonl(&tasks::resolve_path(path.as_ref(), &data_dir), fields)?
        }
        _ => tasks::load_task(&task_name, &data_dir)?,
    };
    let split = cfg.split.clone().unwrap_or_else(|| "test".into());
    let split_mode = cfg.split_mode.clone().unwrap_or_else(|| "heldout".into());
    let split_seed = cfg.split_seed.unwrap_or(0);
    let mut examples = select_split(&task, &split, &split_mode, split_seed)?;
    if let Some(n) = cfg.limit {
        examples.truncate(n);
    }
    if examples.is_empty() {
        return Err(PlanError::EmptySplit {
            split,
            task: task_name,
        });
    }
    let (graph, prompts, run) = mas(cfg, task.kind)?;
    let answer_mode = match cfg.answer_mode.as_deref().unwrap_or("strict") {
        "strict" => AnswerMode::Strict,
        "paper" => AnswerMode::Paper,
        other => {
            return Err(PlanError::Value {
                key: "answer_mode".into(),
                value: other.into(),
                allowed: "strict, paper".into(),
            })
        }
    };
    let record = serde_json::json!({
        "task": task.name, "kind": task.kind, "data_dir": data_dir, "split": split,
        "split_mode": split_mode, "split_seed": split_seed, "limit": cfg.limit,
        "examples": examples.len(), "graph": graph.name(), "agents": graph.agents(),
        "edges": graph.edges(), "prompts_hash": prompts.hash(), "run": run,
        "answer_mode": format!("{answer_mode:?}").to_lowercase(),
        "maspo_version": env!("CARGO_PKG_VERSION"),
    });
    Ok(Plan {
        task,
        examples,
        graph,
        prompts,
        run,
        answer_mode,
        split_mode,
        split_seed,
        record,
        data_dir,
    })
}

/// The graph, its prompts and the execution settings.
fn mas(cfg: &EvalFile, kind: TaskKind) -> Result<(AgentGraph, PromptSet, RunSettings), PlanError> {
    let opts = TopologyOptions {
        rounds: cfg.rounds.unwrap_or(1),
        agents: cfg.agents.unwrap_or(3),
        debates: cfg.debates.unwrap_or(2),
        ..TopologyOptions::default()
    };
    let graph = match &cfg.graph {
        Some(path) => load_graph_file(path, kind)?,
        None => {
            let name = cfg.topology.clone().unwrap_or_else(|| "reflect".into());
            build(parse_enum::<Topology>("topology", &name)?, kind, &opts)?
        }
    };
    let prompts = match &cfg.prompts {
        Some(p) => PromptSet::load(p, &graph)?,
        None => PromptSet::seeds(&graph),
    };
    let protocol = match &cfg.protocol {
        Some(p) => parse_enum::<Protocol>("protocol", p)?,
        None => Protocol::Summary,
    };
    let run = RunSettings {
        kind,
        protocol,
        max_tokens: cfg.max_tokens.unwrap_or(1024),
        summary_max_tokens: cfg.summary_max_tokens.unwrap_or(96),
        seed: cfg.seed.unwrap_or(0),
        ..RunSettings::default()
    };
    Ok((graph, prompts, run))
}

/// The examples of one split (`test`, `val`, `opt`, `all`), in the split's (seeded) order.
pub fn select_split(
    task: &tasks::Task,
    split: &str,
    mode: &str,
    seed: u64,
) -> Result<Vec<tasks::Example>, PlanError> {
    use tasks::{SplitMode, SplitName, Splits};
    let mode = match mode {
        "heldout" => SplitMode::default(),
        "paper" => SplitMode::Paper { opt: 50 },
        other => {
            return Err(PlanError::Value {
                key: "split_mode".into(),
                value: other.into(),
                allowed: "heldout, paper".into(),
            })
        }
    };
    let splits = Splits::new(&task.examples, mode, seed);
    let idx: Vec<usize> = match split {
        "test" => splits.get(SplitName::Test).to_vec(),
        "val" | "validation" => splits.get(SplitName::Validation).to_vec(),
        "opt" | "optimize" => splits.get(SplitName::Optimize).to_vec(),
        "all" => (0..task.examples.len()).collect(),
        other => {
            return Err(PlanError::Value {
                key: "split".into(),
                value: other.into(),
                allowed: "test, val, opt, all".into(),
            })
        }
    };
    Ok(idx.into_iter().map(|i| task.examples[i].clone()).collect())
}
