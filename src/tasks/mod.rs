//! Benchmark tasks: loading datasets from the data directory into [`Example`]s, seeded
//! generated tasks, deterministic splits, and answer/code extraction.
//!
//! Owns dataset parsing, the shape of an example and the pure text functions that pull an answer
//! out of a model output ([`extract`]). It must not judge answers (see [`crate::judge`]) nor know
//! about agents (see [`crate::mas`]).
//!
//! Entry point: [`load_task`] turns a task name (`math`, `gsm8k`, `bbh/navigate`,
//! `jsonl:<path>`, `gen:coin_flip:200:7`, …) into a [`Task`].

pub mod datasets;
pub mod error;
pub mod extract;
pub mod generated;
pub mod split;

pub use datasets::{load_jsonl, FieldMap, BBH_TASKS};
pub use error::TaskError;
pub use extract::AnswerMode;
pub use split::{SplitMode, SplitName, Splits};

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What kind of answer a task expects; selects seed prompts, extraction and the judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// A mathematical answer (LaTeX or a number) inside `<answer>` tags or `\boxed{}`.
    Math,
    /// One option letter.
    Choice,
    /// A Python function, judged by running tests.
    Code,
}

/// How the answer of a non-code task is compared with its gold (the rule of
/// [`crate::judge::answer::AnswerJudge`]). Code tasks carry [`AnswerRule::Exact`], unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerRule {
    /// LaTeX/number normalization; in strict mode also numeric equivalence (`0.5` = `\frac12`).
    Math,
    /// One option letter (`B`, `(B)`); golds that are not letters fall back to [`Self::Exact`].
    Choice,
    /// Whole-string match after light normalization (case, whitespace, markup): BBH targets such
    /// as `Yes`, `valid`, `) ] >` or a sorted word list, and the generated word tasks.
    Exact,
}

/// One benchmark item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Stable id within its dataset (the dataset's own id, else the row index).
    pub id: String,
    /// The problem text agents see.
    pub question: String,
    /// What a prediction is judged against.
    pub gold: Gold,
}

/// The reference for one example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gold {
    /// A reference answer string (math answer, option letter, BBH target).
    Answer(String),
    /// Tests for code.
    Code(CodeTests),
}

/// Tests of one code example.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CodeTests {
    /// Single-line `assert` statements; each is run and reported on its own. For original
    /// HumanEval this is the one statement `check(<entry_point>)`.
    pub asserts: Vec<String>,
    /// Import lines placed before the candidate code (the dataset's test imports and the import
    /// lines of the prompt). For original HumanEval the last element is the dataset's whole `test`
    /// source (it defines `check(candidate)`): prelude code, not just imports.
    pub imports: Vec<String>,
    /// The function the tests call, when known.
    pub entry_point: Option<String>,
}

/// A loaded task: its examples and how to judge them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Canonical name (`agi` loads as `agieval_math`; generated names carry count and seed).
    pub name: String,
    /// Answer kind (selects seed prompts and the judge family).
    pub kind: TaskKind,
    /// How non-code answers are compared.
    pub rule: AnswerRule,
    /// Option letters for [`TaskKind::Choice`] tasks, in order (`"ABCDE"`); empty otherwise.
    pub letters: String,
    /// The examples, in file order.
    pub examples: Vec<Example>,
    /// Its questions must never be stored as plain text (GPQA, or any dataset kept
    /// gzip-compressed): evaluation traces are written compressed and completions are not
    /// cached on disk.
    #[serde(default)]
    pub protected: bool,
}

impl Task {
    /// The example with this id.
    pub fn example(&self, id: &str) -> Option<&Example> {
        self.examples.iter().find(|e| e.id == id)
    }
}

/// The dataset task names [`load_task`] knows (aliases excluded), BBH tasks included.
pub fn task_names() -> Vec<String> {
    let mut names: Vec<String> = datasets::NAMED.iter().map(|s| s.to_string()).collect();
    names.extend(BBH_TASKS.iter().map(|t| format!("bbh/{t}")));
    names.extend(generated::GENERATORS.iter().map(|g| format!("gen:{g}")));
    names
}

/// The places searched, in order, for the benchmark data when neither `--data-dir` nor
/// `$MASPO_DATA_DIR` names one: the repository's `data/` as it was at build time (a checkout:
/// `cargo run`, `target/release/maspo`, or a `cargo install --path .` whose checkout still
/// exists), then `data/` and `../share/maspo/data` beside the executable (a packaged install).
pub fn data_dir_candidates() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data"))];
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("data"));
        dirs.push(exe_dir.join("../share/maspo/data"));
    }
    dirs
}

/// The data directory when none is given: `$MASPO_DATA_DIR`, else the first of
/// [`data_dir_candidates`] that holds maspo's data (its `README.md` and the AQuA file), else the
/// first candidate — loading from it then fails with [`TaskError::MissingFile`], which lists
/// every place searched.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MASPO_DATA_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let candidates = data_dir_candidates();
    candidates
        .iter()
        .find(|d| d.join("aqua/aqua.jsonl").is_file())
        .unwrap_or(&candidates[0])
        .clone()
}

/// Loads a task by name.
///
/// Names: `math`, `agieval_math` (alias `agi`), `aqua`, `gpqa`, `mbpp`, `humaneval`,
/// `humaneval_et` (alias `humaneval-et`), `gsm8k`, `svamp`, `bbh/<task>` (see [`BBH_TASKS`]),
/// `jsonl:<path>` (a generic JSONL file with the default [`FieldMap`]: `question`, `answer`;
/// a relative path is tried as given, then under `data_dir`) and `gen:<name>[:count[:seed]]`
/// (also spelled `generated/<name>`; see [`generated`]).
pub fn load_task(name: &str, data_dir: &Path) -> Result<Task, TaskError> {
    if let Some(path) = name.strip_prefix("jsonl:") {
        let path = resolve_path(Path::new(path), data_dir);
        return load_jsonl(&path, &FieldMap::default());
    }
    if name.starts_with("gen:") || name.starts_with("generated/") {
        return generated::load(name);
    }
    datasets::load_named(name, data_dir)
}

/// A relative path as given if it exists, else under `data_dir`.
pub fn resolve_path(path: &Path, data_dir: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        path.to_path_buf()
    } else {
        data_dir.join(path)
    }
}

/// The option letters of a choice task: `A` up to the highest letter of a gold (`B`, `(B)`) or
/// of the sequence of option markers `A`, `B`, … found in order at line starts in a question
/// (`(A) …`, `A. …`, `A) …`, `A ) …`), at least `A`–`D`.
pub fn choice_letters(examples: &[Example]) -> String {
    let mut max = b'D';
    for ex in examples {
        if let Gold::Answer(g) = &ex.gold {
            if let Some(c) = gold_letter(g) {
                max = max.max(c as u8);
            }
        }
        // Markers must come in order (`A` … then `B` …), so a body line such as `E. coli …`
        // before the options does not count.
        let next = ex
            .question
            .lines()
            .filter_map(option_marker)
            .fold(b'A', |next, m| if m == next { next + 1 } else { next });
        max = max.max(next - 1);
    }
    (b'A'..=max).map(char::from).collect()
}

/// The letter of an option line: `(X) …`, `X. …`, `X) …` or `X ) …`.
fn option_marker(line: &str) -> Option<u8> {
    let b = line.trim_start().as_bytes();
    match b {
        [b'(', c, b')', ..] if c.is_ascii_uppercase() => Some(*c),
        [c, b'.' | b')', ..] | [c, b' ', b')', ..] if c.is_ascii_uppercase() => Some(*c),
        _ => None,
    }
}

/// The letter of a gold such as `C` or `(C)`; `None` when the gold is not a single letter.
pub fn gold_letter(gold: &str) -> Option<char> {
    let g = gold.trim();
    let g = g
        .strip_prefix('(')
        .and_then(|g| g.strip_suffix(')'))
        .unwrap_or(g);
    let mut chars = g.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_uppercase() => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(q: &str, gold: &str) -> Example {
        Example {
            id: "0".into(),
            question: q.into(),
            gold: Gold::Answer(gold.into()),
        }
    }

    #[test]
    fn letters_from_golds_and_markers() {
        assert_eq!(choice_letters(&[ex("q", "B")]), "ABCD");
        assert_eq!(choice_letters(&[ex("q", "(E)")]), "ABCDE");
        let opts: String = "ABCDEFG".chars().map(|c| format!("\n({c}) opt")).collect();
        assert_eq!(
            choice_letters(&[ex(&format!("Options:{opts}"), "(A)")]),
            "ABCDEFG"
        );
        assert_eq!(
            choice_letters(&[ex("Q\nA. 1\nB. 2\nC. 3\nD. 4\nE. 5", "A")]),
            "ABCDE"
        );
        let aqua = "Q\nA ) 1\nB ) 2\nC ) 3\nD ) 4\nE ) 5\nF ) 6";
        assert_eq!(choice_letters(&[ex(aqua, "A")]), "ABCDEF");
        let stray = "mass (M) and charge (Z)\n(X) is not a run\nE. coli grows\nA. 1\nB. 2";
        assert_eq!(choice_letters(&[ex(stray, "B")]), "ABCD");
    }

    #[test]
    fn gold_letters() {
        assert_eq!(gold_letter(" (C) "), Some('C'));
        assert_eq!(gold_letter("D"), Some('D'));
        assert_eq!(gold_letter("Monsters, Inc"), None);
        assert_eq!(gold_letter("(AB)"), None);
        assert_eq!(gold_letter("a"), None);
    }

    #[test]
    fn unknown_task_lists_known_names() {
        let err = load_task("nope", Path::new("/nonexistent")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown task `nope`"), "{msg}");
        assert!(
            msg.contains("gsm8k") && msg.contains("bbh/navigate"),
            "{msg}"
        );
    }

    #[test]
    fn names_cover_bbh_and_generators() {
        let names = task_names();
        assert!(names.contains(&"bbh/word_sorting".to_string()));
        assert!(names.contains(&"gen:coin_flip".to_string()));
        assert!(names.contains(&"humaneval_et".to_string()));
    }
}
