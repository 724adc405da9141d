//! The run directory: `config.json` (resolved), `checkpoint.json` (atomic, after every unit),
//! `candidates.jsonl`, `events.jsonl`, `best_prompts.json` (reference shape), `heldout.json`,
//! `report.md` with its plots. Every whole-file write is atomic; `candidates.jsonl` is cut back
//! to the checkpoint's line count on resume, so a kill at any moment never leaves extra lines.
//!
//! For protected datasets (GPQA) every file that can hold model text — which may quote a
//! question — is written gzip-compressed (`candidates.jsonl.gz`, `checkpoint.json.gz`,
//! `best_prompts.json.gz`, `report.md.gz`), so no question lands on disk in plain text.

use super::state::{State, STATE_VERSION};
use super::OptimizeError;
use crate::fsutil::write_atomic;
use crate::mas::{AgentGraph, PromptSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A run directory.
pub struct RunDir {
    root: PathBuf,
    compress: bool,
}

/// Files that may contain model text (compressed for protected datasets).
const TEXT_FILES: [&str; 4] = [
    "candidates.jsonl",
    "checkpoint.json",
    "best_prompts.json",
    "report.md",
];

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes)?;
    gz.finish()
}

fn gunzip(bytes: &[u8]) -> std::io::Result<String> {
    let mut out = String::new();
    std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(bytes), &mut out)?;
    Ok(out)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OptimizeError + '_ {
    move |source| OptimizeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl RunDir {
    /// Opens (creating) `root`.
    pub fn open(root: &Path) -> Result<Self, OptimizeError> {
        std::fs::create_dir_all(root).map_err(io(root))?;
        Ok(Self {
            root: root.to_path_buf(),
            compress: false,
        })
    }

    /// Compress the files that may hold model text (protected datasets).
    pub fn set_compressed(&mut self, on: bool) {
        self.compress = on;
    }

    fn compressed(&self, name: &str) -> bool {
        self.compress && TEXT_FILES.contains(&name)
    }

    /// The on-disk name of a run file (`.gz` added when compressed).
    pub fn file_name(&self, name: &str) -> String {
        if self.compressed(name) {
            format!("{name}.gz")
        } else {
            name.to_string()
        }
    }

    fn read_text(&self, name: &str) -> Result<Option<String>, OptimizeError> {
        let p = self.path(name);
        match std::fs::read(&p) {
            Ok(b) if self.compressed(name) => gunzip(&b).map(Some).map_err(io(&p)),
            Ok(b) => String::from_utf8(b)
                .map(Some)
                .map_err(|e| OptimizeError::Corrupt {
                    path: p.clone(),
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&p)(e)),
        }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file in the directory (its on-disk name).
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(self.file_name(name))
    }

    /// Writes a whole file atomically.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), OptimizeError> {
        let p = self.path(name);
        if self.compressed(name) {
            let z = gzip(bytes).map_err(io(&p))?;
            return write_atomic(&p, &z).map_err(io(&p));
        }
        write_atomic(&p, bytes).map_err(io(&p))
    }

    /// Writes JSON atomically (pretty).
    pub fn write_json<T: serde::Serialize>(&self, name: &str, v: &T) -> Result<(), OptimizeError> {
        let text = serde_json::to_string_pretty(v).map_err(|e| OptimizeError::Corrupt {
            path: self.path(name),
            reason: e.to_string(),
        })?;
        self.write(name, format!("{text}\n").as_bytes())
    }

    /// Reads a JSON file.
    pub fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<T, OptimizeError> {
        let p = self.path(name);
        let text = self.read_text(name)?.ok_or_else(|| {
            io(&p)(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file",
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| OptimizeError::Corrupt {
            path: p.clone(),
            reason: format!("{e} (the file is damaged; start a new run directory)"),
        })
    }

    /// Saves the checkpoint.
    pub fn checkpoint(&self, state: &State) -> Result<(), OptimizeError> {
        self.write_json("checkpoint.json", state)
    }

    /// Loads the checkpoint and cuts `candidates.jsonl` back to the lines it accounts for.
    pub fn resume(&self) -> Result<State, OptimizeError> {
        let state: State = self.read_json("checkpoint.json")?;
        if state.version != STATE_VERSION {
            return Err(OptimizeError::Corrupt {
                path: self.path("checkpoint.json"),
                reason: format!(
                    "checkpoint format {} is not this maspo's ({STATE_VERSION}); start a new run",
                    state.version
                ),
            });
        }
        self.truncate_candidates(state.candidate_lines)?;
        Ok(state)
    }

    /// Keeps the first `lines` lines of `candidates.jsonl` (creating it when missing).
    pub fn truncate_candidates(&self, lines: usize) -> Result<(), OptimizeError> {
        let p = self.path("candidates.jsonl");
        let text = self.read_text("candidates.jsonl")?.unwrap_or_default();
        let have = text.lines().count();
        if have < lines {
            return Err(OptimizeError::Corrupt {
                path: p,
                reason: format!(
                    "has {have} lines but the checkpoint accounts for {lines}; the directory was edited — start a new run"
                ),
            });
        }
        let kept: String = text.lines().take(lines).map(|l| format!("{l}\n")).collect();
        if kept.len() != text.len() || !p.exists() {
            self.write("candidates.jsonl", kept.as_bytes())?;
        }
        Ok(())
    }

    /// Appends lines to `candidates.jsonl` (synced).
    pub fn append_candidates(&self, lines: &[String]) -> Result<(), OptimizeError> {
        self.append("candidates.jsonl", lines)
    }

    /// Appends one event (JSON) to `events.jsonl`.
    pub fn event(&self, json: &serde_json::Value) -> Result<(), OptimizeError> {
        self.append("events.jsonl", &[json.to_string()])
    }

    fn append(&self, name: &str, lines: &[String]) -> Result<(), OptimizeError> {
        let p = self.path(name);
        if self.compressed(name) {
            // Rewritten whole (atomic): small, and never half a gzip member on disk.
            let mut text = self.read_text(name)?.unwrap_or_default();
            for l in lines {
                text.push_str(l);
                text.push('\n');
            }
            return self.write(name, text.as_bytes());
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(io(&p))?;
        let before = f.metadata().map_err(io(&p))?.len();
        let mut buf = String::new();
        for l in lines {
            buf.push_str(l);
            buf.push('\n');
        }
        let written = f.write_all(buf.as_bytes()).and_then(|()| f.sync_data());
        if written.is_err() {
            // A full disk must not leave half a line: cut back to the last whole one.
            let _ = f.set_len(before);
        }
        written.map_err(io(&p))
    }

    /// Writes `best_prompts.json` (the reference shape, loadable by `maspo eval --prompts`).
    pub fn save_best(&self, prompts: &PromptSet, graph: &AgentGraph) -> Result<(), OptimizeError> {
        let text = format!("{}\n", prompts.to_reference_json(graph));
        self.write("best_prompts.json", text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_files_round_trip_and_hold_no_plain_text() {
        let tmp = tempfile::tempdir().unwrap();
        let mut d = RunDir::open(tmp.path()).unwrap();
        d.set_compressed(true);
        d.append_candidates(&["{\"q\":\"secret question\"}".into()])
            .unwrap();
        d.append_candidates(&["{\"q\":\"second\"}".into()]).unwrap();
        let raw = std::fs::read(tmp.path().join("candidates.jsonl.gz")).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("secret"));
        assert!(!tmp.path().join("candidates.jsonl").exists());
        d.truncate_candidates(1).unwrap();
        assert_eq!(
            d.read_text("candidates.jsonl")
                .unwrap()
                .unwrap()
                .lines()
                .count(),
            1
        );
        d.write_json("checkpoint.json", &serde_json::json!({"a": "secret"}))
            .unwrap();
        let v: serde_json::Value = d.read_json("checkpoint.json").unwrap();
        assert_eq!(v["a"], "secret");
        d.write("events.jsonl", b"plain").unwrap();
        assert!(tmp.path().join("events.jsonl").exists());
    }
}
