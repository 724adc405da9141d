//! Answer and code extraction on real model outputs (Qwen2.5-Coder-0.5B through `maspo eval`),
//! kept as fixtures in `tests/fixtures/outputs/` (no GPQA text).

use crate::common::fixture;
use maspo::tasks::extract::{extract_choice, extract_code};

fn outputs(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(fixture(&format!("outputs/{name}"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| o["output"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn code_is_extracted_from_real_mbpp_outputs() {
    let o = outputs("qwen-mbpp.json");
    // Explanation, a fence with the function and example usage, more explanation: the fence.
    let c = extract_code(&o[0]);
    assert!(
        c.starts_with("def add_tuple(tuple_to_add, list_to_add):"),
        "{c}"
    );
    assert!(
        c.ends_with("print(modified_list)  # Output: [1, 2, 3, 4, 5]"),
        "{c}"
    );
    assert!(!c.contains("```") && !c.contains("### Explanation"));
    // Only a fence.
    let c = extract_code(&o[1]);
    assert!(
        c.starts_with("def add_tuple(") && c.ends_with("return list_to_add"),
        "{c}"
    );
    // A lone fence has no code.
    assert_eq!(extract_code(&o[2]), "");
    // Truncated inside an unterminated fence: the `def` block up to the first blank line.
    let c = extract_code(&o[3]);
    assert!(c.starts_with("def word_len(word):"), "{c}");
    assert!(!c.contains("\n\n") && !c.contains("```"), "{c}");
    // Function plus example usage in one fence.
    let c = extract_code(&o[4]);
    assert!(
        c.starts_with("def next_smallest_palindrome(n):") && c.ends_with("# Output: 141"),
        "{c}"
    );
    // Math extraction must not invent answers from code.
    assert!(extract_choice(&o[1], "ABCDE").is_none());
}

#[test]
fn option_letters_are_extracted_from_real_aqua_outputs() {
    let text = std::fs::read_to_string(fixture("outputs/qwen-aqua.json")).unwrap();
    let cases: serde_json::Value = serde_json::from_str(&text).unwrap();
    for case in cases.as_array().unwrap() {
        let output = case["output"].as_str().unwrap();
        let expected = case["expected_letter"]
            .as_str()
            .and_then(|s| s.chars().next());
        assert_eq!(
            extract_choice(output, "ABCDE"),
            expected,
            "{}: {}",
            case["source"],
            case["note"]
        );
    }
}

/// Regression: `<answer>选项B</answer>` sliced inside a multi-byte character and panicked,
/// which would end a whole evaluation. Every extractor must take any text.
#[test]
fn extractors_never_panic_on_multibyte_text() {
    use maspo::tasks::extract::{extract_answer, normalize_answer};
    use maspo::tasks::AnswerMode;
    let bases = [
        "<answer>选项B</answer>",
        "The answer is (C). \\boxed{\\frac{1}{2}}",
        "```python\ndef f(x):\n    return x\n```",
        "Option B; choice: A\n答案是 D",
        "\\text{B} <answer>Answer: option E</answer>",
    ];
    let inserts = ["选项", "é", "€", "𝑥", "\u{FFFD}"];
    for base in bases {
        for ins in inserts {
            let cuts: Vec<usize> = (0..=base.len())
                .filter(|&i| base.is_char_boundary(i))
                .collect();
            for at in cuts {
                let text = format!("{}{ins}{}", &base[..at], &base[at..]);
                for mode in [AnswerMode::Strict, AnswerMode::Paper] {
                    if let Some(a) = extract_answer(&text, mode) {
                        let _ = normalize_answer(&a, mode);
                    }
                }
                let _ = extract_choice(&text, "ABCDE");
                let _ = extract_code(&text);
            }
        }
    }
    assert_eq!(
        extract_choice("<answer>B 选项</answer>", "ABCDE"),
        Some('B')
    );
}
