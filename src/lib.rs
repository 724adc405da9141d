//! maspo: joint prompt optimization for LLM multi-agent systems (MASPO). Models run in-process
//! on candle and maspo's own batched engine by default; any role can also be an
//! OpenAI-compatible endpoint.
//!
//! Data flow:
//!
//! ```text
//! cli ──► config, catalog (resolve + fetch models), tasks (load + split data)
//!  │
//!  ├─► eval ──► mas (agent graphs, batched rollouts) ──► backend ──► engine | openai (remote)
//!  │      └──► judge (answers, sandboxed code, LLM)
//!  ├─► optimize (MASPO and the baselines: search, joint evaluation, run directory) ──► eval, mas
//!  ├─► paper (bench paper: cells, tables) ──► optimize
//!  └─► bench (engine benchmarks), openai::serve (the engine over HTTP)
//! ```
//!
//! Modules, each with what it owns:
//!
//! * [`backend`]: loading the models of a run's roles (agents, mutator, evaluator) as in-process
//!   engines or remote endpoints; roles naming the same model share one instance.
//! * [`bench`]: engine benchmarks (prefill, decode, prefix cache, a MASPO-shaped workload) for
//!   `maspo bench engine` and the criterion benches.
//! * [`catalog`]: the model catalog (`models/catalog.toml`, embedded) and provisioning: local
//!   files, PyPI packages, the Hugging Face Hub; sha256-verified, atomic.
//! * [`cli`]: the command line, one function per subcommand; the only module that prints or uses
//!   `anyhow`.
//! * [`config`]: the raw layer of run configuration files (`configs/*.toml`), between built-in
//!   defaults and the command line.
//! * [`engine`]: everything that touches weights or token ids: GGUF and Hugging Face checkpoint
//!   loading, the packed forward on maspo's CPU kernels or a candle device, KV caches, prefix
//!   reuse, continuous batching, sampling, scoring, tokenizer, chat template, completion cache.
//! * [`eval`]: `maspo eval`: running a multi-agent system on a task split, judging, accuracy with
//!   bootstrap CIs, cost and the run directory's files.
//! * [`fsutil`]: atomic writes and hashing for every file maspo saves.
//! * [`judge`]: verdicts: answer extraction and normalized comparison, the sandboxed two-process
//!   code judge, the LLM judge.
//! * [`mas`]: multi-agent systems: agent graphs, built-in topologies, seed prompts, batched
//!   execution with traces and partial re-run.
//! * [`openai`]: the OpenAI-compatible HTTP API both ways: remote models for any role, and
//!   `maspo serve`.
//! * [`optimize`]: MASPO and the baseline methods: beam search per agent, joint pairwise
//!   evaluation, misalignment mining, budgets, checkpoints, resume, held-out comparison, reports.
//! * [`paper`]: `maspo bench paper`'s presets, cell records and result tables.
//! * [`rng`]: seeded randomness and the seed-derivation rule shared by every layer.
//! * [`tasks`]: benchmark datasets (loading, checksums, the data directory), generated tasks,
//!   deterministic splits, answer and code extraction.
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
