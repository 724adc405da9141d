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

/// Real replies of the 0.5B mutator (the quickstart's, `tests/fixtures/outputs/
/// mutator-replies.jsonl`) through the proposal pipeline as the optimizer runs it for the
/// reflector: the `<prompt>` block, cleaning, the sanitizer and the checks. Every outcome is
/// pinned; no accepted prompt keeps a wrapper or copies question text.
#[test]
fn real_mutator_replies_are_cleaned_or_rejected() {
    use maspo::optimize::clean::{clean_proposal, copied_question_text};
    use maspo::optimize::meta::parse_proposal;
    use maspo::optimize::sanitize::{check_answer_format, check_substance, sanitize};
    use maspo::tasks::TaskKind;
    let parent = "You are a careful reviewer. Below is a question and a summary of another agent's solution. Check its reasoning and result; if you find a mistake, fix it, otherwise confirm it. End with the letter of the correct option, written once inside <answer></answer> tags (for example <answer>B</answer>).\n\nThe question:\n{question}\n\nThe other agent's solution:\n{context}";
    let aqua = maspo::tasks::load_task("aqua", &crate::common::data_dir()).unwrap();
    let text = std::fs::read_to_string(fixture("outputs/mutator-replies.jsonl")).unwrap();
    let mut outcomes = Vec::new();
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let ids: Vec<&str> = row["pool_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let questions: Vec<&str> = aqua
            .examples
            .iter()
            .filter(|e| ids.contains(&e.id.as_str()))
            .map(|e| e.question.as_str())
            .collect();
        assert_eq!(questions.len(), ids.len());
        let Some(p) = parse_proposal(row["reply"].as_str().unwrap()) else {
            outcomes.push("format_failure".to_string());
            continue;
        };
        let c = clean_proposal(&p);
        let result = sanitize(&c.prompt, parent, true)
            .and_then(|p| check_substance(&p, 8).map(|_| p))
            .and_then(|p| check_answer_format(&p, parent, TaskKind::Choice).map(|_| p))
            .and_then(|p| match copied_question_text(&p, &questions, 8) {
                Some(_) => Err("overfit".to_string()),
                None => Ok(p),
            });
        match result {
            Ok(p) => {
                let lower = p.to_lowercase();
                assert!(
                    !lower.starts_with("the rewritten prompt")
                        && !lower.starts_with("here is")
                        && !p.starts_with(['(', '"', '“']),
                    "a wrapper survived: {p}"
                );
                outcomes.push(format!("ok [{}]", c.removed.join(", ")));
            }
            Err(why) if why == "overfit" => outcomes.push("overfit".into()),
            Err(why) if why.contains("answer format") => outcomes.push("format dropped".into()),
            Err(why) if why.contains("words besides") => outcomes.push("stub".into()),
            Err(why) => outcomes.push(format!("rejected: {why}")),
        }
    }
    // Half the replies have no closed `<prompt>` block; two "prompts" are remarks without the
    // answer format; the three wrapped rewrites come out without their wrappers. (Their
    // question-specific sentences are paraphrased, not copied: cleaning does not catch them.)
    assert_eq!(
        outcomes,
        [
            "ok [lead-in, quotes]",
            "format_failure",
            "ok [lead-in, quotes]",
            "format dropped",
            "ok [quotes, lead-in]",
            "format_failure",
            "format dropped",
            "format_failure",
            "format_failure",
            "format_failure",
        ]
    );
}

/// Every optimized prompt committed under `docs/results/` (`*/best_prompts.json`, registered
/// below with its task) is clean: no wrapper the cleaner would remove, no piece of the
/// mutator's instructions, and no run of 8 or more words copied from any question of its task.
/// The check itself is shown to fail on a prompt with a wrapper and on one with copied text.
#[test]
fn committed_optimized_prompts_carry_no_artifacts_or_question_text() {
    use maspo::optimize::clean::{clean_proposal, copied_question_text, echoed_instructions};
    let registered: &[(&str, &str)] = &[("quickstart", "aqua"), ("positive-control", "mbpp")];
    let root = crate::common::repo_root().join("docs/results");
    let mut found: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("best_prompts.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut want: Vec<String> = registered.iter().map(|r| r.0.to_string()).collect();
    want.sort();
    assert_eq!(
        found, want,
        "register each committed best_prompts.json with its task"
    );
    let problems = |prompt: &str, questions: &[&str]| -> Vec<String> {
        let mut p = Vec::new();
        let c = clean_proposal(prompt);
        if !c.removed.is_empty() {
            p.push(format!("wrapper: {:?}", c.removed));
        }
        if let Some(piece) = echoed_instructions(prompt, "") {
            p.push(format!("mutator instructions: {piece}"));
        }
        if let Some(run) = copied_question_text(prompt, questions, 8) {
            p.push(format!("question text: {run}"));
        }
        p
    };
    for (dir, task) in registered {
        let t = maspo::tasks::load_task(task, &crate::common::data_dir()).unwrap();
        let questions: Vec<&str> = t.examples.iter().map(|e| e.question.as_str()).collect();
        let text = std::fs::read_to_string(root.join(dir).join("best_prompts.json")).unwrap();
        let prompts: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&text).unwrap();
        assert!(!prompts.is_empty());
        for (agent, prompt) in &prompts {
            let p = problems(prompt, &questions);
            assert!(p.is_empty(), "{dir}/{agent}: {p:?}\n{prompt}");
        }
        // The check can fail.
        let q = questions[0];
        let copied = format!("Solve it.\n\n{q}\n\n{{question}}");
        assert!(!problems(&copied, &questions).is_empty() || q.split_whitespace().count() < 8);
        assert!(!problems("The rewritten prompt is: \"Solve {question}\"", &questions).is_empty());
    }
}
