//! Shared helpers: where models and fixtures are, one engine per model, the heavy-test lock.

use maspo::catalog::{Catalog, NoProgress};
use maspo::engine::{Engine, EngineSettings};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

pub const SMOLLM2: &str = "smollm2-135m-instruct";
pub const QWEN: &str = "qwen2.5-coder-0.5b-instruct";

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
    let cell = match id {
        SMOLLM2 => &SMOL,
        QWEN => &QW,
        other => panic!("no shared engine for {other}"),
    };
    cell.get_or_init(|| {
        Engine::load(&model_path(id), EngineSettings::default()).expect("loading the model")
    })
}

pub fn maspo_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_maspo"))
}

/// A stand-in for GPQA (made-up questions, same file name and shape, gzip-compressed) in a new
/// data directory; its questions all contain "Which letter".
pub fn gpqa_standin() -> tempfile::TempDir {
    use std::io::Write;
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data.path().join("gpqa")).unwrap();
    let rows = "{\"question\": \"Which letter comes first?\\n\\nA. A\\nB. B\\nC. C\\nD. D\", \"answer\": \"A\"}\n{\"question\": \"Which letter comes last?\\n\\nA. A\\nB. B\\nC. C\\nD. D\", \"answer\": \"D\"}\n";
    let file = std::fs::File::create(data.path().join("gpqa/gpqa_diamond.jsonl.gz")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    gz.write_all(rows.as_bytes()).unwrap();
    gz.finish().unwrap();
    data
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
