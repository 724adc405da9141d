//! Shared helpers: where models and fixtures are, one engine per model, the heavy-test lock.

use maspo::catalog::{Catalog, NoProgress};
use maspo::engine::{Engine, EngineSettings};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

pub const SMOLLM2: &str = "smollm2-135m-instruct";
pub const QWEN: &str = "qwen2.5-coder-0.5b-instruct";
pub const QWEN15: &str = "qwen2.5-coder-1.5b-instruct";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn models_dir() -> PathBuf {
    std::env::var_os("MASPO_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("models"))
}

pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(rel)
}

/// The catalog model's file, fetched through the real provisioning path when missing.
pub fn model_path(id: &str) -> PathBuf {
    Catalog::embedded(models_dir())
        .ensure(id, &mut NoProgress)
        .unwrap_or_else(|e| panic!("provisioning {id}: {e}"))
}

/// Serializes CPU-heavy tests.
pub fn heavy() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// One shared engine per catalog model.
pub fn engine(id: &str) -> &'static Engine {
    static SMOL: OnceLock<Engine> = OnceLock::new();
    static QW: OnceLock<Engine> = OnceLock::new();
    static QW15: OnceLock<Engine> = OnceLock::new();
    let cell = match id {
        SMOLLM2 => &SMOL,
        QWEN => &QW,
        QWEN15 => &QW15,
        other => panic!("no shared engine for {other}"),
    };
    cell.get_or_init(|| {
        Engine::load(&model_path(id), EngineSettings::default()).expect("loading the model")
    })
}

pub fn maspo_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_maspo"))
}

/// The repository's own data directory (the default one); the data ships with maspo, so a
/// test that needs it fails when it is missing.
pub fn data_dir() -> PathBuf {
    let dir = repo_root().join("data");
    assert!(
        dir.join("aqua/aqua.jsonl").is_file(),
        "{} is missing: maspo's benchmark data ships in the repository",
        dir.display()
    );
    dir
}

/// Snippets of every GPQA question (the first 40 characters of each question's first line),
/// read in memory from the compressed file: a file that holds one of them holds question text.
pub fn gpqa_snippets() -> Vec<String> {
    use std::io::Read;
    let file = std::fs::File::open(data_dir().join("gpqa/gpqa_diamond.jsonl.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap();
    let snippets: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| {
            let q = v["question"].as_str().unwrap().lines().next().unwrap_or("");
            q.chars().take(40).collect::<String>()
        })
        .filter(|q| q.chars().count() >= 30)
        .collect();
    assert!(snippets.len() > 150, "{} snippets", snippets.len());
    snippets
}

/// Panics when `text` (from `file`) holds a GPQA question snippet (never printing it).
pub fn assert_no_gpqa_text(file: &std::path::Path, text: &str, snippets: &[String]) {
    let hits = snippets
        .iter()
        .filter(|s| text.contains(s.as_str()))
        .count();
    assert_eq!(hits, 0, "{} holds GPQA question text", file.display());
}

/// `maspo serve` on a free port, SmolLM2, one thread; waits until it answers.
pub fn serve_smollm2(port: u16) -> std::process::Child {
    let mut child = std::process::Command::new(maspo_bin())
        .current_dir(repo_root())
        .env("MASPO_THREADS", "1")
        .args(["--quiet", "serve", "-m", SMOLLM2, "--port"])
        .arg(port.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains(&format!(":{port}/v1")), "{line}");
    child
}
