//! `maspo generate` end to end on the real SmolLM2.

use crate::common::{fixture, heavy, maspo_bin, models_dir};
use std::process::Command;

#[test]
fn generate_streams_the_greedy_answer_on_smollm2() {
    let _g = heavy();
    crate::common::model_path(crate::common::SMOLLM2);
    let out = Command::new(maspo_bin())
        .args([
            "--threads",
            "2",
            "generate",
            "--max-tokens",
            "64",
            "--system",
        ])
        .arg("You are a careful math tutor. Put the final answer inside <answer></answer> tags.")
        .args(["--prompt", "What is 17 * 23?"])
        .env("MASPO_MODELS_DIR", models_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // llama.cpp's greedy text for this conversation (golden math_short).
    let golden = std::fs::read_to_string(fixture("golden/smollm2-135m-instruct.json")).unwrap();
    assert!(golden.contains("\"greedy_text\": \"17 * 23 = 381.\""));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "17 * 23 = 381.\n");
    assert!(
        stderr.contains("tok/s") && stderr.contains("EndOfTurn"),
        "{stderr}"
    );
}

#[test]
fn generate_reads_stdin_and_honours_stop_strings_and_seed() {
    let _g = heavy();
    crate::common::model_path(crate::common::SMOLLM2);
    let run = |args: &[&str]| {
        let mut child = Command::new(maspo_bin())
            .arg("generate")
            .args(args)
            .env("MASPO_MODELS_DIR", models_dir())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"Count from 1 to 20, separated by commas.")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let stopped = run(&["--max-tokens", "80", "--stop", "5"]);
    assert!(
        !stopped.contains('5') && stopped.contains('4'),
        "{stopped:?}"
    );
    let a = run(&["--max-tokens", "24", "--temperature", "0.9", "--seed", "11"]);
    let b = run(&["--max-tokens", "24", "--temperature", "0.9", "--seed", "11"]);
    assert_eq!(a, b, "same seed, same text");
}

#[test]
fn config_file_is_used_and_validated() {
    let _g = heavy();
    crate::common::model_path(crate::common::SMOLLM2);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("run.toml");
    let cache = dir.path().join("cache");
    std::fs::write(&cfg, format!("model = \"smollm2-135m-instruct\"\n[engine]\nmax_running = 2\ncompletion_cache_dir = \"{}\"\n", cache.display())).unwrap();
    let run = || {
        Command::new(maspo_bin())
            .args(["--config"])
            .arg(&cfg)
            .args(["generate", "--max-tokens", "8", "--prompt", "Say hi."])
            .env("MASPO_MODELS_DIR", models_dir())
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        cache.is_dir(),
        "the file's completion_cache_dir was not used"
    );
    assert!(String::from_utf8_lossy(&run().stderr).contains("from the completion cache"));
    std::fs::write(&cfg, "[engine]\nmax_runing = 2\n").unwrap();
    let bad = run();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("run.toml") && err.contains("max_runing"),
        "{err}"
    );
}

#[test]
fn generate_errors_are_clear() {
    let out = Command::new(maspo_bin())
        .args(["generate", "--model", "no-such-model", "--prompt", "x"])
        .env("MASPO_MODELS_DIR", models_dir())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unknown model `no-such-model`"),
        "{err}"
    );
}

/// `maspo bench engine --quick --json` plus `extra`, parsed.
fn quick_bench(extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "--quiet",
        "--threads",
        "2",
        "bench",
        "engine",
        "--quick",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = Command::new(maspo_bin())
        .args(&args)
        .env("MASPO_MODELS_DIR", models_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn bench_engine_quick_reports_every_key_as_json() {
    let _g = heavy();
    crate::common::model_path(crate::common::SMOLLM2);
    let report = quick_bench(&[]);
    // Numbers are reported, never asserted: only that each measurement happened.
    for key in ["prefill_tok_s", "decode_tok_s", "ttft_ms"] {
        assert!(
            report[key].as_f64().is_some_and(|v| v > 0.0),
            "{key}: {report}"
        );
    }
    for b in ["1", "4"] {
        assert!(
            report["batched_decode_tok_s"][b]
                .as_f64()
                .is_some_and(|v| v > 0.0),
            "{report}"
        );
    }
    assert_eq!(
        report["maspo_workload"]["identical_outputs"],
        serde_json::json!(true)
    );
    assert!(report["prefix_cache"]["warm_s"].as_f64().is_some());
    // --no-workload skips the two slow sections and says so with nulls.
    let report = quick_bench(&["--no-workload"]);
    assert!(report["decode_tok_s"].as_f64().is_some_and(|v| v > 0.0));
    assert!(report["maspo_workload"].is_null() && report["prefix_cache"].is_null());
}
