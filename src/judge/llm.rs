//! The LLM judge: asks a model whether a solution's final answer matches the gold answer,
//! batched through the engine (greedy). An alternative to string matching for free-form answers.

use super::{Judge, JudgeItem, Verdict};
use crate::engine::chat_template::Message;
use crate::engine::GenRequest;
use crate::mas::LanguageModel;
use crate::tasks::{Gold, TaskKind};

/// Correct/incorrect against the gold answer, decided by a model.
pub struct LlmJudge<'a> {
    lm: &'a dyn LanguageModel,
    kind: TaskKind,
}

impl<'a> LlmJudge<'a> {
    /// A judge using `lm` for a task of `kind`.
    pub fn new(lm: &'a dyn LanguageModel, kind: TaskKind) -> Self {
        Self { lm, kind }
    }

    fn prompt(&self, item: &JudgeItem<'_>, gold: &str) -> String {
        let what = match self.kind {
            TaskKind::Math => "math problem",
            TaskKind::Choice => "multiple-choice question",
            TaskKind::Code => "programming task",
        };
        format!(
            "You grade answers. Decide whether the candidate solution's final answer to the {what} below is equivalent to the reference answer. Ignore the reasoning; only the final answer counts.\n\nQuestion:\n{}\n\nReference answer: {gold}\n\nCandidate solution:\n{}\n\nReply with one word: True if the final answer matches the reference, False otherwise.",
            item.example.question, item.output
        )
    }
}

/// The first `true`/`false` word of a reply (also `correct`/`incorrect`, `yes`/`no`).
pub fn parse_verdict(reply: &str) -> Option<bool> {
    reply
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .find_map(|w| match w.to_ascii_lowercase().as_str() {
            "true" | "correct" | "yes" => Some(true),
            "false" | "incorrect" | "no" | "wrong" => Some(false),
            _ => None,
        })
}

impl Judge for LlmJudge<'_> {
    fn name(&self) -> &str {
        "llm"
    }

    fn judge(&self, items: &[JudgeItem<'_>]) -> Vec<Verdict> {
        let golds: Vec<Option<&str>> = items
            .iter()
            .map(|it| match &it.example.gold {
                Gold::Answer(a) => Some(a.as_str()),
                Gold::Code(_) => None,
            })
            .collect();
        let requests: Vec<GenRequest> = items
            .iter()
            .zip(&golds)
            .filter_map(|(it, g)| {
                g.map(|g| GenRequest::chat(vec![Message::user(self.prompt(it, g))], 8))
            })
            .collect();
        let mut replies = self.lm.generate(&requests, &mut |_| {}).into_iter();
        items
            .iter()
            .zip(golds)
            .map(|(it, gold)| {
                let Some(gold) = gold else {
                    return fail(it, "the LLM judge needs a reference answer; code tasks are judged by running tests".into());
                };
                match replies.next() {
                    Some(Ok(c)) => match parse_verdict(&c.text) {
                        Some(ok) => Verdict {
                            correct: ok,
                            score: f64::from(u8::from(ok)),
                            prediction: it.answer.to_string(),
                            detail: format!("llm judge said `{}` (gold `{gold}`)", c.text.trim()),
                        },
                        None => fail(it, format!("llm judge reply has no verdict: `{}`", c.text.trim())),
                    },
                    Some(Err(e)) => fail(it, format!("llm judge call failed: {e}")),
                    None => fail(it, "llm judge returned too few replies".into()),
                }
            })
            .collect()
    }
}

fn fail(it: &JudgeItem<'_>, detail: String) -> Verdict {
    Verdict {
        correct: false,
        score: 0.0,
        prediction: it.answer.to_string(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Completion, EngineError, StopReason};
    use crate::tasks::Example;

    /// Replies in turn with the given texts (one per request).
    struct Replies(Vec<&'static str>);

    impl LanguageModel for Replies {
        fn generate(
            &self,
            requests: &[GenRequest],
            _: &mut dyn FnMut(usize),
        ) -> Vec<Result<Completion, EngineError>> {
            requests
                .iter()
                .zip(&self.0)
                .map(|(_, t)| {
                    Ok(Completion {
                        text: t.to_string(),
                        token_ids: vec![1],
                        prompt_tokens: 1,
                        stop_reason: StopReason::EndOfTurn,
                        reused_prompt_tokens: 0,
                        from_cache: false,
                        logprobs: None,
                        remote_tokens: None,
                    })
                })
                .collect()
        }
        fn describe(&self) -> String {
            "replies".into()
        }
    }

    #[test]
    fn verdicts_follow_the_replies_and_missing_ones_fail() {
        let ex = |g: &str| Example {
            id: g.into(),
            question: "q".into(),
            gold: Gold::Answer(g.into()),
        };
        let exs = [ex("1"), ex("2"), ex("3"), ex("4")];
        let lm = Replies(vec!["True", "no, it is wrong", "maybe"]);
        let judge = LlmJudge::new(&lm, TaskKind::Math);
        let items: Vec<JudgeItem> = exs
            .iter()
            .map(|e| JudgeItem {
                example: e,
                output: "x",
                answer: "x",
            })
            .collect();
        let v = Judge::judge(&judge, &items);
        assert!(v[0].correct && v[0].score == 1.0);
        assert!(!v[1].correct && v[1].detail.starts_with("llm judge said"));
        assert!(!v[2].correct && v[2].detail.contains("no verdict"));
        assert!(!v[3].correct && v[3].detail.contains("too few replies"));
    }

    #[test]
    fn verdict_words() {
        assert_eq!(parse_verdict("True"), Some(true));
        assert_eq!(parse_verdict(" false."), Some(false));
        assert_eq!(parse_verdict("The answer is correct"), Some(true));
        assert_eq!(parse_verdict("hmm"), None);
        assert_eq!(parse_verdict("Incorrect, because"), Some(false));
    }
}
