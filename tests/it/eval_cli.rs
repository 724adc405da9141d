//! `maspo eval` end to end on the real SmolLM2: the run directory, JSON summary, prompt files in
//! the reference shape, config files, and clear errors for bad input.

use crate::common::{heavy, maspo_bin, model_path, models_dir, SMOLLM2};
use std::path::Path;
use std::process::{Command, Output};

fn maspo(args: &[&str]) -> Output {
    Command::new(maspo_bin())
        .args(["--threads", "2", "--quiet"])
        .args(args)
        .env("MASPO_MODELS_DIR", models_dir())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stdout of a successful `--json` or `--dry-run` run, parsed.
fn json_out(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

fn fail(out: &Output) -> String {
    assert!(!out.status.success(), "expected failure");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn eval_writes_a_readable_run_directory_and_reuses_its_prompts() {
    let _g = heavy();
    model_path(SMOLLM2);
    let dir = tempfile::tempdir().unwrap();
    let out1 = dir.path().join("run1");
    let common = [
        "eval",
        "--task",
        "gen:arithmetic:40:2",
        "--split",
        "all",
        "--limit",
        "3",
        "--max-tokens",
        "48",
        "--summary-max-tokens",
        "16",
    ];
    let summary = json_out(&maspo(
        &[&common[..], &["--json", "--out", out1.to_str().unwrap()]].concat(),
    ));
    assert_eq!(summary["n"], 3);
    assert_eq!(summary["cost"]["calls"], 9); // reflect: predictor 2 calls + reflector 1, × 3
    let acc = &summary["accuracy"];
    assert!(acc["low"].as_f64().unwrap() <= acc["mean"].as_f64().unwrap());
    for f in [
        "summary.json",
        "config.json",
        "prompts.json",
        "items.jsonl",
        "traces.jsonl",
        "report.md",
    ] {
        assert!(out1.join(f).exists(), "{f} missing");
    }
    let items = std::fs::read_to_string(out1.join("items.jsonl")).unwrap();
    assert_eq!(items.lines().count(), 3);
    let first: serde_json::Value = serde_json::from_str(items.lines().next().unwrap()).unwrap();
    assert!(first["verdict"]["detail"].as_str().unwrap().len() > 3);
    let traces = std::fs::read_to_string(out1.join("traces.jsonl")).unwrap();
    let t0: serde_json::Value = serde_json::from_str(traces.lines().next().unwrap()).unwrap();
    assert_eq!(t0["nodes"].as_array().unwrap().len(), 2);
    let prompts = read_json(&out1.join("prompts.json"));
    assert!(prompts["0"].as_str().unwrap().contains("{question}"));
    assert!(prompts["1"].as_str().unwrap().contains("{context}"));
    let config = read_json(&out1.join("config.json"));
    assert_eq!(config["graph"], "reflect");
    assert_eq!(config["run"]["protocol"], "summary");

    // The same prompts file run again, recomputed without the cache, gives the same predictions
    // (seeded, deterministic).
    let out2 = dir.path().join("run2");
    let prompts_file = out1.join("prompts.json");
    ok(&maspo(
        &[
            &common[..],
            &[
                "--no-cache",
                "--prompts",
                prompts_file.to_str().unwrap(),
                "--out",
                out2.to_str().unwrap(),
            ],
        ]
        .concat(),
    ));
    let preds = |d: &Path| -> Vec<String> {
        std::fs::read_to_string(d.join("items.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["prediction"].to_string()
            })
            .collect()
    };
    assert_eq!(preds(&out1), preds(&out2));
    let cached_calls = |d: &Path| -> (u64, u64) {
        let traces = std::fs::read_to_string(d.join("traces.jsonl")).unwrap();
        let mut sum = (0, 0);
        for l in traces.lines() {
            let t: serde_json::Value = serde_json::from_str(l).unwrap();
            for n in t["nodes"].as_array().unwrap() {
                sum.0 += n["cached_calls"].as_u64().unwrap();
                sum.1 += n["calls"].as_u64().unwrap();
            }
        }
        sum
    };
    assert_eq!(cached_calls(&out2), (0, 9));
    // A repeated run answers every call from the completion cache beside the run directories.
    assert!(dir.path().join("completion-cache").is_dir());
    let out3 = dir.path().join("run3");
    ok(&maspo(
        &[&common[..], &["--out", out3.to_str().unwrap()]].concat(),
    ));
    assert_eq!(preds(&out1), preds(&out3));
    assert_eq!(cached_calls(&out3), (9, 9));
    let report = std::fs::read_to_string(out2.join("report.md")).unwrap();
    assert!(
        report.contains("accuracy") && report.contains("95% CI"),
        "{report}"
    );

    // `maspo compare`: the same predictions give no difference; another system on more items
    // is compared on the common ones, with the counts the items files give.
    let same = json_out(&maspo(&[
        "compare",
        out1.to_str().unwrap(),
        out2.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(
        (same["n"].as_u64(), same["p"].as_f64()),
        (Some(3), Some(1.0))
    );
    assert_eq!(same["diff"]["mean"], 0.0);
    let single = dir.path().join("single");
    ok(&maspo(
        &[
            &common[..6],
            &["5", "--max-tokens", "48", "--topology", "single", "--out"],
            &[single.to_str().unwrap()],
        ]
        .concat(),
    ));
    let c = json_out(&maspo(&[
        "compare",
        out1.to_str().unwrap(),
        single.to_str().unwrap(),
        "--json",
    ]));
    let correct = |d: &Path| -> Vec<(String, bool)> {
        std::fs::read_to_string(d.join("items.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["id"].as_str().unwrap().to_string(),
                    v["verdict"]["correct"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    let (a, b) = (correct(&out1), correct(&single));
    assert_eq!((c["n"].as_u64(), c["only_b"].as_u64()), (Some(3), Some(2)));
    let gained = a
        .iter()
        .filter(|(id, ok)| !ok && b.iter().any(|(j, y)| j == id && *y))
        .count();
    assert_eq!(c["gained"].as_array().unwrap().len(), gained, "{c}");
    let table = ok(&maspo(&[
        "compare",
        out1.to_str().unwrap(),
        single.to_str().unwrap(),
    ]));
    assert!(table.contains("on 3 common items"), "{table}");
    let e = fail(&maspo(&["compare", out1.to_str().unwrap(), "/nonexistent"]));
    assert!(e.contains("not a run directory"), "{e}");
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn eval_reads_a_config_file_and_a_custom_graph() {
    let _g = heavy();
    model_path(SMOLLM2);
    let dir = tempfile::tempdir().unwrap();
    let graph = dir.path().join("graph.toml");
    std::fs::write(
        &graph,
        r#"name = "solve-check"

[[agent]]
id = "solver"
role = "predictor"

[[agent]]
id = "checker"
role = "custom"
template = "Check the work and give the final number in <answer></answer> tags.\nProblem: {question}\nWork: {context}"

edges = [["solver", "checker"]]
"#,
    )
    .unwrap();
    // `edges` after the array of tables belongs to the last [[agent]]: a mistake users make,
    // reported with the file and key.
    let bad = fail(&maspo(&[
        "eval",
        "--task",
        "gen:arithmetic:5",
        "--split",
        "all",
        "--graph",
        graph.to_str().unwrap(),
    ]));
    assert!(bad.contains("graph.toml") && bad.contains("edges"), "{bad}");
    let text = std::fs::read_to_string(&graph).unwrap();
    let fixed = format!(
        "edges = [[\"solver\", \"checker\"]]\n{}",
        text.replace("edges = [[\"solver\", \"checker\"]]\n", "")
    );
    std::fs::write(&graph, fixed).unwrap();
    let cfg = dir.path().join("eval.toml");
    let out = dir.path().join("run");
    std::fs::write(
        &cfg,
        format!(
            "[eval]\ntask = \"gen:arithmetic:30:4\"\nsplit = \"all\"\nlimit = 2\ngraph = \"{}\"\nprotocol = \"direct\"\nmax_tokens = 40\nout = \"{}\"\n",
            graph.display(),
            out.display()
        ),
    )
    .unwrap();
    let summary = json_out(&maspo(&[
        "--config",
        cfg.to_str().unwrap(),
        "eval",
        "--json",
    ]));
    assert_eq!(summary["n"], 2);
    assert_eq!(summary["cost"]["calls"], 4); // direct passing: one call per agent
    let config = read_json(&out.join("config.json"));
    assert_eq!(config["graph"], "solve-check");
    let prompts = read_json(&out.join("prompts.json"));
    assert!(prompts["1"].as_str().unwrap().starts_with("Check the work"));
}

#[test]
fn eval_rejects_bad_input_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = fail(&maspo(&["eval", "--task", "nosuch"]));
    assert!(e.contains("nosuch") && e.contains("aqua"), "{e}");
    let e = fail(&maspo(&[
        "eval",
        "--task",
        "gen:arithmetic:5",
        "--split",
        "train",
    ]));
    assert!(
        e.contains("train") && e.contains("test, val, opt, all"),
        "{e}"
    );
    let p = dir.path().join("prompts.json");
    std::fs::write(&p, "{\"0\": \"no placeholder\"}").unwrap();
    let e = fail(&maspo(&[
        "eval",
        "--task",
        "gen:arithmetic:5",
        "--split",
        "all",
        "--prompts",
        p.to_str().unwrap(),
    ]));
    assert!(
        e.contains("prompts.json") && e.contains("{question}"),
        "{e}"
    );
    std::fs::write(&p, "{\"predictor\": ").unwrap();
    let e = fail(&maspo(&[
        "eval",
        "--task",
        "gen:arithmetic:5",
        "--split",
        "all",
        "--prompts",
        p.to_str().unwrap(),
    ]));
    assert!(e.contains("prompts.json") && e.contains("JSON"), "{e}");
    let g = dir.path().join("cyc.toml");
    std::fs::write(
        &g,
        "name = \"cyc\"\nedges = [[\"a\", \"b\"], [\"b\", \"a\"]]\n[[agent]]\nid = \"a\"\nrole = \"predictor\"\n[[agent]]\nid = \"b\"\nrole = \"reflector\"\n",
    )
    .unwrap();
    let e = fail(&maspo(&[
        "eval",
        "--task",
        "gen:arithmetic:5",
        "--split",
        "all",
        "--graph",
        g.to_str().unwrap(),
    ]));
    assert!(e.contains("cyc.toml") && e.contains("cycle"), "{e}");
    let e = fail(&maspo(&["eval", "--task", "jsonl:/nonexistent/x.jsonl"]));
    assert!(e.contains("/nonexistent/x.jsonl"), "{e}");
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn eval_generic_jsonl_code_task_through_a_field_mapping() {
    let _g = heavy();
    model_path(SMOLLM2);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("code.toml");
    let out = dir.path().join("run");
    std::fs::write(
        &cfg,
        format!(
            "[eval]\ntask = \"jsonl:{}\"\nsplit = \"all\"\nprotocol = \"direct\"\nmax_tokens = 96\nout = \"{}\"\n\n[eval.fields]\nquestion = \"question\"\ntests = \"tests\"\nid = \"task_id\"\nkind = \"code\"\n",
            crate::common::fixture("tasks/code.jsonl").display(),
            out.display()
        ),
    )
    .unwrap();
    let summary = json_out(&maspo(&[
        "--config",
        cfg.to_str().unwrap(),
        "eval",
        "--json",
    ]));
    assert_eq!(summary["n"], 2);
    assert_eq!(summary["judge"], "code");
    let items = std::fs::read_to_string(out.join("items.jsonl")).unwrap();
    let ids: Vec<String> = items
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"add".to_string()) && ids.contains(&"rev".to_string()));
}

#[test]
fn dry_run_prints_the_resolved_evaluation_without_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("eval.toml");
    std::fs::write(
        &cfg,
        "model = \"qwen2.5-coder-0.5b-instruct\"\n[engine]\nmax_running = 7\n[eval]\ntask = \"gen:coin_flip:120:3\"\ntopology = \"hierarchical\"\nlimit = 5\nmax_tokens = 300\n",
    )
    .unwrap();
    // The command line wins over the file; nothing is loaded or fetched.
    let out = Command::new(maspo_bin())
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "eval",
            "--dry-run",
            "--protocol",
            "direct",
        ])
        .env("MASPO_MODELS_DIR", dir.path().join("no-models"))
        .output()
        .unwrap();
    let v = json_out(&out);
    assert_eq!(v["task"], "gen:coin_flip:120:3");
    assert_eq!(v["graph"], "hierarchical");
    assert_eq!(v["run"]["protocol"], "direct");
    assert_eq!(v["run"]["max_tokens"], 300);
    assert_eq!(v["engine"]["max_running"], 7);
    assert_eq!(v["model"], "qwen2.5-coder-0.5b-instruct");
    assert_eq!(v["example_ids"].as_array().unwrap().len(), 5);
    assert_eq!(v["examples"], 5);
    assert_eq!(v["split"], "test");
    assert_eq!(v["prompts"].as_object().unwrap().len(), 4);
    assert!(!dir.path().join("no-models").exists());
    // Held-out test split: none of the 50 optimization-pool ids.
    let opt = Command::new(maspo_bin())
        .args(["--config", cfg.to_str().unwrap(), "eval", "--dry-run"])
        .args(["--split", "opt", "--limit", "100"])
        .output()
        .unwrap();
    let o = json_out(&opt);
    let pool = o["example_ids"].as_array().unwrap();
    assert_eq!(pool.len(), 50);
    for id in v["example_ids"].as_array().unwrap() {
        assert!(
            !pool.contains(id),
            "test id {id} is in the optimization pool"
        );
    }
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn a_protected_dataset_leaves_no_plain_text_traces_or_cache() {
    let _g = heavy();
    model_path(SMOLLM2);
    let snippets = crate::common::gpqa_snippets();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let summary = json_out(&maspo(&[
        "eval",
        "--task",
        "gpqa",
        "--split",
        "all",
        "--limit",
        "2",
        "--topology",
        "single",
        "--max-tokens",
        "24",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(summary["n"], 2);
    assert!(out.join("traces.jsonl.gz").exists());
    assert!(!out.join("traces.jsonl").exists());
    assert!(!dir.path().join("completion-cache").exists());
    for f in ["items.jsonl", "summary.json", "config.json", "report.md"] {
        let text = std::fs::read_to_string(out.join(f)).unwrap();
        crate::common::assert_no_gpqa_text(&out.join(f), &text, &snippets);
    }
    // The compressed traces do hold the questions (the check above can fail).
    let mut traces = String::new();
    use std::io::Read as _;
    flate2::read::GzDecoder::new(std::fs::File::open(out.join("traces.jsonl.gz")).unwrap())
        .read_to_string(&mut traces)
        .unwrap();
    assert!(snippets.iter().any(|s| traces.contains(s.as_str())));
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn a_prompt_over_the_context_is_a_recorded_failure_not_a_lost_run() {
    let _g = heavy();
    model_path(SMOLLM2);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("two.jsonl");
    let huge = "Add these numbers: ".to_string() + &"1 + ".repeat(6000) + "1";
    let rows = [
        serde_json::json!({"id": "small", "question": "What is 2 + 2?", "answer": "4"}),
        serde_json::json!({"id": "huge", "question": huge, "answer": "6001"}),
    ];
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&data, text).unwrap();
    let out = dir.path().join("run");
    let res = maspo(&[
        "eval",
        "--task",
        &format!("jsonl:{}", data.display()),
        "--split",
        "all",
        "--topology",
        "single",
        "--max-tokens",
        "8",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        res.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let items: Vec<serde_json::Value> = std::fs::read_to_string(out.join("items.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(items.len(), 2);
    // The generic loader numbers rows (no `unique_id`/`task_id` field): row 1 is the huge one.
    let huge = items.iter().find(|i| i["id"] == "1").unwrap();
    let err = huge["error"].as_str().unwrap();
    assert!(err.contains("context"), "{err}");
    assert_eq!(huge["verdict"]["correct"], false);
    let small = items.iter().find(|i| i["id"] == "0").unwrap();
    assert!(small["error"].is_null());
    let summary = read_json(&out.join("summary.json"));
    assert_eq!(summary["failed_rollouts"], 1);
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn eval_with_remote_agents_on_maspo_serve_matches_in_process() {
    let _g = heavy();
    model_path(SMOLLM2);
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = crate::common::serve_smollm2(port);
    let args = |out: &Path, model: &str| -> Vec<String> {
        [
            "eval",
            "--task",
            "gen:arithmetic:40:2",
            "--split",
            "all",
            "--limit",
            "3",
            "--max-tokens",
            "32",
            "--summary-max-tokens",
            "12",
            "--no-cache",
            "-m",
            model,
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string()])
        .collect()
    };
    let (local, remote) = (dir.path().join("local"), dir.path().join("remote"));
    let url = format!("http://127.0.0.1:{port}/v1");
    let a: Vec<String> = args(&local, SMOLLM2);
    ok(&maspo(&a.iter().map(String::as_str).collect::<Vec<_>>()));
    let b: Vec<String> = args(&remote, &url);
    ok(&maspo(&b.iter().map(String::as_str).collect::<Vec<_>>()));
    server.kill().unwrap();
    server.wait().unwrap();
    let preds = |d: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(d.join("items.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                serde_json::json!([v["id"], v["prediction"], v["calls"], v["error"]])
            })
            .collect()
    };
    assert_eq!(preds(&local).len(), 3);
    assert_eq!(preds(&local), preds(&remote));
}

/// Run from any directory, the binary finds the benchmark data it was built with; a data
/// directory that lacks a file is named with where it came from.
#[test]
fn the_shipped_data_is_found_from_any_directory() {
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(maspo_bin())
        .current_dir(elsewhere.path())
        .env_remove("MASPO_DATA_DIR")
        .args(["eval", "--task", "aqua", "--dry-run", "--split", "all"])
        .output()
        .unwrap();
    let v = json_out(&out);
    assert_eq!(v["examples"], 254);
    assert_eq!(
        std::path::PathBuf::from(v["data_dir"].as_str().unwrap()),
        crate::common::data_dir()
    );
    let out = Command::new(maspo_bin())
        .current_dir(elsewhere.path())
        .args([
            "eval",
            "--task",
            "aqua",
            "--dry-run",
            "--data-dir",
            "nowhere",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("nowhere/aqua/aqua.jsonl") && err.contains("--data-dir, MASPO_DATA_DIR"),
        "{err}"
    );
}
