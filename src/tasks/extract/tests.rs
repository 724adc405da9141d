//! Unit tests of answer, choice and code extraction on small-model-style outputs.

use super::*;

fn strict(s: &str) -> Option<String> {
    extract_answer(s, AnswerMode::Strict)
}

fn paper(s: &str) -> Option<String> {
    extract_answer(s, AnswerMode::Paper)
}

#[test]
fn html_entities() {
    assert_eq!(
        html_unescape("a &lt; b &amp;&amp; c &gt; d"),
        "a < b && c > d"
    );
    assert_eq!(
        html_unescape("&#39;x&#x27; &quot;y&quot; &amp"),
        "'x' \"y\" &"
    );
    assert_eq!(html_unescape("AT&T &unknown; &#;"), "AT&T &unknown; &#;");
    assert_eq!(unescape_repeated("&amp;lt;answer&amp;gt;"), "<answer>");
}

#[test]
fn answer_tag_is_taken_last() {
    let out = "First I thought <answer>2/3</answer> but rechecking,\nso the answer is <answer>\\frac{3}{4}</answer>";
    assert_eq!(strict(out).as_deref(), Some("\\frac{3}{4}"));
    assert_eq!(paper(out).as_deref(), Some("\\frac{3}{4}"));
}

#[test]
fn escaped_answer_tags() {
    let out = "The total is 12.\n&lt;answer&gt; 12 &lt;/answer&gt;";
    assert_eq!(strict(out).as_deref(), Some("12"));
    assert_eq!(paper(out).as_deref(), Some("12"));
}

#[test]
fn empty_answer_tag() {
    let out = "Put the result in <answer></answer>. The result is \\boxed{7}";
    assert_eq!(paper(out), None, "the reference returns the empty tag");
    assert_eq!(strict(out).as_deref(), Some("7"));
}

#[test]
fn boxed_with_nested_braces() {
    let out = "Simplifying, we get $\\boxed{\\dfrac{1}{2}}$.";
    assert_eq!(strict(out).as_deref(), Some("\\dfrac{1}{2}"));
    assert_eq!(paper(out).as_deref(), Some("\\dfrac{1}{2}"));
    let deep = "So $x = \\boxed{\\frac{\\sqrt{3}}{2}}$";
    assert_eq!(strict(deep).as_deref(), Some("\\frac{\\sqrt{3}}{2}"));
    // One nesting level only: the reference falls through to the last 30 characters.
    assert_eq!(paper(deep).as_deref(), Some(&deep[deep.len() - 30..]));
}

#[test]
fn two_boxed_first_versus_last() {
    let out = "Case 1 gives \\boxed{4}, but that violates x>5. Case 2 gives \\boxed{9}.";
    assert_eq!(paper(out).as_deref(), Some("4"));
    assert_eq!(strict(out).as_deref(), Some("9"));
}

#[test]
fn answer_phrase_fallback() {
    let out = "Janet has 16 - 3 - 4 = 9 eggs.\nShe earns 9 * 2 = 18 dollars.\nThe answer is 18. I hope it is correct.";
    assert_eq!(strict(out).as_deref(), Some("18"));
    assert_eq!(
        paper(out).as_deref(),
        Some("r is 18. I hope it is correct.")
    );
    assert_eq!(strict("**Final Answer:** 3.5").as_deref(), Some("3.5"));
    assert_eq!(
        strict("Therefore the final answer: $42$.").as_deref(),
        Some("42")
    );
}

#[test]
fn gsm8k_style_marker() {
    let out = "She sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = 18 dollars.\n#### 18";
    assert_eq!(strict(out).as_deref(), Some("18"));
    assert_eq!(paper(out).as_deref(), Some("#### 18"));
}

#[test]
fn last_piece_fallback() {
    let out = "Let me compute step by step;\nfirst 3 + 4 = 7\n7";
    assert_eq!(strict(out).as_deref(), Some("7"));
    assert_eq!(paper(out).as_deref(), Some("7"));
    let long = "The area of the triangle is therefore forty-two square units";
    assert_eq!(paper(long).map(|s| s.chars().count()), Some(30));
    assert_eq!(paper(long).as_deref(), Some(&long[long.len() - 30..]));
}

#[test]
fn truncated_and_empty_outputs() {
    assert_eq!(strict(""), None);
    assert_eq!(paper("   \n "), None);
    let cut = "To find the sum we first note that the series is geometric with ratio";
    assert_eq!(
        strict(cut).map(|s| s.len()),
        Some(30),
        "a garbage tail, judged wrong later"
    );
    assert_eq!(paper("abc;"), None, "the reference's last piece is empty");
    assert_eq!(strict("abc;").as_deref(), Some("abc"));
}

#[test]
fn boxed_whitespace_and_unbalanced() {
    assert_eq!(strict("\\boxed {12}").as_deref(), Some("12"));
    assert_eq!(
        strict("first \\boxed{5} then \\boxed{\\frac{1}{2").as_deref(),
        Some("5")
    );
}

#[test]
fn choices_from_tags_and_phrases() {
    let l = "ABCDE";
    assert_eq!(
        extract_choice("Reasoning...\n<answer>C</answer>", l),
        Some('C')
    );
    assert_eq!(extract_choice("<answer>(B) 12 km/h</answer>", l), Some('B'));
    assert_eq!(extract_choice("<answer>Option D</answer>", l), Some('D'));
    assert_eq!(extract_choice("<answer>e</answer>", l), Some('E'));
    assert_eq!(
        extract_choice("So we pick $\\boxed{\\text{A}}$", l),
        Some('A')
    );
    assert_eq!(extract_choice("The correct option is (B).", l), Some('B'));
    assert_eq!(extract_choice("Answer: C", l), Some('C'));
    assert_eq!(
        extract_choice("Thus, the answer would be **D**.", l),
        Some('D')
    );
    assert_eq!(
        extract_choice("A is wrong, B is wrong.\nThe answer is E", l),
        Some('E')
    );
}

#[test]
fn choices_from_parens_and_last_line() {
    let l = "ABCD";
    assert_eq!(
        extract_choice("Comparing (A) and (C), only (C) fits.", l),
        Some('C')
    );
    assert_eq!(
        extract_choice("After checking each option:\n\n**B**", l),
        Some('B')
    );
    assert_eq!(
        extract_choice("Eliminating the rest leaves\nD. 42", l),
        Some('D')
    );
    assert_eq!(
        extract_choice("The answer is not obvious; I cannot decide.", l),
        None
    );
    assert_eq!(
        extract_choice("The answer is E", l),
        None,
        "E is not an option"
    );
    assert_eq!(extract_choice("", l), None);
    assert_eq!(extract_choice("Answer: I think it's B.", l), Some('B'));
    assert_eq!(extract_choice("so the best fit is **C**", l), Some('C'));
    assert_eq!(extract_choice("I am unsure about this one", l), None);
}

#[test]
fn choice_phrase_beats_earlier_mentions() {
    let out = "Option (A) gives 10, option (B) gives 12.\nTherefore the answer is (A).";
    assert_eq!(extract_choice(out, "ABCD"), Some('A'));
    let out = "I first thought the answer is B, but (C) is right.\nAnswer: C";
    assert_eq!(extract_choice(out, "ABCD"), Some('C'));
}

#[test]
fn code_from_python_fence_with_explanation_after() {
    let out = "Here is the function:\n```python\ndef add(a, b):\n    return a + b\n```\nThis adds the two numbers. Example: `add(1, 2)` returns 3.";
    assert_eq!(extract_code(out), "def add(a, b):\n    return a + b");
}

#[test]
fn code_last_fence_with_def_wins() {
    let out = "```python\ndef f(x):\n    return x\n```\nTest it:\n```python\nprint(f(2))\n```\nImproved:\n```\ndef f(x):\n    return 2 * x\n```";
    assert_eq!(extract_code(out), "def f(x):\n    return 2 * x");
}

#[test]
fn code_plain_fence_with_python_word_and_code_tags() {
    assert_eq!(
        extract_code("``` Python\ndef g():\n    pass\n```"),
        "def g():\n    pass"
    );
    assert_eq!(
        extract_code("<code>def h(n):\n    return n</code>"),
        "def h(n):\n    return n"
    );
    assert_eq!(
        extract_code("```python3\ndef k(): return 1\n```"),
        "3\ndef k(): return 1",
        "the reference keeps the 3"
    );
}

#[test]
fn code_without_fences() {
    let out = "Sure! def is_even(n):\n    return n % 2 == 0\n\nThis checks parity.";
    assert_eq!(extract_code(out), "def is_even(n):\n    return n % 2 == 0");
    let out = "def first(xs):\n    for x in xs:\n        return x\n```";
    assert_eq!(
        extract_code(out),
        "def first(xs):\n    for x in xs:\n        return x"
    );
    let out = "def two_lines(s):\n    t = s.strip()\n    return t";
    assert_eq!(extract_code(out), out);
}

#[test]
fn no_code() {
    assert_eq!(extract_code("I am not sure how to solve this."), "");
    assert_eq!(extract_code("```\nprint(1)\n```"), "");
    assert_eq!(
        extract_code("We define the function def without parens"),
        ""
    );
}

#[test]
fn unclosed_fence_falls_back_to_def_block() {
    let out = "```python\ndef cut(a):\n    return a[::-1]\n\n# tests\nassert cut('ab') == 'ba'";
    assert_eq!(extract_code(out), "def cut(a):\n    return a[::-1]");
}
