//! `TaskExtractor`: the MAS runtime's answer extraction for a task (the terminal agent's
//! message and vote keys): an option letter for choice tasks, the normalized answer for math and
//! exact-match tasks, the code (comments and blank lines ignored for votes) for code tasks.

use crate::mas::AnswerExtractor;
use crate::tasks::extract::{extract_answer, extract_choice, extract_code, normalize_answer};
use crate::tasks::{AnswerMode, AnswerRule, Task, TaskKind};

/// Extraction rules of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskExtractor {
    kind: TaskKind,
    rule: AnswerRule,
    mode: AnswerMode,
    letters: String,
}

impl TaskExtractor {
    /// The extractor for a loaded task.
    pub fn new(task: &Task, mode: AnswerMode) -> Self {
        Self {
            kind: task.kind,
            rule: task.rule,
            mode,
            letters: if task.letters.is_empty() {
                crate::judge::answer::DEFAULT_LETTERS.into()
            } else {
                task.letters.clone()
            },
        }
    }
}

impl AnswerExtractor for TaskExtractor {
    fn extract(&self, raw: &str) -> String {
        match (self.kind, self.rule) {
            (TaskKind::Code, _) => extract_code(raw),
            (_, AnswerRule::Choice) if self.mode == AnswerMode::Strict => {
                extract_choice(raw, &self.letters)
                    .map(String::from)
                    .unwrap_or_default()
            }
            _ => extract_answer(raw, self.mode).unwrap_or_default(),
        }
    }

    fn vote_key(&self, answer: &str) -> String {
        match self.kind {
            TaskKind::Code => normalize_code(answer),
            _ => normalize_answer(answer, self.mode),
        }
    }
}

/// Code with comments, trailing spaces and blank lines removed (the reference's vote key).
pub fn normalize_code(code: &str) -> String {
    code.lines()
        .map(|l| match l.find('#') {
            // A `#` inside a string literal is rare in short functions; the key only groups
            // votes, so an occasional miss costs nothing.
            Some(at) => &l[..at],
            None => l,
        })
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_vote_key_ignores_comments_and_blank_lines() {
        assert_eq!(
            normalize_code("def f(x):  # double\n\n    return 2*x   \n"),
            normalize_code("def f(x):\n    return 2*x")
        );
    }
}
