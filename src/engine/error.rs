//! `EngineError`: everything that can go wrong loading or running a model.

use std::path::PathBuf;

/// Errors of the engine: model files, metadata, tokenizer, chat template, forward pass.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The model file could not be opened or read.
    #[error("cannot read model file {path}: {source} (check the path, or run `maspo models fetch <id>`)")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a readable GGUF (bad magic, truncated header, truncated tensor data).
    #[error("{path} is not a valid GGUF file: {reason} (the download may be truncated: delete it and fetch again)")]
    BadGguf {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Required metadata keys are missing or have the wrong type.
    #[error(
        "{path}: missing or invalid GGUF metadata: {keys} (is this a complete {arch} GGUF export?)"
    )]
    Metadata {
        /// The file.
        path: PathBuf,
        /// The architecture being loaded.
        arch: String,
        /// Every key that was missing or had the wrong type, comma separated.
        keys: String,
    },
    /// A tensor the architecture needs is absent or has the wrong shape.
    #[error("{path}: tensor `{name}`: {reason}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// `general.architecture` names an architecture maspo does not implement.
    #[error("{path}: unsupported architecture `{arch}` (supported: {supported})")]
    UnknownArch {
        /// The file.
        path: PathBuf,
        /// The architecture found.
        arch: String,
        /// The supported ones.
        supported: String,
    },
    /// Building or using the tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Rendering the chat template failed.
    #[error("chat template: {0}")]
    Template(String),
    /// A prompt does not fit the context window.
    #[error("prompt of {prompt} tokens plus {max_new} new tokens exceeds the context length {ctx} (shorten the prompt or lower --max-tokens)")]
    ContextOverflow {
        /// Prompt length in tokens.
        prompt: usize,
        /// Requested new tokens.
        max_new: usize,
        /// The context window.
        ctx: usize,
    },
    /// A request's KV (prompt plus new or scored tokens) cannot fit the engine's KV budget.
    #[error("the request needs up to {need_mib} MiB of KV for {tokens} tokens, more than the engine's KV budget of {budget_mib} MiB (raise --kv-mb / `kv_mb`, or lower the max tokens)")]
    KvBudget {
        /// Positions of KV the request may need.
        tokens: usize,
        /// Their size in MiB.
        need_mib: usize,
        /// The budget in MiB.
        budget_mib: usize,
    },
    /// A request was malformed (empty prompt, bad sampling parameters...).
    #[error("invalid request: {0}")]
    Request(String),
    /// The caller withdrew the request before it finished (a client went away).
    #[error("request cancelled")]
    Cancelled,
    /// A remote OpenAI-compatible endpoint failed (after retries where they apply).
    #[error("{endpoint}: {reason}")]
    Remote {
        /// The endpoint URL and model.
        endpoint: String,
        /// What went wrong, and what to check.
        reason: String,
    },
    /// A Hugging Face checkpoint directory is incomplete or unsupported.
    #[error("{path}: {reason}")]
    Checkpoint {
        /// The directory.
        path: std::path::PathBuf,
        /// What is wrong (and what to do).
        reason: String,
    },

    /// A device cannot be used (not compiled in, not present, out of memory).
    #[error("device: {0}")]
    Device(String),

    /// An error from candle's tensor library.
    #[error("tensor op failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Result alias of the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
