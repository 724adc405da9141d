//! Line diffs of prompts for report.md: what an optimized prompt changed against its seed.

/// A unified-style line diff of `new` against `old` (longest common subsequence of lines):
/// kept lines start with two spaces, removed ones with `- `, added ones with `+ `.
pub fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    let mut line = |mark: &str, text: &str| {
        out.push_str(mark);
        out.push_str(text);
        out.push('\n');
    };
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            line("  ", a[i]);
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            line("- ", a[i]);
            i += 1;
        } else {
            line("+ ", b[j]);
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_and_changed_lines_are_marked() {
        let old = "Solve it.\n\nThe problem:\n{question}";
        let new = "Solve it carefully.\n\nCheck units.\n\nThe problem:\n{question}";
        assert_eq!(
            line_diff(old, new),
            "- Solve it.\n+ Solve it carefully.\n  \n+ Check units.\n+ \n  The problem:\n  {question}\n"
        );
        assert_eq!(line_diff("a\nb", "a\nb"), "  a\n  b\n");
        assert_eq!(line_diff("", "x"), "+ x\n");
    }
}
