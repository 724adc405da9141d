//! The results table from finished cells: accuracy per task and average with 95% bootstrap
//! intervals (rows: topology × method), paired tests of MASPO against every other row on the
//! same items, and cost per row.

use super::{CellResult, CellSpec};
use crate::eval::stats::{bootstrap_mean, sign_flip_p, stratified_bootstrap_mean, Interval};
use crate::optimize::Method;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bootstrap resamples of every interval; sign flips of every paired test.
const RESAMPLES: usize = 4000;
const FLIPS: usize = 20_000;

/// Accuracy of one row on one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskAccuracy {
    /// Mean over items (each item's correctness averaged over seeds), with its interval.
    pub accuracy: Interval,
    /// Held-out items.
    pub n: usize,
    /// Seeds (cells) behind it.
    pub seeds: usize,
}

/// Cost of a row over its cells (every task and seed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RowCost {
    /// Cells.
    pub cells: usize,
    /// LLM calls of the optimizations (agents, mutator, evaluator).
    pub optimization_calls: u64,
    /// Tokens (prompt + generated) of the optimizations.
    pub optimization_tokens: u64,
    /// LLM calls of the held-out comparisons.
    pub heldout_calls: u64,
    /// Wall seconds of the cells.
    pub wall_secs: f64,
}

/// One row: a method (or ablation) on a topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Topology.
    pub topology: String,
    /// Method label (`maspo`, `spo`, `maspo: no_beam`, ...).
    pub method: String,
    /// Per task.
    pub tasks: BTreeMap<String, TaskAccuracy>,
    /// Average over the table's tasks (stratified bootstrap); only when every task has a cell.
    pub average: Option<Interval>,
    /// Cost.
    pub cost: RowCost,
}

/// MASPO minus a baseline on the same items of one task (or the average over tasks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedCell {
    /// The difference in accuracy with its paired bootstrap interval.
    pub diff: Interval,
    /// Two-sided p-value of the paired sign-flip test.
    pub p: f64,
    /// Items compared.
    pub n: usize,
    /// Items MASPO got right and the baseline wrong (summed over seeds).
    pub wins: usize,
    /// Items the baseline got right and MASPO wrong.
    pub losses: usize,
}

/// MASPO against one other row of the same topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedRow {
    /// Topology.
    pub topology: String,
    /// The row MASPO is compared with.
    pub baseline: String,
    /// Per task.
    pub tasks: BTreeMap<String, PairedCell>,
    /// Over every task both rows have.
    pub average: Option<PairedCell>,
}

/// The whole table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Bench preset.
    pub preset: String,
    /// Task columns, in order.
    pub tasks: Vec<String>,
    /// Rows, topology-major in the bench's order.
    pub rows: Vec<Row>,
    /// MASPO vs every other row.
    pub paired: Vec<PairedRow>,
    /// Cells found.
    pub cells: usize,
    /// Planned cells without a result yet (ids).
    pub missing: Vec<String>,
}

/// Per item id: the method's correctness averaged over the given cells (seeds), with how many
/// cells had the item, and the seed system's.
fn per_item(cells: &[&CellResult]) -> BTreeMap<String, (f64, f64, usize)> {
    let mut m: BTreeMap<String, (f64, f64, usize)> = BTreeMap::new();
    for c in cells {
        for it in &c.items {
            let e = m.entry(it.id.clone()).or_default();
            e.0 += f64::from(u8::from(it.method));
            e.1 += f64::from(u8::from(it.seed));
            e.2 += 1;
        }
    }
    for v in m.values_mut() {
        v.0 /= v.2 as f64;
        v.1 /= v.2 as f64;
    }
    m
}

/// Builds the table of `cells` over the planned `order` (which fixes rows, columns and the
/// list of missing cells). `seed` seeds every bootstrap and test.
pub fn build_table(preset: &str, order: &[CellSpec], cells: &[CellResult], seed: u64) -> Table {
    let mut tasks: Vec<String> = Vec::new();
    let mut row_keys: Vec<(String, String)> = Vec::new();
    for c in order {
        if !tasks.contains(&c.task) {
            tasks.push(c.task.clone());
        }
        let k = (c.topology.clone(), c.label());
        if !row_keys.contains(&k) {
            row_keys.push(k);
        }
    }
    let found = |spec: &CellSpec| cells.iter().find(|c| &c.key.cell == spec);
    let missing: Vec<String> = order
        .iter()
        .filter(|s| found(s).is_none())
        .map(|s| s.id())
        .collect();
    let of = |topology: &str, label: &str, task: &str| -> Vec<&CellResult> {
        order
            .iter()
            .filter(|s| s.topology == topology && s.label() == label && s.task == task)
            .filter_map(found)
            .collect()
    };
    let stat_seed = |parts: &[&str]| {
        crate::rng::derive_seed(
            &std::iter::once(seed)
                .chain(parts.iter().map(|p| crate::rng::str_seed(p)))
                .collect::<Vec<u64>>(),
        )
    };
    let mut rows = Vec::new();
    for (topology, label) in &row_keys {
        let mut accs = BTreeMap::new();
        let mut groups = Vec::new();
        let mut cost = RowCost::default();
        for task in &tasks {
            let cs = of(topology, label, task);
            for c in &cs {
                cost.cells += 1;
                cost.optimization_calls += c.optimization.cost.calls();
                cost.optimization_tokens += c.optimization.cost.tokens();
                cost.heldout_calls += c.heldout_calls as u64;
                cost.wall_secs += c.wall_secs;
            }
            if cs.is_empty() {
                continue;
            }
            let values: Vec<f64> = per_item(&cs).values().map(|v| v.0).collect();
            accs.insert(
                task.clone(),
                TaskAccuracy {
                    accuracy: bootstrap_mean(
                        &values,
                        RESAMPLES,
                        0.95,
                        stat_seed(&[topology, label, task]),
                    ),
                    n: values.len(),
                    seeds: cs.len(),
                },
            );
            groups.push(values);
        }
        let average = (accs.len() == tasks.len() && !tasks.is_empty()).then(|| {
            stratified_bootstrap_mean(&groups, RESAMPLES, 0.95, stat_seed(&[topology, label]))
        });
        rows.push(Row {
            topology: topology.clone(),
            method: label.clone(),
            tasks: accs,
            average,
            cost,
        });
    }
    let maspo = super::method_name(Method::Maspo);
    let mut paired = Vec::new();
    for (topology, label) in &row_keys {
        if *label == maspo || !row_keys.contains(&(topology.clone(), maspo.clone())) {
            continue;
        }
        let mut per_task = BTreeMap::new();
        let mut diff_groups = Vec::new();
        let (mut all_wins, mut all_losses) = (0, 0);
        for task in &tasks {
            let a = per_item(&of(topology, &maspo, task));
            let b = per_item(&of(topology, label, task));
            let diffs: Vec<f64> = a
                .iter()
                .filter_map(|(id, x)| b.get(id).map(|y| x.0 - y.0))
                .collect();
            if diffs.is_empty() {
                continue;
            }
            let wins: usize = diffs.iter().filter(|d| **d > 0.0).count();
            let losses: usize = diffs.iter().filter(|d| **d < 0.0).count();
            all_wins += wins;
            all_losses += losses;
            let s = stat_seed(&["paired", topology, label, task]);
            per_task.insert(
                task.clone(),
                PairedCell {
                    diff: bootstrap_mean(&diffs, RESAMPLES, 0.95, s),
                    p: sign_flip_p(std::slice::from_ref(&diffs), FLIPS, s ^ 1),
                    n: diffs.len(),
                    wins,
                    losses,
                },
            );
            diff_groups.push(diffs);
        }
        let average = (per_task.len() == tasks.len() && !tasks.is_empty()).then(|| {
            let s = stat_seed(&["paired", topology, label]);
            PairedCell {
                diff: stratified_bootstrap_mean(&diff_groups, RESAMPLES, 0.95, s),
                p: sign_flip_p(&diff_groups, FLIPS, s ^ 1),
                n: diff_groups.iter().map(Vec::len).sum(),
                wins: all_wins,
                losses: all_losses,
            }
        });
        paired.push(PairedRow {
            topology: topology.clone(),
            baseline: label.clone(),
            tasks: per_task,
            average,
        });
    }
    Table {
        preset: preset.into(),
        tasks,
        rows,
        paired,
        cells: order.iter().filter(|s| found(s).is_some()).count(),
        missing,
    }
}

/// `41.2 [30.0, 52.5]` in percent.
pub(super) fn pct(i: &Interval) -> String {
    format!(
        "{:.1} [{:.1}, {:.1}]",
        100.0 * i.mean,
        100.0 * i.low,
        100.0 * i.high
    )
}

/// `+5.0 [−3.0, +12.5] p=0.31` in points.
pub(super) fn pts(c: &PairedCell) -> String {
    format!(
        "{:+.1} [{:+.1}, {:+.1}] p={:.2}",
        100.0 * c.diff.mean,
        100.0 * c.diff.low,
        100.0 * c.diff.high,
        c.p
    )
}

impl Table {
    /// The accuracy table (paper's Table 1 shape), the paired tests and the cost table, in
    /// Markdown.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let head = |md: &mut String, first: &[&str]| {
            let cols: Vec<String> = first
                .iter()
                .map(|s| s.to_string())
                .chain(self.tasks.iter().cloned())
                .chain(std::iter::once("Avg".to_string()))
                .collect();
            md.push_str(&format!("| {} |\n", cols.join(" | ")));
            md.push_str(&format!("|{}\n", "---|".repeat(cols.len())));
        };
        md.push_str("### Accuracy on held-out test items (%, 95% bootstrap CI)\n\n");
        head(&mut md, &["MAS", "method"]);
        for r in &self.rows {
            let mut cols = vec![r.topology.clone(), r.method.clone()];
            for t in &self.tasks {
                cols.push(
                    r.tasks
                        .get(t)
                        .map(|a| pct(&a.accuracy))
                        .unwrap_or("—".into()),
                );
            }
            cols.push(r.average.as_ref().map(pct).unwrap_or("—".into()));
            md.push_str(&format!("| {} |\n", cols.join(" | ")));
        }
        let n: Vec<String> = self
            .tasks
            .iter()
            .map(|t| {
                let ns: Vec<usize> = self
                    .rows
                    .iter()
                    .filter_map(|r| r.tasks.get(t).map(|a| a.n))
                    .collect();
                format!("{t} {}", ns.iter().max().copied().unwrap_or(0))
            })
            .collect();
        md.push_str(&format!(
            "\nItems per task: {}. `seed` is the MAS with its seed prompts; `cot_sc` and the other fixed systems are evaluated on the same items. The average's interval resamples items within each task.\n",
            n.join(", ")
        ));
        if !self.paired.is_empty() {
            md.push_str("\n### MASPO minus each other row, same items (points, paired bootstrap 95% CI, two-sided sign-flip p)\n\n");
            head(&mut md, &["MAS", "MASPO vs"]);
            for p in &self.paired {
                let mut cols = vec![p.topology.clone(), p.baseline.clone()];
                for t in &self.tasks {
                    cols.push(
                        p.tasks
                            .get(t)
                            .map(|c| format!("{} ({}+/{}−)", pts(c), c.wins, c.losses))
                            .unwrap_or("—".into()),
                    );
                }
                cols.push(
                    p.average
                        .as_ref()
                        .map(|c| format!("{} ({}+/{}−)", pts(c), c.wins, c.losses))
                        .unwrap_or("—".into()),
                );
                md.push_str(&format!("| {} |\n", cols.join(" | ")));
            }
            md.push_str("\n(k+/m−): items MASPO got right and the other wrong / the reverse. No correction for multiple comparisons.\n");
        }
        md.push_str("\n### Cost per row (all tasks)\n\n| MAS | method | cells | optimization calls | optimization tokens | held-out calls | wall time |\n|---|---|---|---|---|---|---|\n");
        for r in &self.rows {
            let c = &r.cost;
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {:.1} min |\n",
                r.topology,
                r.method,
                c.cells,
                c.optimization_calls,
                c.optimization_tokens,
                c.heldout_calls,
                c.wall_secs / 60.0
            ));
        }
        if !self.missing.is_empty() {
            md.push_str(&format!(
                "\n**Incomplete:** {} of {} planned cells have no result yet: {}.\n",
                self.missing.len(),
                self.missing.len() + self.cells,
                self.missing.join(", ")
            ));
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    fn cell(
        task: &str,
        method: Method,
        seed: u64,
        right: &[bool],
        seed_right: &[bool],
    ) -> CellResult {
        let spec = CellSpec {
            task: task.into(),
            topology: "reflect".into(),
            method,
            ablation: None,
            option: None,
            seed,
        };
        let iv = Interval {
            mean: 0.0,
            low: 0.0,
            high: 0.0,
            level: 0.95,
            resamples: 0,
        };
        CellResult {
            version: CELL_VERSION,
            key: CellKey {
                preset: "tiny".into(),
                cell: spec,
                agents: "m".into(),
                mutator: "m".into(),
                evaluator: "m".into(),
                config_sha256: None,
            },
            command: String::new(),
            maspo_version: String::new(),
            commit: String::new(),
            models: vec![],
            system: String::new(),
            split: "test".into(),
            items: right
                .iter()
                .zip(seed_right)
                .enumerate()
                .map(|(i, (r, s))| CellItem {
                    id: format!("{task}-{i}"),
                    seed: *s,
                    method: *r,
                })
                .collect(),
            seed_accuracy: iv,
            accuracy: iv,
            optimization: CellOptimization {
                units: 1,
                finished: true,
                stopped: None,
                proposals: Default::default(),
                verdicts: 0,
                cost: Default::default(),
                secs: 1.0,
            },
            heldout_calls: 10,
            heldout_secs: 1.0,
            failed: (0, 0),
            wall_secs: 60.0,
            prompts: None,
        }
    }

    #[test]
    fn table_rows_averages_pairs_and_missing_cells() {
        let tasks = vec!["aqua".to_string(), "math".to_string()];
        let order = plan_cells(
            &tasks,
            &["reflect".to_string()],
            &[Method::Seed, Method::Maspo, Method::Spo],
            false,
            &[],
            1,
        );
        let t = [true; 10];
        let half: Vec<bool> = (0..10).map(|i| i < 5).collect();
        let cells = vec![
            cell("aqua", Method::Seed, 0, &half, &half),
            cell("aqua", Method::Maspo, 0, &t, &half),
            cell("math", Method::Seed, 0, &half, &half),
            cell("math", Method::Maspo, 0, &t, &half),
            cell("aqua", Method::Spo, 0, &half, &half),
        ];
        let table = build_table("tiny", &order, &cells, 0);
        assert_eq!(table.tasks, tasks);
        assert_eq!(table.rows.len(), 3);
        assert_eq!(table.cells, 5);
        assert_eq!(table.missing, vec!["math.reflect.spo.s0".to_string()]);
        let maspo = table.rows.iter().find(|r| r.method == "maspo").unwrap();
        assert_eq!(maspo.tasks["aqua"].accuracy.mean, 1.0);
        assert_eq!(maspo.average.unwrap().mean, 1.0);
        let seed = table.rows.iter().find(|r| r.method == "seed").unwrap();
        assert!((seed.average.unwrap().mean - 0.5).abs() < 1e-12);
        let spo = table.rows.iter().find(|r| r.method == "spo").unwrap();
        assert!(spo.average.is_none(), "a row missing a task has no average");
        assert_eq!(spo.cost.cells, 1);
        // MASPO vs seed: 5 wins of 10 on each task, no loss.
        let vs_seed = table.paired.iter().find(|p| p.baseline == "seed").unwrap();
        let a = &vs_seed.tasks["aqua"];
        assert_eq!((a.wins, a.losses, a.n), (5, 0, 10));
        assert!((a.diff.mean - 0.5).abs() < 1e-12);
        assert!(
            a.p < 0.1 && a.p > 0.03,
            "5 of 5 discordant: exact p = 1/16: {}",
            a.p
        );
        let avg = vs_seed.average.as_ref().unwrap();
        assert_eq!((avg.wins, avg.n), (10, 20));
        assert!(avg.p < 0.01, "{}", avg.p);
        let vs_spo = table.paired.iter().find(|p| p.baseline == "spo").unwrap();
        assert!(vs_spo.average.is_none() && vs_spo.tasks.len() == 1);
        let md = table.markdown();
        assert!(md.contains("| reflect | maspo | 100.0 [100.0, 100.0] | 100.0 [100.0, 100.0] | 100.0 [100.0, 100.0] |"), "{md}");
        assert!(md.contains("+50.0"), "{md}");
        assert!(md.contains("math.reflect.spo.s0"), "{md}");
        // Deterministic.
        assert_eq!(table, build_table("tiny", &order, &cells, 0));
    }

    #[test]
    fn seeds_average_per_item() {
        let order = plan_cells(
            &["aqua".to_string()],
            &["reflect".to_string()],
            &[Method::Maspo],
            false,
            &[],
            2,
        );
        let cells = vec![
            cell("aqua", Method::Maspo, 0, &[true, true], &[false, false]),
            cell("aqua", Method::Maspo, 1, &[true, false], &[false, false]),
        ];
        let table = build_table("tiny", &order, &cells, 0);
        let a = &table.rows[0].tasks["aqua"];
        assert_eq!((a.n, a.seeds), (2, 2));
        assert!((a.accuracy.mean - 0.75).abs() < 1e-12);
    }
}
