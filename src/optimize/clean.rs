//! Cleaning a mutator's proposal before the sanitizer sees it, and the checks that a cleaned
//! proposal is a new, general prompt.
//!
//! Small mutators wrap the prompt they were asked for: a lead-in ("The rewritten prompt is:"),
//! surrounding quotes or parentheses, a code fence, leftover `<prompt>` tags, a role label
//! ("System:"). [`clean_proposal`] removes such wrappers (and only wrappers: text inside the
//! prompt is never rewritten) and says what it removed. [`copied_question_text`] finds a run of
//! words copied from the questions the mutator saw (a prompt that quotes its optimization batch
//! is overfit to it), and [`same_words`] tells a proposal that differs from its parent only in
//! whitespace or punctuation. All three run when `clean_proposals` is on (off by default).

/// A cleaned proposal and the wrappers that were removed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleaned {
    /// The prompt without its wrappers.
    pub prompt: String,
    /// What was removed, in order (e.g. `lead-in`, `quotes`); empty when nothing was.
    pub removed: Vec<&'static str>,
}

/// Lead-ins small models put before the prompt they were asked for, lowercase; each may be
/// followed by `for …` up to a colon, and by `is`/`reads`/`:`.
const LEAD_INS: &[&str] = &[
    "here is the rewritten prompt",
    "here is the revised prompt",
    "here is the improved prompt",
    "here is the new prompt",
    "here is the updated prompt",
    "here is the prompt",
    "here's the rewritten prompt",
    "here's the revised prompt",
    "here's the improved prompt",
    "here's the new prompt",
    "here's the prompt",
    "the rewritten prompt",
    "the revised prompt",
    "the improved prompt",
    "the new prompt",
    "the updated prompt",
    "rewritten prompt",
    "revised prompt",
    "improved prompt",
    "new prompt",
    "updated prompt",
];

/// Role labels that open a prompt by mistake, lowercase, with their colon.
const ROLE_LABELS: &[&str] = &[
    "system prompt:",
    "system:",
    "prompt:",
    "assistant:",
    "user:",
    "instructions:",
];

/// Tags that belong to the mutator's reply format, never to a prompt.
const REPLY_TAGS: &[&str] = &[
    "<prompt>",
    "</prompt>",
    "<new_prompt>",
    "</new_prompt>",
    "<rewritten_prompt>",
    "</rewritten_prompt>",
    "<improved_prompt>",
    "</improved_prompt>",
    "<revised_prompt>",
    "</revised_prompt>",
];

/// Removes wrappers around a proposal until none is left.
pub fn clean_proposal(text: &str) -> Cleaned {
    let mut prompt = text.trim().to_string();
    let mut removed = Vec::new();
    for tag in REPLY_TAGS {
        if contains_ignore_case(&prompt, tag) {
            prompt = replace_ignore_case(&prompt, tag, "").trim().to_string();
            push_once(&mut removed, "tags");
        }
    }
    loop {
        let before = prompt.clone();
        if let Some(rest) = strip_fence(&prompt) {
            prompt = rest;
            push_once(&mut removed, "code fence");
        }
        if let Some(rest) = strip_unbalanced_opener(&prompt) {
            prompt = rest;
            push_once(&mut removed, "quotes");
        }
        if let Some(rest) = strip_lead_in(&prompt) {
            prompt = rest;
            push_once(&mut removed, "lead-in");
        }
        if let Some(rest) = strip_prefix_ignore_case(&prompt, ROLE_LABELS) {
            prompt = rest;
            push_once(&mut removed, "role label");
        }
        if let Some(rest) = strip_pair(&prompt) {
            prompt = rest;
            push_once(&mut removed, "quotes");
        }
        if prompt == before {
            break;
        }
    }
    Cleaned { prompt, removed }
}

fn push_once(v: &mut Vec<&'static str>, what: &'static str) {
    if !v.contains(&what) {
        v.push(what);
    }
}

fn contains_ignore_case(text: &str, needle: &str) -> bool {
    text.to_lowercase().contains(needle)
}

/// `text` with every ASCII-case-insensitive occurrence of `needle` (ASCII) replaced.
fn replace_ignore_case(text: &str, needle: &str, with: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(i) = lower[at..].find(needle) {
        out.push_str(&text[at..at + i]);
        out.push_str(with);
        at += i + needle.len();
    }
    out.push_str(&text[at..]);
    out
}

/// The text after the first of `prefixes` it starts with (ASCII case ignored), trimmed.
fn strip_prefix_ignore_case(text: &str, prefixes: &[&str]) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    prefixes
        .iter()
        .find(|p| lower.starts_with(*p))
        .map(|p| text[p.len()..].trim().to_string())
}

/// A code fence around the whole proposal (```` ```text … ``` ````).
fn strip_fence(text: &str) -> Option<String> {
    let rest = text.strip_prefix("```")?;
    let body = rest.strip_suffix("```")?;
    // The fence's language word, if any, ends its first line.
    let (first, after) = body.split_once('\n')?;
    if first.trim().chars().all(|c| c.is_ascii_alphanumeric()) {
        Some(after.trim().to_string())
    } else {
        None
    }
}

/// A lead-in sentence: `The rewritten prompt is:`, `Here is the revised prompt for the
/// reviewer:`, `New prompt -` … up to its colon (or dash) on the first line.
fn strip_lead_in(text: &str) -> Option<String> {
    let first_line = text.lines().next()?;
    let lower = first_line.to_ascii_lowercase();
    let lead = LEAD_INS.iter().find(|l| lower.starts_with(*l))?;
    let tail = &lower[lead.len()..];
    // `The rewritten prompt is "…"`: no colon, the quoted prompt follows `is`.
    if let Some(q) = tail.strip_prefix(" is ") {
        if q.starts_with(['"', '“']) {
            return Some(text[lead.len() + 4..].trim().to_string());
        }
    }
    // What may stand between the lead-in and its colon: `for the question`, `is`, `reads`.
    let colon = tail.find([':', '-', '–'])?;
    let between = tail[..colon].trim();
    let filler_ok = between.is_empty()
        || between == "is"
        || between == "reads"
        || (between.starts_with("for ") && between.split_whitespace().count() <= 8);
    let filler_ok = filler_ok
        || between
            .strip_suffix(" is")
            .is_some_and(|f| f.starts_with("for ") && f.split_whitespace().count() <= 8);
    if !filler_ok {
        return None;
    }
    let cut = lead.len() + colon + tail[colon..].chars().next()?.len_utf8();
    Some(text[cut..].trim().to_string())
}

/// Quotes or parentheses around the whole proposal.
fn strip_pair(text: &str) -> Option<String> {
    const PAIRS: &[(char, char)] = &[('"', '"'), ('“', '”'), ('\'', '\''), ('(', ')')];
    let first = text.chars().next()?;
    let &(open, close) = PAIRS.iter().find(|(o, _)| *o == first)?;
    let inner = text.strip_prefix(open)?.strip_suffix(close)?;
    // Only a pair that encloses everything: the inner text must not close it earlier.
    let balanced = if open == close {
        !inner.contains(open)
    } else {
        depth_never_negative(inner, open, close)
    };
    (balanced && !inner.trim().is_empty()).then(|| inner.trim().to_string())
}

/// A leading quote or parenthesis that nothing closes (a wrapper cut short).
fn strip_unbalanced_opener(text: &str) -> Option<String> {
    let first = text.chars().next()?;
    let rest = &text[first.len_utf8()..];
    let unbalanced = match first {
        '"' => !rest.contains('"'),
        '“' => !rest.contains('”'),
        '(' => rest.matches('(').count() + 1 > rest.matches(')').count(),
        _ => false,
    };
    (unbalanced && !rest.trim().is_empty()).then(|| rest.trim().to_string())
}

fn depth_never_negative(text: &str, open: char, close: char) -> bool {
    let mut depth = 0i64;
    for c in text.chars() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth < 0 {
                return false;
            }
        }
    }
    depth == 0
}

/// The words of `text`: runs of alphanumeric characters.
fn word_runs(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// The words of `text`, lowercase.
fn words(text: &str) -> Vec<String> {
    word_runs(text).map(str::to_lowercase).collect()
}

/// The first run of `min_words` or more consecutive words of `prompt` that also stands in one
/// of `questions` (placeholders are not words of the prompt); `None` when there is none.
pub fn copied_question_text(prompt: &str, questions: &[&str], min_words: usize) -> Option<String> {
    if min_words == 0 {
        return None;
    }
    let p = words(&prompt.replace("{question}", " ").replace("{context}", " "));
    if p.len() < min_words {
        return None;
    }
    let question_grams: std::collections::HashSet<Vec<String>> = questions
        .iter()
        .flat_map(|q| {
            let w = words(q);
            w.windows(min_words)
                .map(<[String]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect();
    p.windows(min_words)
        .find(|g| question_grams.contains(*g))
        .map(|g| g.join(" "))
}

/// Pieces of the mutator's own meta-prompt (its section heads, tags and instructions) that a
/// weak mutator copies into its proposal.
const META_PROMPT_PIECES: &[&str] = &[
    "<current_prompt>",
    "</current_prompt>",
    "## current prompt",
    "## how the agent behaved",
    "## requirements",
    "## your task",
    "#### context received",
    "#### agent output",
    "### problem 1",
    "you improve the prompt of one agent",
    "reply in this format",
    "<analyse>",
    "<modification>",
    "downstream feedback",
];

/// The first piece of the mutator's meta-prompt that `prompt` holds and `parent` does not
/// (ASCII case ignored): the proposal echoes the instructions instead of following them.
pub fn echoed_instructions(prompt: &str, parent: &str) -> Option<&'static str> {
    let (p, parent) = (prompt.to_ascii_lowercase(), parent.to_ascii_lowercase());
    META_PROMPT_PIECES
        .iter()
        .find(|m| p.contains(*m) && !parent.contains(*m))
        .copied()
}

/// Whether two prompts have the same words in the same order (they differ at most in
/// whitespace and punctuation).
pub fn same_words(a: &str, b: &str) -> bool {
    word_runs(a).eq(word_runs(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_of_the_meta_prompt_are_found() {
        // A real 0.5B proposal (quickstart, seed 0): the current prompt's tag copied in.
        let p = "Answer the question.\n\nThe question:\n<current_prompt>\nYou are a language-model agent\n\n{question}";
        assert_eq!(
            echoed_instructions(p, "Answer.\n{question}"),
            Some("<current_prompt>")
        );
        assert_eq!(echoed_instructions(p, p), None, "the parent had it already");
        assert_eq!(
            echoed_instructions("## Requirements\nSolve {question}", "Solve {question}"),
            Some("## requirements")
        );
        assert_eq!(
            echoed_instructions("Solve {question} carefully.", "Solve {question}"),
            None
        );
    }

    const SEED: &str = "You are a careful reviewer. Check the solution.\n\nThe question:\n{question}\n\nThe other agent's solution:\n{context}";

    #[test]
    fn wrappers_are_removed_and_named() {
        let cases: &[(&str, &[&str])] = &[
            ("The rewritten prompt is: \"You are a careful reviewer. Check it.\"", &["lead-in", "quotes"]),
            ("(The rewritten prompt is: \"You are a careful reviewer. Check it.", &["quotes", "lead-in"]),
            ("The revised prompt for the question is:\nYou are a careful reviewer. Check it.", &["lead-in"]),
            ("Here is the improved prompt:\n\n```text\nYou are a careful reviewer. Check it.\n```", &["lead-in", "code fence"]),
            ("```\nYou are a careful reviewer. Check it.\n```", &["code fence"]),
            ("<prompt>You are a careful reviewer. Check it.</prompt>", &["tags"]),
            ("System: You are a careful reviewer. Check it.", &["role label"]),
            ("“You are a careful reviewer. Check it.”", &["quotes"]),
            ("New prompt - You are a careful reviewer. Check it.", &["lead-in"]),
            ("The rewritten prompt is \"You are a careful reviewer. Check it.\"", &["lead-in", "quotes"]),
        ];
        for (text, removed) in cases {
            let c = clean_proposal(text);
            assert_eq!(c.prompt, "You are a careful reviewer. Check it.", "{text}");
            let mut got = c.removed.clone();
            let mut want = removed.to_vec();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn prompt_text_is_never_rewritten() {
        for text in [
            SEED,
            "Solve it (show your work) and answer in <answer></answer> tags.\n{question}",
            "\"Think\" before you answer. Then answer.\n{question}",
            "The new prompt style matters: be brief.\n{question}",
            "Write the function in a ```python block.\n{question}",
            "(a) read the question; (b) answer it.\n{question}",
        ] {
            let c = clean_proposal(text);
            assert_eq!(c.prompt, text.trim(), "{text}");
            assert!(c.removed.is_empty(), "{text}: {:?}", c.removed);
        }
    }

    #[test]
    fn copied_question_runs_are_found() {
        let q = "A car travels 60 miles in 1.5 hours and then stops for lunch. What is its speed?";
        let p = "Check the answer. For example a car travels 60 miles in 1.5 hours and then stops. {question}";
        assert_eq!(
            copied_question_text(p, &[q], 8).as_deref(),
            Some("a car travels 60 miles in 1 5")
        );
        // Seven words are not enough; placeholders never count.
        assert_eq!(
            copied_question_text("a car travels 60 miles in 1 {question}", &[q], 8),
            None
        );
        assert_eq!(
            copied_question_text(SEED, &[q, "The question: the other agent's solution"], 8),
            None
        );
        assert_eq!(copied_question_text(p, &[q], 0), None);
    }

    #[test]
    fn whitespace_and_punctuation_changes_are_the_same_words() {
        assert!(same_words(
            SEED,
            &SEED.replace("\n\n", "\n").replace('.', "!")
        ));
        assert!(same_words("Check it.\n{question}", "Check it {question}"));
        assert!(!same_words(
            "Check it.\n{question}",
            "Check it twice.\n{question}"
        ));
        assert!(!same_words("Check it.", "check it."));
    }
}
