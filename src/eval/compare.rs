//! `maspo compare`: the paired difference of two runs' per-item verdicts on the items both
//! judged — a seed against an optimized system, two optimization seeds, or any two
//! evaluations of one task split.
//!
//! A run is a `maspo eval` directory (its `items.jsonl`) or a `maspo optimize` directory (its
//! optimized side, `heldout-optimized/items.jsonl`; pass `RUN/heldout-seed` for the seed side).

use super::stats::{paired_bootstrap_diff, sign_flip_p, Interval};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bootstrap and sign-flip resamples.
const RESAMPLES: usize = 10_000;

/// Why two runs could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The directory holds neither kind of run.
    #[error("{0}: not a run directory (no items.jsonl, and no heldout-optimized/items.jsonl of an optimization); pass a `maspo eval` run directory, a `maspo optimize` run directory whose held-out evaluation finished, or RUN/heldout-seed")]
    NotARun(PathBuf),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line is not an item record.
    #[error("{path}, line {line}: not an item record ({why}); was the file edited or cut short? Re-run the evaluation into a fresh directory")]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parse error.
        why: String,
    },
    /// An item id appears twice in one run.
    #[error("{path}: item `{id}` appears twice; one run must judge each item once")]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// The id.
        id: String,
    },
    /// The runs share no item.
    #[error("the two runs share no item id ({a} and {b} items): they evaluated different tasks or splits")]
    Disjoint {
        /// Items of the first run.
        a: usize,
        /// Items of the second run.
        b: usize,
    },
}

/// One run's verdicts by item id.
#[derive(Debug, Clone, PartialEq)]
pub struct RunVerdicts {
    /// The items file read.
    pub file: PathBuf,
    /// Item id → correct.
    pub correct: BTreeMap<String, bool>,
}

#[derive(Deserialize)]
struct ItemLine {
    id: String,
    verdict: VerdictLine,
}

#[derive(Deserialize)]
struct VerdictLine {
    correct: bool,
}

/// The items file of the run at `dir` (see the module docs).
pub fn items_file(dir: &Path) -> Result<PathBuf, CompareError> {
    [
        dir.join("items.jsonl"),
        dir.join("heldout-optimized").join("items.jsonl"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or_else(|| CompareError::NotARun(dir.to_path_buf()))
}

/// Reads the verdicts of the run at `dir`.
pub fn load(dir: &Path) -> Result<RunVerdicts, CompareError> {
    let file = items_file(dir)?;
    let text = std::fs::read_to_string(&file).map_err(|source| CompareError::Io {
        path: file.clone(),
        source,
    })?;
    let mut correct = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let item: ItemLine = serde_json::from_str(line).map_err(|e| CompareError::BadLine {
            path: file.clone(),
            line: i + 1,
            why: e.to_string(),
        })?;
        if correct
            .insert(item.id.clone(), item.verdict.correct)
            .is_some()
        {
            return Err(CompareError::Duplicate {
                path: file.clone(),
                id: item.id,
            });
        }
    }
    Ok(RunVerdicts { file, correct })
}

/// Run B against run A on their common items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Items both runs judged.
    pub n: usize,
    /// Items only run A judged (left out).
    pub only_a: usize,
    /// Items only run B judged (left out).
    pub only_b: usize,
    /// Run A's accuracy on the common items.
    pub a: f64,
    /// Run B's accuracy on the common items.
    pub b: f64,
    /// B − A, paired bootstrap (items resampled together).
    pub diff: Interval,
    /// Two-sided paired sign-flip p-value of B − A.
    pub p: f64,
    /// Items only B got right.
    pub gained: Vec<String>,
    /// Items only A got right.
    pub lost: Vec<String>,
}

/// Compares `b` with `a` on the items both judged (`seed` fixes the resamples).
pub fn compare(a: &RunVerdicts, b: &RunVerdicts, seed: u64) -> Result<Comparison, CompareError> {
    let common: Vec<(&String, bool, bool)> = a
        .correct
        .iter()
        .filter_map(|(id, &x)| b.correct.get(id).map(|&y| (id, x, y)))
        .collect();
    if common.is_empty() {
        return Err(CompareError::Disjoint {
            a: a.correct.len(),
            b: b.correct.len(),
        });
    }
    let n = common.len();
    let xa: Vec<f64> = common.iter().map(|c| f64::from(u8::from(c.1))).collect();
    let xb: Vec<f64> = common.iter().map(|c| f64::from(u8::from(c.2))).collect();
    let diffs: Vec<f64> = xa.iter().zip(&xb).map(|(x, y)| y - x).collect();
    let ids = |pick: fn(bool, bool) -> bool| -> Vec<String> {
        common
            .iter()
            .filter(|c| pick(c.1, c.2))
            .map(|c| c.0.clone())
            .collect()
    };
    Ok(Comparison {
        n,
        only_a: a.correct.len() - n,
        only_b: b.correct.len() - n,
        a: xa.iter().sum::<f64>() / n as f64,
        b: xb.iter().sum::<f64>() / n as f64,
        diff: paired_bootstrap_diff(&xa, &xb, RESAMPLES, 0.95, seed),
        p: sign_flip_p(std::slice::from_ref(&diffs), RESAMPLES, seed ^ 1),
        gained: ids(|x, y| !x && y),
        lost: ids(|x, y| x && !y),
    })
}

/// The comparison as a short markdown table and summary, run A and B named by `names`.
pub fn to_markdown(c: &Comparison, names: (&str, &str)) -> String {
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    let pts = |x: f64| format!("{:+.1}", 100.0 * x);
    let mut s = format!(
        "| run | accuracy |\n|---|---|\n| A: {} | {} |\n| B: {} | {} |\n\n",
        names.0,
        pct(c.a),
        names.1,
        pct(c.b)
    );
    s.push_str(&format!(
        "B − A on {} common items: {} points (paired 95% CI {} … {}), sign-flip p = {:.3}; {} items gained, {} lost.",
        c.n,
        pts(c.diff.mean),
        pts(c.diff.low),
        pts(c.diff.high),
        c.p,
        c.gained.len(),
        c.lost.len()
    ));
    if c.only_a + c.only_b > 0 {
        s.push_str(&format!(
            " Left out: {} items only A judged, {} only B judged.",
            c.only_a, c.only_b
        ));
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rows: &[(&str, bool)]) {
        std::fs::create_dir_all(dir).unwrap();
        let text: String = rows
            .iter()
            .map(|(id, ok)| {
                format!(
                    "{}\n",
                    serde_json::json!({"id": id, "prediction": "", "verdict": {"correct": ok, "prediction": "", "detail": ""}})
                )
            })
            .collect();
        std::fs::write(dir.join("items.jsonl"), text).unwrap();
    }

    #[test]
    fn two_runs_are_compared_on_their_common_items() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        // An optimization run: its optimized side.
        let b = t.path().join("b");
        let ids: Vec<String> = (1..=10).map(|i| i.to_string()).collect();
        let mut ra: Vec<(&str, bool)> = ids.iter().map(|i| (i.as_str(), i == "2")).collect();
        ra.push(("only-a", true));
        let mut rb: Vec<(&str, bool)> = ids.iter().map(|i| (i.as_str(), i != "3")).collect();
        rb.push(("only-b", true));
        write(&a, &ra);
        write(&b.join("heldout-optimized"), &rb);
        let c = compare(&load(&a).unwrap(), &load(&b).unwrap(), 0).unwrap();
        assert_eq!((c.n, c.only_a, c.only_b), (10, 1, 1));
        assert_eq!((c.a, c.b), (0.1, 0.9));
        // Sorted by id as strings.
        assert_eq!(c.gained, ["1", "10", "4", "5", "6", "7", "8", "9"]);
        assert!(c.lost.is_empty());
        assert!((c.diff.mean - 0.8).abs() < 1e-12);
        assert!(c.diff.low > 0.0 && c.p < 0.05, "{c:?}");
        let md = to_markdown(&c, ("a", "b"));
        assert!(
            md.contains("+80.0 points") && md.contains("Left out"),
            "{md}"
        );
        // A run against itself: no difference, p = 1.
        let same = compare(&load(&a).unwrap(), &load(&a).unwrap(), 0).unwrap();
        assert_eq!((same.diff.mean, same.p), (0.0, 1.0));
    }

    #[test]
    fn bad_runs_are_named() {
        let t = tempfile::tempdir().unwrap();
        let e = load(t.path()).unwrap_err().to_string();
        assert!(e.contains("not a run directory"), "{e}");
        std::fs::write(t.path().join("items.jsonl"), "{\"id\":\"1\"}\n").unwrap();
        let e = load(t.path()).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("items.jsonl"), "{e}");
        write(t.path(), &[("1", true), ("1", false)]);
        let e = load(t.path()).unwrap_err().to_string();
        assert!(e.contains("appears twice"), "{e}");
        let other = t.path().join("o");
        write(&other, &[("9", true)]);
        write(t.path(), &[("1", true)]);
        let e = compare(&load(t.path()).unwrap(), &load(&other).unwrap(), 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("share no item"), "{e}");
    }
}
