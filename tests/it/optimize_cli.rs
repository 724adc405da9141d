//! `maspo optimize` end to end on the real SmolLM2 with a tiny budget: the run directory,
//! same-seed determinism, kill-at-any-moment-and-resume equivalence, and bad input.

use crate::common::{heavy, maspo_bin, model_path, repo_root, QWEN, SMOLLM2};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The runs with this config test the machinery (run directory, determinism, resume), not the
/// proposals: advice only (short replies, always in form) and no retries keep each run near a
/// minute and a half. `proposal_cleaning_runs_end_to_end_on_the_real_engine` runs the proposal
/// defaults (mixed forms, retries).
const TINY: &str = r#"
[optimize]
budget = "light"
pool = 6
batch = 2
sweeps = 2
steps_per_turn = 1
agent_max_tokens = 40
mutator_max_tokens = 320
test_limit = 3
proposal_retries = 0
proposal_form = "advice"
[optimize.judge]
max_tokens = 24
"#;

fn setup(dir: &Path) -> PathBuf {
    model_path(SMOLLM2);
    model_path(QWEN);
    let cfg = dir.join("tiny.toml");
    std::fs::write(&cfg, TINY).unwrap();
    cfg
}

fn cmd(cfg: &Path, run_dir: &Path) -> Command {
    let mut c = Command::new(maspo_bin());
    c.current_dir(repo_root())
        .env("MASPO_THREADS", "2")
        .args(["--quiet", "--config"])
        .arg(cfg)
        // SmolLM2 agents and evaluator; Qwen proposes (SmolLM2 rarely writes the <prompt> block),
        // so candidates reach the judge.
        .args([
            "optimize",
            "--task",
            "gen:arithmetic",
            "-m",
            SMOLLM2,
            "--mutator-model",
            QWEN,
        ])
        .arg("--run-dir")
        .arg(run_dir);
    c
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn optimize_end_to_end_is_deterministic_and_resumes_after_sigkill() {
    let _g = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(tmp.path());
    let a = tmp.path().join("a");
    let out = cmd(&cfg, &a).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("| seed |") && stdout.contains("| optimized |"),
        "{stdout}"
    );
    for f in [
        "config.json",
        "checkpoint.json",
        "events.jsonl",
        "candidates.jsonl",
        "best_prompts.json",
        "report.md",
        "heldout.json",
        "score.svg",
        "beam.svg",
        "misalignment.svg",
        "cost.svg",
    ] {
        assert!(a.join(f).exists(), "{f} missing");
    }
    let ckpt: serde_json::Value = serde_json::from_str(&read(&a.join("checkpoint.json"))).unwrap();
    assert_eq!(ckpt["finished"], true);
    assert_eq!(ckpt["units"], 6, "4 steps + 2 refreshes");
    let cands = read(&a.join("candidates.jsonl"));
    assert_eq!(
        cands.lines().count() as u64,
        ckpt["candidate_lines"].as_u64().unwrap()
    );
    for l in cands.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        for k in [
            "id", "agent", "sweep", "step", "parent", "prompt", "status", "score", "accepted",
        ] {
            assert!(v.get(k).is_some(), "{k} missing in {l}");
        }
    }
    // best_prompts.json loads in `maspo eval --prompts`.
    let dry = Command::new(maspo_bin())
        .current_dir(repo_root())
        .args(["eval", "--task", "gen:arithmetic", "--dry-run", "--prompts"])
        .arg(a.join("best_prompts.json"))
        .output()
        .unwrap();
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let report = read(&a.join("report.md"));
    assert!(
        report.contains("Before / after")
            && report.contains("Cost by role")
            && report.contains("Position bias")
    );
    assert!(read(&a.join("score.svg")).starts_with("<svg"));
    assert!(
        ckpt["proposals"]["evaluated"].as_u64().unwrap() > 0,
        "no candidate reached the judge"
    );
    // The answer-format guard (default preset): both seed prompts ask for `<answer>` tags and
    // every accepted prompt keeps them, so every proposal that reached the judge has them.
    let mut dropped = 0;
    for l in cands.lines() {
        let r: serde_json::Value = serde_json::from_str(l).unwrap();
        let prompt = r["prompt"].as_str().unwrap_or("").to_lowercase();
        if r["status"] == "evaluated" {
            assert!(
                prompt.contains("<answer>"),
                "judged without the format: {r}"
            );
        }
        dropped += usize::from(
            r["reason"]
                .as_str()
                .is_some_and(|w| w.contains("drops the answer format")),
        );
    }
    eprintln!("answer-format guard: {dropped} proposals rejected");
    let config: serde_json::Value = serde_json::from_str(&read(&a.join("config.json"))).unwrap();
    assert_eq!(config["models"]["mutator"], QWEN);
    assert_eq!(config["models"]["evaluator"], SMOLLM2);

    // The same command again continues the finished run (nothing recomputed); another setting
    // into the same directory is refused.
    let starts = read(&a.join("events.jsonl")).matches("unit_start").count();
    let cands_before = read(&a.join("candidates.jsonl"));
    let again = cmd(&cfg, &a).output().unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        read(&a.join("events.jsonl")).matches("unit_start").count(),
        starts
    );
    assert_eq!(read(&a.join("candidates.jsonl")), cands_before);
    let other = cmd(&cfg, &a).args(["--seed", "9"]).output().unwrap();
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("different run"));

    // Killed with SIGKILL after the first engine phase (before any checkpoint), or interrupted
    // with Ctrl-C (SIGINT: the unit finishes, exit 130 with a resume hint), then resumed: the
    // same bytes as the uninterrupted run. Each is a fresh directory with its own cache, so the
    // first is also the same-config-same-seed check. (Stopped mid-run with a checkpoint behind
    // it, a run resumes to the same bytes too: `a_full_disk_stops_the_run_cleanly…`.)
    for (k, phases, ctrl_c) in [(0, 1usize, false), (2, 5, true)] {
        let d = tmp.path().join(format!("kill{k}"));
        let mut child = cmd(&cfg, &d)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        loop {
            let n = std::fs::read_to_string(d.join("events.jsonl"))
                .map(|t| t.matches("\"event\":\"phase\"").count())
                .unwrap_or(0);
            if n >= phases || t0.elapsed() > Duration::from_secs(300) {
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if ctrl_c {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(130), "{err}");
            assert!(err.contains("maspo optimize --resume"), "{err}");
            let ckpt: serde_json::Value =
                serde_json::from_str(&read(&d.join("checkpoint.json"))).unwrap();
            assert_eq!(ckpt["finished"], false);
            assert!(ckpt["units"].as_u64().unwrap() >= 1, "{ckpt}");
        } else {
            let _ = child.kill();
            let _ = child.wait();
        }
        let resume = Command::new(maspo_bin())
            .current_dir(repo_root())
            .env("MASPO_THREADS", "2")
            .args(["--quiet", "optimize", "--resume"])
            .arg(&d)
            .output()
            .unwrap();
        assert!(
            resume.status.success(),
            "{}",
            String::from_utf8_lossy(&resume.stderr)
        );
        for f in ["best_prompts.json", "candidates.jsonl"] {
            assert_eq!(
                read(&a.join(f)),
                read(&d.join(f)),
                "{f} differs after kill point {k}"
            );
        }
    }
}

#[test]
fn bad_input_gets_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str], config: Option<&str>| {
        let mut c = Command::new(maspo_bin());
        c.current_dir(repo_root()).arg("--quiet");
        if let Some(text) = config {
            let p = tmp.path().join("c.toml");
            std::fs::write(&p, text).unwrap();
            c.arg("--config").arg(p);
        }
        let out = c.arg("optimize").args(args).output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let prompts = tmp.path().join("p.json");
    std::fs::write(&prompts, r#"{"critic": "Check {question}"}"#).unwrap();
    let e = run(
        &[
            "--task",
            "gen:arithmetic",
            "--dry-run",
            "--prompts",
            prompts.to_str().unwrap(),
        ],
        None,
    );
    assert!(e.contains("critic") && e.contains("predictor"), "{e}");
    let e = run(
        &["--task", "gen:arithmetic", "--dry-run"],
        Some("[optimize]\nbatch_size = 3\n"),
    );
    assert!(e.contains("batch_size"), "{e}");
    let e = run(
        &["--task", "gen:arithmetic", "--dry-run"],
        Some("[optimize]\nbatch = 90\n"),
    );
    assert!(e.contains("batch (90)"), "{e}");
    let e = run(
        &["--task", "gen:arithmetic", "--dry-run", "--preset", "fast"],
        None,
    );
    assert!(e.contains("default, faithful"), "{e}");
    let e = run(
        &[
            "--task",
            "gen:arithmetic",
            "--dry-run",
            "--ablation",
            "no_beams",
        ],
        None,
    );
    assert!(
        e.contains("no_beams") && e.contains("success_sampling"),
        "{e}"
    );
    let d = tmp.path().join("r");
    let e = run(
        &[
            "--task",
            "gen:arithmetic",
            "--budget",
            "light",
            "--max-calls",
            "3",
            "--run-dir",
            d.to_str().unwrap(),
        ],
        None,
    );
    assert!(e.contains("cannot finish one step"), "{e}");
    let e = run(&["--resume", tmp.path().to_str().unwrap()], None);
    assert!(e.contains("not a maspo optimize run directory"), "{e}");
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn a_protected_dataset_leaves_no_plain_text_in_the_run_directory() {
    let _g = heavy();
    model_path(SMOLLM2);
    let snippets = crate::common::gpqa_snippets();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[eval]\nsplit_mode = \"paper\"\n[optimize]\npool = 2\nbatch = 2\npool_split = \"paper\"\nsweeps = 1\nsteps_per_turn = 1\nagent_max_tokens = 24\nmutator_max_tokens = 48\ntest_limit = 0\n",
    )
    .unwrap();
    let run = tmp.path().join("run");
    let out = Command::new(maspo_bin())
        .current_dir(repo_root())
        .args(["--quiet", "--config"])
        .arg(&cfg)
        .args(["optimize", "--task", "gpqa", "-m", SMOLLM2])
        .arg("--run-dir")
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "candidates.jsonl.gz",
        "checkpoint.json.gz",
        "best_prompts.json.gz",
        "report.md.gz",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    assert!(!run.join("completion-cache").exists());
    for entry in std::fs::read_dir(&run).unwrap() {
        let p = entry.unwrap().path();
        let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).to_string();
        crate::common::assert_no_gpqa_text(&p, &text, &snippets);
    }
    // The compressed best prompts load in `maspo eval --prompts`.
    let dry = Command::new(maspo_bin())
        .current_dir(repo_root())
        .args(["eval", "--task", "gen:arithmetic", "--dry-run", "--prompts"])
        .arg(run.join("best_prompts.json.gz"))
        .output()
        .unwrap();
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn an_optimization_with_its_evaluator_on_maspo_serve_survives_a_server_restart() {
    let _g = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(tmp.path());
    // Reference: every role in-process. Generate judging: the server's greedy answers equal the
    // engine's (remote log-prob scoring sees only the top 20 first tokens, see RemoteModel).
    let local = tmp.path().join("local");
    let out = cmd(&cfg, &local)
        .args(["--judge-mode", "generate", "--no-cache"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The evaluator on `maspo serve`; the server is killed during the first judge phase and
    // started again on the same port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = crate::common::serve_smollm2(port);
    let remote = tmp.path().join("remote");
    let mut run = cmd(&cfg, &remote)
        .env("MASPO_THREADS", "1")
        .args([
            "--judge-mode",
            "generate",
            "--no-cache",
            "--evaluator-model",
        ])
        .arg(format!("http://127.0.0.1:{port}/v1"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !std::fs::read_to_string(remote.join("events.jsonl"))
        .unwrap_or_default()
        .contains("\"phase\":\"judge\"")
    {
        assert!(t0.elapsed() < Duration::from_secs(900), "no judge phase");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill().unwrap();
    server.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut server = crate::common::serve_smollm2(port);
    let mut err = String::new();
    use std::io::Read;
    run.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = run.wait().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(status.success(), "{err}");
    // Nothing lost: the same candidates, scores and decisions as in-process judging.
    let fields = |dir: &Path| -> Vec<serde_json::Value> {
        read(&dir.join("candidates.jsonl"))
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                serde_json::json!([
                    v["id"],
                    v["agent"],
                    v["prompt"],
                    v["status"],
                    v["accepted"],
                    v["score"]
                ])
            })
            .collect()
    };
    assert_eq!(fields(&local), fields(&remote));
    let events = read(&remote.join("events.jsonl"));
    let rec: serde_json::Value = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "remote")
        .expect("a remote event");
    assert_eq!(rec["stats"]["failed"], 0, "{rec}");
    assert!(rec["stats"]["http_requests"].as_u64().unwrap() > 1, "{rec}");
}

#[test]
fn an_ablation_from_the_command_line_or_the_config_is_applied_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, "[optimize]\nablation = \"no_joint\"\nbeam = 3\n").unwrap();
    // `maspo optimize --dry-run` with `config` (if any) and `args`: the resolved plan.
    let resolved = |config: Option<&Path>, args: &[&str]| -> serde_json::Value {
        let mut c = Command::new(maspo_bin());
        c.current_dir(repo_root()).arg("--quiet");
        if let Some(config) = config {
            c.arg("--config").arg(config);
        }
        let out = c
            .args(["optimize", "--dry-run"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["resolved"].clone()
    };
    let plan = |args: &[&str], config: bool| {
        let args = [&["--task", "gen:arithmetic"], args].concat();
        resolved(config.then_some(cfg.as_path()), &args)["settings"].clone()
    };
    let s = plan(&[], true);
    assert_eq!(s["ablation"], "no_joint");
    assert_eq!(s["weights"], serde_json::json!([1.0, 0.0, 0.0]));
    assert_eq!(
        (s["lookahead"].as_bool(), s["beam"].as_u64()),
        (Some(false), Some(3))
    );
    // The command line wins over the config's ablation.
    let s = plan(&["--ablation", "no_beam"], true);
    assert_eq!(
        (s["ablation"].as_str(), s["beam"].as_u64()),
        (Some("no_beam"), Some(1))
    );
    assert_eq!(s["weights"], serde_json::json!([0.4, 0.4, 0.2]));
    let s = plan(&["--ablation", "success_sampling"], false);
    assert_eq!(s["case_sampling"], "success");
    // Self-Optimized runs the agents' model in every role, over the mutator and evaluator the
    // run would otherwise use.
    let models = |args: &[&str]| {
        resolved(Some(Path::new("configs/quickstart.toml")), args)["models"].clone()
    };
    let m = models(&[]);
    assert_ne!(m["mutator"], m["agents"], "{m}");
    let m = models(&[
        "--ablation",
        "self_optimized",
        "--evaluator-model",
        "x.gguf",
    ]);
    assert_eq!(
        (&m["mutator"], &m["evaluator"]),
        (&m["agents"], &m["agents"]),
        "{m}"
    );
    let s = plan(&[], false);
    assert!(s["ablation"].is_null() && s["case_sampling"] == "misaligned");
}

/// A small `[optimize]` config in `dir`: pool 3, batch 3, one sweep of `steps` steps per agent,
/// 24 agent tokens, 3 held-out items.
fn small_config(dir: &Path, steps: usize) -> PathBuf {
    model_path(SMOLLM2);
    model_path(QWEN);
    let cfg = dir.join("small.toml");
    std::fs::write(
        &cfg,
        // The search machinery is under test: Qwen-0.5B's proposals mostly drop the answer
        // format, which the default guard rejects before any judge sees them.
        format!("[optimize]\nbudget = \"light\"\npool = 3\nbatch = 3\nsweeps = 1\nsteps_per_turn = {steps}\nagent_max_tokens = 24\nmutator_max_tokens = 320\ntest_limit = 3\nkeep_answer_format = false\nproposal_retries = 0\nproposal_form = \"advice\"\n[optimize.judge]\nmax_tokens = 16\n"),
    )
    .unwrap();
    cfg
}

/// `maspo optimize` on `gen:arithmetic` with `cfg`: SmolLM2 agents and evaluator, Qwen proposing
/// (SmolLM2 rarely writes the `<prompt>` block), `extra` arguments; must succeed.
fn optimize_small(cfg: &Path, run_dir: &Path, extra: &[&str]) {
    let out = Command::new(maspo_bin())
        .current_dir(repo_root())
        .env("MASPO_THREADS", "2")
        .args(["--quiet", "--config"])
        .arg(cfg)
        .args(["optimize", "--task", "gen:arithmetic", "-m", SMOLLM2])
        .args(["--mutator-model", QWEN])
        .args(extra)
        .arg("--run-dir")
        .arg(run_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The baselines under `maspo optimize --method` on the real engine (SmolLM2 agents and
/// evaluator, Qwen proposing as in the other runs): SPO's run judges locally only and writes the
/// same files as MASPO; the seed method runs no unit and its held-out comparison is the seed
/// system against itself.
#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn every_method_runs_end_to_end_on_the_real_engine() {
    let _g = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_config(tmp.path(), 3);
    let run = |method: &str| {
        let dir = tmp.path().join(method);
        optimize_small(&cfg, &dir, &["--method", method]);
        let json = |f: &str| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(dir.join(f)).unwrap()).unwrap()
        };
        let cands: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("candidates.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (
            json("config.json"),
            json("checkpoint.json"),
            json("heldout.json"),
            cands,
            dir,
        )
    };
    let (config, state, held, cands, dir) = run("spo");
    let s = &config["settings"];
    assert_eq!(s["method"], "spo");
    assert_eq!(
        (s["beam"].as_u64(), s["proposals"].as_u64()),
        (Some(1), Some(1))
    );
    // Predictor then reflector, three rounds each, no refresh.
    let agents: Vec<&str> = state["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            assert_eq!(h["kind"], "step");
            h["agent"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        agents,
        ["predictor"; 3]
            .iter()
            .chain(&["reflector"; 3])
            .copied()
            .collect::<Vec<_>>()
    );
    assert_eq!(cands.len(), 6);
    let evaluated = cands.iter().filter(|c| c["status"] == "evaluated").count() as u64;
    assert!(evaluated > 0, "no proposal reached the judge");
    for c in &cands {
        assert!(c["lookahead"].is_null() && c["global"].is_null(), "{c}");
    }
    // Only the local (or terminal) comparison of each of the 3 questions reached the judge, in
    // both orders.
    let j = &state["judge"];
    assert_eq!(
        j["verdicts"].as_u64().unwrap(),
        2 * (3 * evaluated - j["decided_without_judge"].as_u64().unwrap())
    );
    assert!(dir.join("report.md").exists() && dir.join("best_prompts.json").exists());
    assert_eq!(held["n"], 3);
    // Naive joint: joint steps only; the judge saw the final answers of each evaluated joint
    // candidate on the 3 questions, nothing else.
    let (config, state, held, cands, _) = run("naive_joint");
    assert_eq!(config["settings"]["method"], "naive_joint");
    let steps = state["history"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert!(steps.iter().all(|h| h["kind"] == "joint"));
    assert!(cands
        .iter()
        .all(|c| c["kind"] == "joint" && c["local"].is_null()));
    let joint = state["proposals"]["evaluated"].as_u64().unwrap();
    assert!(joint > 0, "no joint candidate reached the judge");
    let j = &state["judge"];
    assert_eq!(
        j["verdicts"].as_u64().unwrap(),
        2 * (3 * joint - j["decided_without_judge"].as_u64().unwrap())
    );
    assert_eq!(held["n"], 3);
    // CoT, CoT-SC and Self-Refine: no unit; the held-out "after" is the other system, named in
    // the report.
    for (method, system, prompted) in [
        ("cot", "CoT (single agent)", 1),
        ("cot_sc", "CoT-SC (3 samples, majority vote)", 3),
        ("self_refine", "Self-Refine (solver, critic, refiner)", 3),
    ] {
        let (_, state, held, cands, dir) = run(method);
        assert!(cands.is_empty() && state["history"].as_array().unwrap().is_empty());
        assert_eq!(held["after_system"], system);
        assert_eq!(held["n"], 3);
        assert!(std::fs::read_to_string(dir.join("report.md"))
            .unwrap()
            .contains(system));
        // The "after" run directory holds that system's prompts: one agent, CoT-SC's three
        // sampled predictors (reflect spends 3 calls per question: answer, summary, review), or
        // solver, critic and refiner.
        let prompts: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join("heldout-optimized").join("prompts.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(prompts.as_object().unwrap().len(), prompted, "{prompts}");
    }
    // OPRO and PromptBreeder: SPO's schedule and local-only judge on the budget's batch; OPRO
    // keeps every judged prompt in the agent's trajectory, PromptBreeder's proposals name their
    // operator and hypermutations cost one more mutator call each.
    for method in ["opro", "prompt_breeder"] {
        let (config, state, held, cands, _) = run(method);
        assert_eq!(config["settings"]["method"], method);
        let steps = state["history"].as_array().unwrap();
        assert_eq!(steps.len(), 6, "{method}: 3 steps per agent");
        let evaluated = state["proposals"]["evaluated"].as_u64().unwrap();
        assert!(evaluated > 0, "{method}: no proposal reached the judge");
        for c in &cands {
            assert!(c["lookahead"].is_null() && c["global"].is_null(), "{c}");
        }
        let j = &state["judge"];
        assert_eq!(
            j["verdicts"].as_u64().unwrap(),
            2 * (3 * evaluated - j["decided_without_judge"].as_u64().unwrap()),
            "{method}"
        );
        let trajectory = |a: usize| {
            state["agents"][a]["trajectory"]
                .as_array()
                .map_or(0, |t| t.len())
        };
        let judged = |agent: &str| {
            cands
                .iter()
                .filter(|c| c["agent"] == agent && c["status"] == "evaluated")
                .count()
        };
        for (a, agent) in ["predictor", "reflector"].iter().enumerate() {
            assert_eq!(trajectory(a), 1 + judged(agent), "{method} {agent}");
        }
        if method == "prompt_breeder" {
            assert!(cands.iter().all(|c| c["operator"].is_string()));
            let hyper = cands
                .iter()
                .filter(|c| c["operator"] == "hypermutation")
                .count() as u64;
            assert_eq!(
                state["cost"]["mutator"]["calls"].as_u64().unwrap(),
                cands.len() as u64 + hyper + state["proposals"]["retries"].as_u64().unwrap_or(0)
            );
        }
        assert_eq!(held["n"], 3);
    }
    // TPE: the candidate pool (2 proposals × depth 3 per agent), then 2 × 6 trials, each
    // judged on the 3 questions' final answers only.
    let (config, state, held, cands, _) = run("tpe");
    assert_eq!(config["settings"]["method"], "tpe");
    let kinds: Vec<&str> = state["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[0], "tpe_pool");
    assert_eq!(kinds[1..], ["trial"; 12]);
    assert_eq!(cands.iter().filter(|c| c["kind"] == "pool").count(), 12);
    let trials = state["tpe"]["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 12);
    let j = &state["judge"];
    assert_eq!(
        j["verdicts"].as_u64().unwrap(),
        2 * (3 * 12 - j["decided_without_judge"].as_u64().unwrap())
    );
    assert_eq!(held["n"], 3);
    let (config, state, held, cands, _) = run("seed");
    assert_eq!(config["settings"]["method"], "seed");
    assert!(cands.is_empty() && state["history"].as_array().unwrap().is_empty());
    assert_eq!(state["finished"], true);
    assert_eq!(held["before"], held["after"]);
    assert_eq!(
        (held["gained"].as_u64(), held["lost"].as_u64()),
        (Some(0), Some(0))
    );
    // The same system on both sides is evaluated once: 3 items × 3 calls (reflect).
    assert_eq!(held["calls"], 9, "{held}");
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn racing_commits_the_same_prompts_with_fewer_judge_calls_on_the_real_engine() {
    let _g = heavy();
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let cfg = tmp.path().join("race.toml");
    std::fs::write(
        &cfg,
        // As in `small_config`: racing is under test, so the answer-format guard is off.
        "[optimize]\nbudget = \"light\"\npool = 6\nbatch = 4\nsweeps = 1\nsteps_per_turn = 3\nagent_max_tokens = 24\nmutator_max_tokens = 320\ntest_limit = 0\nkeep_answer_format = false\nproposal_retries = 0\nproposal_form = \"advice\"\n[optimize.judge]\nmax_tokens = 16\n",
    )
    .unwrap();
    let run = |name: &str, extra: &[&str]| -> (serde_json::Value, String) {
        let dir = tmp.path().join(name);
        let out = cmd(&cfg, &dir).args(extra).output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            serde_json::from_str(&read(&dir.join("checkpoint.json"))).unwrap(),
            read(&dir.join("best_prompts.json")),
        )
    };
    // Log-prob judging in both orders: decisive verdicts (a generating SmolLM2 judge follows the
    // position, so both orders split every comparison and nothing is ever hopeless).
    let (plain, best_plain) = run("plain", &["--judge-mode", "logprob"]);
    let (raced, best_raced) = run("raced", &["--judge-mode", "logprob", "--racing"]);
    assert_eq!(best_plain, best_raced, "racing changed what was committed");
    assert_eq!(plain["prompts"], raced["prompts"]);
    for (a, b) in plain["agents"]
        .as_array()
        .unwrap()
        .iter()
        .zip(raced["agents"].as_array().unwrap())
    {
        assert_eq!((&a["beam"], &a["best"]), (&b["beam"], &b["best"]));
    }
    let verdicts = |s: &serde_json::Value| s["judge"]["verdicts"].as_u64().unwrap();
    // Log-prob judging through the real engine's scoring: verdicts without generation.
    assert!(verdicts(&plain) > 0);
    assert_eq!(plain["cost"]["evaluator"]["generated_tokens"], 0);
    let dropped = raced["proposals"]["raced_out"].as_u64().unwrap_or(0);
    // This run (fixed seed) drops one candidate: 64 → 52 verdicts when measured.
    assert!(dropped > 0, "racing dropped nothing");
    assert!(verdicts(&raced) < verdicts(&plain));
    eprintln!(
        "racing: {dropped} candidates dropped; verdicts {} → {}; evaluator calls {} → {}",
        verdicts(&plain),
        verdicts(&raced),
        plain["cost"]["evaluator"]["calls"],
        raced["cost"]["evaluator"]["calls"]
    );
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn pareto_selection_runs_end_to_end_on_the_real_engine() {
    // GEPA-style parent selection (`--pareto`): the evaluations are MASPO's own (the first
    // step, whose only parent is the seed, judges the same candidates the same way), every
    // candidate records its per-question wins, and the beam after that step is exactly the
    // Pareto selection over those recorded wins.
    let _g = heavy();
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let cfg = tmp.path().join("pareto.toml");
    std::fs::write(
        &cfg,
        // Four proposals on a beam of 2, so the first step's pool is larger than the beam and
        // the selection has something to choose; the guard is off as in `small_config`.
        "[optimize]\nbudget = \"light\"\npool = 6\nbatch = 4\nsweeps = 1\nsteps_per_turn = 1\nproposals = 4\nbeam = 2\nagent_max_tokens = 24\nmutator_max_tokens = 320\ntest_limit = 0\nkeep_answer_format = false\nproposal_retries = 0\nproposal_form = \"advice\"\n[optimize.judge]\nmax_tokens = 16\n",
    )
    .unwrap();
    let run = |name: &str,
               extra: &[&str]|
     -> (serde_json::Value, serde_json::Value, Vec<serde_json::Value>) {
        let dir = tmp.path().join(name);
        let out = cmd(&cfg, &dir).args(extra).output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            serde_json::from_str(&read(&dir.join("config.json"))).unwrap(),
            serde_json::from_str(&read(&dir.join("checkpoint.json"))).unwrap(),
            read(&dir.join("candidates.jsonl"))
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        )
    };
    let (_, plain, plain_cands) = run("plain", &["--judge-mode", "logprob"]);
    let (config, pareto, cands) = run("pareto", &["--judge-mode", "logprob", "--pareto"]);
    assert_eq!(config["settings"]["pareto"], true);
    let first = |c: &[serde_json::Value]| -> Vec<serde_json::Value> {
        c.iter()
            .filter(|r| {
                r["kind"] == "proposal"
                    && r["sweep"] == 0
                    && r["step"] == 0
                    && r["agent"] == "predictor"
            })
            .cloned()
            .collect()
    };
    let unit0 = first(&cands);
    assert_eq!(unit0.len(), 4, "{unit0:?}");
    assert_eq!(
        first(&plain_cands),
        unit0,
        "pareto changed the first step's evaluations"
    );
    let evaluated: Vec<&serde_json::Value> = unit0
        .iter()
        .filter(|r| r["status"] == "evaluated")
        .collect();
    assert!(!evaluated.is_empty(), "no proposal reached the judge");
    for r in &evaluated {
        let n = r["questions"].as_array().unwrap().len();
        let wins = r["question_wins"].as_array().unwrap();
        assert_eq!(wins.len(), n, "{r}");
        assert!(wins
            .iter()
            .all(|w| w.as_f64().is_some_and(|w| (0.0..=1.0).contains(&w))));
    }
    // The first step's pool, as the search builds it: the seed (kept when a proposal failed),
    // then per evaluated proposal in order the child when accepted, else the seed again.
    let qid = |r: &serde_json::Value| -> Vec<usize> {
        r["questions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| {
                unit0[0]["questions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .position(|x| x == q)
                    .unwrap()
            })
            .collect()
    };
    let seed = maspo::optimize::state::BeamNode {
        prompt: "the seed prompt".to_string(),
        cum: 0.0,
        id: 0,
        mutation: None,
    };
    let seed_q: Vec<(usize, f64)> = qid(&unit0[0]).into_iter().map(|q| (q, 0.5)).collect();
    let mut pool = Vec::new();
    let mut pool_q = Vec::new();
    if evaluated.len() < unit0.len() {
        pool.push(seed.clone());
        pool_q.push(seed_q.clone());
    }
    for r in &evaluated {
        if r["accepted"] == true {
            pool.push(maspo::optimize::state::BeamNode {
                prompt: r["prompt"].as_str().unwrap().to_string(),
                cum: r["score"].as_f64().unwrap(),
                id: r["id"].as_u64().unwrap(),
                mutation: None,
            });
            pool_q.push(
                qid(r)
                    .into_iter()
                    .zip(r["question_wins"].as_array().unwrap())
                    .filter_map(|(q, w)| w.as_f64().map(|w| (q, w)))
                    .collect(),
            );
        } else {
            pool.push(seed.clone());
            pool_q.push(seed_q.clone());
        }
    }
    let dedupe = config["settings"]["dedupe_beam"].as_bool().unwrap();
    let expect: Vec<f64> = maspo::optimize::search::select_beam(&pool, &pool_q, 2, dedupe, true)
        .iter()
        .map(|n| n.cum)
        .collect();
    let history = pareto["history"].as_array().unwrap();
    let beam0: Vec<f64> = history[0]["beam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(
        beam0, expect,
        "the beam after the first step is not the Pareto selection"
    );
    for h in history {
        assert!(h["beam"].as_array().unwrap().len() <= 2, "{h}");
    }
    eprintln!(
        "pareto: first step pool {} ({} evaluated, {} accepted), beam {beam0:?}; plain beam {}",
        pool.len(),
        evaluated.len(),
        evaluated.iter().filter(|r| r["accepted"] == true).count(),
        plain["history"][0]["beam"]
    );
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn an_ablation_runs_end_to_end_on_the_real_engine() {
    // `no_joint` (the paper's "w/o Joint Evaluate"): MASPO's schedule and beam, scored on local
    // validity only (downstream comparisons are still judged for misalignment mining, with no
    // weight in the score).
    let _g = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_config(tmp.path(), 2);
    let dir = tmp.path().join("run");
    optimize_small(&cfg, &dir, &["--ablation", "no_joint"]);
    let config: serde_json::Value = serde_json::from_str(&read(&dir.join("config.json"))).unwrap();
    let s = &config["settings"];
    assert_eq!(s["ablation"], "no_joint");
    assert_eq!(
        (s["lookahead"].as_bool(), s["beam"].as_u64()),
        (Some(false), Some(2))
    );
    let state: serde_json::Value =
        serde_json::from_str(&read(&dir.join("checkpoint.json"))).unwrap();
    let cands: Vec<serde_json::Value> = read(&dir.join("candidates.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let evaluated = cands.iter().filter(|c| c["status"] == "evaluated").count() as u64;
    assert!(evaluated > 0, "no proposal reached the judge");
    for c in cands.iter().filter(|c| c["status"] == "evaluated") {
        assert!(c["lookahead"].is_null(), "{c}");
        let own = if c["agent"] == "reflector" {
            &c["terminal"]
        } else {
            &c["local"]
        };
        let score = c["score"].as_f64().unwrap();
        assert!((score - (own.as_f64().unwrap() - 0.5)).abs() < 1e-9, "{c}");
    }
    assert!(state["history"].as_array().unwrap().len() >= 4);
    assert!(read(&dir.join("report.md")).contains("ablation no_joint"));
}

/// A disk that fills up while the run directory is written: a clear error that names the file
/// and says the checkpoint is intact, no torn line or temp file left, and the same command
/// continues once there is room, ending with the prompts of an uninterrupted run. The small
/// disk is a tmpfs in a private mount namespace (`unshare -Urm`; skipped where refused).
#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn a_full_disk_stops_the_run_cleanly_and_the_same_command_resumes_it() {
    let probe = Command::new("unshare").args(["-Urm", "true"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipping: user and mount namespaces (unshare -Urm) are not permitted here");
        return;
    }
    let _g = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(tmp.path());
    let reference = tmp.path().join("reference");
    let out = cmd(&cfg, &reference).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mnt = tmp.path().join("mnt");
    let res = tmp.path().join("res");
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::create_dir_all(&res).unwrap();
    let maspo = format!(
        "'{}' --quiet --config '{}' optimize --task gen:arithmetic -m {SMOLLM2} --mutator-model {QWEN} --run-dir \"$MNT/run\"",
        maspo_bin().display(),
        cfg.display()
    );
    let script = format!(
        r#"set -u
mount -t tmpfs -o size=8m tmpfs "$MNT" || exit 90
{maspo} > "$RES/first.out" 2> "$RES/first.err" &
pid=$!
while [ ! -s "$MNT/run/checkpoint.json" ] && kill -0 $pid 2>/dev/null; do sleep 0.05; done
dd if=/dev/zero of="$MNT/fill" bs=64k 2>/dev/null
dd if=/dev/zero of="$MNT/fill2" bs=4k 2>/dev/null
wait $pid; echo $? > "$RES/first.code"
cp "$MNT/run/checkpoint.json" "$RES/checkpoint.json"
cp "$MNT/run/events.jsonl" "$RES/events.jsonl"
ls -a "$MNT/run" > "$RES/ls"
rm "$MNT/fill" "$MNT/fill2"
{maspo} > "$RES/second.out" 2> "$RES/second.err"; echo $? > "$RES/second.code"
cp "$MNT/run/best_prompts.json" "$RES/"
cp "$MNT/run/checkpoint.json" "$RES/final-checkpoint.json"
"#
    );
    let status = Command::new("unshare")
        .args(["-Urm", "sh", "-c", &script])
        .current_dir(repo_root())
        .env("MASPO_THREADS", "2")
        .env("MNT", &mnt)
        .env("RES", &res)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0), "the script failed");
    let first_err = read(&res.join("first.err"));
    assert_ne!(read(&res.join("first.code")).trim(), "0", "{first_err}");
    assert!(
        first_err.contains("No space left on device")
            && first_err.contains("the last checkpoint is intact"),
        "{first_err}"
    );
    // The checkpoint that survived is whole, no temp file is left, no line is torn.
    let ckpt: serde_json::Value = serde_json::from_str(&read(&res.join("checkpoint.json")))
        .expect("the checkpoint left by the failed run is valid JSON");
    assert_eq!(ckpt["finished"], false);
    let listing = read(&res.join("ls"));
    assert!(!listing.contains(".tmp"), "{listing}");
    for line in read(&res.join("events.jsonl")).lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    let second_err = read(&res.join("second.err"));
    assert_eq!(read(&res.join("second.code")).trim(), "0", "{second_err}");
    let fin: serde_json::Value =
        serde_json::from_str(&read(&res.join("final-checkpoint.json"))).unwrap();
    assert_eq!(fin["finished"], true);
    assert_eq!(
        read(&res.join("best_prompts.json")),
        read(&reference.join("best_prompts.json")),
        "resuming after the full disk changed the result"
    );
}

/// The proposal defaults on the real engine (SmolLM2 agents and judge, Qwen proposing): cleaning
/// (recorded, every cleaned candidate counted once in the checkpoint and in report.md, no
/// candidate or committed prompt keeps a wrapper), retries (each one a mutator call, counted
/// per candidate and in all) and the mixed form (advice, rewrites and deletions, each candidate
/// naming its form; an advice candidate keeps its parent's text whole, a deletion all but one
/// sentence of it).
#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn proposal_cleaning_runs_end_to_end_on_the_real_engine() {
    let _g = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_config(tmp.path(), 2);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[optimize.judge]",
        "clean_proposals = true\n[optimize.judge]",
    );
    let text = text
        .replace("proposal_retries = 0\n", "proposal_retries = 2\n")
        .replace(
            "proposal_form = \"advice\"\n",
            "proposal_form = \"mixed\"\n",
        );
    std::fs::write(&cfg, text).unwrap();
    let dir = tmp.path().join("run");
    optimize_small(&cfg, &dir, &[]);
    let config: serde_json::Value = serde_json::from_str(&read(&dir.join("config.json"))).unwrap();
    assert_eq!(config["settings"]["clean_proposals"], true);
    let state: serde_json::Value =
        serde_json::from_str(&read(&dir.join("checkpoint.json"))).unwrap();
    let cands: Vec<serde_json::Value> = read(&dir.join("candidates.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cleaned = cands.iter().filter(|c| !c["cleaned"].is_null()).count() as u64;
    assert_eq!(state["proposals"]["cleaned"].as_u64().unwrap_or(0), cleaned);
    let report = read(&dir.join("report.md"));
    assert_eq!(report.contains("- Cleaning:"), cleaned > 0, "{report}");
    let wrapped = |p: &str| {
        let l = p.trim_start().to_lowercase();
        l.starts_with("the rewritten prompt")
            || l.starts_with("here is the")
            || l.starts_with("<prompt>")
            || l.starts_with("```")
    };
    for c in &cands {
        assert!(!wrapped(c["prompt"].as_str().unwrap()), "{c}");
    }
    let best: serde_json::Value =
        serde_json::from_str(&read(&dir.join("best_prompts.json"))).unwrap();
    for p in best.as_object().unwrap().values() {
        assert!(!wrapped(p.as_str().unwrap()), "{p}");
    }
    // Retries: every repeated call is one more mutator call, recorded on its candidate.
    let retries: u64 = cands
        .iter()
        .map(|c| c["retries"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(state["proposals"]["retries"].as_u64().unwrap_or(0), retries);
    assert_eq!(
        state["cost"]["mutator"]["calls"].as_u64().unwrap(),
        cands.len() as u64 + retries
    );
    assert_eq!(report.contains("- Retries:"), retries > 0, "{report}");
    // The mixed form asks for each in turn; advice is inserted, the parent's text stays whole;
    // a deletion is shorter than its parent and keeps the placeholders.
    let form = |f: &str| cands.iter().filter(|c| c["form"] == f).count();
    assert_eq!(
        form("advice") + form("rewrite") + form("delete"),
        cands.len()
    );
    assert!(form("advice") > 0 && form("rewrite") > 0, "{cands:?}");
    let by_id = |id: &serde_json::Value| cands.iter().find(|c| c["id"] == *id);
    for c in &cands {
        if c["form"] == "rewrite" || c["status"] != "evaluated" {
            continue;
        }
        // Parent 0 is the seed prompt.
        let parent = match by_id(&c["parent"]) {
            Some(p) => p["prompt"].as_str().unwrap(),
            None if c["parent"] == 0 => state["seeds"][c["agent"].as_str().unwrap()]
                .as_str()
                .unwrap(),
            None => panic!("parent of {c} not recorded"),
        };
        let prompt = c["prompt"].as_str().unwrap();
        if c["form"] == "delete" {
            assert!(
                prompt.len() < parent.len() && prompt.contains("{question}"),
                "{c}"
            );
            continue;
        }
        for para in parent.split("\n\n") {
            assert!(
                prompt.contains(para.trim()),
                "{para:?} lost from {prompt:?}"
            );
        }
    }
    eprintln!(
        "cleaning: {} candidates, {cleaned} cleaned, {} overfit",
        cands.len(),
        state["proposals"]["overfit"].as_u64().unwrap_or(0)
    );
}
