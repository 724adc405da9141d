//! Argument groups shared by several subcommands, and their resolution against the config file
//! (command line > `--config` file > built-in defaults).

use super::progress::FetchBar;
use super::GlobalArgs;
use crate::backend::LocalSource;
use crate::catalog::DEFAULT_MODEL;
use crate::config::{ConfigFile, EngineFile};
use crate::engine::device::DeviceSpec;
use crate::engine::{Engine, EngineSettings};
use crate::openai::ModelSpec;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

/// Engine options.
#[derive(Debug, Args, Clone)]
pub struct EngineArgs {
    /// Catalog id, path to a .gguf file, or an OpenAI-compatible endpoint `http(s)://host:port/v1[#model]` where a command allows one [default: the config's model, else smollm2-135m-instruct].
    #[arg(long, short)]
    pub model: Option<String>,
    /// Most sequences decoded together [default: 64].
    #[arg(long)]
    pub max_running: Option<usize>,
    /// Most tokens per forward step, decode + prefill chunks [default: 512].
    #[arg(long)]
    pub step_tokens: Option<usize>,
    /// Memory for reusable prefix KV in MiB, 0 disables prefix reuse [default: 2048].
    #[arg(long)]
    pub prefix_cache_mb: Option<usize>,
    /// Memory for the KV of sequences in flight in MiB; admission waits while it is full and a
    /// request that cannot fit alone is refused, 0 = unbounded [default: 4096].
    #[arg(long)]
    pub kv_mb: Option<usize>,
    /// Persistent completion cache directory (identical requests are answered from it).
    #[arg(long, env = "MASPO_COMPLETION_CACHE")]
    pub completion_cache: Option<PathBuf>,
    /// Let hybrid-thinking chat templates (Qwen3) open a reasoning block; off by default, as
    /// in the paper.
    #[arg(long)]
    pub thinking: bool,
    /// Where the forward runs: cpu (maspo's kernels), cuda or cuda:N (a build with the `cuda`
    /// feature), candle-cpu (the GPU code path on the host, for checks) [default: cpu].
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// Run a synthetic model of this shape (seeded random weights, no download), e.g.
    /// qwen2.5-0.5b, qwen3-8b; same as `--model synthetic:SHAPE[:SEED]`.
    #[arg(long, conflicts_with = "model", value_name = "SHAPE[:SEED]")]
    pub synthetic: Option<String>,
}

/// Resolved engine choice: which model, with which settings.
pub struct EngineChoice {
    /// Catalog id, path or endpoint.
    pub model: ModelSpec,
    /// Settings.
    pub settings: EngineSettings,
}

impl EngineArgs {
    /// Merges defaults, the config file and the command line.
    pub fn resolve(&self, global: &GlobalArgs) -> anyhow::Result<EngineChoice> {
        let file = match &global.config {
            Some(p) => ConfigFile::load(p)?,
            None => ConfigFile::default(),
        };
        // The command line is one more layer of the same shape, applied last.
        let s = self
            .layer(global)
            .apply(file.engine.apply(EngineSettings::default()));
        let synthetic = self.synthetic.as_ref().map(|s| format!("synthetic:{s}"));
        let model = synthetic
            .as_deref()
            .or(self.model.as_deref())
            .map(ModelSpec::parse)
            .or(file.model)
            .unwrap_or_else(|| ModelSpec::parse(DEFAULT_MODEL));
        Ok(EngineChoice { model, settings: s })
    }

    /// The engine settings given on the command line, as a layer over other settings.
    pub fn layer(&self, global: &GlobalArgs) -> EngineFile {
        EngineFile {
            threads: global.threads,
            max_running: self.max_running,
            step_tokens: self.step_tokens,
            prefix_cache_mb: self.prefix_cache_mb,
            kv_mb: self.kv_mb,
            completion_cache_dir: self.completion_cache.clone(),
            thinking: self.thinking.then_some(true),
            device: self.device,
        }
    }
}

impl EngineChoice {
    /// Resolves (fetching if needed) and loads the in-process model of `command`.
    pub fn load_local(&self, command: &str, global: &GlobalArgs) -> anyhow::Result<Engine> {
        let id = self.local(command)?;
        let source = LocalSource::resolve(
            id,
            &super::catalog(global)?,
            &mut FetchBar::new(global.quiet),
        )?;
        source
            .load(self.settings.clone())
            .with_context(|| format!("loading {}", source.key()))
    }

    /// The catalog id or path, for commands that run the model in-process only.
    pub fn local(&self, command: &str) -> anyhow::Result<&str> {
        self.model.local().ok_or_else(|| {
            anyhow::anyhow!(
                "`maspo {command}` runs its model in-process: give a catalog id or a .gguf path, not the endpoint {}",
                self.model.label()
            )
        })
    }
}
