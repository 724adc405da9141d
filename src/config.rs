//! Run configuration files (`configs/*.toml`): the raw file layer. Values from a file sit between
//! the built-in defaults and the command line (CLI > file > defaults); only resolved settings enter
//! the library.

use crate::engine::EngineSettings;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Errors reading a config file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown keys included).
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong, with the key.
        message: String,
    },
}

/// Engine options a file may set (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineFile {
    /// See [`EngineSettings::threads`].
    pub threads: Option<usize>,
    /// See [`EngineSettings::max_running`].
    pub max_running: Option<usize>,
    /// See [`EngineSettings::step_tokens`].
    pub step_tokens: Option<usize>,
    /// See [`EngineSettings::prefix_cache_mb`].
    pub prefix_cache_mb: Option<usize>,
    /// See [`EngineSettings::kv_mb`].
    pub kv_mb: Option<usize>,
    /// See [`EngineSettings::completion_cache_dir`].
    pub completion_cache_dir: Option<PathBuf>,
    /// See [`EngineSettings::thinking`].
    pub thinking: Option<bool>,
    /// See [`EngineSettings::device`].
    pub device: Option<crate::engine::device::DeviceSpec>,
}

/// A whole config file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The agents' model: catalog id, path, endpoint URL, or `{ url, model, api_key_env }`.
    pub model: Option<crate::openai::ModelSpec>,
    /// `[engine]` table.
    #[serde(default)]
    pub engine: EngineFile,
    /// `[eval]` table (`maspo eval`; also the task and MAS of `maspo optimize`).
    #[serde(default)]
    pub eval: EvalFile,
    /// `[optimize]` table (`maspo optimize`).
    #[serde(default)]
    pub optimize: OptimizeFile,
}

/// The `[optimize]` table: presets, the mutator's and evaluator's models, and any key of the
/// optimizer's settings (`batch = 6`, `[optimize.judge] order = "random"`, …) over the preset.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
pub struct OptimizeFile {
    /// `default` or `faithful`.
    pub preset: Option<String>,
    /// `light`, `medium` or `paper`.
    pub budget: Option<String>,
    /// Mutator model (catalog id, path, endpoint URL or table); default: the agents' model.
    pub mutator_model: Option<crate::openai::ModelSpec>,
    /// Evaluator model; default: the agents' model.
    pub evaluator_model: Option<crate::openai::ModelSpec>,
    /// Run directory.
    pub run_dir: Option<PathBuf>,
    /// Settings over the preset (keys of `OptimizeSettings`).
    #[serde(flatten)]
    pub settings: toml::Table,
}

/// The `[eval]` table: what `maspo eval` runs. Every key is optional; the command line wins.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EvalFile {
    /// Task name (`aqua`, `mbpp`, `bbh/navigate`, `gen:arithmetic`, `jsonl:PATH`).
    pub task: Option<String>,
    /// Directory holding the datasets.
    pub data_dir: Option<PathBuf>,
    /// Split to evaluate: `test`, `val`, `opt` or `all`.
    pub split: Option<String>,
    /// `heldout` (disjoint splits) or `paper` (the reference's overlapping split).
    pub split_mode: Option<String>,
    /// Evaluate only the first N examples of the split.
    pub limit: Option<usize>,
    /// Built-in topology.
    pub topology: Option<String>,
    /// Custom graph TOML (instead of a topology).
    pub graph: Option<PathBuf>,
    /// Prompts JSON (agent id → prompt); seeds when absent.
    pub prompts: Option<PathBuf>,
    /// Rounds of `reflect` / `self_refine`.
    pub rounds: Option<usize>,
    /// Parallel predictors of `aggregate` / `llm_agg`.
    pub agents: Option<usize>,
    /// Debates of `debate_llm_agg`.
    pub debates: Option<usize>,
    /// `summary` (two-call protocol) or `direct`.
    pub protocol: Option<String>,
    /// Most tokens of an agent's answer.
    pub max_tokens: Option<usize>,
    /// Most tokens of a summary.
    pub summary_max_tokens: Option<usize>,
    /// `auto`, `exact` or `llm`.
    pub judge: Option<String>,
    /// `strict` or `paper` answer matching.
    pub answer_mode: Option<String>,
    /// Seed of sampled agents and the bootstrap.
    pub seed: Option<u64>,
    /// Seed of the split assignment.
    pub split_seed: Option<u64>,
    /// Output directory.
    pub out: Option<PathBuf>,
    /// Field mapping of a `jsonl:PATH` task (`[eval.fields]`: question, answer, tests, id, kind,
    /// rule, imports, entry_point).
    pub fields: Option<crate::tasks::FieldMap>,
}

impl ConfigFile {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

impl EngineFile {
    /// Fills `base` with the values this file sets.
    pub fn apply(&self, mut base: EngineSettings) -> EngineSettings {
        if let Some(v) = self.threads {
            base.threads = v;
        }
        if let Some(v) = self.max_running {
            base.max_running = v;
        }
        if let Some(v) = self.step_tokens {
            base.step_tokens = v;
        }
        if let Some(v) = self.prefix_cache_mb {
            base.prefix_cache_mb = v;
        }
        if let Some(v) = self.kv_mb {
            base.kv_mb = v;
        }
        if let Some(v) = &self.completion_cache_dir {
            base.completion_cache_dir = Some(v.clone());
        }
        if let Some(v) = self.device {
            base.device = v;
        }
        if let Some(v) = self.thinking {
            base.thinking = v;
        }
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_engine_config_parses_and_applies() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/engine.toml");
        let cfg = ConfigFile::load(&path).unwrap();
        let s = cfg.engine.apply(EngineSettings::default());
        assert_eq!(s.max_running, 64);
        assert_eq!(
            cfg.model.as_ref().and_then(|m| m.local()),
            Some("smollm2-135m-instruct")
        );
        // The commented device key, uncommented, selects a device; a bad one names the choices.
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("# device = \"cuda:0\"", "device = \"candle-cpu\"");
        let cfg: ConfigFile = toml::from_str(&text).unwrap();
        let s = cfg.engine.apply(EngineSettings::default());
        assert_eq!(s.device, crate::engine::device::DeviceSpec::CandleCpu);
        let bad = text.replace("device = \"candle-cpu\"", "device = \"tpu\"");
        let e = toml::from_str::<ConfigFile>(&bad).unwrap_err().to_string();
        assert!(e.contains("cuda:N"), "{e}");
    }

    #[test]
    fn shipped_eval_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("eval-") && name.ends_with(".toml") {
                let cfg = ConfigFile::load(&p).unwrap();
                assert!(cfg.eval.task.is_some(), "{name}");
                n += 1;
            }
        }
        assert!(n >= 2);
    }

    #[test]
    fn unknown_keys_are_named_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "[engine]\nmax_runing = 3\n").unwrap();
        let e = ConfigFile::load(&p).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("max_runing"), "{e}");
    }
}
