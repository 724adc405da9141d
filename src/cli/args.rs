//! Argument groups shared by several subcommands.

use super::GlobalArgs;
use crate::engine::EngineSettings;
use clap::Args;
use std::path::PathBuf;

/// Engine options.
#[derive(Debug, Args, Clone)]
pub struct EngineArgs {
    /// Most sequences decoded together.
    #[arg(long, default_value_t = EngineSettings::default().max_running)]
    pub max_running: usize,
    /// Most tokens per forward step (decode + prefill chunks).
    #[arg(long, default_value_t = EngineSettings::default().step_tokens)]
    pub step_tokens: usize,
    /// Memory for reusable prefix KV in MiB (0 disables prefix reuse).
    #[arg(long, default_value_t = EngineSettings::default().prefix_cache_mb)]
    pub prefix_cache_mb: usize,
    /// Persistent completion cache directory (identical requests are answered from it).
    #[arg(long, env = "MASPO_COMPLETION_CACHE")]
    pub completion_cache: Option<PathBuf>,
}

impl EngineArgs {
    /// Resolved engine settings.
    pub fn settings(&self, global: &GlobalArgs) -> EngineSettings {
        EngineSettings {
            threads: global.threads.unwrap_or(0),
            max_running: self.max_running,
            step_tokens: self.step_tokens,
            prefix_cache_mb: self.prefix_cache_mb,
            completion_cache_dir: self.completion_cache.clone(),
        }
    }
}
