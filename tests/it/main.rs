//! The integration test binary: one module per area, shared helpers in `common`.
//!
//! Model-heavy tests share one engine per model and take `common::heavy()` so they never run
//! CPU-heavy work concurrently (candle's spin pool collapses under contention).

mod bench_paper;
mod catalog;
mod cli;
mod common;
mod device;
mod engine;
mod eval_cli;
mod golden;
mod hf_checkpoint;
mod mas;
mod optimize_cli;
mod outputs;
mod props;
mod remote;
mod sandbox;
mod serve;
mod tasks;
mod tiny;
