//! Task loading against the repository's data folder (`data/`, which ships with maspo: a missing
//! file fails the test), sha256 checks, where the default data directory is found, splits on a
//! real task, and loader errors on temp files. No model is loaded. GPQA is only counted.

use maspo::tasks::datasets::{dataset_path, entry_point_from_tests};
use maspo::tasks::{
    load_jsonl, load_task, AnswerRule, FieldMap, Gold, SplitMode, SplitName, Splits, Task,
    TaskError, TaskKind, BBH_TASKS,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    crate::common::data_dir()
}

/// HumanEval-ET's folder: not shipped (its extra tests carry no licence), so its tests run only
/// when `MASPO_DATA_DIR` names a data directory that holds it.
#[cfg(feature = "humaneval-et")]
fn humaneval_et_dir() -> PathBuf {
    let dir = std::env::var_os("MASPO_DATA_DIR")
        .map(PathBuf::from)
        .expect("set MASPO_DATA_DIR to a data directory holding humaneval-et/HumanEval_ET.jsonl");
    assert!(dir.join("humaneval-et/HumanEval_ET.jsonl").is_file());
    dir
}

fn answers(task: &Task) -> Vec<&str> {
    task.examples
        .iter()
        .map(|e| match &e.gold {
            Gold::Answer(a) => a.as_str(),
            Gold::Code(_) => panic!("{}: code gold in an answer task", task.name),
        })
        .collect()
}

fn assert_unique_ids(task: &Task) {
    let ids: HashSet<&str> = task.examples.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids.len(),
        task.examples.len(),
        "{}: duplicate ids",
        task.name
    );
}

#[test]
fn named_tasks_load_with_readme_counts() {
    let dir = data_dir();
    let expected = [
        ("math", 500, TaskKind::Math),
        ("agieval_math", 256, TaskKind::Math),
        ("agi", 256, TaskKind::Math),
        ("aqua", 254, TaskKind::Choice),
        ("gpqa", 198, TaskKind::Choice),
        ("mbpp", 427, TaskKind::Code),
        ("humaneval", 164, TaskKind::Code),
        ("gsm8k", 1319, TaskKind::Math),
        ("svamp", 1000, TaskKind::Math),
        ("bbh/boolean_expressions", 250, TaskKind::Math),
    ];
    for (name, count, kind) in expected {
        let task = load_task(name, &dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((task.examples.len(), task.kind), (count, kind), "{name}");
        assert_unique_ids(&task);
        assert!(
            task.examples.iter().all(|e| !e.question.trim().is_empty()),
            "{name}: empty question"
        );
    }
    assert_eq!(load_task("agi", &dir).unwrap().name, "agieval_math");
}

#[test]
fn ids_follow_the_dataset() {
    let dir = data_dir();
    let math = load_task("math", &dir).unwrap();
    assert!(
        math.examples[0].id.starts_with("test/"),
        "unique_id: {}",
        math.examples[0].id
    );
    assert_eq!(load_task("mbpp", &dir).unwrap().examples[0].id, "2");
    assert_eq!(
        load_task("humaneval", &dir).unwrap().examples[0].id,
        "HumanEval/0"
    );
    assert_eq!(load_task("svamp", &dir).unwrap().examples[0].id, "chal-1");
    assert_eq!(load_task("gsm8k", &dir).unwrap().examples[5].id, "5");
}

#[test]
fn choice_tasks_have_letter_golds() {
    let dir = data_dir();
    let gpqa = load_task("gpqa", &dir).unwrap();
    assert_eq!(gpqa.letters, "ABCD");
    let mut counts = [0usize; 4];
    for a in answers(&gpqa) {
        let k = "ABCD"
            .find(a)
            .unwrap_or_else(|| panic!("gpqa gold `{a}` is not A-D"));
        counts[k] += 1;
    }
    assert_eq!(counts, [55, 54, 48, 41], "README answer split");
    let aqua = load_task("aqua", &dir).unwrap();
    assert_eq!(aqua.letters, "ABCDE");
    assert!(answers(&aqua)
        .iter()
        .all(|a| a.len() == 1 && "ABCDE".contains(*a)));
}

#[test]
fn every_bbh_task_loads() {
    let dir = data_dir();
    for t in BBH_TASKS {
        let task = load_task(&format!("bbh/{t}"), &dir).unwrap_or_else(|e| panic!("bbh/{t}: {e}"));
        assert_unique_ids(&task);
        let want = match t {
            "penguins_in_a_table" => 146,
            "causal_judgement" => 187,
            "snarks" => 178,
            _ => 250,
        };
        assert_eq!(task.examples.len(), want, "bbh/{t}");
        match task.kind {
            TaskKind::Choice => assert!(
                task.letters.len() >= 2 && task.rule == AnswerRule::Choice,
                "bbh/{t}"
            ),
            _ => assert_eq!(task.rule, AnswerRule::Exact, "bbh/{t}"),
        }
    }
    let colored = load_task("bbh/reasoning_about_colored_objects", &dir).unwrap();
    assert_eq!(colored.letters, "ABCDEFGHIJKLMNOPQR");
    assert_eq!(
        load_task("bbh/word_sorting", &dir).unwrap().kind,
        TaskKind::Math
    );
}

#[test]
fn mbpp_entry_points_and_note() {
    let dir = data_dir();
    let task = load_task("mbpp", &dir).unwrap();
    for ex in &task.examples {
        let Gold::Code(tests) = &ex.gold else {
            panic!("mbpp {}: not code", ex.id)
        };
        let entry = tests
            .entry_point
            .as_deref()
            .unwrap_or_else(|| panic!("mbpp {}: no entry point", ex.id));
        assert!(
            tests.asserts.iter().any(|a| a.contains(entry)),
            "mbpp {}",
            ex.id
        );
        assert!((3..=7).contains(&tests.asserts.len()), "mbpp {}", ex.id);
        assert!(ex
            .question
            .ends_with(&format!("Note: The function should be named '{entry}'.")));
    }
    let first = &task.examples[0];
    let Gold::Code(t) = &first.gold else {
        unreachable!()
    };
    assert_eq!(t.entry_point.as_deref(), Some("similar_elements"));
    let with_math = task
        .examples
        .iter()
        .filter(|e| matches!(&e.gold, Gold::Code(t) if t.imports == ["import math"]))
        .count();
    assert_eq!(with_math, 13, "README: `import math` in 13 rows");
}

#[test]
#[cfg(feature = "humaneval-et")] // not shipped: MASPO_DATA_DIR=DIR cargo test --features humaneval-et humaneval_et
fn humaneval_et_imports() {
    let dir = humaneval_et_dir();
    for alias in ["humaneval_et", "humaneval-et"] {
        let task = load_task(alias, &dir).unwrap();
        assert_eq!((task.examples.len(), task.kind), (164, TaskKind::Code));
        assert_unique_ids(&task);
    }
    let et = load_task("humaneval_et", &dir).unwrap();
    for ex in &et.examples {
        let Gold::Code(t) = &ex.gold else { panic!() };
        assert_eq!(
            ex.question.contains("from typing import List"),
            t.imports
                .iter()
                .any(|i| i.starts_with("from typing import List")),
            "{}",
            ex.id
        );
        assert!(t.asserts.len() >= 12, "{}", ex.id);
        assert!(t.entry_point.is_some());
    }
    let typed = et
        .examples
        .iter()
        .filter(|e| matches!(&e.gold, Gold::Code(t) if !t.imports.is_empty()))
        .count();
    assert_eq!(typed, 22, "21 typing imports + 1 `import math`");
}

#[test]
fn humaneval_imports_and_check() {
    let dir = data_dir();
    let he = load_task("humaneval", &dir).unwrap();
    let Gold::Code(t) = &he.examples[0].gold else {
        panic!()
    };
    assert_eq!(t.asserts, ["check(has_close_elements)"]);
    assert!(t
        .imports
        .last()
        .is_some_and(|src| src.contains("def check(candidate)")));
    assert_eq!(t.imports[0], "from typing import List");
}

#[test]
fn gsm8k_and_svamp_golds_are_numbers() {
    let dir = data_dir();
    let gsm = load_task("gsm8k", &dir).unwrap();
    for a in answers(&gsm) {
        assert!(a.parse::<i64>().is_ok(), "gsm8k gold `{a}`");
    }
    assert_eq!(answers(&gsm)[0], "18");
    let svamp = load_task("svamp", &dir).unwrap();
    assert_eq!(answers(&svamp)[0], "51");
    assert!(answers(&svamp).iter().all(|a| !a.ends_with(".0")));
    assert!(svamp.examples[0]
        .question
        .ends_with("How much do you have to pay to buy each pack?"));
}

#[test]
fn splits_on_a_real_task() {
    let dir = data_dir();
    let task = load_task("math", &dir).unwrap();
    let s = Splits::new(&task.examples, SplitMode::default(), 0);
    assert_eq!(
        (s.optimize.len(), s.validation.len(), s.test.len()),
        (50, 50, 400)
    );
    let ids = |split: SplitName| -> HashSet<&str> {
        s.get(split)
            .iter()
            .map(|&i| task.examples[i].id.as_str())
            .collect()
    };
    let (o, v, t) = (
        ids(SplitName::Optimize),
        ids(SplitName::Validation),
        ids(SplitName::Test),
    );
    assert!(o.is_disjoint(&v) && o.is_disjoint(&t) && v.is_disjoint(&t));
    assert_eq!(s, Splits::new(&task.examples, SplitMode::default(), 0));
    let paper = Splits::new(&task.examples, SplitMode::Paper { opt: 50 }, 0);
    assert_eq!(paper.test.len(), 500);
    assert_eq!(s.limited(SplitName::Test, Some(20)).len(), 20);
}

#[test]
fn missing_file_names_path_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_task("gsm8k", dir.path()).unwrap_err();
    assert!(matches!(err, TaskError::MissingFile { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("gsm8k/test.jsonl")
            && msg.contains("MASPO_DATA_DIR")
            && msg.contains("--data-dir"),
        "{msg}"
    );
    assert_eq!(
        dataset_path("agi", Path::new("d")),
        Some(PathBuf::from("d/AGIEval_MATH/test.jsonl"))
    );
}

#[test]
fn malformed_line_names_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(
        &path,
        "{\"question\": \"1+1?\", \"answer\": \"2\"}\n\n{\"question\": \"2+2?\"\n",
    )
    .unwrap();
    let err = load_jsonl(&path, &FieldMap::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, TaskError::MalformedLine { line: 3, .. }),
        "{err:?}"
    );
    assert!(
        msg.contains("bad.jsonl:3") && msg.contains("invalid JSON"),
        "{msg}"
    );

    std::fs::write(
        &path,
        "{\"question\": \"1+1?\", \"answer\": \"2\"}\n{\"question\": 7, \"answer\": \"4\"}\n",
    )
    .unwrap();
    let msg = load_jsonl(&path, &FieldMap::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("bad.jsonl:2") && msg.contains("`question`"),
        "{msg}"
    );
}

#[test]
fn generic_jsonl_with_field_map_from_toml() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("code.jsonl.gz");
    let rows = "{\"name\": \"t1\", \"text\": \"Add two numbers.\", \"checks\": [\"assert add(1, 2) == 3\"]}\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, rows.as_bytes()).unwrap();
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    let map: FieldMap =
        toml::from_str("question = \"text\"\ntests = \"checks\"\nid = \"name\"\nkind = \"code\"")
            .unwrap();
    let task = load_jsonl(&path, &map).unwrap();
    assert_eq!(
        (task.kind, task.examples[0].id.as_str()),
        (TaskKind::Code, "t1")
    );
    let Gold::Code(t) = &task.examples[0].gold else {
        panic!()
    };
    assert_eq!(t.entry_point.as_deref(), Some("add"));
    assert!(
        toml::from_str::<FieldMap>("questoin = \"q\"").is_err(),
        "unknown keys are rejected"
    );
    let no_tests = FieldMap {
        kind: TaskKind::Code,
        ..FieldMap::default()
    };
    let err = load_jsonl(&path, &no_tests).unwrap_err();
    assert!(
        matches!(err, TaskError::BadFieldMap { .. }) && err.to_string().contains("tests"),
        "{err}"
    );
    let by_name = load_task(&format!("jsonl:{}", path.display()), dir.path());
    assert!(
        matches!(by_name, Err(TaskError::MalformedLine { .. })),
        "default map wants `question`"
    );
}

#[test]
fn entry_point_ties_and_builtins() {
    let tests = vec![
        "assert set(similar(1, 2)) == set((1,))".to_string(),
        "assert math.isclose(area(2), 4.0)".to_string(),
        "assert area(3) == 9".to_string(),
    ];
    assert_eq!(entry_point_from_tests(&tests).as_deref(), Some("area"));
    let builtin = [
        "assert sum(10, 15) == 6".to_string(),
        "assert sum(4, 6) == 3".to_string(),
    ];
    assert_eq!(
        entry_point_from_tests(&builtin).as_deref(),
        Some("sum"),
        "MBPP 126"
    );
    assert_eq!(entry_point_from_tests(&["assert x == 1".to_string()]), None);
}

/// The reference solutions of MATH-500 end in `\boxed{…}`; the strict judge must accept nearly
/// all of them against the `answer` field, and must accept every gold written as the answer.
#[test]
fn math_solutions_judged_against_answers() {
    use maspo::judge::answer::AnswerJudge;
    use maspo::tasks::AnswerMode;
    let dir = data_dir();
    let text = std::fs::read_to_string(dir.join("math-500/math_500.jsonl")).unwrap();
    let strict = AnswerJudge::new(TaskKind::Math, AnswerMode::Strict);
    let paper = AnswerJudge::new(TaskKind::Math, AnswerMode::Paper);
    let (mut ok_strict, mut ok_paper, mut n) = (0, 0, 0);
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let (sol, ans) = (
            row["solution"].as_str().unwrap(),
            row["answer"].as_str().unwrap(),
        );
        n += 1;
        let v = strict.judge(ans, sol);
        if v.correct {
            ok_strict += 1;
        } else {
            eprintln!("strict miss: {}", v.detail);
        }
        ok_paper += usize::from(paper.judge(ans, sol).correct);
        assert!(
            strict
                .judge(ans, &format!("<answer>{ans}</answer>"))
                .correct,
            "{ans}"
        );
        assert!(
            paper.judge(ans, &format!("<answer>{ans}</answer>")).correct,
            "{ans}"
        );
    }
    eprintln!("math-500 solutions: strict {ok_strict}/{n}, paper {ok_paper}/{n}");
    assert_eq!(
        ok_strict, n,
        "every MATH-500 solution's last \\boxed{{}} matches its answer"
    );
    assert!(ok_paper >= n - 10, "paper {ok_paper}/{n}");
}

/// Every gold of every answer task is accepted when a model states it the usual way, and a
/// different gold of the same task is rejected.
#[test]
fn golds_stated_by_a_model_are_accepted() {
    use maspo::judge::answer::AnswerJudge;
    use maspo::tasks::extract::normalize_exact;
    use maspo::tasks::AnswerMode;
    let dir = data_dir();
    let mut names: Vec<String> = ["math", "agi", "aqua", "gpqa", "gsm8k", "svamp"]
        .map(String::from)
        .to_vec();
    names.extend(BBH_TASKS.iter().map(|t| format!("bbh/{t}")));
    for name in names {
        let task = load_task(&name, &dir).unwrap();
        let judge = AnswerJudge::for_task(&task, AnswerMode::Strict);
        let golds = answers(&task);
        for (i, gold) in golds.iter().enumerate() {
            let letter = maspo::tasks::gold_letter(gold).is_some();
            let said = match task.rule {
                AnswerRule::Choice if letter => {
                    format!("Comparing the options...\nTherefore, the correct option is {gold}.")
                }
                AnswerRule::Exact | AnswerRule::Choice => {
                    format!("Let's think step by step.\nSo the answer is {gold}.")
                }
                AnswerRule::Math => format!("Working it out gives $\\boxed{{{gold}}}$."),
            };
            let v = judge.judge(gold, &said);
            assert!(v.correct, "{name} #{i}: {}", v.detail);
            // A different gold (after normalization) must not pass.
            let other = golds
                .iter()
                .find(|g| normalize_exact(g) != normalize_exact(gold));
            if let Some(other) = other {
                let v = judge.judge(gold, &format!("<answer>{other}</answer>"));
                assert!(!v.correct, "{name} #{i}: {}", v.detail);
            }
        }
    }
}

#[test]
fn the_default_data_directory_is_the_repositorys_own() {
    let candidates = maspo::tasks::data_dir_candidates();
    assert_eq!(candidates[0], data_dir());
    if std::env::var_os("MASPO_DATA_DIR").is_none() {
        assert_eq!(maspo::tasks::default_data_dir(), data_dir());
    }
    // Every shipped benchmark file is the one data/README.md lists (every dataset task but
    // HumanEval-ET, which is not shipped).
    for name in maspo::tasks::task_names()
        .into_iter()
        .filter(|n| !n.starts_with("gen:") && n != "humaneval_et")
    {
        load_task(&name, &data_dir()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let path = dataset_path(&name, &data_dir()).unwrap();
        let rel = path.strip_prefix(data_dir()).unwrap().display().to_string();
        let readme = std::fs::read_to_string(data_dir().join("README.md")).unwrap();
        let sha = maspo::fsutil::sha256_file(&path).unwrap();
        assert!(
            readme.contains(&format!("`{rel}`")) && readme.contains(&sha),
            "{rel}: not listed in data/README.md with its sha256"
        );
    }
}

#[test]
fn a_changed_benchmark_file_is_named_with_both_checksums() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("aqua")).unwrap();
    let mut bytes = std::fs::read(data_dir().join("aqua/aqua.jsonl")).unwrap();
    // One answer letter changed: still valid JSON, a different benchmark.
    let pattern = b"\"answer\": \"A\"";
    let at = bytes
        .windows(pattern.len())
        .position(|w| w == pattern)
        .unwrap()
        + pattern.len()
        - 2;
    assert_eq!(bytes[at], b'A');
    bytes[at] = b'B';
    std::fs::write(tmp.path().join("aqua/aqua.jsonl"), &bytes).unwrap();
    let err = load_task("aqua", tmp.path()).unwrap_err();
    assert!(matches!(err, TaskError::Checksum { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("aqua/aqua.jsonl")
            && msg.contains("c4b7e6a6dc29ad8fb241826cc17de8a18cccd285bf060a62dc9f347bf39533b5")
            && msg.contains("data/README.md"),
        "{msg}"
    );
    // A generic JSONL file is the user's own: not hashed.
    let task = load_task(
        &format!("jsonl:{}", tmp.path().join("aqua/aqua.jsonl").display()),
        tmp.path(),
    );
    assert!(task.is_ok() || !matches!(task, Err(TaskError::Checksum { .. })));
}

#[test]
fn humaneval_et_is_not_shipped_and_the_error_says_where_to_get_it() {
    assert!(!data_dir().join("humaneval-et").exists());
    let err = load_task("humaneval_et", &data_dir()).unwrap_err();
    assert!(matches!(err, TaskError::MissingFile { .. }), "{err:?}");
    let msg = err.to_string();
    for part in [
        "HumanEval_ET.jsonl",
        "07dcbc5137a21c51d7f702e35e754fbe4be2502087fc4f6be7058626efe88a69",
        "wangzx1219/MASPO",
        "dz1/CodeScore-HumanEval-ET",
        "--data-dir",
    ] {
        assert!(msg.contains(part), "missing `{part}` in: {msg}");
    }
}

#[test]
fn no_code_path_names_the_development_data_folder() {
    // Everything the project runs or documents must work from a clone alone.
    let root = crate::common::repo_root();
    let needle = ["..", "/shared"].concat();
    let mut hits = Vec::new();
    let mut stack: Vec<PathBuf> = [
        "src", "tests", "benches", "scripts", "configs", ".ci", "docs", "models", "examples",
    ]
    .iter()
    .map(|d| root.join(d))
    .chain(
        ["Cargo.toml", "README.md", "data/README.md"]
            .iter()
            .map(|f| root.join(f)),
    )
    .collect();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else if let Ok(text) = std::fs::read_to_string(&p) {
            if text.contains(&needle) {
                hits.push(p.display().to_string());
            }
        }
    }
    assert!(hits.is_empty(), "these files name {needle}: {hits:?}");
}
