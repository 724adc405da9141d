//! Pulling answers and code out of model outputs, and normalizing answers for comparison
//! (docs/design/algorithm.md §7). Pure functions over text; no judging.
//!
//! Two modes: [`AnswerMode::Paper`] reproduces the reference `utils.py` exactly, quirks included
//! (first `\boxed{}` with one nesting level, `"1,000"` normalizing to `"0,1"`); the default
//! [`AnswerMode::Strict`] takes the *last* answer tag or `\boxed{}` with full brace nesting,
//! falls back to an "answer is X" phrase, and fixes the normalization quirks. The reference's
//! regexes are reimplemented by hand-written scanning (we do not depend on a regex crate); each
//! function names the regex it mirrors.

mod code;
mod normalize;

pub use code::extract_code;
pub use normalize::{normalize_answer, normalize_exact, numeric_equal, parse_numeric, Numeric};

use serde::{Deserialize, Serialize};

/// Which extraction and normalization rules to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerMode {
    /// Last `<answer>`, else last `\boxed{}` (full nesting), else an "answer is X" phrase, else
    /// the last line; normalization without the reference's quirks.
    #[default]
    Strict,
    /// The reference exactly: last `<answer>`, else the first `\boxed{}` with at most one level
    /// of nested braces, else the last 30 characters of the last line.
    Paper,
}

/// HTML-unescapes `s` (named entities `&amp; &lt; &gt; &quot; &apos; &nbsp;` and numeric ones),
/// like Python's `html.unescape` for the entities model outputs contain.
pub fn html_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        match entity(rest) {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The character an entity at the start of `s` (which starts with `&`) stands for, and its length.
fn entity(s: &str) -> Option<(char, usize)> {
    const NAMED: [(&str, char); 6] = [
        ("amp", '&'),
        ("lt", '<'),
        ("gt", '>'),
        ("quot", '"'),
        ("apos", '\''),
        ("nbsp", '\u{a0}'),
    ];
    let body = &s[1..];
    if let Some(num) = body.strip_prefix('#') {
        let (hex, digits) = match num.strip_prefix(['x', 'X']) {
            Some(h) => (true, h),
            None => (false, num),
        };
        let n = digits
            .bytes()
            .take_while(|b| {
                if hex {
                    b.is_ascii_hexdigit()
                } else {
                    b.is_ascii_digit()
                }
            })
            .count();
        if n == 0 {
            return None;
        }
        let code = u32::from_str_radix(&digits[..n], if hex { 16 } else { 10 }).unwrap_or(0xFFFD);
        let c = char::from_u32(code)
            .filter(|&c| c != '\0')
            .unwrap_or('\u{FFFD}');
        let semi = usize::from(digits[n..].starts_with(';'));
        return Some((c, s.len() - digits.len() + n + semi));
    }
    NAMED.iter().find_map(|(name, c)| {
        let after = body.strip_prefix(name)?;
        // `&amp` without `;` is accepted by HTML5 (and Python) for these legacy names, bar apos.
        match after.strip_prefix(';') {
            Some(_) => Some((*c, name.len() + 2)),
            None if *name != "apos" => Some((*c, name.len() + 1)),
            None => None,
        }
    })
}

/// Unescapes up to three times, stopping when nothing changes (`&amp;lt;` → `<`).
fn unescape_repeated(s: &str) -> String {
    let mut raw = s.to_string();
    for _ in 0..3 {
        let next = html_unescape(&raw);
        if next == raw {
            break;
        }
        raw = next;
    }
    raw
}

/// `text[from..].find(pat)`, as an index into `text`.
pub(crate) fn find_from(text: &str, pat: &str, from: usize) -> Option<usize> {
    text.get(from..)?.find(pat).map(|p| p + from)
}

/// The index after any whitespace starting at `i`.
pub(crate) fn skip_ws(text: &str, i: usize) -> usize {
    text[i..]
        .find(|c: char| !c.is_whitespace())
        .map_or(text.len(), |p| i + p)
}

/// With `text[open] == '{'`, the index of the matching `}` (full nesting; `\{` and `\}` are
/// literal braces, not delimiters).
pub(crate) fn matching_brace(text: &str, open: usize) -> Option<usize> {
    let b = text.as_bytes();
    let (mut depth, mut i) = (0usize, open);
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Contents of `<answer>…</answer>` pairs, left to right (`<answer>(.*?)</answer>`, DOTALL).
fn answer_tags(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = find_from(text, "<answer>", from) {
        let start = p + "<answer>".len();
        let Some(end) = find_from(text, "</answer>", start) else {
            break;
        };
        out.push(&text[start..end]);
        from = end + "</answer>".len();
    }
    out
}

/// The reference's `\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}`, first match: content with at most
/// one level of nested braces; a deeper `\boxed{}` is skipped.
fn first_boxed_one_level(text: &str) -> Option<&str> {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(p) = find_from(text, "\\boxed", from) {
        from = p + 1;
        let open = skip_ws(text, p + "\\boxed".len());
        if b.get(open) != Some(&b'{') {
            continue;
        }
        let mut i = open + 1;
        let end = loop {
            match b.get(i) {
                None => break None,
                Some(b'}') => break Some(i),
                Some(b'{') => {
                    let inner = b[i + 1..].iter().position(|&c| c == b'{' || c == b'}');
                    match inner.map(|k| i + 1 + k) {
                        Some(k) if b[k] == b'}' => i = k + 1,
                        _ => break None,
                    }
                }
                Some(_) => i += 1,
            }
        };
        if let Some(end) = end {
            return Some(&text[open + 1..end]);
        }
    }
    None
}

/// Contents of every `\boxed{…}` with balanced braces (full nesting), left to right.
pub(crate) fn boxed_all(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = find_from(text, "\\boxed", from) {
        from = p + 1;
        let open = skip_ws(text, p + "\\boxed".len());
        if text.as_bytes().get(open) == Some(&b'{') {
            if let Some(close) = matching_brace(text, open) {
                out.push(&text[open + 1..close]);
                from = close;
            }
        }
    }
    out
}

/// The reference's last resort: split on `。`, newline or `;`, take the last piece, and keep its
/// last 30 characters. `skip_empty` (strict) takes the last non-empty piece instead.
fn last_piece(text: &str, skip_empty: bool) -> String {
    let mut pieces = text.split(['。', '\n', ';']).map(str::trim);
    let last = if skip_empty {
        pieces.rfind(|p| !p.is_empty())
    } else {
        pieces.next_back()
    };
    let last = last.unwrap_or("");
    let n = last.chars().count();
    last.chars().skip(n.saturating_sub(30)).collect()
}

/// The text after the last "answer is" / "answer:" phrase, up to the end of its sentence.
fn answer_phrase(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let mut best = None;
    let mut from = 0;
    while let Some(p) = find_from(&lower, "answer", from) {
        from = p + 1;
        let mut i = skip_ws(&lower, p + "answer".len());
        if lower[i..].starts_with("is")
            && !lower[i + 2..].starts_with(|c: char| c.is_alphanumeric())
        {
            i += 2;
        } else if lower[i..].starts_with([':', '=']) {
            i += 1;
        } else if !lower[i..].starts_with("**:") {
            continue;
        }
        let line = text[i..].lines().next().unwrap_or("");
        let sentence = line.find(". ").map_or(line, |k| &line[..k]);
        let markup = |c: char| c.is_whitespace() || matches!(c, '*' | ':' | '$' | '`');
        let cleaned = sentence
            .trim_start_matches(markup)
            .trim_end_matches(|c| markup(c) || c == '.');
        if !cleaned.is_empty() {
            best = Some(cleaned.to_string());
        }
    }
    best
}

/// The text of a final `#### <answer>` line (GSM8K-style solutions).
fn hash_marker(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    let rest = line.strip_prefix("####")?.trim();
    (!rest.is_empty()).then(|| rest.to_string())
}

/// Extracts the final answer from a model output; `None` when there is nothing to compare
/// (empty output, empty answer tag).
pub fn extract_answer(text: &str, mode: AnswerMode) -> Option<String> {
    let raw = unescape_repeated(text.trim());
    let found = match mode {
        AnswerMode::Paper => match answer_tags(&raw).last() {
            Some(tag) => tag.trim().to_string(),
            None => first_boxed_one_level(&raw)
                .map(|b| b.trim().to_string())
                .unwrap_or_else(|| last_piece(&raw, false)),
        },
        AnswerMode::Strict => {
            let tag = answer_tags(&raw)
                .into_iter()
                .map(str::trim)
                .rfind(|t| !t.is_empty());
            let boxed = || {
                boxed_all(&raw)
                    .into_iter()
                    .map(str::trim)
                    .rfind(|t| !t.is_empty())
            };
            match tag.or_else(boxed) {
                Some(found) => found.to_string(),
                None => hash_marker(&raw)
                    .or_else(|| answer_phrase(&raw))
                    .unwrap_or_else(|| last_piece(&raw, true)),
            }
        }
    };
    (!found.is_empty()).then_some(found)
}

/// Extracts one option letter (strict rules): from the last `<answer>` or `\boxed{}` if there is
/// one, else from the text: the last "answer is (C)" / "option C" phrase, else the last `(C)`,
/// else a final line that is or starts with a letter (`C`, `C.`, `**C**`, `C) 42`), else a
/// letter standing alone at the end of the final line (`I think it's C.`). Only letters in
/// `letters` count.
pub fn extract_choice(text: &str, letters: &str) -> Option<char> {
    let raw = unescape_repeated(text.trim());
    let ok = |c: char| c.is_ascii_uppercase() && letters.contains(c);
    let tag = answer_tags(&raw)
        .into_iter()
        .map(str::trim)
        .rfind(|t| !t.is_empty());
    let boxed = boxed_all(&raw)
        .into_iter()
        .map(str::trim)
        .rfind(|t| !t.is_empty());
    for region in [tag, boxed].into_iter().flatten() {
        if let Some(c) = leading_letter(region, &ok).or_else(|| letter_in_prose(region, &ok)) {
            return Some(c);
        }
    }
    letter_in_prose(&raw, &ok)
}

/// Markup that may surround a letter: `**(B)**`, `$\text{B}$`, `"B"`.
fn is_markup(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '*' | '(' | '[' | '{' | '"' | '\'' | '$' | '`' | '\\' | ':' | '#' | '_'
        )
}

/// `c` ends a letter token: end of text or a non-alphanumeric character.
fn ends_token(rest: &str) -> bool {
    !rest.starts_with(|c: char| c.is_alphanumeric())
}

/// A letter at the start of an answer region (`C`, `(C) 42`, `Option C`, `\text{C}`).
fn leading_letter(region: &str, ok: &impl Fn(char) -> bool) -> Option<char> {
    let mut s = region.trim_start_matches(is_markup);
    for word in ["option", "choice", "answer", "textbf", "text"] {
        if s.get(..word.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(word))
        {
            s = s[word.len()..].trim_start_matches(is_markup);
        }
    }
    let c = s.chars().next()?;
    let c = if s.len() == 1 {
        c.to_ascii_uppercase()
    } else {
        c
    };
    (ok(c) && ends_token(&s[1..])).then_some(c)
}

fn letter_in_prose(text: &str, ok: &impl Fn(char) -> bool) -> Option<char> {
    phrase_letter(text, ok)
        .or_else(|| last_paren_letter(text, ok))
        .or_else(|| last_line_letter(text, ok))
}

/// The letter after the last "answer is", "option", "choice" phrase (`The correct option is
/// (B).`, `Answer: C`, `the answer would be **D**`).
fn phrase_letter(text: &str, ok: &impl Fn(char) -> bool) -> Option<char> {
    const FILLER: &[&str] = &[
        "is",
        "be",
        "would",
        "should",
        "will",
        "must",
        "therefore",
        "thus",
        "correct",
        "final",
        "option",
        "choice",
        "letter",
        "answer",
        "text",
        "textbf",
        "boxed",
        "clearly",
        "probably",
    ];
    let lower = text.to_ascii_lowercase();
    let mut best: Option<(usize, char)> = None;
    for key in ["answer", "option", "choice"] {
        let mut from = 0;
        while let Some(p) = find_from(&lower, key, from) {
            from = p + 1;
            let mut i = p + key.len();
            for _ in 0..6 {
                i = lower[i..]
                    .find(|c: char| !is_markup(c) && c != '=')
                    .map_or(lower.len(), |k| i + k);
                let word_len = lower[i..]
                    .find(|c: char| !c.is_ascii_alphabetic())
                    .unwrap_or(lower.len() - i);
                if word_len > 1 && FILLER.contains(&&lower[i..i + word_len]) {
                    i += word_len;
                } else {
                    break;
                }
            }
            let Some(c) = text[i..].chars().next() else {
                continue;
            };
            if ok(c) && ends_token(&text[i + 1..]) && best.is_none_or(|(b, _)| p > b) {
                best = Some((p, c));
            }
        }
    }
    best.map(|(_, c)| c)
}

/// The last `(X)` with `X` an allowed letter.
fn last_paren_letter(text: &str, ok: &impl Fn(char) -> bool) -> Option<char> {
    text.as_bytes()
        .windows(3)
        .rev()
        .find(|w| w[0] == b'(' && w[2] == b')' && ok(w[1] as char))
        .map(|w| w[1] as char)
}

/// A last non-empty line that is a letter, possibly with markup (`C`, `**C**`, `C.`, `C) 42`),
/// or that ends in a standalone letter (`so it's C.`).
fn last_line_letter(text: &str, ok: &impl Fn(char) -> bool) -> Option<char> {
    let line = text.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    let closing = |c: char| is_markup(c) || matches!(c, '.' | ')' | ']' | '}' | '!');
    let s = line.trim_start_matches(is_markup);
    let c = s.chars().next()?;
    let rest = &s[c.len_utf8()..];
    if ok(c) && (rest.trim_matches(closing).is_empty() || rest.starts_with([')', '.', ':'])) {
        return Some(c);
    }
    let body = line.trim_end_matches(closing);
    let last = body.chars().last()?;
    let before = body[..body.len() - last.len_utf8()].chars().last();
    (ok(last) && before.is_some_and(|b| b.is_whitespace() || is_markup(b))).then_some(last)
}

#[cfg(test)]
mod tests;
