//! `maspo bench paper`: the paper's comparison as one command. Every cell (task × topology ×
//! method × seed) is one `maspo optimize` run in the work directory; its result lands in
//! `<out>/cells/<id>.json` and the table (Markdown, JSON, SVG) is rebuilt after each cell, so an
//! interrupted bench continues where it stopped and a table can be rebuilt from committed cells.

use super::optimize::{run_outcome, OptimizeArgs};
use super::{catalog, GlobalArgs};
use crate::fsutil::{sha256_file, write_atomic};
use crate::optimize::Method;
use crate::paper::{
    accuracy_svg, build_table, method_name, paper_table_markdown, plan_cells, BenchPreset,
    CellItem, CellKey, CellOptimization, CellResult, CellSpec, ModelRecord, Table, CELL_VERSION,
    PAPER_TASKS,
};
use anyhow::{bail, Context};
use clap::{Args, FromArgMatches};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `maspo bench paper`.
#[derive(Debug, Args)]
pub struct PaperBenchArgs {
    /// tiny (a smoke run), light (sized for a 2-core CPU and a 0.5B model), medium or paper.
    #[arg(long, default_value = "light")]
    preset: String,
    /// The agents' model: catalog id, .gguf path or endpoint [default: the config's model].
    #[arg(long, short)]
    model: Option<String>,
    /// The mutator's model [default: the agents'].
    #[arg(long)]
    mutator_model: Option<String>,
    /// The evaluator's model [default: the agents'].
    #[arg(long)]
    evaluator_model: Option<String>,
    /// Tasks, comma separated [default: the paper's six].
    #[arg(long, value_delimiter = ',')]
    tasks: Option<Vec<String>>,
    /// Topologies, comma separated [default: the preset's].
    #[arg(long, value_delimiter = ',')]
    topologies: Option<Vec<String>>,
    /// Methods, comma separated [default: the preset's].
    #[arg(long, value_delimiter = ',')]
    methods: Option<Vec<Method>>,
    /// Run seeds per cell (0..N).
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Add the paper's Table 2 ablations of MASPO (first topology only).
    #[arg(long)]
    ablations: bool,
    /// Options beyond the paper added as MASPO rows, comma separated: racing, pareto.
    #[arg(long, value_delimiter = ',')]
    options: Vec<String>,
    /// Dataset directory [env MASPO_DATA_DIR; default: maspo's own data/, see data/README.md].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Results directory: cells/, table.md, table.json, accuracy.svg [default:
    /// runs/bench-paper-<preset>/results; the committed pages are under docs/results/].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where the cells' run directories and the shared completion cache go [default:
    /// runs/bench-paper-<preset>].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Also write the results page here (image links adjusted), e.g. docs/results.md.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Run at most this many cells now (the rest on the next call).
    #[arg(long)]
    max_cells: Option<usize>,
    /// Rebuild the table from the stored cells; run nothing.
    #[arg(long)]
    table_only: bool,
    /// Engine settings passed to every cell (how the models run, not what a cell computes).
    #[command(flatten)]
    engine: CellEngineArgs,
}

/// The engine flags of `maspo optimize` that `bench paper` passes on to its cells.
#[derive(Debug, Args)]
pub struct CellEngineArgs {
    /// Where the forward runs: cpu, cuda, cuda:N, candle-cpu [default: cpu].
    #[arg(long)]
    device: Option<crate::engine::device::DeviceSpec>,
    /// Most sequences decoded together [default: 64].
    #[arg(long)]
    max_running: Option<usize>,
    /// Most tokens per forward step [default: 512].
    #[arg(long)]
    step_tokens: Option<usize>,
    /// Memory for reusable prefix KV in MiB, 0 disables prefix reuse [default: 2048].
    #[arg(long)]
    prefix_cache_mb: Option<usize>,
    /// Memory for the KV of sequences in flight in MiB [default: 4096].
    #[arg(long)]
    kv_mb: Option<usize>,
    /// Let hybrid-thinking chat templates open a reasoning block.
    #[arg(long)]
    thinking: bool,
}

impl CellEngineArgs {
    /// The flags as `maspo optimize` arguments.
    fn argv(&self) -> Vec<String> {
        let mut v = Vec::new();
        let mut push = |flag: &str, value: Option<String>| {
            if let Some(value) = value {
                v.extend([flag.to_string(), value]);
            }
        };
        push("--device", self.device.map(|d| d.to_string()));
        push("--max-running", self.max_running.map(|n| n.to_string()));
        push("--step-tokens", self.step_tokens.map(|n| n.to_string()));
        push(
            "--prefix-cache-mb",
            self.prefix_cache_mb.map(|n| n.to_string()),
        );
        push("--kv-mb", self.kv_mb.map(|n| n.to_string()));
        if self.thinking {
            v.push("--thinking".into());
        }
        v
    }
}

/// The git commit of the working tree, `+dirty` when tracked files outside `exclude` changed.
fn commit(exclude: &[&Path]) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(head) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".into();
    };
    let mut args: Vec<String> = ["status", "--porcelain", "--untracked-files=no", "--", "."]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(exclude.iter().map(|p| format!(":(exclude){}", p.display())));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    match git(&refs) {
        Some(s) if s.is_empty() => head,
        Some(_) => format!("{head}+dirty"),
        None => format!("{head} (working tree state unknown)"),
    }
}

/// The role's model with its file checksum (catalog entries: the catalog's; local files: hashed).
fn model_record(global: &GlobalArgs, role: &str, model: &str) -> ModelRecord {
    let spec = crate::openai::ModelSpec::parse(model);
    let sha256 = spec.local().and_then(|id| {
        catalog(global)
            .ok()
            .and_then(|c| c.get(id).ok().map(|e| e.sha256.clone()))
            .or_else(|| {
                let p = Path::new(id);
                p.is_file().then(|| sha256_file(p).ok()).flatten()
            })
    });
    ModelRecord {
        role: role.into(),
        model: model.into(),
        sha256,
    }
}

/// Quotes a shell word when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./,:=@+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

struct Bench<'a> {
    global: &'a GlobalArgs,
    args: &'a PaperBenchArgs,
    preset: &'static BenchPreset,
    out: PathBuf,
    work: PathBuf,
    agents: String,
    mutator: String,
    evaluator: String,
    config_sha256: Option<String>,
    /// The working tree's commit when the bench started (what the binary was built from, when
    /// it was built there).
    commit: String,
}

impl Bench<'_> {
    fn cell_path(&self, c: &CellSpec) -> PathBuf {
        self.out.join("cells").join(format!("{}.json", c.id()))
    }

    fn key(&self, c: &CellSpec) -> CellKey {
        CellKey {
            preset: self.preset.name.into(),
            cell: c.clone(),
            agents: self.agents.clone(),
            mutator: self.mutator.clone(),
            evaluator: self.evaluator.clone(),
            config_sha256: self.config_sha256.clone(),
        }
    }

    /// The stored result of `c`, if it is this bench's; an error when the file is damaged or
    /// belongs to another configuration (never mixed into the table).
    fn stored(&self, c: &CellSpec) -> anyhow::Result<Option<CellResult>> {
        let p = self.cell_path(c);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
        };
        let r: CellResult = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a cell result (damaged?): delete it to run the cell again",
                p.display()
            )
        })?;
        if r.key != self.key(c) {
            bail!(
                "{} holds a result of another configuration (preset, models or config file differ): use another --out, or delete the file to run the cell again",
                p.display()
            );
        }
        Ok(Some(r))
    }

    /// `maspo optimize` arguments of a cell (without the program name).
    fn optimize_argv(&self, c: &CellSpec) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "--task".into(),
            c.task.clone(),
            "--topology".into(),
            c.topology.clone(),
            "--method".into(),
            method_name(c.method),
            "--budget".into(),
            self.preset.budget.into(),
            "--seed".into(),
            c.seed.to_string(),
            "--model".into(),
            self.agents.clone(),
            "--run-dir".into(),
            self.work.join(c.id()).display().to_string(),
            "--completion-cache".into(),
            self.work.join("completion-cache").display().to_string(),
        ];
        if let Some(a) = &c.ablation {
            v.extend(["--ablation".into(), a.clone()]);
        }
        if let Some(o) = &c.option {
            v.push(format!("--{o}"));
        }
        if let Some(m) = self.preset.judge_mode {
            v.extend(["--judge-mode".into(), m.into()]);
        }
        if c.ablation.as_deref() != Some("self_optimized") {
            if let Some(m) = &self.args.mutator_model {
                v.extend(["--mutator-model".into(), m.clone()]);
            }
            if let Some(m) = &self.args.evaluator_model {
                v.extend(["--evaluator-model".into(), m.clone()]);
            }
        }
        if let Some(d) = &self.args.data_dir {
            v.extend(["--data-dir".into(), d.display().to_string()]);
        }
        v.extend(self.args.engine.argv());
        v
    }

    fn command_line(&self, argv: &[String]) -> String {
        let mut words = vec!["maspo".to_string()];
        if let Some(c) = &self.global.config {
            words.extend(["--config".into(), c.display().to_string()]);
        }
        words.push("optimize".into());
        words.extend(argv.iter().cloned());
        words
            .iter()
            .map(|w| shell_word(w))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs one cell (continuing its run directory if an earlier bench was interrupted in it);
    /// `None` when interrupted.
    fn run_cell(&self, c: &CellSpec) -> anyhow::Result<Option<CellResult>> {
        let argv = self.optimize_argv(c);
        let cmd = OptimizeArgs::augment_args(clap::Command::new("optimize"));
        let matches = cmd
            .try_get_matches_from(std::iter::once("optimize".to_string()).chain(argv.clone()))
            .with_context(|| format!("cell {}: bad optimize arguments", c.id()))?;
        let oargs = OptimizeArgs::from_arg_matches(&matches)?;
        let o = run_outcome(self.global, oargs).with_context(|| format!("cell {}", c.id()))?;
        if o.interrupted {
            return Ok(None);
        }
        let Some((state, heldout)) = o.finished else {
            bail!("cell {}: the run produced no result", c.id());
        };
        let Some(h) = heldout else {
            bail!(
                "cell {}: no held-out comparison (test_limit = 0 in the config?)",
                c.id()
            );
        };
        let fixed_system = h.after_system.clone();
        let system = match (&fixed_system, c.method) {
            (Some(s), _) => s.clone(),
            (None, Method::Seed) => "MAS, seed prompts".into(),
            (None, _) => "MAS, optimized prompts".into(),
        };
        let prompts = (!o.protected && fixed_system.is_none())
            .then(|| serde_json::to_value(&state.prompts))
            .transpose()?;
        Ok(Some(CellResult {
            version: CELL_VERSION,
            key: self.key(c),
            command: self.command_line(&argv),
            maspo_version: env!("CARGO_PKG_VERSION").into(),
            commit: self.commit.clone(),
            models: vec![
                model_record(self.global, "agents", &self.agents),
                model_record(self.global, "mutator", &self.mutator),
                model_record(self.global, "evaluator", &self.evaluator),
            ],
            system,
            split: h.split.clone(),
            items: h
                .items
                .iter()
                .map(|(id, seed, method)| CellItem {
                    id: id.clone(),
                    seed: *seed,
                    method: *method,
                })
                .collect(),
            seed_accuracy: h.before,
            accuracy: h.after,
            optimization: CellOptimization {
                units: state.units,
                finished: state.finished,
                stopped: state.stopped.clone(),
                proposals: state.proposals.clone(),
                verdicts: state.judge.verdicts,
                cost: state.cost,
                secs: state.elapsed_secs,
            },
            heldout_calls: h.calls,
            heldout_secs: h.secs,
            failed: h.failed,
            wall_secs: state.elapsed_secs + h.secs,
            prompts,
        }))
    }

    /// Writes table.json, table.md, accuracy.svg (and the extra Markdown copy).
    fn write_table(&self, table: &Table, cells: &[CellResult]) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(table)?;
        let w = |p: PathBuf, bytes: &[u8]| {
            write_atomic(&p, bytes).with_context(|| format!("writing {}", p.display()))
        };
        w(self.out.join("table.json"), format!("{json}\n").as_bytes())?;
        w(
            self.out.join("accuracy.svg"),
            accuracy_svg(table).as_bytes(),
        )?;
        w(
            self.out.join("table.md"),
            self.page(table, cells, "accuracy.svg").as_bytes(),
        )?;
        if let Some(m) = &self.args.markdown {
            let base = m.parent().unwrap_or(Path::new(""));
            let svg = self.out.join("accuracy.svg");
            let link = svg
                .strip_prefix(base)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| svg.display().to_string());
            if let Some(d) = m.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            }
            w(m.clone(), self.page(table, cells, &link).as_bytes())?;
        }
        Ok(())
    }

    /// The results page.
    fn page(&self, table: &Table, cells: &[CellResult], svg: &str) -> String {
        // The command that produces this table (flags that only change how this call runs —
        // quiet, table only, a cell limit — left out).
        let mut invocation: Vec<String> = vec!["maspo".to_string()];
        let mut args = std::env::args().skip(1);
        while let Some(w) = args.next() {
            match w.as_str() {
                "--quiet" | "-q" | "--table-only" => {}
                "--max-cells" => {
                    args.next();
                }
                _ if w.starts_with("--max-cells=") => {}
                _ => invocation.push(shell_word(&w)),
            }
        }
        let mut md = format!(
            "# maspo bench paper — preset `{}`\n\nCommand: `{}`\n\n",
            self.preset.name,
            invocation.join(" ")
        );
        if let Some(c) = cells.first() {
            md.push_str("Models:\n");
            for m in &c.models {
                md.push_str(&format!(
                    "- {}: `{}` (sha256 `{}`)\n",
                    m.role,
                    m.model,
                    m.sha256.as_deref().unwrap_or("n/a: remote")
                ));
            }
            md.push('\n');
        }
        md.push_str(&format!(
            "Reduced against the paper: {}.\n\nEvery cell is one `maspo optimize` run: the optimization uses the task's `opt` split, the accuracy below is on held-out `test` items only (the same items for every method of a task). Cells are listed at the end with their exact command, commit and wall time.\n\n![accuracy per task]({svg})\n\n",
            self.preset.reduced
        ));
        md.push_str(&table.markdown());
        // The reader's notes (what the numbers say), kept beside the cells and never rewritten.
        if let Ok(notes) = std::fs::read_to_string(self.out.join("notes.md")) {
            md.push('\n');
            md.push_str(notes.trim_end());
            md.push('\n');
        }
        md.push_str("\n### Cells\n\n| cell | system | seed MAS → method (%) | optimization: units, proposals evaluated / accepted, calls, tokens | wall | commit | command |\n|---|---|---|---|---|---|---|\n");
        for c in cells {
            let o = &c.optimization;
            md.push_str(&format!(
                "| {} | {} | {:.1} → {:.1} (n = {}) | {} units{}, {} / {}, {} calls, {} tokens | {:.1} min | `{}` | `{}` |\n",
                c.key.cell.id(),
                c.system,
                100.0 * c.seed_accuracy.mean,
                100.0 * c.accuracy.mean,
                c.items.len(),
                o.units,
                o.stopped.as_ref().map(|s| format!(" (stopped: {s})")).unwrap_or_default(),
                o.proposals.evaluated,
                o.proposals.accepted,
                o.cost.calls(),
                o.cost.tokens(),
                c.wall_secs / 60.0,
                c.commit,
                c.command
            ));
        }
        md.push('\n');
        md.push_str(&paper_table_markdown());
        md
    }
}

pub fn run(global: &GlobalArgs, args: PaperBenchArgs) -> anyhow::Result<ExitCode> {
    let preset = BenchPreset::get(&args.preset).map_err(anyhow::Error::msg)?;
    let file = match &global.config {
        Some(p) => crate::config::ConfigFile::load(p)?,
        None => crate::config::ConfigFile::default(),
    };
    let agents = args
        .model
        .clone()
        .or(file.model.as_ref().map(|m| m.label()))
        .unwrap_or_else(|| crate::catalog::DEFAULT_MODEL.to_string());
    let tasks: Vec<String> = args
        .tasks
        .clone()
        .unwrap_or_else(|| PAPER_TASKS.iter().map(|s| s.to_string()).collect());
    let topologies: Vec<String> = args
        .topologies
        .clone()
        .unwrap_or_else(|| preset.topologies.iter().map(|s| s.to_string()).collect());
    let methods: Vec<Method> = args
        .methods
        .clone()
        .unwrap_or_else(|| preset.methods.to_vec());
    if tasks.is_empty() || topologies.is_empty() || methods.is_empty() {
        bail!("--tasks, --topologies and --methods each need at least one value");
    }
    for o in &args.options {
        if !crate::paper::OPTIONS.iter().any(|(name, _)| name == o) {
            let names: Vec<&str> = crate::paper::OPTIONS.iter().map(|x| x.0).collect();
            bail!("--options: `{o}` is not one of: {}", names.join(", "));
        }
    }
    let order = plan_cells(
        &tasks,
        &topologies,
        &methods,
        args.ablations,
        &args.options,
        args.seeds,
    );
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/bench-paper-{}/results", preset.name)));
    let mut excluded = vec![out.as_path()];
    excluded.extend(args.markdown.as_deref());
    let commit = commit(&excluded);
    let bench = Bench {
        global,
        commit,
        args: &args,
        preset,
        out: out.clone(),
        work: args
            .work_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("runs/bench-paper-{}", preset.name))),
        mutator: args.mutator_model.clone().unwrap_or_else(|| agents.clone()),
        evaluator: args
            .evaluator_model
            .clone()
            .unwrap_or_else(|| agents.clone()),
        agents,
        config_sha256: match &global.config {
            Some(p) => Some(sha256_file(p).with_context(|| format!("reading {}", p.display()))?),
            None => None,
        },
    };
    std::fs::create_dir_all(bench.out.join("cells"))
        .with_context(|| format!("creating {}", bench.out.join("cells").display()))?;
    let mut results: Vec<CellResult> = Vec::new();
    let mut todo: Vec<&CellSpec> = Vec::new();
    for c in &order {
        match bench.stored(c)? {
            Some(r) => results.push(r),
            None => todo.push(c),
        }
    }
    let quiet = global.quiet;
    if !quiet {
        eprintln!(
            "[bench paper] preset {}: {} cells planned, {} done, {} to run{}; results in {}",
            preset.name,
            order.len(),
            results.len(),
            todo.len(),
            if args.table_only {
                " (--table-only: running none)"
            } else {
                ""
            },
            bench.out.display()
        );
    }
    let stop = super::signals::install();
    let mut ran = 0usize;
    let t0 = Instant::now();
    let mut interrupted = false;
    if !args.table_only {
        let limit = args.max_cells.unwrap_or(usize::MAX);
        for (i, c) in todo.iter().enumerate() {
            if ran >= limit {
                break;
            }
            if !quiet {
                let eta = if ran > 0 {
                    let per = t0.elapsed().as_secs_f64() / ran as f64;
                    format!(
                        ", ETA {:.0} min",
                        per * (todo.len().min(limit) - i) as f64 / 60.0
                    )
                } else {
                    String::new()
                };
                eprintln!(
                    "[bench paper] cell {}/{} {}{eta}",
                    results.len() + 1,
                    order.len(),
                    c.id()
                );
            }
            match bench.run_cell(c)? {
                Some(r) => {
                    let p = bench.cell_path(c);
                    let text = serde_json::to_string_pretty(&r)?;
                    write_atomic(&p, format!("{text}\n").as_bytes())
                        .with_context(|| format!("writing {}", p.display()))?;
                    results.push(r);
                    ran += 1;
                    let table = build_table(preset.name, &order, &sorted(&order, &results), 0);
                    bench.write_table(&table, &sorted(&order, &results))?;
                }
                None => {
                    interrupted = true;
                    break;
                }
            }
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                interrupted = true;
                break;
            }
        }
    }
    let results = sorted(&order, &results);
    let table = build_table(preset.name, &order, &results, 0);
    bench.write_table(&table, &results)?;
    print!("{}", table.markdown());
    if interrupted || !table.missing.is_empty() {
        eprintln!(
            "[bench paper] {} of {} cells done; run the same command again to continue{}",
            table.cells,
            order.len(),
            if interrupted {
                " (the interrupted cell resumes from its checkpoint)"
            } else {
                ""
            }
        );
    }
    Ok(if interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// `results` in the bench's order.
fn sorted(order: &[CellSpec], results: &[CellResult]) -> Vec<CellResult> {
    order
        .iter()
        .filter_map(|c| results.iter().find(|r| &r.key.cell == c).cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(
            shell_word("runs/bench-paper-light/aqua.s0"),
            "runs/bench-paper-light/aqua.s0"
        );
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
