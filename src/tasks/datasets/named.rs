//! The named benchmarks under the data directory (see `data/README.md`): file locations,
//! per-dataset fields, and the reference's test-time conventions (MBPP naming note, HumanEval-ET
//! asserts, GSM8K `####` answers, BBH targets).

use super::{entry_point_from_tests, json_records, json_value, map_jsonl, map_records, task};
use crate::tasks::{gold_letter, AnswerRule, CodeTests, Example, Gold, Task, TaskError, TaskKind};
use std::path::{Path, PathBuf};

/// Named dataset tasks (canonical names; `agi` and `humaneval-et` are aliases).
pub(crate) const NAMED: &[&str] = &[
    "math",
    "agieval_math",
    "aqua",
    "gpqa",
    "mbpp",
    "humaneval",
    "humaneval_et",
    "gsm8k",
    "svamp",
];

/// The 27 BIG-Bench Hard tasks, loadable as `bbh/<task>`.
pub const BBH_TASKS: [&str; 27] = [
    "boolean_expressions",
    "causal_judgement",
    "date_understanding",
    "disambiguation_qa",
    "dyck_languages",
    "formal_fallacies",
    "geometric_shapes",
    "hyperbaton",
    "logical_deduction_five_objects",
    "logical_deduction_seven_objects",
    "logical_deduction_three_objects",
    "movie_recommendation",
    "multistep_arithmetic_two",
    "navigate",
    "object_counting",
    "penguins_in_a_table",
    "reasoning_about_colored_objects",
    "ruin_names",
    "salient_translation_error_detection",
    "snarks",
    "sports_understanding",
    "temporal_sequences",
    "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects",
    "tracking_shuffled_objects_three_objects",
    "web_of_lies",
    "word_sorting",
];

/// The canonical name of an alias (`agi` → `agieval_math`, `humaneval-et` → `humaneval_et`).
fn canonical(name: &str) -> &str {
    match name {
        "agi" => "agieval_math",
        "humaneval-et" => "humaneval_et",
        other => other,
    }
}

/// The file a named dataset task reads (aliases accepted); `None` for names that are not
/// dataset tasks.
pub fn dataset_path(name: &str, data_dir: &Path) -> Option<PathBuf> {
    let rel = match canonical(name) {
        "math" => "math-500/math_500.jsonl".to_string(),
        "agieval_math" => "AGIEval_MATH/test.jsonl".into(),
        "aqua" => "aqua/aqua.jsonl".into(),
        "gpqa" => "gpqa/gpqa_diamond.jsonl.gz".into(),
        "mbpp" => "mbpp/sanitized-mbpp.jsonl".into(),
        "humaneval" => "humaneval/HumanEval.jsonl.gz".into(),
        "humaneval_et" => "humaneval-et/HumanEval_ET.jsonl".into(),
        "gsm8k" => "gsm8k/test.jsonl".into(),
        "svamp" => "svamp/SVAMP.json".into(),
        other => match other.strip_prefix("bbh/") {
            Some(t) if BBH_TASKS.contains(&t) => format!("bbh/{t}.json"),
            _ => return None,
        },
    };
    Some(data_dir.join(rel))
}

/// Loads a named dataset task from `data_dir`.
pub(crate) fn load_named(name: &str, data_dir: &Path) -> Result<Task, TaskError> {
    let canonical = canonical(name);
    let Some(path) = dataset_path(canonical, data_dir) else {
        let known = crate::tasks::task_names().join(", ");
        return Err(TaskError::UnknownTask {
            name: name.to_string(),
            known,
        });
    };
    check_file(canonical, &path, data_dir)?;
    match canonical {
        "math" | "agieval_math" => answer_task(canonical, TaskKind::Math, &path, "problem"),
        "aqua" => answer_task(canonical, TaskKind::Choice, &path, "problem"),
        "gpqa" => answer_task(canonical, TaskKind::Choice, &path, "question").map(|mut t| {
            t.protected = true;
            t
        }),
        "mbpp" => load_mbpp(&path),
        "humaneval_et" => load_humaneval(canonical, &path, true),
        "humaneval" => load_humaneval(canonical, &path, false),
        "gsm8k" => load_gsm8k(&path),
        "svamp" => load_svamp(&path),
        _ => load_bbh(canonical, &path),
    }
}

/// A named benchmark's file exists and is the file maspo knows (its sha256 in
/// [`super::checksums::CHECKSUMS`]); the errors say where the data was looked for, or where to
/// get a file maspo does not ship.
fn check_file(canonical: &str, path: &Path, data_dir: &Path) -> Result<(), TaskError> {
    if !path.is_file() {
        return Err(TaskError::MissingFile {
            path: path.to_path_buf(),
            help: missing_help(canonical, data_dir),
        });
    }
    let rel = path
        .strip_prefix(data_dir)
        .map(|r| r.to_string_lossy().replace('\\', "/"))
        .unwrap_or_default();
    let Some((_, expected)) = super::checksums::CHECKSUMS.iter().find(|(p, _)| *p == rel) else {
        return Ok(());
    };
    let actual = crate::fsutil::sha256_file(path).map_err(|source| TaskError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if actual != *expected {
        return Err(TaskError::Checksum {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

/// How to fix a missing named dataset file.
fn missing_help(canonical: &str, data_dir: &Path) -> String {
    if canonical == "humaneval_et" {
        return format!(
            "HumanEval-ET is not shipped with maspo (its extra tests carry no licence): get HumanEval_ET.jsonl \
             (sha256 {HUMANEVAL_ET_SHA256}) from the MASPO repository (wangzx1219/MASPO, dataset/humaneval-et/) \
             or the Hugging Face dataset dz1/CodeScore-HumanEval-ET, put it at DIR/humaneval-et/HumanEval_ET.jsonl \
             beside a copy of maspo's data/ folder and pass --data-dir DIR (or set MASPO_DATA_DIR); see data/README.md"
        );
    }
    let from_env = std::env::var_os("MASPO_DATA_DIR").filter(|v| !v.is_empty());
    if from_env.is_some()
        || !crate::tasks::data_dir_candidates()
            .iter()
            .any(|c| c == data_dir)
    {
        return format!(
            "the data directory {} does not hold it (it comes from --data-dir, MASPO_DATA_DIR or the config's data_dir; point it at a folder laid out like maspo's data/)",
            data_dir.display()
        );
    }
    let searched: Vec<String> = crate::tasks::data_dir_candidates()
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    format!(
        "no data directory found (searched, in order: $MASPO_DATA_DIR (unset), {}); pass --data-dir DIR or set MASPO_DATA_DIR to a folder laid out like maspo's data/",
        searched.join(", ")
    )
}

/// The sha256 of HumanEval-ET's file (not shipped; see `data/README.md`).
pub const HUMANEVAL_ET_SHA256: &str =
    "07dcbc5137a21c51d7f702e35e754fbe4be2502087fc4f6be7058626efe88a69";

/// A JSONL task with a question field and an `answer` field (MATH, AGIEval, AQuA, GPQA).
fn answer_task(name: &str, kind: TaskKind, path: &Path, question: &str) -> Result<Task, TaskError> {
    let examples = map_jsonl(path, |row, i| {
        Ok(Example {
            id: row.id(None, i)?,
            question: row.str(question)?.to_string(),
            gold: Gold::Answer(row.scalar("answer")?),
        })
    })?;
    Ok(task(name, kind, None, examples))
}

/// MBPP sanitized: tests from `test_list`, imports from `test_imports`, the entry point found in
/// the tests, and the reference's test-time naming note appended to the prompt (`run_maspo.py`).
fn load_mbpp(path: &Path) -> Result<Task, TaskError> {
    let examples = map_jsonl(path, |row, i| {
        let asserts = row.strings("test_list")?;
        let entry_point = entry_point_from_tests(&asserts);
        let mut question = row.str("prompt")?.to_string();
        if let Some(f) = &entry_point {
            question.push_str(&format!("\n\nNote: The function should be named '{f}'."));
        }
        let imports = row.strings("test_imports")?;
        let tests = CodeTests {
            asserts,
            imports,
            entry_point,
        };
        Ok(Example {
            id: row.id(None, i)?,
            question,
            gold: Gold::Code(tests),
        })
    })?;
    Ok(task("mbpp", TaskKind::Code, None, examples))
}

/// HumanEval-ET (`expanded`: the dataset's `test_list` asserts) or original HumanEval (the `test`
/// source, defining `check(candidate)`, goes last in `imports`; the one assert calls it). The
/// question is the prompt; the prompt's import lines become imports.
fn load_humaneval(name: &str, path: &Path, expanded: bool) -> Result<Task, TaskError> {
    let examples = map_jsonl(path, |row, i| {
        let prompt = row.str("prompt")?;
        let entry = row.str("entry_point")?.to_string();
        let mut imports = prompt_imports(prompt);
        let asserts = if expanded {
            row.strings("test_list")?
        } else {
            imports.push(row.str("test")?.to_string());
            vec![format!("check({entry})")]
        };
        if asserts.is_empty() {
            return Err(row.err("no tests (`test_list` is empty)"));
        }
        let tests = CodeTests {
            asserts,
            imports,
            entry_point: Some(entry),
        };
        Ok(Example {
            id: row.id(None, i)?,
            question: prompt.to_string(),
            gold: Gold::Code(tests),
        })
    })?;
    Ok(task(name, TaskKind::Code, None, examples))
}

/// GSM8K: the gold is the integer after `####`, commas removed.
fn load_gsm8k(path: &Path) -> Result<Task, TaskError> {
    let examples = map_jsonl(path, |row, i| {
        let answer = row.str("answer")?;
        let (_, last) = answer
            .rsplit_once("####")
            .ok_or_else(|| row.err("field `answer` has no `#### <number>` line"))?;
        Ok(Example {
            id: row.id(None, i)?,
            question: row.str("question")?.to_string(),
            gold: Gold::Answer(last.trim().replace(',', "")),
        })
    })?;
    Ok(task("gsm8k", TaskKind::Math, None, examples))
}

/// SVAMP: `Body + " " + Question`, gold the number without a trailing `.0`, id `ID`.
fn load_svamp(path: &Path) -> Result<Task, TaskError> {
    let value = json_value(path)?;
    let items = json_records(path, &value, None)?;
    let examples = map_records(path, items, |row, _| {
        Ok(Example {
            id: row.scalar("ID")?,
            question: format!(
                "{} {}",
                row.str("Body")?.trim(),
                row.str("Question")?.trim()
            ),
            gold: Gold::Answer(row.scalar("Answer")?),
        })
    })?;
    Ok(task("svamp", TaskKind::Math, None, examples))
}

/// One BBH task: a choice task when most targets are `(X)` letters (the few other targets of
/// `movie_recommendation` and `ruin_names` are judged by exact match), else kind math with the
/// exact-match rule.
fn load_bbh(name: &str, path: &Path) -> Result<Task, TaskError> {
    let value = json_value(path)?;
    let items = json_records(path, &value, Some("examples"))?;
    let examples = map_records(path, items, |row, i| {
        Ok(Example {
            id: i.to_string(),
            question: row.str("input")?.to_string(),
            gold: Gold::Answer(row.str("target")?.to_string()),
        })
    })?;
    let letters = examples
        .iter()
        .filter(|e| matches!(&e.gold, Gold::Answer(g) if gold_letter(g).is_some()))
        .count();
    Ok(if 2 * letters > examples.len() {
        task(name, TaskKind::Choice, None, examples)
    } else {
        task(name, TaskKind::Math, Some(AnswerRule::Exact), examples)
    })
}

/// The top-level `import …` / `from … import …` lines of a prompt.
pub fn prompt_imports(prompt: &str) -> Vec<String> {
    prompt
        .lines()
        .filter(|l| l.starts_with("import ") || (l.starts_with("from ") && l.contains(" import ")))
        .map(|l| l.trim_end().to_string())
        .collect()
}
