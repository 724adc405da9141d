//! The prompt sanitizer: a proposed prompt must keep exactly the placeholders the agent needs.
//!
//! Rules (docs/design/algorithm.md §4.2, 33–38): exactly one `{question}` (a missing one is appended as a
//! `Question:` line, two are a rejection); `{context}` kept when the parent had it (appended
//! when missing, two are a rejection); no other `{identifier}` placeholder. The reference also
//! rejects every other brace group, so literal braces such as `{1,2}` or JSON make it fall back
//! to the parent; maspo allows them unless `literal_braces` is off (the `faithful` preset).

use crate::tasks::TaskKind;

/// Rejects a proposal that drops the answer format its parent asks for: a parent prompt that
/// mentions `<answer>` tags (math, multiple choice) or a code block (code) hands that ask on.
/// Small mutators sometimes return a "prompt" that is only a remark about the question plus
/// `{question}`; the agent then answers in free form, the extractor finds nothing, and a batch
/// of four judged by a small judge cannot show it (the AQuA cell in `docs/results/light/`).
pub fn check_answer_format(new: &str, old: &str, kind: TaskKind) -> Result<(), String> {
    let (markers, what): (&[&str], &str) = match kind {
        TaskKind::Math | TaskKind::Choice => (&["<answer>"], "the final answer in <answer> tags"),
        TaskKind::Code => (&["```", "code block"], "the function in a code block"),
    };
    let asks = |s: &str| {
        let s = s.to_lowercase();
        markers.iter().any(|m| s.contains(m))
    };
    if asks(old) && !asks(new) {
        return Err(format!(
            "the proposal drops the answer format its parent asks for ({what})"
        ));
    }
    Ok(())
}

/// Rejects a proposal with fewer than `min_words` words besides its placeholders: small
/// mutators often return a stub (a copied format hint, a bare "Question: {question}").
pub fn check_substance(prompt: &str, min_words: usize) -> Result<(), String> {
    let words = prompt
        .replace("{question}", " ")
        .replace("{context}", " ")
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .count();
    if words < min_words {
        return Err(format!(
            "the proposal has {words} words besides its placeholders (fewer than {min_words}): a stub, not a prompt"
        ));
    }
    Ok(())
}

/// Sanitizes `new` (a proposal derived from `old`); `Err` says why it was rejected (the caller
/// keeps `old`).
pub fn sanitize(new: &str, old: &str, literal_braces: bool) -> Result<String, String> {
    let (mut new, old) = if literal_braces {
        (new.trim().to_string(), old.to_string())
    } else {
        (collapse_braces(new.trim()), collapse_braces(old))
    };
    if new.is_empty() {
        return Err("the proposal is empty".into());
    }
    for group in brace_groups(&new) {
        let ok = match group.as_str() {
            "question" | "context" => true,
            g if literal_braces => !is_identifier(g),
            g => g.is_empty() || g.bytes().all(|b| b.is_ascii_digit()),
        };
        if !ok {
            return Err(format!("unknown placeholder `{{{group}}}`"));
        }
    }
    match count(&new, "{question}") {
        0 => new.push_str("\n\nQuestion: {question}"),
        1 => {}
        n => return Err(format!("`{{question}}` appears {n} times")),
    }
    let contexts = count(&new, "{context}");
    if old.contains("{context}") {
        match contexts {
            0 => new.push_str("\n\nContext: {context}"),
            1 => {}
            n => return Err(format!("`{{context}}` appears {n} times")),
        }
    } else if contexts > 1 {
        return Err(format!("`{{context}}` appears {contexts} times"));
    }
    Ok(new)
}

fn count(s: &str, pat: &str) -> usize {
    s.matches(pat).count()
}

/// Runs of `{` become one `{`, runs of `}` one `}` (the reference's first rule).
fn collapse_braces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev = '\0';
    for c in s.chars() {
        if (c == '{' || c == '}') && c == prev {
            continue;
        }
        out.push(c);
        prev = c;
    }
    out
}

/// Contents of innermost `{…}` groups.
fn brace_groups(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut open: Option<usize> = None;
    for (i, c) in s.char_indices() {
        match c {
            '{' => open = Some(i + 1),
            '}' => {
                if let Some(start) = open.take() {
                    out.push(s[start..i].to_string());
                }
            }
            _ => {}
        }
    }
    out
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "Review.\n{question}\n{context}";

    #[test]
    fn placeholders_are_kept_exactly_once() {
        assert_eq!(
            sanitize("New {question} {context}", OLD, true).unwrap(),
            "New {question} {context}"
        );
        let added = sanitize("New prompt", OLD, true).unwrap();
        assert!(
            added.ends_with("Question: {question}\n\nContext: {context}"),
            "{added}"
        );
        assert!(sanitize("{question} {question} {context}", OLD, true)
            .unwrap_err()
            .contains("2 times"));
        assert!(sanitize("{question} {context}{context}", OLD, true).is_err());
        // An agent without inputs may mention {context} once (it fills with nothing), not twice.
        assert!(sanitize("{question} {context}", "{question}", true).is_ok());
        assert!(sanitize("{question}", "{question}", true).unwrap() == "{question}");
        assert!(sanitize("{question}{context}{context}", "{question}", true).is_err());
        assert!(sanitize("   ", OLD, true).is_err());
    }

    #[test]
    fn the_answer_format_is_kept_once_the_parent_asks_for_it() {
        let parent =
            "Solve it. End with the final answer inside <answer></answer> tags.\n{question}";
        let kept = "Think carefully, check each step, and write the result as <ANSWER>x</ANSWER>. {question}";
        let dropped =
            "The question is incomplete; please provide the options.\n\nQuestion: {question}";
        for kind in [TaskKind::Math, TaskKind::Choice] {
            assert!(check_answer_format(kept, parent, kind).is_ok());
            let why = check_answer_format(dropped, parent, kind).unwrap_err();
            assert!(why.contains("<answer> tags"), "{why}");
            // A parent without the ask (an intermediate agent) constrains nothing.
            assert!(check_answer_format(dropped, "Review the solution. {question}", kind).is_ok());
        }
        let code = "Write the function. End with one ```python code block.\n{question}";
        assert!(check_answer_format(
            "Return only a Python code block. {question}",
            code,
            TaskKind::Code
        )
        .is_ok());
        assert!(check_answer_format(
            "Reply with ```python fences. {question}",
            code,
            TaskKind::Code
        )
        .is_ok());
        assert!(check_answer_format("Write clean code. {question}", code, TaskKind::Code).is_err());
    }

    #[test]
    fn stubs_are_rejected() {
        assert!(check_substance("the complete new prompt\n\nQuestion: {question}", 8).is_err());
        assert!(check_substance("Question: {question}\nContext: {context}", 3).is_err());
        assert!(check_substance(
            "Solve the problem step by step and give the answer in tags. {question}",
            8
        )
        .is_ok());
        assert!(check_substance("x {question}", 0).is_ok());
    }

    #[test]
    fn literal_braces_are_allowed_unless_faithful() {
        let p = "Use sets like {1,2} and JSON {\"a\": 1}. {question} {context}";
        assert_eq!(sanitize(p, OLD, true).unwrap(), p);
        assert!(sanitize(p, OLD, false).is_err());
        // Unknown identifiers are placeholders in both modes: rejected.
        assert!(sanitize("{answer} {question} {context}", OLD, true)
            .unwrap_err()
            .contains("{answer}"));
        assert!(sanitize("{answer} {question} {context}", OLD, false).is_err());
        // The reference allows digits and empty groups, and collapses doubled braces.
        assert_eq!(
            sanitize("{{question}} {1} {} {context}", OLD, false).unwrap(),
            "{question} {1} {} {context}"
        );
    }
}
