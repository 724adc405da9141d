//! Dataset loading: reading `.jsonl`, `.json` and gzip-compressed (`.gz`) files into
//! [`Example`]s with precise errors, and generic JSONL files with a [`FieldMap`]. The named
//! benchmarks and their conventions are in the `named` submodule.
//!
//! GPQA stays compressed on disk and its text only ever lives in memory. Every error names the
//! file and the line or record.

mod checksums;
mod named;

pub use named::{dataset_path, prompt_imports, BBH_TASKS};
pub(crate) use named::{load_named, NAMED};

use super::{choice_letters, AnswerRule, CodeTests, Example, Gold, Task, TaskError, TaskKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::Read;
use std::path::Path;

/// A JSON object of a dataset file.
type Object = Map<String, Value>;

/// Names the reference's function-name finder never takes for the entry point (`utils.py`).
#[rustfmt::skip]
const BUILTIN_SKIP: &[&str] = &[
    "assert", "math", "set", "list", "dict", "tuple", "str", "int", "float", "len", "range",
    "enumerate", "zip", "map", "filter", "sorted", "sum", "max", "min", "abs", "round", "all",
    "any", "isinstance", "type", "print", "input", "open", "isclose", "sqrt", "pow", "ceil",
    "floor",
];

/// Which fields of a generic JSONL dataset hold what. Usable as a TOML table; every field has a
/// default (`question = "question"`, `answer = "answer"`, `kind = "math"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldMap {
    /// Field with the problem text.
    pub question: String,
    /// Field with the gold answer (string or number); required unless `kind` is code.
    pub answer: Option<String>,
    /// Field with the tests (a list of assert lines, or one string of lines); required for code.
    pub tests: Option<String>,
    /// Field with the example id; when unset, `unique_id`, then `task_id`, then the row index.
    pub id: Option<String>,
    /// Answer kind.
    pub kind: TaskKind,
    /// Comparison rule; when unset it follows `kind` (math → math, choice → choice).
    pub rule: Option<AnswerRule>,
    /// Field with a list of import lines for code tasks.
    pub imports: Option<String>,
    /// Field with the function name for code tasks; when unset it is found from the tests.
    pub entry_point: Option<String>,
}

impl Default for FieldMap {
    fn default() -> Self {
        Self {
            question: "question".into(),
            answer: Some("answer".into()),
            tests: None,
            id: None,
            kind: TaskKind::Math,
            rule: None,
            imports: None,
            entry_point: None,
        }
    }
}

/// Where a record sits in its file, for error messages.
#[derive(Clone, Copy)]
enum Loc {
    /// 1-based JSONL line.
    Line(usize),
    /// 0-based JSON array index.
    Record(usize),
}

/// One JSON object of a dataset file, with enough context to report errors.
struct Row<'a> {
    path: &'a Path,
    loc: Loc,
    obj: &'a Object,
}

impl Row<'_> {
    fn err(&self, reason: impl Into<String>) -> TaskError {
        let (path, reason) = (self.path.to_path_buf(), reason.into());
        match self.loc {
            Loc::Line(line) => TaskError::MalformedLine { path, line, reason },
            Loc::Record(index) => TaskError::MalformedRecord {
                path,
                index,
                reason,
            },
        }
    }

    /// A required string field.
    fn str(&self, key: &str) -> Result<&str, TaskError> {
        match self.obj.get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(self.err(format!(
                "field `{key}` is {}, expected a string",
                kind_of(other)
            ))),
            None => Err(self.err(format!("missing field `{key}`"))),
        }
    }

    /// A required string-or-number field, as text (numbers without a trailing `.0`).
    fn scalar(&self, key: &str) -> Result<String, TaskError> {
        match self.obj.get(key) {
            Some(v) => scalar_text(v).ok_or_else(|| {
                self.err(format!(
                    "field `{key}` is {}, expected a string or number",
                    kind_of(v)
                ))
            }),
            None => Err(self.err(format!("missing field `{key}`"))),
        }
    }

    /// A list-of-strings field (a single string counts as its lines); missing → empty.
    fn strings(&self, key: &str) -> Result<Vec<String>, TaskError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(s
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(String::from)
                .collect()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.err(format!(
                        "field `{key}` holds {}, expected strings",
                        kind_of(other)
                    ))),
                })
                .collect(),
            Some(other) => Err(self.err(format!(
                "field `{key}` is {}, expected a list of strings",
                kind_of(other)
            ))),
        }
    }

    /// The example id: `key` if given, else `unique_id`, `task_id`, else the row index.
    fn id(&self, key: Option<&str>, index: usize) -> Result<String, TaskError> {
        if let Some(key) = key {
            return self.scalar(key);
        }
        for key in ["unique_id", "task_id"] {
            if let Some(v) = self.obj.get(key).and_then(scalar_text) {
                return Ok(v);
            }
        }
        Ok(index.to_string())
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A string, or a number written without a trailing `.0` (`51.0` → `51`), or a Python-style bool.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.into()),
        Value::Number(n) => Some(match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        }),
        _ => None,
    }
}

/// Reads a whole file as UTF-8, gunzipping `.gz` files.
fn read_text(path: &Path) -> Result<String, TaskError> {
    let bytes = std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => TaskError::MissingFile {
            path: path.to_path_buf(),
            help: "check the path (a relative `jsonl:` path is tried as given, then under the data directory)".into(),
        },
        _ => TaskError::Io {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let io = |source| TaskError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.extension().is_some_and(|e| e == "gz") {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .map_err(io)?;
        Ok(text)
    } else {
        String::from_utf8(bytes)
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
    }
}

/// The objects of a JSONL file with their 1-based line numbers (blank lines skipped).
fn jsonl_objects(path: &Path) -> Result<Vec<(usize, Object)>, TaskError> {
    let text = read_text(path)?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| TaskError::MalformedLine {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(obj)) => rows.push((i + 1, obj)),
            Ok(other) => {
                return Err(bad(format!(
                    "expected a JSON object, found {}",
                    kind_of(&other)
                )))
            }
            Err(e) => return Err(bad(format!("invalid JSON: {e}"))),
        }
    }
    if rows.is_empty() {
        return Err(TaskError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(rows)
}

/// A whole-file JSON value.
fn json_value(path: &Path) -> Result<Value, TaskError> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| TaskError::MalformedLine {
        path: path.to_path_buf(),
        line: e.line(),
        reason: format!("invalid JSON: {e}"),
    })
}

/// Applies `f` to each JSONL row (with its index) and collects the examples.
fn map_jsonl(
    path: &Path,
    mut f: impl FnMut(&Row, usize) -> Result<Example, TaskError>,
) -> Result<Vec<Example>, TaskError> {
    let rows = jsonl_objects(path)?;
    rows.iter()
        .enumerate()
        .map(|(index, (line, obj))| {
            f(
                &Row {
                    path,
                    loc: Loc::Line(*line),
                    obj,
                },
                index,
            )
        })
        .collect()
}

/// Whether a dataset file must not leave plain-text copies: gzip-compressed or GPQA.
pub fn is_protected(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
        || path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().to_ascii_lowercase().contains("gpqa"))
}

/// Builds a task, deriving the rule and (for choice tasks) the letters.
fn task(name: &str, kind: TaskKind, rule: Option<AnswerRule>, examples: Vec<Example>) -> Task {
    let rule = rule.unwrap_or(match kind {
        TaskKind::Math => AnswerRule::Math,
        TaskKind::Choice => AnswerRule::Choice,
        TaskKind::Code => AnswerRule::Exact,
    });
    let letters = if kind == TaskKind::Choice {
        choice_letters(&examples)
    } else {
        String::new()
    };
    Task {
        name: name.to_string(),
        kind,
        rule,
        letters,
        examples,
        protected: false,
    }
}

/// The objects of a JSON array (optionally under `key` of a top-level object).
fn json_records<'a>(
    path: &Path,
    value: &'a Value,
    key: Option<&str>,
) -> Result<&'a Vec<Value>, TaskError> {
    let list = match key {
        Some(k) => value.get(k),
        None => Some(value),
    };
    match list {
        Some(Value::Array(items)) if !items.is_empty() => Ok(items),
        Some(Value::Array(_)) => Err(TaskError::Empty {
            path: path.to_path_buf(),
        }),
        _ => Err(TaskError::MalformedLine {
            path: path.to_path_buf(),
            line: 1,
            reason: format!(
                "expected a JSON array{}",
                key.map(|k| format!(" under `{k}`")).unwrap_or_default()
            ),
        }),
    }
}

/// Applies `f` to each object of a JSON array.
fn map_records(
    path: &Path,
    items: &[Value],
    f: impl Fn(&Row, usize) -> Result<Example, TaskError>,
) -> Result<Vec<Example>, TaskError> {
    let mut out = Vec::with_capacity(items.len());
    for (index, v) in items.iter().enumerate() {
        let Some(obj) = v.as_object() else {
            let reason = format!("expected an object, found {}", kind_of(v));
            return Err(TaskError::MalformedRecord {
                path: path.to_path_buf(),
                index,
                reason,
            });
        };
        out.push(f(
            &Row {
                path,
                loc: Loc::Record(index),
                obj,
            },
            index,
        )?);
    }
    Ok(out)
}

/// Loads a generic JSONL (or `.jsonl.gz`) dataset through a field mapping. The task is named
/// `jsonl:<path>`.
pub fn load_jsonl(path: &Path, map: &FieldMap) -> Result<Task, TaskError> {
    let bad = |reason: &str| TaskError::BadFieldMap {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let code = map.kind == TaskKind::Code;
    if code && map.tests.is_none() {
        return Err(bad(
            "kind `code` needs `tests`, the field with the list of assert lines",
        ));
    }
    if !code && map.answer.is_none() {
        return Err(bad(
            "a math or choice task needs `answer`, the field with the gold answer",
        ));
    }
    let examples = map_jsonl(path, |row, i| {
        let gold = match (&map.tests, &map.answer) {
            (Some(tests), _) if code => Gold::Code(code_tests(row, tests, map)?),
            (_, Some(answer)) => Gold::Answer(row.scalar(answer)?),
            _ => return Err(row.err("no gold field")),
        };
        Ok(Example {
            id: row.id(map.id.as_deref(), i)?,
            question: row.str(&map.question)?.to_string(),
            gold,
        })
    })?;
    let mut t = task(
        &format!("jsonl:{}", path.display()),
        map.kind,
        map.rule,
        examples,
    );
    // A file kept compressed (as GPQA is) is treated as protected.
    t.protected = is_protected(path);
    Ok(t)
}

/// The code gold of one generic row.
fn code_tests(row: &Row, tests: &str, map: &FieldMap) -> Result<CodeTests, TaskError> {
    let asserts = row.strings(tests)?;
    let imports = match &map.imports {
        Some(key) => row.strings(key)?,
        None => Vec::new(),
    };
    let entry_point = match &map.entry_point {
        Some(key) => Some(row.str(key)?.to_string()),
        None => entry_point_from_tests(&asserts),
    };
    Ok(CodeTests {
        asserts,
        imports,
        entry_point,
    })
}

/// The function the tests call: the most frequent identifier followed by `(` that is not a
/// builtin (ties: the first seen), as the reference's `extract_function_name_from_tests`. When
/// every called name is a builtin (MBPP 126 names its function `sum`), the most frequent called
/// name other than `assert`, where the reference gives up.
pub fn entry_point_from_tests(tests: &[String]) -> Option<String> {
    most_called(tests, BUILTIN_SKIP).or_else(|| most_called(tests, &["assert"]))
}

fn most_called(tests: &[String], skip: &[&str]) -> Option<String> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for name in tests.iter().flat_map(|t| called_names(t)) {
        if skip.contains(&name) {
            continue;
        }
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name, 1)),
        }
    }
    let mut best: Option<(&str, usize)> = None;
    for (name, c) in counts {
        if best.is_none_or(|(_, b)| c > b) {
            best = Some((name, c));
        }
    }
    best.map(|(n, _)| n.to_string())
}

/// Identifiers directly followed by optional whitespace and `(` (regex `\b([a-zA-Z_]\w*)\s*\(`).
fn called_names(line: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let byte_at = |k: usize| chars.get(k).map_or(line.len(), |(b, _)| *b);
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].1;
        let boundary = i == 0 || !is_word(chars[i - 1].1);
        if !(boundary && (c.is_ascii_alphabetic() || c == '_')) {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < chars.len() && is_word(chars[j].1) {
            j += 1;
        }
        let mut k = j;
        while k < chars.len() && chars[k].1.is_whitespace() {
            k += 1;
        }
        if k < chars.len() && chars[k].1 == '(' {
            out.push(&line[chars[i].0..byte_at(j)]);
            i = k + 1;
        } else {
            i = j;
        }
    }
    out
}
