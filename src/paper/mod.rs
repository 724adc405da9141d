//! `maspo bench paper`: the paper's comparison (tasks × topologies × methods, docs/design/algorithm.md §9) as cells
//! of one benchmark. A cell is one `maspo optimize` run (optimization on the opt split, then the
//! held-out comparison); its result is a small JSON file, so a long bench resumes cell by cell
//! and a finished table can be rebuilt from committed cells alone. This module holds the presets,
//! the cell records and the table built from them; running cells is the command line's job.

mod chart;
mod reference;
mod table;

pub use chart::accuracy_svg;
pub use reference::{paper_table_markdown, PAPER_ROWS};
pub use table::{build_table, PairedCell, PairedRow, Row, RowCost, Table, TaskAccuracy};

use crate::eval::stats::Interval;
use crate::optimize::config::ABLATIONS;
use crate::optimize::state::ProposalStats;
use crate::optimize::{Cost, Method};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// The six tasks of the paper's Table 1, in its column order.
pub const PAPER_TASKS: [&str; 6] = [
    "math",
    "agieval_math",
    "aqua",
    "gpqa",
    "mbpp",
    "humaneval_et",
];

/// A bench preset: the optimizer budget every cell runs at, how the evaluator judges, and the
/// default tasks, topologies and methods.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchPreset {
    /// Name (`--preset`).
    pub name: &'static str,
    /// The `maspo optimize --budget` of every cell.
    pub budget: &'static str,
    /// `--judge-mode` of every cell (`None`: the optimizer's default, generated verdicts).
    pub judge_mode: Option<&'static str>,
    /// Default topologies.
    pub topologies: &'static [&'static str],
    /// Default methods.
    pub methods: &'static [Method],
    /// What the preset reduces against the paper's setting, for the results page.
    pub reduced: &'static str,
}

const FIVE: &[Method] = &[
    Method::Seed,
    Method::CotSc,
    Method::Spo,
    Method::NaiveJoint,
    Method::Maspo,
];
const ALL_METHODS: &[Method] = &[
    Method::Seed,
    Method::Cot,
    Method::CotSc,
    Method::SelfRefine,
    Method::Spo,
    Method::NaiveJoint,
    Method::Maspo,
];

/// The presets, smallest first.
pub const PRESETS: [BenchPreset; 4] = [
    BenchPreset {
        name: "tiny",
        budget: "tiny",
        judge_mode: Some("logprob"),
        topologies: &["reflect"],
        methods: FIVE,
        reduced: "a smoke run, not a result: pool 4, batch 2, one step per agent, one proposal (no retries), 64 agent tokens, 4 held-out items",
    },
    BenchPreset {
        name: "light",
        budget: "light",
        judge_mode: Some("logprob"),
        topologies: &["reflect"],
        methods: FIVE,
        reduced: "optimizer budget `light` (T = 1 step per turn instead of 3, D = 2 sweeps instead of 3, pool 20 instead of 50, batch 4 instead of 10; beam 2, 2 proposals, K_mis 3 and the weights 0.4/0.4/0.2 as in the paper), agent outputs capped at 384 tokens, mutator 512, judge 192, 40 held-out test items per task; the evaluator judges by log-probability of its verdict summed over both A/B orders (a 0.5B judge's generated verdicts follow the position)",
    },
    BenchPreset {
        name: "medium",
        budget: "medium",
        judge_mode: None,
        topologies: &["reflect", "hierarchical"],
        methods: ALL_METHODS,
        reduced: "optimizer budget `medium` (T = 2, D = 2, pool 30, batch 6), agent outputs capped at 512 tokens, 100 held-out test items per task",
    },
    BenchPreset {
        name: "paper",
        budget: "paper",
        judge_mode: None,
        topologies: &["reflect", "hierarchical"],
        methods: ALL_METHODS,
        reduced: "nothing in the algorithm or budget (T = 3, D = 3, beam 2, pool 50, batch 10, 1024 agent tokens); every held-out test item",
    },
];

impl BenchPreset {
    /// The preset named `name`.
    pub fn get(name: &str) -> Result<&'static BenchPreset, String> {
        PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
            format!("bench preset `{name}` is not one of: {}", names.join(", "))
        })
    }
}

/// The name `--method` takes for `m`.
pub fn method_name(m: Method) -> String {
    m.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_else(|| format!("{m:?}"))
}

/// One cell of the bench: a task, a topology, a method (with an optional Table 2 ablation of
/// MASPO) and a run seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellSpec {
    /// Task name.
    pub task: String,
    /// Topology name.
    pub topology: String,
    /// Method.
    pub method: Method,
    /// Table 2 ablation (MASPO only).
    pub ablation: Option<String>,
    /// An option beyond the paper on MASPO (`racing`), compared with MASPO's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub option: Option<String>,
    /// Run seed (the optimizer's draws and the pool; the test items do not depend on it).
    pub seed: u64,
}

impl CellSpec {
    /// The cell's file-name-safe id, e.g. `aqua.reflect.maspo.s0`.
    pub fn id(&self) -> String {
        let safe = |s: &str| s.replace(['/', ':', ' ', '\\'], "_");
        let mut id = format!(
            "{}.{}.{}",
            safe(&self.task),
            safe(&self.topology),
            method_name(self.method)
        );
        if let Some(a) = &self.ablation {
            id.push('.');
            id.push_str(&safe(a));
        }
        if let Some(o) = &self.option {
            id.push('+');
            id.push_str(&safe(o));
        }
        id.push_str(&format!(".s{}", self.seed));
        id
    }

    /// The row label of the table: the method, `maspo: <ablation>` or `maspo+<option>`.
    pub fn label(&self) -> String {
        let mut l = method_name(self.method);
        if let Some(a) = &self.ablation {
            l = format!("{l}: {a}");
        }
        if let Some(o) = &self.option {
            l = format!("{l}+{o}");
        }
        l
    }
}

/// Options beyond the paper that `--options` adds as MASPO rows.
pub const OPTIONS: [(&str, &str); 2] = [
    (
        "racing",
        "racing: candidates judged on half their batch first, the hopeless dropped",
    ),
    (
        "pareto",
        "Pareto-front parent selection (GEPA) instead of the top-K beam",
    ),
];

/// The cells of a bench, in run order: task-major (one task's methods share its completion
/// cache entries, e.g. the seed system's held-out rollouts), then topology, method, ablation
/// (Table 2 ablations on the first topology, the paper's Sequential MAS), options and seed.
pub fn plan_cells(
    tasks: &[String],
    topologies: &[String],
    methods: &[Method],
    ablations: bool,
    options: &[String],
    seeds: u64,
) -> Vec<CellSpec> {
    let mut cells = Vec::new();
    for task in tasks {
        for (ti, topology) in topologies.iter().enumerate() {
            let mut variants: Vec<(Method, Option<String>, Option<String>)> =
                methods.iter().map(|m| (*m, None, None)).collect();
            if ablations && ti == 0 {
                variants.extend(
                    ABLATIONS
                        .iter()
                        .map(|(a, _)| (Method::Maspo, Some(a.to_string()), None)),
                );
            }
            variants.extend(
                options
                    .iter()
                    .map(|o| (Method::Maspo, None, Some(o.clone()))),
            );
            for (method, ablation, option) in variants {
                for seed in 0..seeds.max(1) {
                    cells.push(CellSpec {
                        task: task.clone(),
                        topology: topology.clone(),
                        method,
                        ablation: ablation.clone(),
                        option: option.clone(),
                        seed,
                    });
                }
            }
        }
    }
    cells
}

/// What identifies a finished cell's result: a stored cell is reused only when every field
/// matches (another model or preset never mixes into a table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellKey {
    /// Bench preset.
    pub preset: String,
    /// The cell.
    pub cell: CellSpec,
    /// Agents' model (catalog id, path or endpoint).
    pub agents: String,
    /// Mutator's model.
    pub mutator: String,
    /// Evaluator's model.
    pub evaluator: String,
    /// sha256 of the `--config` file every cell read, if any.
    pub config_sha256: Option<String>,
}

/// A model a cell ran, with the checksum of its file where it is a local one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// agents, mutator or evaluator.
    pub role: String,
    /// Catalog id, path or endpoint.
    pub model: String,
    /// sha256 of the weights file (catalog models and local files).
    pub sha256: Option<String>,
}

/// One held-out item of a cell: whether the seed MAS and the method's system answered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellItem {
    /// Example id (never the question text).
    pub id: String,
    /// The seed-prompt MAS was right.
    pub seed: bool,
    /// The method's system was right.
    pub method: bool,
}

/// What the optimization of a cell did and cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellOptimization {
    /// Units finished.
    pub units: usize,
    /// The optimization ran to its end (not stopped by a budget).
    pub finished: bool,
    /// Why it stopped early, if it did.
    pub stopped: Option<String>,
    /// Mutator counters.
    pub proposals: ProposalStats,
    /// Judge verdicts.
    pub verdicts: u64,
    /// Cost by role.
    pub cost: Cost,
    /// Wall seconds of the optimization (all sessions of the run).
    pub secs: f64,
}

/// The result of one finished cell: `cells/<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    /// Format version.
    pub version: u32,
    /// What it is the result of.
    pub key: CellKey,
    /// The same run as one command (`maspo optimize ...`).
    pub command: String,
    /// maspo's version.
    pub maspo_version: String,
    /// The git commit of the working tree that ran it (`+dirty` with uncommitted changes).
    pub commit: String,
    /// The models, with checksums.
    pub models: Vec<ModelRecord>,
    /// What the method's held-out answers came from (e.g. `MAS, optimized prompts`).
    pub system: String,
    /// Split of the held-out items.
    pub split: String,
    /// Held-out items.
    pub items: Vec<CellItem>,
    /// Accuracy of the seed MAS on them.
    pub seed_accuracy: Interval,
    /// Accuracy of the method's system.
    pub accuracy: Interval,
    /// The optimization.
    pub optimization: CellOptimization,
    /// LLM calls of the held-out comparison (both systems; cache hits included).
    pub heldout_calls: usize,
    /// Seconds of the held-out comparison inside the models.
    pub heldout_secs: f64,
    /// Rollouts with a failed call (seed, method).
    pub failed: (usize, usize),
    /// Wall seconds of the cell: optimization plus held-out comparison (model loads excluded).
    pub wall_secs: f64,
    /// The prompts the method ended with (left out for protected tasks such as GPQA, whose
    /// questions a mutator may have quoted).
    pub prompts: Option<serde_json::Value>,
}

/// The cell-file format version.
pub const CELL_VERSION: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_cell_ids() {
        assert_eq!(BenchPreset::get("light").unwrap().budget, "light");
        assert!(BenchPreset::get("huge")
            .unwrap_err()
            .contains("tiny, light, medium, paper"));
        for p in PRESETS {
            crate::optimize::OptimizeSettings::preset("default", p.budget).unwrap();
        }
        let tasks = vec!["aqua".to_string(), "bbh/navigate".to_string()];
        let topos = vec!["reflect".to_string(), "hierarchical".to_string()];
        let racing = vec!["racing".to_string()];
        let cells = plan_cells(
            &tasks,
            &topos,
            &[Method::Seed, Method::Maspo],
            true,
            &racing,
            2,
        );
        // Per task: reflect (2 methods + 7 ablations + racing) + hierarchical (2 methods +
        // racing), × 2 seeds.
        assert_eq!(cells.len(), 2 * (10 + 3) * 2);
        let ids: std::collections::HashSet<String> = cells.iter().map(|c| c.id()).collect();
        assert_eq!(ids.len(), cells.len(), "ids are unique");
        assert!(ids.contains("aqua.reflect.maspo.no_beam.s1"));
        assert!(ids.contains("aqua.hierarchical.maspo+racing.s0"));
        let r = cells.iter().find(|c| c.option.is_some()).unwrap();
        assert_eq!(r.label(), "maspo+racing");
        assert!(ids.contains("bbh_navigate.hierarchical.seed.s0"));
        assert!(!ids
            .iter()
            .any(|i| i.starts_with("aqua.hierarchical.maspo.no")));
        assert_eq!(cells[0].task, "aqua", "task-major order");
        assert_eq!(
            CellSpec {
                task: "aqua".into(),
                topology: "reflect".into(),
                method: Method::CotSc,
                ablation: None,
                option: None,
                seed: 0
            }
            .id(),
            "aqua.reflect.cot_sc.s0"
        );
    }
}
