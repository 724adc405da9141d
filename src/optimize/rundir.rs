//! The run directory: `config.json` (resolved), `checkpoint.json` (atomic, after every unit),
//! `candidates.jsonl`, `events.jsonl`, `best_prompts.json` (reference shape), `heldout.json`,
//! `report.md` with its plots. Every whole-file write is atomic; `candidates.jsonl` is cut back
//! to the checkpoint's line count on resume, so a kill at any moment never leaves extra lines.

use super::state::{State, STATE_VERSION};
use super::OptimizeError;
use crate::fsutil::write_atomic;
use crate::mas::{AgentGraph, PromptSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A run directory.
pub struct RunDir {
    root: PathBuf,
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
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Writes a whole file atomically.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), OptimizeError> {
        let p = self.path(name);
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
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
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
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(&p)(e)),
        };
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
        if kept.len() != text.len() {
            write_atomic(&p, kept.as_bytes()).map_err(io(&p))?;
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
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(io(&p))?;
        let mut buf = String::new();
        for l in lines {
            buf.push_str(l);
            buf.push('\n');
        }
        f.write_all(buf.as_bytes()).map_err(io(&p))?;
        f.sync_data().map_err(io(&p))
    }

    /// Writes `best_prompts.json` (the reference shape, loadable by `maspo eval --prompts`).
    pub fn save_best(&self, prompts: &PromptSet, graph: &AgentGraph) -> Result<(), OptimizeError> {
        let text = format!("{}\n", prompts.to_reference_json(graph));
        self.write("best_prompts.json", text.as_bytes())
    }
}
