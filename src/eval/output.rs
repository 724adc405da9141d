//! Writing an evaluation's run directory: `summary.json`, `items.jsonl` (one judged example per
//! line), `traces.jsonl` (or `traces.jsonl.gz` for protected datasets such as GPQA, whose
//! questions must never be stored as plain text), `prompts.json` (reference shape),
//! `config.json` and a human `report.md`. Every file is written atomically.

use super::EvalReport;
use crate::fsutil::write_atomic;
use crate::mas::{AgentGraph, PromptSet, Trace};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Files of an evaluation run directory.
pub struct EvalOutput<'a> {
    /// The directory (created if missing).
    pub dir: &'a Path,
    /// The resolved configuration, as JSON.
    pub config: serde_json::Value,
    /// gzip the traces (protected datasets).
    pub compress_traces: bool,
}

/// An I/O failure writing the run directory.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source} (check permissions and free space, or pass another --out)")]
pub struct OutputError {
    /// The file.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: std::io::Error,
}

impl EvalOutput<'_> {
    /// Writes everything; returns the paths written.
    pub fn write(
        &self,
        report: &EvalReport,
        traces: &[Trace],
        graph: &AgentGraph,
        prompts: &PromptSet,
        title: &str,
    ) -> Result<Vec<PathBuf>, OutputError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OutputError { path, source }
        };
        std::fs::create_dir_all(self.dir).map_err(io(self.dir))?;
        let mut written = Vec::new();
        let mut put = |name: &str, bytes: Vec<u8>| -> Result<(), OutputError> {
            let p = self.dir.join(name);
            write_atomic(&p, &bytes).map_err(io(&p))?;
            written.push(p);
            Ok(())
        };
        let mut summary = serde_json::to_value(report).unwrap_or_default();
        if let Some(obj) = summary.as_object_mut() {
            obj.remove("items");
        }
        put("summary.json", pretty(&summary))?;
        put("config.json", pretty(&self.config))?;
        put(
            "prompts.json",
            prompts.to_reference_json(graph).into_bytes(),
        )?;
        put("items.jsonl", jsonl(&report.items))?;
        let traces_bytes = jsonl(traces);
        if self.compress_traces {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            let p = self.dir.join("traces.jsonl.gz");
            gz.write_all(&traces_bytes).map_err(io(&p))?;
            put("traces.jsonl.gz", gz.finish().map_err(io(&p))?)?;
        } else {
            put("traces.jsonl", traces_bytes)?;
        }
        put("report.md", markdown(report, title).into_bytes())?;
        Ok(written)
    }
}

fn pretty(v: &serde_json::Value) -> Vec<u8> {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s.into_bytes()
}

fn jsonl<T: serde::Serialize>(rows: &[T]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        if let Ok(line) = serde_json::to_string(r) {
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
    }
    out
}

/// The human report: headline numbers and cost.
pub fn markdown(r: &EvalReport, title: &str) -> String {
    let a = &r.accuracy;
    let c = &r.cost;
    format!(
        "# {title}\n\n\
         | metric | value |\n|---|---|\n\
         | examples | {n} |\n\
         | correct | {correct} |\n\
         | accuracy | {acc:.1}% (95% CI {lo:.1}–{hi:.1}, bootstrap ×{b}) |\n\
         | mean score | {ms:.3} |\n\
         | failed rollouts | {fail} |\n\
         | judge | {judge} |\n\
         | LLM calls | {calls} |\n\
         | tokens | {tok} ({gen} generated) |\n\
         | wall time | {rs:.1} s rollouts + {js:.1} s judging |\n",
        n = r.n,
        correct = r.correct,
        acc = 100.0 * a.mean,
        lo = 100.0 * a.low,
        hi = 100.0 * a.high,
        b = a.resamples,
        ms = r.mean_score,
        fail = r.failed_rollouts,
        judge = r.judge,
        calls = c.calls,
        tok = c.tokens,
        gen = c.generated_tokens,
        rs = c.rollout_secs,
        js = c.judge_secs,
    )
}
