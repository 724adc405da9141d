//! `maspo eval`: evaluate a MAS (built-in topology or graph file, seed or given prompts) on a
//! task split; a table (or JSON) on stdout, the run directory on disk.

use super::{args::EngineArgs, catalog, progress::EvalBar, progress::FetchBar, GlobalArgs};
use crate::backend::Backends;
use crate::config::{ConfigFile, EvalFile};
use crate::eval::output::{markdown, EvalOutput};
use crate::eval::plan::resolve_plan;
use crate::eval::{evaluate, EvalInputs};
use crate::judge::answer_extractor::TaskExtractor;
use crate::judge::code::CodeJudge;
use crate::judge::llm::LlmJudge;
use crate::judge::{answer::AnswerJudge, Judge};
use crate::mas::{Protocol, Topology};
use crate::tasks::TaskKind;
use anyhow::{bail, Context};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `maspo eval` (each also settable in the config file's `[eval]` table).
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Task: math, agieval_math, aqua, gpqa, mbpp, humaneval, humaneval_et, gsm8k, svamp,
    /// bbh/<name>, gen:<arithmetic|coin_flip|last_letters>[:count[:seed]], jsonl:<path>.
    #[arg(long, short)]
    task: Option<String>,
    /// Dataset directory [env MASPO_DATA_DIR; default: maspo's own data/, see data/README.md].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Split to evaluate: test, val, opt or all [default: test].
    #[arg(long)]
    split: Option<String>,
    /// heldout (disjoint opt/val/test) or paper (the reference: whole file is the test set)
    /// [default: heldout].
    #[arg(long)]
    split_mode: Option<String>,
    /// Only the first N examples of the split.
    #[arg(long, short)]
    limit: Option<usize>,
    /// Built-in topology [default: reflect].
    #[arg(long)]
    topology: Option<Topology>,
    /// Custom agent graph (TOML) instead of a topology.
    #[arg(long, conflicts_with = "topology")]
    graph: Option<PathBuf>,
    /// Prompts JSON (agent id or reference integer id → prompt) [default: seed prompts].
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Rounds of reflect / self_refine [default: 1].
    #[arg(long)]
    rounds: Option<usize>,
    /// Parallel predictors of aggregate / llm_agg [default: 3].
    #[arg(long)]
    agents: Option<usize>,
    /// Debates of debate_llm_agg [default: 2].
    #[arg(long)]
    debates: Option<usize>,
    /// summary (the paper's two-call protocol) or direct [default: summary].
    #[arg(long)]
    protocol: Option<Protocol>,
    /// Most tokens of an agent's answer [default: 1024].
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Most tokens of a summary [default: 96].
    #[arg(long)]
    summary_max_tokens: Option<usize>,
    /// auto (code tests for code, answer matching otherwise), exact or llm [default: auto].
    #[arg(long)]
    judge: Option<String>,
    /// strict or paper (the reference's rules, incl. lenient choice matching) [default: strict].
    #[arg(long)]
    answer_mode: Option<String>,
    /// Seed of sampled agents and the bootstrap [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Seed of the split assignment (kept apart so sampling seeds don't move examples between
    /// splits) [default: 0].
    #[arg(long)]
    split_seed: Option<u64>,
    /// Run directory [default: runs/eval-<task>-<graph>-<split>].
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Print the resolved evaluation (task, split, graph, prompts, settings) as JSON and exit
    /// without loading the model.
    #[arg(long)]
    dry_run: bool,
    /// Do not use the persistent completion cache (by default `completion-cache/` beside the run
    /// directory, so an interrupted or repeated evaluation recomputes nothing it finished).
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

impl EvalArgs {
    /// The command line as one more `[eval]` layer, applied over the file's.
    fn merged(&self, file: EvalFile) -> EvalFile {
        EvalFile {
            task: self.task.clone().or(file.task),
            data_dir: self.data_dir.clone().or(file.data_dir),
            split: self.split.clone().or(file.split),
            split_mode: self.split_mode.clone().or(file.split_mode),
            limit: self.limit.or(file.limit),
            topology: self
                .topology
                .map(|t| t.name().to_string())
                .or(file.topology),
            graph: self.graph.clone().or(file.graph),
            prompts: self.prompts.clone().or(file.prompts),
            rounds: self.rounds.or(file.rounds),
            agents: self.agents.or(file.agents),
            debates: self.debates.or(file.debates),
            protocol: self
                .protocol
                .map(|p| format!("{p:?}").to_lowercase())
                .or(file.protocol),
            max_tokens: self.max_tokens.or(file.max_tokens),
            summary_max_tokens: self.summary_max_tokens.or(file.summary_max_tokens),
            judge: self.judge.clone().or(file.judge),
            answer_mode: self.answer_mode.clone().or(file.answer_mode),
            seed: self.seed.or(file.seed),
            split_seed: self.split_seed.or(file.split_seed),
            out: self.out.clone().or(file.out),
            fields: file.fields,
        }
    }
}

pub fn run(global: &GlobalArgs, args: EvalArgs) -> anyhow::Result<ExitCode> {
    let file = match &global.config {
        Some(p) => ConfigFile::load(p)?,
        None => ConfigFile::default(),
    };
    let cfg = args.merged(file.eval);
    let plan = resolve_plan(&cfg)?;
    let mut choice = args.engine.resolve(global)?;
    let split = plan.record["split"].as_str().unwrap_or("test").to_string();
    let out = cfg.out.clone().unwrap_or_else(|| {
        let task = plan.task.name.replace(['/', ':'], "_");
        PathBuf::from(format!("runs/eval-{task}-{}-{split}", plan.graph.name()))
    });
    if plan.task.protected {
        // Completions often quote the question: nothing of a protected dataset is cached.
        if choice.settings.completion_cache_dir.take().is_some() && !global.quiet {
            eprintln!(
                "note: {} is protected; the completion cache is off",
                plan.task.name
            );
        }
    } else if args.no_cache {
        choice.settings.completion_cache_dir = None;
    } else if choice.settings.completion_cache_dir.is_none() {
        let parent = out.parent().unwrap_or(std::path::Path::new("."));
        choice.settings.completion_cache_dir = Some(parent.join("completion-cache"));
    }
    if args.dry_run {
        let mut record = plan.record.clone();
        if let Some(o) = record.as_object_mut() {
            o.insert("prompts".into(), serde_json::to_value(&plan.prompts)?);
            o.insert(
                "example_ids".into(),
                plan.examples.iter().map(|e| e.id.clone()).collect(),
            );
            o.insert("model".into(), choice.model.label().into());
            o.insert("engine".into(), serde_json::to_value(&choice.settings)?);
            o.insert("out".into(), serde_json::json!(out));
        }
        println!("{}", serde_json::to_string_pretty(&record)?);
        return Ok(ExitCode::SUCCESS);
    }
    let backends = Backends::load(
        &[("agents", &choice.model)],
        &catalog(global)?,
        &mut FetchBar::new(global.quiet),
        &choice.settings,
        choice.settings.completion_cache_dir.as_deref(),
    )?;
    super::print_memory(&backends, global.quiet);
    let lm = backends.role(0).lm();
    let extractor = TaskExtractor::new(&plan.task, plan.answer_mode);
    let answer_judge = AnswerJudge::for_task(&plan.task, plan.answer_mode);
    let code_judge;
    let llm_judge;
    let judge: &dyn Judge = match (cfg.judge.as_deref().unwrap_or("auto"), plan.task.kind) {
        ("auto" | "exact", TaskKind::Code) => {
            code_judge = CodeJudge::hiding(std::slice::from_ref(&plan.data_dir))
                .context("setting up the code sandbox")?;
            &code_judge
        }
        ("auto" | "exact", _) => &answer_judge,
        ("llm", TaskKind::Code) => bail!("--judge llm needs reference answers; code tasks are judged by running their tests (use --judge auto)"),
        ("llm", _) => {
            llm_judge = LlmJudge::new(lm, plan.task.kind);
            &llm_judge
        }
        (other, _) => bail!("judge = `{other}` is not one of: auto, exact, llm"),
    };
    let inputs = EvalInputs {
        graph: &plan.graph,
        prompts: &plan.prompts,
        lm,
        extractor: &extractor,
        judge,
        run: &plan.run,
        seed: plan.run.seed,
    };
    let t0 = Instant::now();
    let mut bar = EvalBar::new(global.quiet, &plan.graph, &plan.run, plan.examples.len());
    let (report, traces) = evaluate(&inputs, &plan.examples, &mut |e| bar.on(e))?;
    bar.finish();
    let wall = t0.elapsed().as_secs_f64();
    let mut config = plan.record.clone();
    if let Some(o) = config.as_object_mut() {
        o.insert("judge".into(), judge.name().into());
        o.insert("model".into(), choice.model.label().into());
        if let Some(e) = backends.role(0).engine() {
            o.insert("model_file".into(), serde_json::json!(e.path()));
        }
        o.insert("engine".into(), serde_json::to_value(&choice.settings)?);
        o.insert("wall_secs".into(), wall.into());
    }
    let title = format!(
        "{} on {} ({split}, {} examples)",
        plan.graph.name(),
        plan.task.name,
        report.n
    );
    let output = EvalOutput {
        dir: &out,
        config,
        compress_traces: plan.task.protected,
    };
    output.write(&report, &traces, &plan.graph, &plan.prompts, &title)?;
    print_summary(&report, &title, &out, wall, args.json)?;
    if report.failed_rollouts > 0 {
        // Results are written; the exit status still says that some examples failed to run.
        eprintln!(
            "{} of {} rollouts had a failed call (see `error` in items.jsonl)",
            report.failed_rollouts, report.n
        );
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(
    report: &crate::eval::EvalReport,
    title: &str,
    out: &std::path::Path,
    wall: f64,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let mut summary = serde_json::to_value(report)?;
        if let Some(o) = summary.as_object_mut() {
            o.remove("items");
            o.insert("out".into(), serde_json::json!(out));
            o.insert("wall_secs".into(), serde_json::json!(wall));
        }
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", markdown(report, title));
        println!("\nrun directory: {}", out.display());
    }
    Ok(())
}
