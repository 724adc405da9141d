//! A persistent, content-addressed cache of finished completions, so a re-run or a resumed
//! optimization never recomputes a call it already made.
//!
//! Owns the cache directory. The key is a sha256 over everything that determines the output:
//! the model file's fingerprint, the kernel version, the prompt token ids, sampling parameters
//! (seed included; ignored for greedy), max tokens, stop strings. Entries are written atomically
//! (temp file + rename) and carry a checksum of their payload: an entry that does not verify is
//! treated as a miss and removed, never served.

use super::request::{Completion, GenRequest};
use crate::fsutil::write_atomic;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bumped whenever numerics change in a way that changes outputs (kernels, forward). 2: packed
/// AVX-512 kernels, f16 KV cache, SIMD exp.
pub const KERNEL_VERSION: u32 = 2;

const FORMAT_VERSION: u32 = 1;

/// Hit/miss counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CompletionStats {
    /// Requests answered from disk.
    pub hits: u64,
    /// Requests computed.
    pub misses: u64,
    /// Entries found corrupt and discarded.
    pub corrupt: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    version: u32,
    key: String,
    /// sha256 of the canonical JSON of `completion`.
    checksum: String,
    completion: Completion,
}

/// The on-disk cache.
pub struct CompletionCache {
    dir: PathBuf,
    hits: AtomicU64,
    misses: AtomicU64,
    corrupt: AtomicU64,
}

fn checksum(c: &Completion) -> String {
    let json = serde_json::to_vec(c).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}

impl CompletionCache {
    /// A cache rooted at `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counters so far.
    pub fn stats(&self) -> CompletionStats {
        CompletionStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            corrupt: self.corrupt.load(Ordering::Relaxed),
        }
    }

    /// The key of a request whose prompt tokenizes to `prompt_ids` on the model `model_fp`,
    /// run by maspo's CPU kernels.
    pub fn key(model_fp: &str, prompt_ids: &[u32], req: &GenRequest) -> String {
        Self::key_on(model_fp, None, prompt_ids, req)
    }

    /// [`CompletionCache::key`] for a forward on a device (`backend`, e.g. `candle-cuda-bf16`):
    /// its numerics differ from the CPU kernels', so its entries are its own.
    pub fn key_on(
        model_fp: &str,
        backend: Option<&str>,
        prompt_ids: &[u32],
        req: &GenRequest,
    ) -> String {
        let mut s = req.sampling;
        if s.is_greedy() {
            s = super::sampling::SamplingParams::greedy();
        }
        let mut canonical = serde_json::json!({
            "format": FORMAT_VERSION,
            "kernels": match backend {
                None => format!("{KERNEL_VERSION}-{}", crate::engine::cpu::dot::kernel_isa()),
                Some(b) => b.to_string(),
            },
            "model": model_fp,
            "prompt": prompt_ids,
            "sampling": s,
            "max_new_tokens": req.max_new_tokens,
            "stop": req.stop,
            "ignore_eos": req.ignore_eos,
        });
        if let Some(n) = req.logprobs {
            // Only then: keys of requests without log-probabilities stay as they were.
            canonical["logprobs"] = n.into();
        }
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }

    /// The key of a request sent to a remote server that names its model `model_id`. The
    /// prompt is keyed as sent (the server tokenizes it); the seed counts unless greedy.
    pub fn remote_key(model_id: &str, req: &GenRequest) -> String {
        let mut r = req.clone();
        if r.sampling.is_greedy() {
            r.sampling = super::sampling::SamplingParams::greedy();
        }
        let canonical = serde_json::json!({
            "format": FORMAT_VERSION,
            "remote_model": model_id,
            "request": r,
        });
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.json"))
    }

    /// The stored completion for `key`, if a valid one exists.
    pub fn get(&self, key: &str) -> Option<Completion> {
        let path = self.path(key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(_) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let valid = serde_json::from_slice::<StoredEntry>(&bytes)
            .ok()
            .filter(|e| {
                e.version == FORMAT_VERSION && e.key == key && e.checksum == checksum(&e.completion)
            });
        match valid {
            Some(e) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(e.completion)
            }
            None => {
                tracing::warn!(path = %path.display(), "discarding a corrupt completion-cache entry");
                self.corrupt.fetch_add(1, Ordering::Relaxed);
                self.misses.fetch_add(1, Ordering::Relaxed);
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a completion atomically.
    pub fn put(&self, key: &str, completion: &Completion) -> std::io::Result<()> {
        let path = self.path(key);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let entry = StoredEntry {
            version: FORMAT_VERSION,
            key: key.to_string(),
            checksum: checksum(completion),
            completion: completion.clone(),
        };
        let bytes = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        write_atomic(&path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::request::StopReason;

    fn completion(text: &str) -> Completion {
        Completion {
            text: text.into(),
            token_ids: vec![1, 2],
            prompt_tokens: 3,
            stop_reason: StopReason::MaxTokens,
            reused_prompt_tokens: 0,
            from_cache: false,
            logprobs: None,
            remote_tokens: None,
        }
    }

    #[test]
    fn put_get_and_key_sensitivity() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompletionCache::new(dir.path());
        let req = GenRequest::chat(vec![], 8);
        let k = CompletionCache::key("fp", &[1, 2, 3], &req);
        assert!(cache.get(&k).is_none());
        cache.put(&k, &completion("hello")).unwrap();
        assert_eq!(cache.get(&k).unwrap().text, "hello");
        // Greedy ignores the seed; anything else that matters changes the key.
        let mut seeded = req.clone();
        seeded.sampling.seed = 99;
        assert_eq!(CompletionCache::key("fp", &[1, 2, 3], &seeded), k);
        assert_ne!(CompletionCache::key("fp2", &[1, 2, 3], &req), k);
        assert_ne!(
            CompletionCache::key_on("fp", Some("candle-cuda-bf16"), &[1, 2, 3], &req),
            k
        );
        assert_ne!(CompletionCache::key("fp", &[1, 2, 4], &req), k);
        let mut sampled = req.clone();
        sampled.sampling.temperature = 0.7;
        assert_ne!(CompletionCache::key("fp", &[1, 2, 3], &sampled), k);
        assert_eq!(
            cache.stats(),
            CompletionStats {
                hits: 1,
                misses: 1,
                corrupt: 0
            }
        );
    }

    #[test]
    fn torn_or_tampered_entries_are_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompletionCache::new(dir.path());
        let k = CompletionCache::key("fp", &[1], &GenRequest::chat(vec![], 4));
        cache.put(&k, &completion("the real answer")).unwrap();
        let path = cache.path(&k);
        let full = std::fs::read(&path).unwrap();
        // A torn write (as a non-atomic writer killed mid-way would leave).
        std::fs::write(&path, &full[..full.len() / 2]).unwrap();
        assert!(cache.get(&k).is_none());
        assert!(!path.exists(), "the corrupt entry is removed");
        // A payload edited without its checksum.
        cache.put(&k, &completion("the real answer")).unwrap();
        let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        std::fs::write(&path, text.replace("the real answer", "a forged answer")).unwrap();
        assert!(cache.get(&k).is_none());
        assert_eq!(cache.stats().corrupt, 2);
    }
}
