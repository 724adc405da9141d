//! Sentence edits: the `delete` proposal form. The mutator names one numbered sentence of the
//! current prompt; maspo removes it and tidies what is left. Choosing a sentence is a task a
//! small model manages where writing a whole prompt is not (docs/optimize.md, "Proposals"), and
//! the edit cannot touch placeholders: sentences holding a brace are never offered.

use std::ops::Range;

/// Fewest words a sentence needs to be offered for deletion (a heading or a lone label is
/// structure, not an instruction).
const MIN_WORDS: usize = 3;

/// The sentences of `prompt` a delete proposal may remove, as byte ranges in order. A sentence
/// ends at `.`, `!` or `?` followed by white space, or at the end of its line; none offered holds
/// a brace (placeholders and literal braces stay) or has fewer than three words.
pub fn deletable_sentences(prompt: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut offset = 0;
    for line in prompt.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let mut start = 0;
        let chars: Vec<(usize, char)> = body.char_indices().collect();
        for (k, &(i, c)) in chars.iter().enumerate() {
            let next_is_space = chars.get(k + 1).is_none_or(|&(_, n)| n.is_whitespace());
            let end_of_line = k + 1 == chars.len();
            if end_of_line
                || (matches!(c, '.' | '!' | '?') && next_is_space && !abbreviation(body, i))
            {
                let end = i + c.len_utf8();
                push_sentence(&mut out, body, start..end, offset);
                start = end;
            }
        }
        offset += line.len();
    }
    out
}

/// Whether the `.` at byte `dot` of `line` ends an abbreviation ("e.g.", "i.e.", a single
/// letter) rather than a sentence.
fn abbreviation(line: &str, dot: usize) -> bool {
    if line.as_bytes()[dot] != b'.' {
        return false;
    }
    let word = line[..dot].rsplit(char::is_whitespace).next().unwrap_or("");
    word.contains('.') || (word.len() == 1 && word.chars().all(char::is_alphabetic))
}

fn push_sentence(out: &mut Vec<Range<usize>>, line: &str, r: Range<usize>, offset: usize) {
    let text = &line[r.clone()];
    let lead = text.len() - text.trim_start().len();
    let trail = text.len() - text.trim_end().len();
    let (s, e) = (r.start + lead, r.end - trail);
    if s >= e {
        return;
    }
    let sentence = &line[s..e];
    if sentence.contains(['{', '}']) || sentence.split_whitespace().count() < MIN_WORDS {
        return;
    }
    out.push(offset + s..offset + e);
}

/// `prompt` without the sentence at `range`: the space before it goes too, a line left empty
/// (or holding only a list marker) is dropped, and no more than one blank line is left between
/// paragraphs.
pub fn without_sentence(prompt: &str, range: Range<usize>) -> String {
    let line_start = prompt[..range.start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = prompt[range.end..]
        .find('\n')
        .map_or(prompt.len(), |i| range.end + i);
    let before = prompt[line_start..range.start].trim_end();
    let after = prompt[range.end..line_end].trim_start();
    let line = match (before.is_empty(), after.is_empty()) {
        (true, _) => format!("{}{after}", &prompt[line_start..range.start]),
        (false, true) => before.to_string(),
        (false, false) => format!("{before} {after}"),
    };
    let marker_only = line
        .trim()
        .trim_start_matches(['-', '*', '•'])
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .trim_start_matches(['.', ')'])
        .trim()
        .is_empty();
    let mut out = String::with_capacity(prompt.len());
    out.push_str(&prompt[..line_start]);
    if marker_only {
        // Drop the line and its line break.
        let rest = &prompt[line_end..];
        out.push_str(rest.strip_prefix('\n').unwrap_or(rest));
    } else {
        out.push_str(line.trim_end());
        out.push_str(&prompt[line_end..]);
    }
    while out.contains("\n\n\n") {
        out = out.replace("\n\n\n", "\n\n");
    }
    out.trim().to_string()
}

/// The current prompt's deletable sentences, numbered from 1, as the mutator sees them.
pub fn numbered(prompt: &str, sentences: &[Range<usize>]) -> String {
    sentences
        .iter()
        .enumerate()
        .map(|(i, r)| format!("[{}] {}", i + 1, &prompt[r.clone()]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The sentence number inside the first `<delete>…</delete>` pair of a reply (the closing tag
/// may be missing: generation stops at it).
pub fn parse_delete(reply: &str) -> Option<usize> {
    let start = reply.find("<delete>")? + "<delete>".len();
    let body = &reply[start..];
    let body = &body[..body.find("</delete>").unwrap_or(body.len())];
    let digits: String = body
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFLECTOR: &str = "You are a careful reviewer. Below is a task and a summary of another agent's solution. Check its reasoning and result; if you find a mistake, fix it, otherwise confirm it. End with the complete Python function in one ```python code block, without example usage or tests. The first line of the code block must be `import task_helpers` (the grader provides that module).\n\nThe task:\n{question}\n\nThe other agent's solution:\n{context}";

    fn texts(p: &str) -> Vec<&str> {
        deletable_sentences(p).into_iter().map(|r| &p[r]).collect()
    }

    #[test]
    fn sentences_are_offered_without_placeholders_or_labels() {
        assert_eq!(
            texts(REFLECTOR),
            [
                "You are a careful reviewer.",
                "Below is a task and a summary of another agent's solution.",
                "Check its reasoning and result; if you find a mistake, fix it, otherwise confirm it.",
                "End with the complete Python function in one ```python code block, without example usage or tests.",
                "The first line of the code block must be `import task_helpers` (the grader provides that module).",
                "The other agent's solution:",
            ]
        );
        // Abbreviations and list items; a line without a full stop is one sentence.
        assert_eq!(
            texts("Be brief, e.g. two lines. Check units. Check all units.\n- Show every step here\n- Use {question}"),
            ["Be brief, e.g. two lines.", "Check all units.", "- Show every step here"]
        );
    }

    #[test]
    fn deleting_a_sentence_tidies_the_prompt() {
        let s = deletable_sentences(REFLECTOR);
        let out = without_sentence(REFLECTOR, s[4].clone());
        assert!(!out.contains("task_helpers"));
        assert!(out.contains("without example usage or tests.\n\nThe task:\n{question}"));
        let first = without_sentence(REFLECTOR, s[0].clone());
        assert!(first.starts_with("Below is a task"), "{first}");
        // A list item goes with its line; a lone sentence's paragraph with its blank line.
        let p = "Intro line here.\n- Show every step here\n- Check all units twice\n\nLast words are here.\n\n{question}";
        let s = deletable_sentences(p);
        assert_eq!(
            without_sentence(p, s[1].clone()),
            "Intro line here.\n- Check all units twice\n\nLast words are here.\n\n{question}"
        );
        assert_eq!(
            without_sentence(p, s[3].clone()),
            "Intro line here.\n- Show every step here\n- Check all units twice\n\n{question}"
        );
    }

    #[test]
    fn a_delete_reply_names_a_number() {
        assert_eq!(
            parse_delete("<reason>x</reason>\n<delete>5</delete>"),
            Some(5)
        );
        assert_eq!(parse_delete("<delete> [3]"), Some(3));
        assert_eq!(parse_delete("<delete>sentence five</delete>"), None);
        assert_eq!(parse_delete("5"), None);
        let s = deletable_sentences(REFLECTOR);
        assert!(numbered(REFLECTOR, &s).starts_with("[1] You are a careful reviewer.\n[2] Below"));
    }
}
