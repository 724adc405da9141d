//! `extract_code`: the reference's code extraction (`utils.py`), by hand-written scanning.

use super::{find_from, skip_ws};

/// Extracts Python code from a model output, as the reference does: candidates from
/// ```` ```python ```` fences, then from every fence (a leading `python` dropped), then from
/// `<code>` tags; the last candidate containing `def ` wins. Otherwise the first `def name(…):`
/// block up to a blank line, a fence or the end; otherwise `""`.
pub fn extract_code(text: &str) -> String {
    let raw = text.trim();
    let mut candidates: Vec<String> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for code in python_fences(raw) {
        let code = code.trim();
        if !code.is_empty() && !seen.iter().any(|s| s == code) {
            seen.push(code.to_string());
            candidates.push(code.to_string());
        }
    }
    for code in plain_fences(raw) {
        let code = code.trim();
        // As the reference: the seen-check is on the fence content, the stored text has a
        // leading `python` removed.
        if !code.is_empty() && !seen.iter().any(|s| s == code) {
            let code = strip_python_word(code).trim().to_string();
            seen.push(code.clone());
            candidates.push(code);
        }
    }
    for code in code_tags(raw) {
        let code = code.trim();
        if !code.is_empty() && !seen.iter().any(|s| s == code) {
            seen.push(code.to_string());
            candidates.push(code.to_string());
        }
    }
    if let Some(code) = candidates.iter().rev().find(|c| c.contains("def ")) {
        return code.clone();
    }
    if raw.contains("def ") {
        if let Some(block) = def_block(raw) {
            return block.trim().to_string();
        }
    }
    String::new()
}

/// `(?is)```\s*python\s*(.*?)\s*```` — contents of fences whose info word is `python`.
fn python_fences(text: &str) -> Vec<&str> {
    fences(text, true)
}

/// `(?s)```\s*(.*?)\s*```` — contents of every fence pair, left to right.
fn plain_fences(text: &str) -> Vec<&str> {
    fences(text, false)
}

/// Fence contents, left to right; with `python`, only fences whose info word is `python` (a
/// fence that is not one is skipped by a single character, as the reference's regex does).
fn fences(text: &str, python: bool) -> Vec<&str> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = find_from(text, "```", from) {
        let mut start = skip_ws(text, p + 3);
        if python {
            let is_python = text
                .get(start..start + 6)
                .is_some_and(|w| w.eq_ignore_ascii_case("python"));
            if !is_python {
                from = p + 1;
                continue;
            }
            start = skip_ws(text, start + 6);
        }
        match find_from(text, "```", start) {
            Some(close) => {
                out.push(text[start..close].trim_end());
                from = close + 3;
            }
            None => break,
        }
    }
    out
}

/// `(?is)<code>(.*?)</code>`.
fn code_tags(text: &str) -> Vec<&str> {
    let lower = text.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = find_from(&lower, "<code>", from) {
        let start = p + "<code>".len();
        let Some(close) = find_from(&lower, "</code>", start) else {
            break;
        };
        out.push(&text[start..close]);
        from = close + "</code>".len();
    }
    out
}

/// `re.sub(r'^python\s*', '', code, flags=re.I)`.
fn strip_python_word(code: &str) -> &str {
    match code.get(..6) {
        Some(w) if w.eq_ignore_ascii_case("python") => &code[skip_ws(code, 6)..],
        _ => code,
    }
}

/// `(?i)def\s+[\w_]+\(.*?\):\s*\n?(.|\n)*?(?=\n\s*\n|```|\Z)`, first match.
fn def_block(text: &str) -> Option<&str> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(p) = find_from(&lower, "def", from) {
        from = p + 1;
        if let Some(body) = def_header_end(text, p + 3) {
            return Some(&text[p..block_end(text, skip_ws(text, body))]);
        }
    }
    None
}

/// After `def` at `i`: whitespace, a name, `(`, then the first `):` on the same line. Returns
/// the index after that `:`.
fn def_header_end(text: &str, i: usize) -> Option<usize> {
    let name = skip_ws(text, i);
    if name == i {
        return None;
    }
    let name_len = text[name..]
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len() - name);
    let paren = name + name_len;
    if name_len == 0 || !text[paren..].starts_with('(') {
        return None;
    }
    let line_end = text[paren..].find('\n').map_or(text.len(), |k| paren + k);
    find_from(&text[..line_end], "):", paren + 1).map(|k| k + 2)
}

/// The first index ≥ `i` where a blank line starts (`\n\s*\n`), a fence starts, or the text ends.
fn block_end(text: &str, i: usize) -> usize {
    let mut k = i;
    while k < text.len() {
        let rest = &text[k..];
        if rest.starts_with("```") {
            return k;
        }
        if rest.starts_with('\n') && text[k + 1..skip_ws(text, k + 1)].contains('\n') {
            return k;
        }
        k += rest.chars().next().map_or(1, char::len_utf8);
    }
    text.len()
}
