//! maspo: joint prompt optimization for LLM multi-agent systems (MASPO), with every model run
//! in-process on candle.
//!
//! Data flow:
//!
//! ```text
//! cli ──► catalog (resolve + fetch model files) ──► engine (GGUF → model + tokenizer + chat template)
//!                                                     │
//!                                                     └─► Engine::generate(requests) → completions
//! ```
//!
//! * [`catalog`] owns the model catalog (`models/catalog.toml`, embedded in the binary) and
//!   provisioning: local path, PyPI packages, Hugging Face Hub; sha256-verified, atomic.
//! * [`engine`] owns everything that touches weights: GGUF reading, the packed (varlen) forward
//!   pass of each architecture, KV caches, tokenizer, chat template, sampling and the
//!   generation loop.
//! * [`cli`] is the only place that prints or uses `anyhow`.
#![warn(missing_docs)]

pub mod backend;
pub mod bench;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod engine;
pub mod eval;
pub mod fsutil;
pub mod judge;
pub mod mas;
pub mod openai;
pub mod optimize;
pub mod paper;
pub mod rng;
pub mod tasks;
