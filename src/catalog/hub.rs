//! Hugging Face Hub artifacts that are not pinned by a sha256 in the catalog: a whole checkpoint
//! repo (config, tokenizer, safetensors weights, sharded or not) or one GGUF file of a repo,
//! named `hf:OWNER/NAME[@REVISION]` or `hf:OWNER/NAME/FILE.gguf[@REVISION]`, or by a catalog
//! `[[checkpoint]]` entry.
//!
//! Owns the file list of a checkpoint and the integrity check: the Hub stores weights with
//! Git LFS, whose ETag is the file's sha256, and hf-hub names each cached blob by that ETag,
//! so every downloaded `.safetensors`/`.gguf` is hashed and compared with its blob name (a
//! mismatch deletes the blob and fails). Goes through hf-hub: honours HF_HOME, HF_ENDPOINT,
//! HF_TOKEN and HF_HUB_OFFLINE=1 (cache only).

use super::{CatalogError, FetchObserver};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A hub artifact: a checkpoint repo, or one file of a repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubRef {
    /// `owner/name`.
    pub repo: String,
    /// One file of the repo (a `.gguf`); `None`: the whole checkpoint.
    #[serde(default)]
    pub file: Option<String>,
    /// Git revision (default `main`).
    #[serde(default)]
    pub revision: Option<String>,
}

impl HubRef {
    /// Parses the part after `hf:`: `owner/name[/file.gguf][@revision]`.
    pub fn parse(spec: &str) -> Result<Self, CatalogError> {
        let (path, revision) = match spec.split_once('@') {
            Some((p, r)) if !r.is_empty() => (p, Some(r.to_string())),
            Some(_) => {
                return Err(bad_spec(
                    spec,
                    "empty revision after `@` (expected OWNER/NAME[/FILE.gguf]@REVISION)",
                ))
            }
            None => (spec, None),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let ok = |s: &&str| !s.is_empty() && *s != "." && *s != "..";
        match parts.as_slice() {
            [o, n] if ok(o) && ok(n) => Ok(Self {
                repo: format!("{o}/{n}"),
                file: None,
                revision,
            }),
            [o, n, f] if ok(o) && ok(n) && ok(f) && f.ends_with(".gguf") => Ok(Self {
                repo: format!("{o}/{n}"),
                file: Some(f.to_string()),
                revision,
            }),
            _ => Err(bad_spec(
                spec,
                "expected OWNER/NAME (a checkpoint) or OWNER/NAME/FILE.gguf, optionally @REVISION",
            )),
        }
    }

    /// The id as written (`hf:` form).
    pub fn label(&self) -> String {
        let mut s = format!("hf:{}", self.repo);
        if let Some(f) = &self.file {
            s += &format!("/{f}");
        }
        if let Some(r) = &self.revision {
            s += &format!("@{r}");
        }
        s
    }
}

fn bad_spec(spec: &str, why: &str) -> CatalogError {
    CatalogError::AllSourcesFailed {
        id: format!("hf:{spec}"),
        attempts: vec![why.to_string()],
    }
}

/// Fetches (or finds in the cache) the artifact; returns the GGUF file, or the checkpoint's
/// snapshot directory (config.json, tokenizer files and weights side by side).
pub fn fetch(r: &HubRef, obs: &mut dyn FetchObserver) -> Result<PathBuf, CatalogError> {
    let get = |file: &str, obs: &mut dyn FetchObserver| {
        super::fetch::hf_download(&r.repo, file, r.revision.as_deref(), obs)
    };
    if let Some(f) = &r.file {
        let p = get(f, obs)?;
        verify_blob(&p, &r.label())?;
        return Ok(p);
    }
    let config = get("config.json", obs)?;
    let dir = config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| bad_spec(&r.repo, "config.json has no parent directory"))?;
    get("tokenizer.json", obs)?;
    // Optional files: a repo without them is fine (ChatML, config's eos).
    for f in [
        "tokenizer_config.json",
        "chat_template.jinja",
        "generation_config.json",
    ] {
        let _ = get(f, obs);
    }
    let weights = match get("model.safetensors.index.json", obs) {
        Ok(index) => shard_names(&index, &r.label())?,
        Err(_) => vec!["model.safetensors".to_string()],
    };
    for w in weights {
        let p = get(&w, obs)?;
        verify_blob(&p, &r.label())?;
    }
    Ok(dir)
}

/// The shard file names of a safetensors index.
fn shard_names(index: &Path, label: &str) -> Result<Vec<String>, CatalogError> {
    let text = std::fs::read_to_string(index).map_err(|source| CatalogError::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| bad_spec(label, &format!("model.safetensors.index.json: {e}")))?;
    let map = v["weight_map"]
        .as_object()
        .ok_or_else(|| bad_spec(label, "model.safetensors.index.json has no weight_map"))?;
    let mut names: Vec<String> = map
        .values()
        .filter_map(|f| f.as_str().map(String::from))
        .collect();
    names.sort();
    names.dedup();
    if let Some(bad) = names
        .iter()
        .find(|n| n.contains('/') || n.contains('\\') || n.starts_with('.'))
    {
        return Err(bad_spec(
            label,
            &format!("index names a file outside the repo: `{bad}`"),
        ));
    }
    Ok(names)
}

/// Checks a downloaded file against the sha256 its cache blob is named by (LFS ETag). Blobs
/// named otherwise (small files stored in Git, named by a Git hash) are not checked.
pub fn verify_blob(path: &Path, label: &str) -> Result<(), CatalogError> {
    let blob = std::fs::canonicalize(path).map_err(|source| CatalogError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let name = blob
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    let got = crate::fsutil::sha256_file(&blob).map_err(|source| CatalogError::Io {
        path: blob.clone(),
        source,
    })?;
    if got != name {
        let _ = std::fs::remove_file(&blob);
        return Err(CatalogError::AllSourcesFailed {
            id: label.to_string(),
            attempts: vec![format!(
                "{}: sha256 {got} differs from the Hub's {name} (deleted; fetch again)",
                path.display()
            )],
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::HubRef;

    #[test]
    fn hub_refs_parse_and_bad_ones_say_the_form() {
        let r = HubRef::parse("Qwen/Qwen3-8B").unwrap();
        assert_eq!(
            (r.repo.as_str(), r.file.as_deref(), r.revision.as_deref()),
            ("Qwen/Qwen3-8B", None, None)
        );
        let r = HubRef::parse("Qwen/Qwen3-8B-GGUF/Qwen3-8B-Q4_K_M.gguf@v1").unwrap();
        assert_eq!(r.file.as_deref(), Some("Qwen3-8B-Q4_K_M.gguf"));
        assert_eq!(r.revision.as_deref(), Some("v1"));
        assert_eq!(r.label(), "hf:Qwen/Qwen3-8B-GGUF/Qwen3-8B-Q4_K_M.gguf@v1");
        for bad in [
            "Qwen",
            "Qwen/",
            "a/b/c.bin",
            "a/../b",
            "a/b@",
            "a/b/c/d.gguf",
        ] {
            let e = HubRef::parse(bad).unwrap_err().to_string();
            assert!(e.contains("OWNER/NAME"), "{bad}: {e}");
        }
    }
}
