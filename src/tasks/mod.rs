//! Benchmark tasks: loading datasets from the data directory into [`Example`]s, seeded
//! generated tasks, and deterministic splits.
//!
//! Owns dataset parsing and the shape of an example. It must not judge answers (see
//! [`crate::judge`]) nor know about agents (see [`crate::mas`]).

use serde::{Deserialize, Serialize};

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
    /// Single-line `assert` statements; each is run and reported on its own.
    pub asserts: Vec<String>,
    /// Import lines placed before the candidate code (the dataset's test imports and the import
    /// lines of the prompt).
    pub imports: Vec<String>,
    /// The function the tests call, when known.
    pub entry_point: Option<String>,
}
