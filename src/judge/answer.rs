//! Judges for non-code answers: math (normalized or numerically equal), option letters, and
//! exact-match targets (BBH, generated word tasks).
//!
//! Extraction and normalization live in [`crate::tasks::extract`]; this module only decides.
//! In [`AnswerMode::Paper`] it reproduces the reference test-time rule: `norm(pred) ==
//! norm(gold)`, plus, for choice tasks, `norm(gold)` being a substring of `norm(pred)`.

use super::{Judge, JudgeItem, Verdict};
use crate::tasks::extract::{
    extract_answer, extract_choice, normalize_answer, normalize_exact, numeric_equal, AnswerMode,
};
use crate::tasks::{gold_letter, AnswerRule, Gold, Task, TaskKind};

/// Option letters assumed when a judge is built without a task.
pub const DEFAULT_LETTERS: &str = "ABCDEFGHIJ";

/// Exact-match golds that are one boolean-like word; a prediction that starts with the word
/// (`Yes, it is still heads up.`) matches.
const BOOLEAN_WORDS: [&str; 6] = ["yes", "no", "true", "false", "valid", "invalid"];

/// Judges one kind of answer task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerJudge {
    /// The task's kind (informational; the rule decides).
    pub kind: TaskKind,
    /// How prediction and gold are compared.
    pub rule: AnswerRule,
    /// Strict (default) or the reference's rules.
    pub mode: AnswerMode,
    /// Option letters a choice prediction may use.
    pub letters: String,
}

impl AnswerJudge {
    /// A judge for a kind: math → math rule, choice → choice rule over [`DEFAULT_LETTERS`],
    /// code → exact (code is normally judged by running tests, not here).
    pub fn new(kind: TaskKind, mode: AnswerMode) -> Self {
        let rule = match kind {
            TaskKind::Math => AnswerRule::Math,
            TaskKind::Choice => AnswerRule::Choice,
            TaskKind::Code => AnswerRule::Exact,
        };
        Self {
            kind,
            rule,
            mode,
            letters: DEFAULT_LETTERS.to_string(),
        }
    }

    /// The judge for a loaded task: its kind, rule and option letters.
    pub fn for_task(task: &Task, mode: AnswerMode) -> Self {
        let letters = if task.letters.is_empty() {
            DEFAULT_LETTERS.to_string()
        } else {
            task.letters.clone()
        };
        Self {
            kind: task.kind,
            rule: task.rule,
            mode,
            letters,
        }
    }

    /// Judges a raw model output against a gold answer. Never fails: a missing answer is an
    /// incorrect verdict with the reason.
    pub fn judge(&self, gold: &str, output: &str) -> Verdict {
        match (self.mode, self.rule) {
            (AnswerMode::Paper, rule) => paper(rule, gold, output),
            (AnswerMode::Strict, AnswerRule::Choice) => match gold_letter(gold) {
                Some(g) => self.choice(g, output),
                None => exact(gold, output),
            },
            (AnswerMode::Strict, AnswerRule::Math) => math(gold, output),
            (AnswerMode::Strict, AnswerRule::Exact) => exact(gold, output),
        }
    }

    fn choice(&self, gold: char, output: &str) -> Verdict {
        let mut letters = self.letters.clone();
        if !letters.contains(gold) {
            letters.push(gold);
        }
        match extract_choice(output, &letters) {
            Some(c) => verdict(
                c == gold,
                c.to_string(),
                format!("pred `{c}` vs gold `{gold}`"),
            ),
            None => no_answer(&format!("no option letter ({letters}) found")),
        }
    }
}

impl Judge for AnswerJudge {
    fn name(&self) -> &str {
        "exact"
    }

    /// Judges each item's full output (the judge does its own extraction, so `item.answer` is
    /// not consulted); code golds get an incorrect verdict naming the code judge.
    fn judge(&self, items: &[JudgeItem<'_>]) -> Vec<Verdict> {
        items
            .iter()
            .map(|item| match &item.example.gold {
                Gold::Answer(gold) => AnswerJudge::judge(self, gold, item.output),
                Gold::Code(_) => {
                    no_answer("a code example needs the code judge, not the answer judge")
                }
            })
            .collect()
    }
}

fn verdict(correct: bool, prediction: String, detail: String) -> Verdict {
    Verdict {
        correct,
        score: if correct { 1.0 } else { 0.0 },
        prediction,
        detail,
    }
}

fn no_answer(detail: &str) -> Verdict {
    Verdict {
        correct: false,
        score: 0.0,
        prediction: String::new(),
        detail: detail.to_string(),
    }
}

/// The reference rule (docs/design/algorithm.md §7): equal normalized strings; for choice tasks also gold ⊂ pred.
fn paper(rule: AnswerRule, gold: &str, output: &str) -> Verdict {
    let Some(pred) = extract_answer(output, AnswerMode::Paper) else {
        return no_answer("no answer found");
    };
    let (p, g) = (
        normalize_answer(&pred, AnswerMode::Paper),
        normalize_answer(gold, AnswerMode::Paper),
    );
    let equal = p == g;
    let contained = !equal && rule == AnswerRule::Choice && p.contains(&g);
    let how = if contained {
        "; gold is a substring of the prediction (paper rule)"
    } else {
        ""
    };
    let detail = format!("pred `{pred}` vs gold `{gold}` (normalized `{p}` vs `{g}`{how})");
    verdict(equal || contained, pred, detail)
}

fn math(gold: &str, output: &str) -> Verdict {
    let norm = |s: &str| normalize_answer(s, AnswerMode::Strict);
    compare(gold, output, norm, |_, p, g| {
        numeric_equal(p, g).then_some("; numerically equal")
    })
}

fn exact(gold: &str, output: &str) -> Verdict {
    compare(gold, output, normalize_exact, |pred, _, g| {
        let norm = |s: &str| normalize_answer(s, AnswerMode::Strict);
        if numeric_equal(&norm(pred), &norm(gold)) {
            Some("; numerically equal")
        } else if BOOLEAN_WORDS.contains(&g) && first_word(pred) == g {
            Some("; the prediction starts with the gold word")
        } else {
            None
        }
    })
}

/// The strict comparison shared by the math and exact rules: extract the answer, normalize
/// both sides with `norm`, accept equal forms, else whatever `also(pred, p, g)` accepts (its
/// reason goes into the detail).
fn compare(
    gold: &str,
    output: &str,
    norm: impl Fn(&str) -> String,
    also: impl Fn(&str, &str, &str) -> Option<&'static str>,
) -> Verdict {
    let Some(pred) = extract_answer(output, AnswerMode::Strict) else {
        return no_answer("no answer found");
    };
    let (p, g) = (norm(&pred), norm(gold));
    let (correct, how) = if p == g {
        (true, "")
    } else {
        also(&pred, &p, &g).map_or((false, ""), |how| (true, how))
    };
    let detail = format!("pred `{pred}` vs gold `{gold}` (normalized `{p}` vs `{g}`{how})");
    verdict(correct, pred, detail)
}

/// The first alphabetic word, lowercased (`**Yes**, because` → `yes`).
fn first_word(s: &str) -> String {
    s.split(|c: char| !c.is_alphabetic())
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(rule: AnswerRule) -> AnswerJudge {
        AnswerJudge {
            rule,
            ..AnswerJudge::new(TaskKind::Math, AnswerMode::Strict)
        }
    }

    fn paper(kind: TaskKind) -> AnswerJudge {
        AnswerJudge::new(kind, AnswerMode::Paper)
    }

    #[test]
    fn math_strict_equivalences() {
        let j = strict(AnswerRule::Math);
        let ok = |gold: &str, out: &str| j.judge(gold, out).correct;
        assert!(ok(
            "\\frac{3}{4}",
            "so the answer is <answer>\\frac{3}{4}</answer>"
        ));
        assert!(ok("\\frac{1}{2}", "Thus $\\boxed{\\dfrac{1}{2}}$."));
        assert!(ok("\\frac{1}{2}", "<answer>0.5</answer>"));
        assert!(ok("5", "<answer>x = 5</answer>"));
        assert!(ok("1000", "The answer is 1,000."));
        assert!(ok("18", "She makes \\$18 a day. <answer>\\$18</answer>"));
        assert!(ok("\\frac{\\sqrt{3}}{2}", "\\boxed{\\frac{\\sqrt{3}}{2}}"));
        assert!(ok(
            "(3,\\frac{\\pi}{2})",
            "<answer>\\left( 3, \\frac{\\pi}{2} \\right)</answer>"
        ));
        assert!(!ok("7", "<answer>8</answer>"));
        assert!(!ok("1000000001", "<answer>1000000000</answer>"));
    }

    #[test]
    fn math_verdict_details() {
        let j = strict(AnswerRule::Math);
        let v = j.judge("\\frac{1}{2}", "<answer>0.5</answer>");
        assert_eq!((v.score, v.prediction.as_str()), (1.0, "0.5"));
        assert!(v.detail.contains("numerically equal"), "{}", v.detail);
        let v = j.judge("3", "");
        assert!(!v.correct && v.detail == "no answer found" && v.prediction.is_empty());
    }

    #[test]
    fn math_paper_first_boxed_and_thousands_quirk() {
        let j = paper(TaskKind::Math);
        assert!(
            j.judge("4", "Case 1: \\boxed{4}; case 2: \\boxed{9}")
                .correct
        );
        assert!(
            !strict(AnswerRule::Math)
                .judge("4", "Case 1: \\boxed{4}; case 2: \\boxed{9}")
                .correct
        );
        assert!(
            j.judge("1,000", "<answer>0, 1</answer>").correct,
            "the reference's quirk"
        );
        assert!(!j.judge("\\frac{1}{2}", "<answer>0.5</answer>").correct);
    }

    #[test]
    fn choice_strict() {
        let j = AnswerJudge {
            letters: "ABCDE".into(),
            ..AnswerJudge::new(TaskKind::Choice, AnswerMode::Strict)
        };
        assert!(j.judge("B", "The correct option is (B).").correct);
        assert!(
            j.judge("(C)", "Let's think step by step. ... So the answer is (C).")
                .correct
        );
        let v = j.judge("A", "After comparing, <answer>D</answer>");
        assert!(!v.correct && v.prediction == "D", "{v:?}");
        let v = j.judge("A", "I could not finish the computation because");
        assert!(
            !v.correct && v.detail.starts_with("no option letter"),
            "{v:?}"
        );
    }

    #[test]
    fn choice_paper_is_lenient() {
        let j = paper(TaskKind::Choice);
        let v = j.judge("A", "<answer>The car takes about 5 minutes</answer>");
        assert!(v.correct, "gold `a` is a substring: {v:?}");
        assert!(v.detail.contains("substring"));
        assert!(
            !strict(AnswerRule::Choice)
                .judge("A", "<answer>The car takes about 5 minutes</answer>")
                .correct
        );
    }

    #[test]
    fn choice_with_non_letter_gold_is_exact() {
        let j = strict(AnswerRule::Choice);
        assert!(
            j.judge("Monsters, Inc", "So the answer is Monsters, Inc.")
                .correct
        );
    }

    #[test]
    fn exact_targets() {
        let j = strict(AnswerRule::Exact);
        let ok = |gold: &str, out: &str| j.judge(gold, out).correct;
        assert!(ok(
            "Yes",
            "Let's think step by step.\nSo the answer is yes."
        ));
        assert!(ok(
            "False",
            "not ( True ) is False. So the answer is **False**."
        ));
        assert!(ok(
            "yes",
            "<answer>Yes, the coin is still heads up.</answer>"
        ));
        assert!(!ok("no", "<answer>Not sure</answer>"));
        assert!(ok("valid", "<answer>valid</answer>"));
        assert!(!ok("valid", "<answer>invalid</answer>"));
        assert!(ok(") ] >", "So the answer is ) ] >."));
        assert!(ok("-11520", "\\boxed{-11,520}"));
        assert!(ok("8", "<answer>8.0</answer>"));
        assert!(ok("nkay", "<answer>nkay</answer>"));
        assert!(!ok("nkay", "<answer>nka</answer>"));
    }

    #[test]
    fn for_task_uses_task_letters() {
        let task = Task {
            name: "t".into(),
            kind: TaskKind::Choice,
            rule: AnswerRule::Choice,
            letters: "ABCD".into(),
            examples: Vec::new(),
            protected: false,
        };
        let j = AnswerJudge::for_task(&task, AnswerMode::Strict);
        assert_eq!(j.letters, "ABCD");
        assert!(!j.judge("A", "The answer is E").correct);
        assert!(
            j.judge("E", "The answer is E").correct,
            "the gold letter is always allowed"
        );
    }
}
