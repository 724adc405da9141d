//! Answer normalization (docs/design/algorithm.md §7 `normalize_answer`) and numeric equivalence.
//!
//! Paper mode mirrors the reference's eleven regex steps one by one, each helper naming its
//! regex. Strict mode keeps the same idea with full brace nesting, no `circ` quirk, thousands
//! separators, and currency/percent/spacing markup removed.

use super::{find_from, matching_brace, skip_ws, AnswerMode};

/// Normalizes an answer for string comparison.
pub fn normalize_answer(answer: &str, mode: AnswerMode) -> String {
    match mode {
        AnswerMode::Paper => normalize_paper(answer),
        AnswerMode::Strict => normalize_strict(answer),
    }
}

fn normalize_paper(answer: &str) -> String {
    let s = answer.trim();
    let s = sub_delimited(s, "$", "$", false);
    let s = sub_delimited(&s, "\\[", "\\]", true);
    let s = sub_text_flat(&s);
    let s = sub_boxed_lazy(&s);
    let s = sub_delimited(&s, "\\(", "\\)", false);
    let s = remove_any(&s, &["\\°", "°"]);
    let s = remove_any(&s, &["^\\circ", "^circ", "\\circ", "circ"]);
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let s = sub_sqrt_flat(&s);
    let s = sub_root_digits(&s);
    let s = sub_frac_flat(&s, "\\frac");
    let s = sub_frac_flat(&s, "\\dfrac");
    let s = s.replace("\\pi", "π");
    let s = remove_any(&s, &["\\left", "\\right"]);
    let s = s.replace('[', "(").replace(']', ")");
    sorted_int_list(&s).unwrap_or_else(|| s.to_lowercase())
}

fn normalize_strict(answer: &str) -> String {
    let s = answer.trim().replace("\\$", "").replace('$', "");
    let s = remove_any(&s, &["\\[", "\\]", "\\(", "\\)", "\\displaystyle"]);
    let s = unwrap_commands(
        &s,
        &[
            "\\boxed", "\\textbf", "\\text", "\\mathrm", "\\mathbf", "\\mbox",
        ],
    );
    let s = remove_any(&s, &["^{\\circ}", "^\\circ", "\\circ", "\\degree", "°"]);
    let s = remove_any(&s, &["\\!", "\\,", "\\;", "\\:", "\\ "])
        .replace("{,}", ",")
        .replace("\\%", "%");
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac");
    let s = rewrite_command(&s, "\\frac", 2, &|a| format!("{}/{}", a[0], a[1]));
    let s = rewrite_command(&s, "\\sqrt", 1, &|a| format!("sqrt({})", a[0]));
    let s = sub_root_digits(&s).replace("\\pi", "π");
    let s = remove_any(&s, &["\\left", "\\right"])
        .replace('[', "(")
        .replace(']', ")");
    let s = s.strip_suffix('.').unwrap_or(&s);
    let s = without_thousands_commas(s).unwrap_or_else(|| s.to_string());
    sorted_int_list(&s).unwrap_or_else(|| s.to_lowercase())
}

/// Light normalization for exact-match targets (BBH `Yes`, `valid`, `) ] >`, word lists):
/// answer markup unwrapped, `*`, quotes and backticks dropped, a final `.` dropped, all
/// whitespace removed, lowercase.
pub fn normalize_exact(answer: &str) -> String {
    let s = answer.replace("\\$", "").replace('$', "");
    let s = unwrap_commands(&s, &["\\boxed", "\\textbf", "\\text", "\\mathrm"]);
    let s: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '*' | '`' | '"'))
        .collect();
    let s = s.trim_end_matches(['.', '!']);
    s.to_lowercase()
}

/// `re.sub(open(.*?)close, r'\1')`: removes delimiter pairs, keeping what is between (the
/// content may not span a newline unless `dotall`).
fn sub_delimited(s: &str, open: &str, close: &str, dotall: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(open) {
            let start = i + open.len();
            if let Some(end) = find_from(s, close, start) {
                if dotall || !s[start..end].contains('\n') {
                    out.push_str(&s[start..end]);
                    i = end + close.len();
                    continue;
                }
            }
        }
        i = push_char(&mut out, s, i);
    }
    out
}

/// Copies the char at `i` to `out`; returns the next index.
fn push_char(out: &mut String, s: &str, i: usize) -> usize {
    let c = s[i..].chars().next().unwrap_or_default();
    out.push(c);
    i + c.len_utf8()
}

/// Removes every occurrence of the alternatives, trying them in order at each position (a regex
/// alternation in one left-to-right pass).
fn remove_any(s: &str, alternatives: &[&str]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match alternatives.iter().find(|a| s[i..].starts_with(**a)) {
            Some(a) => i += a.len(),
            None => i = push_char(&mut out, s, i),
        }
    }
    out
}

/// Replaces each match that `at(s, i)` finds at `i` (returning the replacement and the end);
/// unmatched characters are copied.
fn substitute(
    s: &str,
    prefix: &str,
    at: impl Fn(&str, usize) -> Option<(String, usize)>,
) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(prefix) {
            if let Some((rep, end)) = at(s, i) {
                out.push_str(&rep);
                i = end;
                continue;
            }
        }
        i = push_char(&mut out, s, i);
    }
    out
}

/// `\\text\{([^}]*)\}` → `\1`.
fn sub_text_flat(s: &str) -> String {
    substitute(s, "\\text{", |s, i| {
        let start = i + "\\text{".len();
        let end = find_from(s, "}", start)?;
        Some((s[start..end].to_string(), end + 1))
    })
}

/// `\\boxed\s*{((?:[^{}]|{[^}]*})*?)}` → `\1`: the content ends at the first `}` outside a
/// `{…}` group, where a group runs from `{` to the next `}`.
fn sub_boxed_lazy(s: &str) -> String {
    substitute(s, "\\boxed", |s, i| {
        let open = skip_ws(s, i + "\\boxed".len());
        if !s[open..].starts_with('{') {
            return None;
        }
        let b = s.as_bytes();
        let mut k = open + 1;
        loop {
            match b.get(k)? {
                b'}' => return Some((s[open + 1..k].to_string(), k + 1)),
                b'{' => k = find_from(s, "}", k + 1)? + 1,
                _ => k += 1,
            }
        }
    })
}

/// `\\sqrt\s*{([^}]*)}` → `sqrt(\1)`.
fn sub_sqrt_flat(s: &str) -> String {
    substitute(s, "\\sqrt", |s, i| {
        let open = skip_ws(s, i + "\\sqrt".len());
        if !s[open..].starts_with('{') {
            return None;
        }
        let end = find_from(s, "}", open + 1)?;
        Some((format!("sqrt({})", &s[open + 1..end]), end + 1))
    })
}

/// `√(\d+)` → `sqrt(\1)`.
fn sub_root_digits(s: &str) -> String {
    substitute(s, "√", |s, i| {
        let start = i + '√'.len_utf8();
        let n = s[start..].bytes().take_while(u8::is_ascii_digit).count();
        (n > 0).then(|| (format!("sqrt({})", &s[start..start + n]), start + n))
    })
}

/// `\\frac\{([^}]+)\}\{([^}]+)\}` → `\1/\2` (also for `\dfrac`).
fn sub_frac_flat(s: &str, cmd: &str) -> String {
    let prefix = format!("{cmd}{{");
    substitute(s, &prefix, |s, i| {
        let a0 = i + prefix.len();
        let a1 = find_from(s, "}", a0).filter(|&e| e > a0)?;
        let b0 = a1 + 1;
        if !s[b0..].starts_with('{') {
            return None;
        }
        let b1 = find_from(s, "}", b0 + 1).filter(|&e| e > b0 + 1)?;
        Some((format!("{}/{}", &s[a0..a1], &s[b0 + 1..b1]), b1 + 1))
    })
}

/// Replaces `\cmd{X}` by `X` for each command (full nesting, repeated inside).
fn unwrap_commands(s: &str, cmds: &[&str]) -> String {
    cmds.iter().fold(s.to_string(), |acc, cmd| {
        rewrite_command(&acc, cmd, 1, &|a| a[0].clone())
    })
}

/// Rewrites `\cmd{a}{b}…` (`arity` brace groups with full nesting; a bare digit counts
/// as a group, as in `\frac12`, `\sqrt2`) through `f`, innermost arguments first.
fn rewrite_command(s: &str, cmd: &str, arity: usize, f: &dyn Fn(&[String]) -> String) -> String {
    substitute(s, cmd, |s, i| {
        let mut k = i + cmd.len();
        let mut args = Vec::with_capacity(arity);
        for _ in 0..arity {
            k = skip_ws(s, k);
            let c = s[k..].chars().next()?;
            if c == '{' {
                let close = matching_brace(s, k)?;
                args.push(rewrite_command(&s[k + 1..close], cmd, arity, f));
                k = close + 1;
            } else if c.is_ascii_digit() {
                args.push(c.to_string());
                k += 1;
            } else {
                return None;
            }
        }
        Some((f(&args), k))
    })
}

/// `1,000` / `-12,345.5` → digits without the commas; `None` unless the whole string is one
/// number with 3-digit groups.
fn without_thousands_commas(s: &str) -> Option<String> {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let groups: Vec<&str> = int.split(',').collect();
    let digits = |g: &str| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit());
    let ok = groups.len() > 1
        && digits(groups[0])
        && groups[0].len() <= 3
        && groups[1..].iter().all(|g| g.len() == 3 && digits(g))
        && (frac.is_empty() || digits(frac))
        && !(body.ends_with('.'));
    ok.then(|| s.replace(',', ""))
}

/// Step 10: a string of only digits, commas, minus signs and whitespace becomes its integers
/// (`-?\d+`), sorted numerically and joined with commas. `None` for any other string.
fn sorted_int_list(s: &str) -> Option<String> {
    let only = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == '-' || c.is_whitespace());
    if !only {
        return None;
    }
    let mut nums: Vec<(bool, String)> = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let neg = b[i] == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit);
        let start = i + usize::from(neg);
        let n = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            i += 1;
            continue;
        }
        let digits = s[start..start + n].trim_start_matches('0');
        let digits = if digits.is_empty() { "0" } else { digits };
        nums.push((neg && digits != "0", digits.to_string()));
        i = start + n;
    }
    nums.sort_by(|(na, a), (nb, b)| {
        let mag = a.len().cmp(&b.len()).then_with(|| a.cmp(b));
        match (na, nb) {
            (false, false) => mag,
            (true, true) => mag.reverse(),
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
        }
    });
    let parts: Vec<String> = nums
        .iter()
        .map(|(neg, d)| format!("{}{d}", if *neg { "-" } else { "" }))
        .collect();
    Some(parts.join(","))
}

/// A numeric answer as an exact fraction `num/den` (`den > 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numeric {
    /// Numerator.
    pub num: i128,
    /// Denominator, positive.
    pub den: i128,
    /// Written as a decimal with at least six fractional digits (so possibly rounded).
    pub rounded: bool,
}

/// Parses a strict-normalized answer as a number: an integer, a decimal or a fraction `a/b` of
/// them, with an optional sign, an optional trailing `%` (dropped: `50%` reads as 50) and an
/// optional single-variable prefix such as `x=`. `None` for anything else or on overflow.
pub fn parse_numeric(norm: &str) -> Option<Numeric> {
    let mut s = norm.trim();
    if let Some((lhs, rhs)) = s.split_once('=') {
        let var = lhs.len() == 1 && lhs.bytes().all(|b| b.is_ascii_alphabetic());
        s = if var { rhs } else { return None };
    }
    let s = s.strip_suffix('%').unwrap_or(s);
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (a, b) = match s.split_once('/') {
        Some((a, b)) => (decimal(a)?, decimal(b)?),
        None => (decimal(s)?, (1, 1, false)),
    };
    if b.0 == 0 {
        return None;
    }
    let num = a.0.checked_mul(b.1)?;
    let den = a.1.checked_mul(b.0)?;
    Some(Numeric {
        num: if neg { -num } else { num },
        den,
        rounded: a.2 || b.2,
    })
}

/// `123`, `1.5`, `.75` as (numerator, power-of-ten denominator, ≥ 6 fractional digits).
fn decimal(s: &str) -> Option<(i128, i128, bool)> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if int.len() + frac.len() == 0 || !all_digits(int) || !all_digits(frac) || frac.len() > 30 {
        return None;
    }
    let mut num: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        num = num.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    let den = 10i128.checked_pow(frac.len() as u32)?;
    Some((num, den, frac.len() >= 6))
}

/// Whether two strict-normalized answers are the same number: equal fractions, or, when either
/// was written as a long (possibly rounded) decimal, within 1e-9 relative.
pub fn numeric_equal(a: &str, b: &str) -> bool {
    let (Some(x), Some(y)) = (parse_numeric(a), parse_numeric(b)) else {
        return false;
    };
    if let (Some(l), Some(r)) = (x.num.checked_mul(y.den), y.num.checked_mul(x.den)) {
        if l == r {
            return true;
        }
    }
    if !(x.rounded || y.rounded) {
        return false;
    }
    let (fx, fy) = (x.num as f64 / x.den as f64, y.num as f64 / y.den as f64);
    (fx - fy).abs() <= 1e-9 * fx.abs().max(fy.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paper(s: &str) -> String {
        normalize_answer(s, AnswerMode::Paper)
    }

    fn strict(s: &str) -> String {
        normalize_answer(s, AnswerMode::Strict)
    }

    #[test]
    fn paper_steps() {
        assert_eq!(paper("  $\\frac{3}{4}$ "), "3/4");
        assert_eq!(paper("\\dfrac{1}{2}"), "1/2");
        assert_eq!(paper("\\boxed{\\frac{1}{2}}"), "1/2");
        assert_eq!(paper("\\text{Monday}"), "monday");
        assert_eq!(paper("90^\\circ"), "90");
        assert_eq!(paper("45°"), "45");
        assert_eq!(paper("2\\sqrt{3}"), "2sqrt(3)");
        assert_eq!(paper("√3"), "sqrt(3)");
        assert_eq!(paper("\\left( 3, \\frac{\\pi}{2} \\right)"), "(3,π/2)");
        assert_eq!(paper("[1, 2]"), "(1,2)");
        assert_eq!(paper("\\[ x^2 \\]"), "x^2");
        assert_eq!(paper("\\(5\\)"), "5");
        assert_eq!(paper("3, 1, 2"), "1,2,3");
        assert_eq!(paper("-5"), "-5");
        assert_eq!(paper("007"), "7");
    }

    #[test]
    fn paper_quirks_are_kept() {
        assert_eq!(paper("1,000"), "0,1");
        assert_eq!(paper("circle"), "le");
        // One level of flat braces only: the `\sqrt` step turns the numerator into `sqrt(3)`
        // first, so this still works; a nested denominator does not.
        assert_eq!(paper("\\frac{\\sqrt{3}}{2}"), "sqrt(3)/2");
        assert_eq!(paper("\\frac{1}{\\sqrt{2}}"), "1/sqrt(2)");
        assert_eq!(paper("\\frac{a^{2}}{b}"), "\\frac{a^{2}}{b}");
        assert_eq!(paper("$5 and\n6$"), "$5and6$");
        assert_eq!(paper("-"), "");
    }

    #[test]
    fn strict_fixes() {
        assert_eq!(strict("1,000"), "1000");
        assert_eq!(strict("-12,345.5"), "-12345.5");
        assert_eq!(strict("1{,}000"), "1000");
        assert_eq!(strict("10\\,000"), "10000");
        assert_eq!(strict("circle"), "circle");
        assert_eq!(strict("\\frac{a^{2}}{b}"), "a^{2}/b");
        assert_eq!(strict("\\dfrac{\\sqrt{3}}{2}"), "sqrt(3)/2");
        assert_eq!(strict("\\frac12"), "1/2");
        assert_eq!(strict("\\boxed{\\text{(C)}}"), "(c)");
        assert_eq!(strict("\\$18.00"), "18.00");
        assert_eq!(strict("50\\%"), "50%");
        assert_eq!(strict("42."), "42");
        assert_eq!(strict("2, 1"), "1,2");
        assert_eq!(strict("90^{\\circ}"), "90");
        assert_eq!(strict("\\textbf{yes}"), "yes");
    }

    #[test]
    fn thousands_only_for_single_grouped_numbers() {
        assert_eq!(
            without_thousands_commas("1,000,000"),
            Some("1000000".into())
        );
        assert_eq!(without_thousands_commas("1,00"), None);
        assert_eq!(without_thousands_commas("1234,567"), None);
        assert_eq!(without_thousands_commas("1,2"), None);
    }

    #[test]
    fn numeric_equivalence() {
        let eq = |a: &str, b: &str| numeric_equal(&strict(a), &strict(b));
        assert!(eq("0.5", "\\frac{1}{2}"));
        assert!(eq("5", "5.0"));
        assert!(eq("\\dfrac{3}{4}", ".75"));
        assert!(eq("x = 5", "5"));
        assert!(eq("50\\%", "50"));
        assert!(eq("-\\frac{1}{2}", "-0.5"));
        assert!(eq("0.3333333333", "\\frac13"));
        assert!(!eq("0.3333", "\\frac13"));
        assert!(!eq("1000000001", "1000000000"));
        assert!(!eq("5", "6"));
        assert!(!eq("x+1 = 5", "5"));
        assert!(!eq("1/0", "1/0"));
        assert!(!eq("sqrt(2)", "1.414"));
    }

    #[test]
    fn overflow_is_not_a_number() {
        assert!(parse_numeric("123456789012345678901234567890123456789012").is_none());
        assert!(numeric_equal(
            "12345678901234567890",
            "12345678901234567890.0"
        ));
    }

    #[test]
    fn exact_normalization() {
        assert_eq!(normalize_exact("**Yes**."), "yes");
        assert_eq!(normalize_exact(") ] >"), ")]>");
        assert_eq!(normalize_exact("\\text{valid}"), "valid");
        assert_eq!(normalize_exact("apple banana cherry"), "applebananacherry");
    }
}
