//! The optimizer's own prompts, written for maspo to the purposes in docs/design/algorithm.md §6: the mutator's
//! meta-prompt (role, traces, requirements, current prompt → a rewritten prompt in `<prompt>`
//! tags), the three pairwise judge prompts (role-aware terminal, intermediate, final answer) per
//! task kind, and the parsers of their replies.

use crate::mas::seeds::answer_format;
use crate::tasks::TaskKind;

/// Characters of one agent output shown to the mutator or a judge; longer outputs keep their
/// head and tail (the answer is usually at the end).
pub const MAX_SHOWN_CHARS: usize = 2400;

/// The task requirement the optimized system must meet (the proposal and judge prompts quote it).
pub fn requirement(kind: TaskKind) -> String {
    let how = match kind {
        TaskKind::Code => "Reason briefly about the approach, then give one complete Python function. No exception handling, input validation or type hints the task does not ask for.",
        TaskKind::Choice => "Reason step by step, then choose exactly one option.",
        TaskKind::Math => "Reason step by step and state the final answer in its simplest canonical form.",
    };
    format!("{how} {}", answer_format(kind))
}

/// Shortens `text` to [`MAX_SHOWN_CHARS`] (head and tail kept).
pub fn shown(text: &str) -> String {
    let n = text.chars().count();
    if n <= MAX_SHOWN_CHARS {
        return text.to_string();
    }
    let half = MAX_SHOWN_CHARS / 2;
    let head: String = text.chars().take(half).collect();
    let tail: String = text.chars().skip(n - half).collect();
    format!("{head}\n[… {} characters omitted …]\n{tail}", n - 2 * half)
}

/// `text` cut to `max` characters (an ellipsis marks the cut), on one line.
pub fn shown_short(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let head: String = one_line.chars().take(max).collect();
    format!("{head}…")
}

/// One trace shown to the mutator.
#[derive(Debug, Clone)]
pub struct Sample<'a> {
    /// The question.
    pub question: &'a str,
    /// What the agent received from its predecessors ("" for source agents).
    pub context: &'a str,
    /// The agent's full output.
    pub output: &'a str,
    /// With `labels`: whether the team's final answer to this problem was right by the gold
    /// answer, and what the gold answer is (`None`: label-free, as in the paper).
    pub result: Option<String>,
}

/// Everything the mutator's meta-prompt shows.
#[derive(Debug, Clone)]
pub struct ProposalInput<'a> {
    /// Task kind.
    pub kind: TaskKind,
    /// The agent's role type.
    pub role: &'a str,
    /// The role's one-line description.
    pub description: &'a str,
    /// The traces.
    pub samples: &'a [Sample<'a>],
    /// The current prompt.
    pub prompt: &'a str,
    /// Failures observed downstream (the `feedback` fix); `None` in the reference.
    pub feedback: Option<String>,
    /// What the mutator writes.
    pub form: Form,
}

/// What one mutator call writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Analysis, modification and the whole rewritten prompt (`<prompt>` block).
    Rewrite,
    /// General advice to add to the prompt (`<advice>` block), see [`with_advice`].
    Advice,
    /// One numbered sentence of the prompt to delete (`<delete>` block), see
    /// [`super::edit`].
    Delete,
}

impl Form {
    /// The form's name in candidates.jsonl and the config (`advice`, `rewrite`, `delete`).
    pub fn name(self) -> &'static str {
        match self {
            Form::Rewrite => "rewrite",
            Form::Advice => "advice",
            Form::Delete => "delete",
        }
    }

    /// The pre-filled start of the reply (`prefill_proposals`) and the closing tag that ends
    /// it.
    pub fn prefill(self) -> (&'static str, &'static str) {
        match self {
            Form::Rewrite => ("<analyse>\n", "</prompt>"),
            Form::Advice => ("<advice>\n", "</advice>"),
            Form::Delete => ("<reason>\n", "</delete>"),
        }
    }
}

/// Most words of one piece of advice.
pub const MAX_ADVICE_WORDS: usize = 80;

/// The advice inside the first `<advice>…</advice>` pair of a mutator reply.
pub fn parse_advice(reply: &str) -> Option<String> {
    let start = reply.find("<advice>")? + "<advice>".len();
    let end = reply[start..].find("</advice>")? + start;
    let a = reply[start..end].trim();
    (!a.is_empty()).then(|| a.to_string())
}

/// `parent` with `advice` as a paragraph of its own before the paragraph that holds the first
/// placeholder (the question block), or at the end when there is none.
pub fn with_advice(parent: &str, advice: &str) -> String {
    let paragraphs: Vec<&str> = parent.split("\n\n").collect();
    let at = paragraphs
        .iter()
        .position(|p| p.contains("{question}") || p.contains("{context}"))
        .unwrap_or(paragraphs.len());
    let mut out: Vec<&str> = paragraphs[..at].to_vec();
    out.push(advice.trim());
    out.extend_from_slice(&paragraphs[at..]);
    out.join("\n\n")
}

/// The mutator's meta-prompt.
pub fn proposal_prompt(p: &ProposalInput<'_>) -> String {
    let mut samples = String::new();
    for (i, s) in p.samples.iter().enumerate() {
        let context = if s.context.trim().is_empty() {
            "(this agent receives no input from other agents)".to_string()
        } else {
            shown(s.context)
        };
        samples.push_str(&format!(
            "### Problem {}\n{}\n\n#### Context received\n{}\n\n#### Agent output\n{}\n\n",
            i + 1,
            shown(s.question),
            context,
            shown(s.output)
        ));
        if let Some(r) = &s.result {
            samples.push_str(&format!("#### Result of the team\n{r}\n\n"));
        }
    }
    let labelled = p.samples.iter().any(|s| s.result.is_some());
    let advice = match p.kind {
        TaskKind::Code => "List the coding errors and format violations you see in the outputs, then fix their cause in the prompt. Keep the prompt under 300 words.",
        TaskKind::Choice => "Check the outputs for truncation, weak reasoning and wasted words. Prefer a concise guide of two or three sentences (under 250 words) that works for any question of this kind; avoid templated multi-section structures.",
        TaskKind::Math => "Check the outputs for calculation errors, skipped checks, wrong answer formats and wasted words. Prefer short, general guidance that works for any problem of this kind.",
    };
    let mut requirements = format!(
        "Keep the agent's role, its responsibilities and the way it receives its input. {}",
        requirement(p.kind)
    );
    if labelled {
        requirements.push_str("\n\nEach problem above ends with the team's result, checked against the correct answer: change the prompt so that the agent avoids the mistakes that led to wrong results. The new prompt must work for any problem of this kind: never mention a particular problem, its numbers or its answer.");
    }
    if let Some(f) = &p.feedback {
        requirements.push_str("\n\nDownstream feedback — on these cases the next agents' outputs were judged weaker than with their previous prompts (a lost comparison, not necessarily a wrong answer); the new prompt should give them better input:\n");
        requirements.push_str(f);
    }
    let placeholders = if p.prompt.contains("{context}") {
        "The prompt must keep the placeholders {question} and {context} exactly once each; they are replaced by the problem and by the other agents' messages."
    } else {
        "The prompt must keep the placeholder {question} exactly once; it is replaced by the problem."
    };
    let task = match p.form {
        Form::Rewrite => format!(
            "{advice} {placeholders}\n\n\
             Reply in this format:\n<analyse>(what went wrong and why)</analyse>\n<modification>(one sentence: what you change)</modification>\n<prompt>(the whole rewritten prompt, word for word)</prompt>"
        ),
        Form::Delete => {
            let sentences = super::edit::deletable_sentences(p.prompt);
            format!(
                "One sentence of the current prompt may cause the mistakes you see: a wrong or harmful instruction, a requirement that breaks the answer, or a distraction. Its sentences, numbered:\n\n{}\n\n\
                 Name the one sentence whose deletion would most improve the agent's results.\n\n\
                 Reply in this format:\n<reason>(one sentence: which instruction leads to the mistakes, and why)</reason>\n<delete>(the sentence's number)</delete>",
                super::edit::numbered(p.prompt, &sentences)
            )
        }
        Form::Advice => format!(
            "Write one to three sentences of advice to add to the agent's prompt: general instructions that would have prevented the mistakes you see and that help on any problem of this kind (at most {MAX_ADVICE_WORDS} words). Do not repeat what the current prompt already says; never mention a particular problem, its numbers or its answer. Reply with the advice only, between <advice> and </advice>."
        ),
    };
    format!(
        "You improve the prompt of one agent in a team of language-model agents that solve problems together. The agent must keep its role.\n\n\
         ## Agent\nType: {role}\nRole: {description}\n\n\
         ## How the agent behaved with its current prompt\n{samples}\
         ## Requirements\n{requirements}\n\n\
         ## Current prompt\n<current_prompt>\n{prompt}\n</current_prompt>\n\n\
         ## Your task\n{task}",
        role = p.role,
        description = p.description,
        prompt = p.prompt,
    )
}

/// The new prompt inside the first `<prompt>…</prompt>` pair of a mutator reply.
pub fn parse_proposal(reply: &str) -> Option<String> {
    let start = reply.find("<prompt>")? + "<prompt>".len();
    let end = reply[start..].find("</prompt>")? + start;
    let p = reply[start..end].trim();
    (!p.is_empty()).then(|| p.to_string())
}

/// Which comparison a judgement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// A non-terminal agent's own outputs (local validity).
    Local,
    /// A direct successor's outputs after the re-run (lookahead potential).
    Lookahead,
    /// The system's final answers (global alignment).
    Global,
    /// The terminal agent's outputs, judged role-aware.
    Terminal,
}

/// The text of a judge prompt.
pub struct JudgeInput<'a> {
    /// Task kind.
    pub kind: TaskKind,
    /// Which comparison.
    pub comparison: Comparison,
    /// The terminal agent's role type and description (terminal comparisons).
    pub role: &'a str,
    /// The role's description.
    pub description: &'a str,
    /// The question.
    pub question: &'a str,
    /// Output shown as "A".
    pub a: &'a str,
    /// Output shown as "B".
    pub b: &'a str,
    /// Ask for the letter only (log-prob judging: the next token decides).
    pub letter_only: bool,
}

/// A judge prompt.
pub fn judge_prompt(j: &JudgeInput<'_>) -> String {
    let (a, b, q) = (shown(j.a), shown(j.b), shown(j.question));
    let letter = "Reply with only the letter A or B.";
    match j.comparison {
        Comparison::Local | Comparison::Lookahead => {
            let criteria = match j.kind {
                TaskKind::Code => "Prefer, in this order: correct logic, following the task's requirements, code that can be extracted (one fenced Python block), clarity.",
                TaskKind::Choice => "Prefer, in this order: a complete (not cut-off) analysis, correct reasoning, a clearly stated option, no misleading claims.",
                TaskKind::Math => "Prefer, in this order: correct reasoning and calculations, explicit intermediate results, a clearly stated result, no misleading claims.",
            };
            format!(
                "Two intermediate outputs of an agent in a team that solves the problem below are shown. Decide which one is more likely to help the team reach a correct final answer. {criteria}\n\n## Problem\n{q}\n\n## Output A\n{a}\n\n## Output B\n{b}\n\n{letter}"
            )
        }
        Comparison::Global => {
            let criteria = match j.kind {
                TaskKind::Code => "Judge functional correctness only, by tracing the code on the task's cases; if both are correct, prefer the more concise one.",
                _ => "Judge correctness of the final answer only; the style of the reasoning does not matter.",
            };
            format!(
                "Two final answers of a problem-solving system are shown. Decide which final answer is more likely correct. {criteria}\n\n## Problem\n{q}\n\n## Requirement\n{}\n\n## Answer A\n{a}\n\n## Answer B\n{b}\n\n{letter}",
                requirement(j.kind)
            )
        }
        Comparison::Terminal => {
            let first = match j.kind {
                TaskKind::Choice => "First, prefer a complete answer that is not cut off; then the correct option; then clearer reasoning.",
                TaskKind::Code => "First, prefer correct code; then code in the required format (one fenced Python block); then clearer reasoning.",
                TaskKind::Math => "First, prefer the correct final answer; then clearer, verifiable reasoning.",
            };
            let reply = if j.letter_only {
                letter.to_string()
            } else {
                "Reply with a short analysis inside <analyse></analyse>, then your choice as <choose>A</choose> or <choose>B</choose>.".to_string()
            };
            format!(
                "You judge two responses of the final agent of a problem-solving team.\nThe agent: {} — {}\n{first} Do not reward length. Check that the answer follows the required format.\n\n## Problem\n{q}\n\n## Requirement\n{}\n\n## Response A\n{a}\n\n## Response B\n{b}\n\n{reply}",
                j.role,
                j.description,
                requirement(j.kind)
            )
        }
    }
}

/// A judge's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// "A" is better.
    A,
    /// "B" is better.
    B,
}

/// Parses a judge reply: the `<choose>` tag when present (its closing tag may be cut off), else
/// the last standalone letter A or B — unless the prompt asked for the tag (`tagged`): then a
/// reply without it (cut before its verdict) is unparsable, not the last letter of its
/// analysis. `None` when nothing says A or B. With `reference`, the reference's rule instead:
/// the tag's content contains "A", else the last letter of the reply is "A", else (no letters)
/// "A".
pub fn parse_choice(reply: &str, reference: bool, tagged: bool) -> Option<Choice> {
    let tag = reply.find("<choose>").and_then(|s| {
        let rest = &reply[s + "<choose>".len()..];
        rest.find("</choose>").map(|e| rest[..e].to_string())
    });
    if reference {
        let a = match tag {
            Some(t) => t.contains('A'),
            None => reply
                .chars()
                .rev()
                .find(|c| c.is_alphabetic())
                .map(|c| c.to_uppercase().next() == Some('A'))
                .unwrap_or(true),
        };
        return Some(if a { Choice::A } else { Choice::B });
    }
    let letter = |s: &str| -> Option<Choice> {
        s.split(|c: char| !c.is_ascii_alphanumeric())
            .rev()
            .find_map(|w| match w {
                "A" => Some(Choice::A),
                "B" => Some(Choice::B),
                _ => None,
            })
    };
    // An opened tag whose closing tag was cut off still holds the verdict.
    let tag = tag.or_else(|| {
        reply
            .find("<choose>")
            .map(|s| reply[s + "<choose>".len()..].to_string())
    });
    match tag {
        Some(t) => letter(t.trim()).or_else(|| match t.trim().to_ascii_uppercase().as_str() {
            "A" => Some(Choice::A),
            "B" => Some(Choice::B),
            _ => None,
        }),
        None if tagged => None,
        None => letter(reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposal_replies() {
        assert_eq!(
            parse_proposal("<analyse>x</analyse><prompt>\n New {question} \n</prompt> trailing")
                .as_deref(),
            Some("New {question}")
        );
        assert_eq!(parse_proposal("no tags here"), None);
        assert_eq!(parse_proposal("<prompt>cut off"), None);
        assert_eq!(parse_proposal("<prompt>  </prompt>"), None);
    }

    #[test]
    fn judge_replies() {
        assert_eq!(
            parse_choice(
                "<analyse>A is long</analyse><choose>B</choose>",
                false,
                false
            ),
            Some(Choice::B)
        );
        assert_eq!(parse_choice("A", false, false), Some(Choice::A));
        assert_eq!(
            parse_choice("Output B is better.", false, false),
            Some(Choice::B)
        );
        assert_eq!(
            parse_choice("I think A. Final: B", false, false),
            Some(Choice::B)
        );
        assert_eq!(parse_choice("Both are fine", false, false), None);
        assert_eq!(parse_choice("", false, false), None);
        // The reference: last letter of the reply, default A.
        assert_eq!(parse_choice("Both are fine", true, false), Some(Choice::B));
        assert_eq!(parse_choice("...", true, false), Some(Choice::A));
        // A terminal judgement asked for <choose>: cut before it, it is unparsable.
        let cut = "<analyse>Response A is wrong, B computes 12 correctly, so B";
        assert_eq!(parse_choice(cut, false, true), None);
        assert_eq!(parse_choice(cut, false, false), Some(Choice::B));
        assert_eq!(parse_choice(cut, true, true), Some(Choice::B));
        assert_eq!(
            parse_choice("<analyse>A</analyse><choose>B", false, true),
            Some(Choice::B)
        );
        assert_eq!(
            parse_choice("<analyse>x</analyse><choose>A</choose>", false, true),
            Some(Choice::A)
        );
        assert_eq!(
            parse_choice("<choose>A/B</choose>", true, false),
            Some(Choice::A)
        );
    }

    #[test]
    fn advice_goes_before_the_question_block() {
        let parent = "You are a solver. Reason step by step.\n\nThe question:\n{question}";
        assert_eq!(
            with_advice(parent, " Check every unit. "),
            "You are a solver. Reason step by step.\n\nCheck every unit.\n\nThe question:\n{question}"
        );
        assert_eq!(with_advice("Solve it.", "Check."), "Solve it.\n\nCheck.");
        assert_eq!(with_advice("{question}", "Check."), "Check.\n\n{question}");
        assert_eq!(
            parse_advice("<advice>\nCheck units.\n</advice>").as_deref(),
            Some("Check units.")
        );
        assert_eq!(parse_advice("<advice></advice>"), None);
        assert_eq!(parse_advice("Check units."), None);
    }

    #[test]
    fn prompts_name_their_parts() {
        let samples = [Sample {
            question: "1+1?",
            context: "",
            output: "2",
            result: None,
        }];
        let p = proposal_prompt(&ProposalInput {
            kind: TaskKind::Math,
            role: "predictor",
            description: "Solver",
            samples: &samples,
            prompt: "Solve {question}",
            feedback: Some("- case 1".into()),
            form: Form::Rewrite,
        });
        assert!(p.contains("1+1?") && p.contains("Solve {question}") && p.contains("case 1"));
        assert!(p.contains("<analyse>"));
        let pre = proposal_prompt(&ProposalInput {
            kind: TaskKind::Math,
            role: "predictor",
            description: "Solver",
            samples: &samples,
            prompt: "Solve {question}",
            feedback: None,
            form: Form::Advice,
        });
        assert!(!pre.contains("<analyse>") && pre.contains("between <advice> and </advice>"));
        assert!(!pre.contains("{context}"));
        assert!(p.contains("it is replaced by the problem") && !p.contains("{context}"));
        assert!(p.contains("no input from other agents"));
        let long = "x".repeat(10_000);
        assert!(shown(&long).len() < 3000);
        for c in [Comparison::Local, Comparison::Global, Comparison::Terminal] {
            let j = judge_prompt(&JudgeInput {
                kind: TaskKind::Choice,
                comparison: c,
                role: "reflector",
                description: "Reviewer",
                question: "Q?",
                a: "first",
                b: "second",
                letter_only: false,
            });
            assert!(j.contains("first") && j.contains("second") && j.contains("Q?"));
        }
    }
}
