//! `maspo optimize`: resolve the task, MAS, models and settings; project the cost; run MASPO
//! into a run directory (resumable); evaluate seed vs optimized prompts on held-out items.

use super::{args::EngineArgs, catalog, progress::FetchBar, GlobalArgs};
use crate::backend::Backends;
use crate::config::{ConfigFile, EvalFile, OptimizeFile};
use crate::engine::{Engine, EngineSettings, GenRequest};
use crate::eval::plan::{resolve_plan, select_split, Plan};
use crate::eval::EvalInputs;
use crate::judge::answer::AnswerJudge;
use crate::judge::answer_extractor::TaskExtractor;
use crate::judge::code::CodeJudge;
use crate::judge::Judge;
use crate::mas::{
    build, AgentGraph, LanguageModel, PromptSet, RunSettings, Topology, TopologyOptions,
};
use crate::openai::ModelSpec;
use crate::optimize::budget::{project, Projection};
use crate::optimize::heldout::{compare_systems, HeldOut};
use crate::optimize::report::{self, ReportInputs};
use crate::optimize::rundir::RunDir;
use crate::optimize::{
    optimize, JudgeMode, JudgeOrder, MasEvaluator, Metered, Method, OptimizeEvent,
    OptimizeSettings, Schedule, SearchEvent, State, Unit,
};
use crate::rng::sample_indices;
use crate::tasks::{Example, TaskKind};
use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `maspo optimize` (each also settable in the config file: `[eval]` for the task
/// and MAS, `[optimize]` for the optimizer).
#[derive(Debug, Args)]
pub struct OptimizeArgs {
    /// Task (as `maspo eval --task`).
    #[arg(long, short)]
    task: Option<String>,
    /// Dataset directory [env MASPO_DATA_DIR; default: maspo's own data/, see data/README.md].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Built-in topology [default: reflect].
    #[arg(long)]
    topology: Option<Topology>,
    /// Custom agent graph (TOML).
    #[arg(long, conflicts_with = "topology")]
    graph: Option<PathBuf>,
    /// Starting prompts (JSON, agent id or reference id → prompt) [default: seed prompts].
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Seed of the split assignment [default: 0].
    #[arg(long)]
    split_seed: Option<u64>,
    /// default (fixes over the reference) or faithful (the reference's behaviour).
    #[arg(long)]
    preset: Option<String>,
    /// tiny (a smoke run), light, medium or paper budgets (pool, batch, steps, sweeps, max
    /// tokens, test items) [default: paper].
    #[arg(long)]
    budget: Option<String>,
    /// Model of the mutator (prompt proposals) [default: the agents' model].
    #[arg(long)]
    mutator_model: Option<String>,
    /// Model of the evaluator (judgements) [default: the agents' model].
    #[arg(long)]
    evaluator_model: Option<String>,
    /// Visiting schedule.
    #[arg(long)]
    schedule: Option<Schedule>,
    /// maspo (default), seed (no optimization: the seed prompts' held-out accuracy), spo
    /// (per-agent SPO: one turn per agent, batch 3, one proposal, local-only judge),
    /// opro (per agent: a trajectory of scored prompts → a new prompt), prompt_breeder (per
    /// agent: a population evolved with mutation prompts, thinking styles and hypermutation),
    /// tpe (MIPRO-style: a generated pool of candidate prompts per agent, then TPE trials of
    /// one candidate per agent judged on the final answer against the seed system),
    /// naive_joint (every agent rewritten together, scored by the final answer only), cot (a
    /// single CoT agent instead of the MAS), cot_sc (CoT self-consistency with as many samples
    /// as the MAS spends calls per question) or self_refine (solver → critic → refiner).
    #[arg(long)]
    method: Option<Method>,
    /// A Table 2 ablation of the paper: no_beam, single_cycle, no_refresh, no_joint,
    /// random_sampling, success_sampling, self_optimized (applied over the preset and config).
    #[arg(long)]
    ablation: Option<String>,
    /// Racing: judge every candidate on half its batch first and drop those that can no longer
    /// be accepted (the same prompts are committed; fewer calls).
    #[arg(long)]
    racing: bool,
    /// Pareto-front parent selection (GEPA): keep the candidates best on some question of the
    /// step and not dominated, instead of the top of the beam by cumulative score.
    #[arg(long)]
    pareto: bool,
    /// Judge A/B order.
    #[arg(long)]
    judge_order: Option<JudgeOrder>,
    /// generate or logprob judging.
    #[arg(long)]
    judge_mode: Option<JudgeMode>,
    /// The global term uses the pool's gold answers (not label-free).
    #[arg(long)]
    labels: bool,
    /// Run seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Test items of the final before/after (0 skips it).
    #[arg(long)]
    test_limit: Option<usize>,
    /// Stop at this many LLM calls.
    #[arg(long)]
    max_calls: Option<u64>,
    /// Stop at this many tokens (prompt + generated).
    #[arg(long)]
    max_total_tokens: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    max_seconds: Option<f64>,
    /// Run directory [default: runs/opt-<task>-<graph>].
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Continue the run in DIR (its config.json is used; other settings flags are ignored).
    #[arg(long, conflicts_with = "run_dir")]
    resume: Option<PathBuf>,
    /// Print the resolved plan and the projection as JSON; load no model.
    #[arg(long)]
    dry_run: bool,
    /// Submit every call alone (no batching): the reference point for speed comparisons.
    #[arg(long)]
    one_at_a_time: bool,
    /// No persistent completion cache (default: `completion-cache/` in the run directory).
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

/// What `config.json` records and `--resume` reads back.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Resolved {
    eval: EvalFile,
    settings: OptimizeSettings,
    models: Models,
    engine: EngineSettings,
    pool_ids: Vec<String>,
    test_ids: Vec<String>,
    #[serde(default)]
    plan: serde_json::Value,
    maspo_version: String,
}

impl Resolved {
    /// Whether `other` describes the same optimization (engine settings may differ).
    fn same_run(&self, other: &Resolved) -> bool {
        let key = |r: &Resolved| {
            serde_json::json!([r.eval, r.settings, r.models, r.pool_ids, r.test_ids])
        };
        key(self) == key(other)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Models {
    agents: ModelSpec,
    mutator: ModelSpec,
    evaluator: ModelSpec,
}

fn settings(args: &OptimizeArgs, file: &OptimizeFile) -> anyhow::Result<OptimizeSettings> {
    let preset = args
        .preset
        .clone()
        .or(file.preset.clone())
        .unwrap_or_else(|| "default".into());
    let budget = args
        .budget
        .clone()
        .or(file.budget.clone())
        .unwrap_or_else(|| "paper".into());
    let mut s = OptimizeSettings::preset(&preset, &budget).map_err(anyhow::Error::msg)?;
    s = s
        .with_overrides(&file.settings)
        .map_err(anyhow::Error::msg)?;
    if let Some(v) = args.schedule {
        s.schedule = v;
    }
    if let Some(v) = args.judge_order {
        s.judge.order = v;
    }
    if let Some(v) = args.judge_mode {
        s.judge.mode = v;
    }
    if args.labels {
        s.judge.labels = true;
    }
    if args.racing {
        s.racing = true;
    }
    if args.pareto {
        s.pareto = true;
    }
    if let Some(v) = args.seed {
        s.seed = v;
    }
    if let Some(v) = args.test_limit {
        s.test_limit = Some(v);
    }
    s = s.with_method(args.method.unwrap_or(s.method));
    if let Some(a) = args.ablation.clone().or(s.ablation.take()) {
        s = s.ablate(&a).map_err(anyhow::Error::msg)?;
    }
    s.max_calls = args.max_calls.or(s.max_calls);
    s.max_tokens = args.max_total_tokens.or(s.max_tokens);
    s.max_seconds = args.max_seconds.or(s.max_seconds);
    s.validate().map_err(anyhow::Error::msg)?;
    Ok(s)
}

/// The optimization pool: `pool` questions drawn (seeded) from the `opt` split, or from the whole
/// file under `pool_split = "paper"` (the reference).
fn pool(plan: &Plan, s: &OptimizeSettings) -> anyhow::Result<Vec<Example>> {
    let from = if s.pool_split == "paper" {
        "all"
    } else {
        "opt"
    };
    let candidates = select_split(&plan.task, from, &plan.split_mode, plan.split_seed)?;
    if candidates.len() < s.batch {
        bail!(
            "the `{from}` split of {} has {} questions, fewer than batch = {}",
            plan.task.name,
            candidates.len(),
            s.batch
        );
    }
    let pick = sample_indices(
        candidates.len(),
        s.pool,
        crate::rng::derive_seed(&[s.seed, 0x706f_6f6c]),
    );
    Ok(pick.into_iter().map(|i| candidates[i].clone()).collect())
}

/// How a run ended, for callers that run optimizations as parts of a larger job (`maspo bench
/// paper`).
pub(super) struct Outcome {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Stopped by Ctrl-C / SIGTERM (the checkpoint is written; the same command continues it).
    pub interrupted: bool,
    /// The final state and held-out comparison (`None` for a dry run or an interrupted run).
    pub finished: Option<(State, Option<HeldOut>)>,
    /// Whether the task's questions must not leave the machine in plain text (GPQA).
    pub protected: bool,
}

pub fn run(global: &GlobalArgs, args: OptimizeArgs) -> anyhow::Result<ExitCode> {
    let o = run_outcome(global, args)?;
    if o.interrupted {
        return Ok(ExitCode::from(130));
    }
    if let Some((state, heldout)) = &o.finished {
        let mut dir = RunDir::open(&o.run_dir)?;
        dir.set_compressed(o.protected);
        print_final(state, heldout.as_ref(), &dir);
    }
    Ok(ExitCode::SUCCESS)
}

/// `maspo optimize` without the final summary on stdout.
pub(super) fn run_outcome(global: &GlobalArgs, args: OptimizeArgs) -> anyhow::Result<Outcome> {
    let file = match &global.config {
        Some(p) => ConfigFile::load(p)?,
        None => ConfigFile::default(),
    };
    let mut choice = args.engine.resolve(global)?;
    let (resolved, dir) = match &args.resume {
        Some(d) => {
            let mut dir = RunDir::open(d)?;
            let mut r: Resolved = dir.read_json("config.json").with_context(|| {
                format!("{} is not a maspo optimize run directory", d.display())
            })?;
            dir.set_compressed(resolve_plan(&r.eval)?.task.protected);
            // Engine settings are not the run's identity: flags given now (a device, memory
            // bounds, threads) move the run onto them; the rest stays as recorded.
            let moved = args.engine.layer(global).apply(r.engine.clone());
            if moved != r.engine {
                if !global.quiet {
                    eprintln!(
                        "continuing {} with the engine settings given now (device {}, recorded {})",
                        d.display(),
                        moved.device,
                        r.engine.device
                    );
                }
                r.engine = moved;
                dir.write_json("config.json", &r)?;
            }
            (r, dir)
        }
        None => {
            let eval = EvalFile {
                task: args.task.clone().or(file.eval.task.clone()),
                data_dir: args.data_dir.clone().or(file.eval.data_dir.clone()),
                topology: args
                    .topology
                    .map(|t| t.name().to_string())
                    .or(file.eval.topology.clone()),
                graph: args.graph.clone().or(file.eval.graph.clone()),
                prompts: args.prompts.clone().or(file.eval.prompts.clone()),
                split_seed: args.split_seed.or(file.eval.split_seed),
                split: Some("test".into()),
                limit: None,
                out: None,
                ..file.eval.clone()
            };
            let mut s = settings(&args, &file.optimize)?;
            let mut eval = eval;
            eval.max_tokens = Some(eval.max_tokens.unwrap_or(s.agent_max_tokens));
            s.agent_max_tokens = eval.max_tokens.unwrap_or(s.agent_max_tokens);
            eval.seed = Some(s.seed);
            let plan = resolve_plan(&eval)?;
            let pool = pool(&plan, &s)?;
            let test: Vec<String> = plan
                .examples
                .iter()
                .take(s.test_limit.unwrap_or(usize::MAX))
                .map(|e| e.id.clone())
                .collect();
            let agents = choice.model.clone();
            // The paper's Self-Optimized ablation: the agents' model in every role, over
            // whatever mutator and evaluator the run would otherwise use (config.json records
            // the models).
            let own = s.ablation.as_deref() == Some("self_optimized");
            let models = Models {
                mutator: args
                    .mutator_model
                    .as_deref()
                    .map(ModelSpec::parse)
                    .or(file.optimize.mutator_model.clone())
                    .filter(|_| !own)
                    .unwrap_or_else(|| agents.clone()),
                evaluator: args
                    .evaluator_model
                    .as_deref()
                    .map(ModelSpec::parse)
                    .or(file.optimize.evaluator_model.clone())
                    .filter(|_| !own)
                    .unwrap_or_else(|| agents.clone()),
                agents,
            };
            let root = args
                .run_dir
                .clone()
                .or(file.optimize.run_dir.clone())
                .unwrap_or_else(|| {
                    let task = plan.task.name.replace(['/', ':'], "_");
                    PathBuf::from(format!("runs/opt-{task}-{}", plan.graph.name()))
                });
            if !args.no_cache
                && !plan.task.protected
                && choice.settings.completion_cache_dir.is_none()
            {
                choice.settings.completion_cache_dir = Some(root.join("completion-cache"));
            }
            if plan.task.protected {
                choice.settings.completion_cache_dir = None;
            }
            let r = Resolved {
                eval,
                settings: s,
                models,
                engine: choice.settings.clone(),
                pool_ids: pool.iter().map(|e| e.id.clone()).collect(),
                test_ids: test,
                plan: plan.record.clone(),
                maspo_version: env!("CARGO_PKG_VERSION").into(),
            };
            if root.join("config.json").exists() && !args.dry_run {
                // The same command again continues (or re-reports) the same run; anything else
                // must not mix into it.
                let mut dir = RunDir::open(&root)?;
                dir.set_compressed(plan.task.protected);
                let old: Option<Resolved> = dir.read_json("config.json").ok();
                if old.as_ref().is_some_and(|o| o.same_run(&r)) {
                    let old = old.unwrap_or(r);
                    if !global.quiet {
                        eprintln!("{} holds this run: continuing it", root.display());
                    }
                    return execute(global, &args, old, dir);
                }
                bail!(
                    "{} already holds a different run: continue it with --resume {0} or choose another --run-dir",
                    root.display()
                );
            }
            if args.dry_run {
                let proj = project(&plan.graph, &plan.run, &r.settings, None);
                let out = serde_json::json!({"run_dir": root, "resolved": r, "projection": proj,
                    "seed_prompts": plan.prompts});
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(Outcome {
                    run_dir: root,
                    interrupted: false,
                    finished: None,
                    protected: plan.task.protected,
                });
            }
            let mut dir = RunDir::open(&root)?;
            dir.set_compressed(plan.task.protected);
            // The initial checkpoint first: once config.json exists, --resume always works.
            dir.truncate_candidates(0)?;
            dir.checkpoint(&initial_state(&plan))?;
            dir.write_json("config.json", &r)?;
            (r, dir)
        }
    };
    execute(global, &args, resolved, dir)
}

fn execute(
    global: &GlobalArgs,
    args: &OptimizeArgs,
    r: Resolved,
    dir: RunDir,
) -> anyhow::Result<Outcome> {
    let s = &r.settings;
    let plan = resolve_plan(&r.eval)?;
    let by_id: HashMap<&str, &Example> = plan
        .task
        .examples
        .iter()
        .map(|e| (e.id.as_str(), e))
        .collect();
    let take = |ids: &[String]| -> anyhow::Result<Vec<Example>> {
        ids.iter()
            .map(|id| {
                by_id
                    .get(id.as_str())
                    .map(|e| (*e).clone())
                    .with_context(|| {
                        format!(
                            "example `{id}` of the run is no longer in {} (the dataset changed)",
                            plan.task.name
                        )
                    })
            })
            .collect()
    };
    let pool = take(&r.pool_ids)?;
    let test = take(&r.test_ids)?;
    let proj = project(&plan.graph, &plan.run, s, None);
    if let Some(m) = s.max_calls {
        if m < proj.first_step_min_calls {
            bail!(
                "max_calls = {m} cannot finish one step: the first step alone needs at least {} calls (baselines and proposals); raise the budget or lower batch",
                proj.first_step_min_calls
            );
        }
    }
    // Models: roles naming the same model share one; remote roles share the run's cache.
    let backends = Backends::load(
        &[
            ("agents", &r.models.agents),
            ("mutator", &r.models.mutator),
            ("evaluator", &r.models.evaluator),
        ],
        &catalog(global)?,
        &mut FetchBar::new(global.quiet),
        &r.engine,
        r.engine.completion_cache_dir.as_deref(),
    )?;
    super::print_memory(&backends, global.quiet);
    // The time projection needs the agents' speed: measured for an in-process engine only.
    let peak = backends.role(0).engine().map(measure_speed);
    let proj: Projection = project(&plan.graph, &plan.run, s, peak);
    if !global.quiet {
        print_projection(&proj, peak);
    }
    let extractor = TaskExtractor::new(&plan.task, plan.answer_mode);
    let answer_judge = AnswerJudge::for_task(&plan.task, plan.answer_mode);
    let code_judge;
    let gold: &dyn Judge = if plan.task.kind == TaskKind::Code {
        code_judge = CodeJudge::hiding(std::slice::from_ref(&plan.data_dir))
            .context("setting up the code sandbox")?;
        &code_judge
    } else {
        &answer_judge
    };
    let lm = |i: usize| -> &dyn LanguageModel { backends.role(i).lm() };
    let mut run = plan.run.clone();
    run.max_tokens = s.agent_max_tokens;
    let ev = MasEvaluator {
        graph: &plan.graph,
        pool: &pool,
        agents: Metered::new(lm(0), args.one_at_a_time),
        mutator: Metered::new(lm(1), args.one_at_a_time),
        evaluator: Metered::new(lm(2), args.one_at_a_time),
        extractor: &extractor,
        run: run.clone(),
        mutator_temperature: s.mutator_temperature,
        mutator_max_tokens: s.mutator_max_tokens,
        logprob: s.judge.mode == JudgeMode::Logprob,
        // Always there: `labels` decides whether scores use it; judge agreement with gold is
        // measured either way.
        gold: Some(gold),
    };
    // The initial checkpoint is written with config.json, so this also starts a new run.
    let mut state = dir.resume()?;
    let title = format!(
        "{} on {} — agents {}, mutator {}, evaluator {}",
        plan.graph.name(),
        plan.task.name,
        r.models.agents,
        r.models.mutator,
        r.models.evaluator
    );
    let lines = vec![
        format!(
            "method {:?}, preset `{}`, budget `{}`, schedule {:?}, seed {}{}",
            s.method,
            s.preset,
            s.budget_preset,
            s.schedule,
            s.seed,
            s.ablation.as_ref().map(|a| format!(", ablation {a}")).unwrap_or_default()
        ),
        format!(
            "T = {} steps/turn, D = {} sweeps, beam {}, {} proposals/node, pool {} (`{}` split), batch {}",
            s.steps_per_turn, s.sweeps, s.beam, s.proposals, s.pool, if s.pool_split == "paper" { "whole file" } else { "opt" }, s.batch
        ),
        format!(
            "judge: order {:?}, mode {:?}, labels {}; weights {:?}, lookahead {}, misalignment sampling {}, refresh {}",
            s.judge.order, s.judge.mode, s.judge.labels, s.weights, s.lookahead, s.misalignment_sampling, s.beam_refresh
        ),
        match peak {
            Some(peak) => format!("projection (upper bound): {} calls, {} generated tokens, {:.0} min at {peak:.0} tokens/s", proj.calls, proj.max_generated_tokens, proj.max_minutes.unwrap_or(0.0)),
            None => format!("projection (upper bound): {} calls, {} generated tokens (remote agents: no time projection)", proj.calls, proj.max_generated_tokens),
        },
    ];
    let mut heldout: Option<HeldOut> = dir.read_json("heldout.json").ok();
    let mut bar = UnitBar::new(global.quiet, proj.units, state.units);
    let t0 = Instant::now();
    let write_report = |state: &State, h: Option<&HeldOut>| {
        report::write(
            &dir,
            state,
            &ReportInputs {
                title: &title,
                settings: &lines,
                planned_units: proj.units,
                heldout: h,
                peak_tokens_per_sec: peak,
            },
        )
    };
    // Ctrl-C: finish the current unit (its checkpoint), then stop with a resume hint.
    let stop = super::signals::install();
    let interrupted = || stop.load(std::sync::atomic::Ordering::SeqCst);
    let completed = optimize(
        &ev,
        s,
        &dir,
        &mut state,
        &mut |e| {
            bar.on(&e);
            let json = match &e {
                OptimizeEvent::UnitStart { unit, agent, done } => Some(serde_json::json!({
                    "t": t0.elapsed().as_secs_f64(), "event": "unit_start", "unit": done,
                    "kind": match unit { Unit::Refresh(_) => "refresh", Unit::Joint => "joint", Unit::Step(_) => "step", Unit::TpePool => "tpe_pool", Unit::TpeTrial => "trial" }, "agent": agent})),
                OptimizeEvent::Search(SearchEvent::Phase { phase, jobs }) => {
                    Some(serde_json::json!({
                    "t": t0.elapsed().as_secs_f64(), "event": "phase", "phase": phase, "jobs": jobs}))
                }
                OptimizeEvent::UnitDone { state } => Some(serde_json::json!({
                    "t": t0.elapsed().as_secs_f64(), "event": "unit_done", "record": state.history.last(),
                    "engine": backends.engines().map(|e| e.stats().decode_tokens).sum::<u64>()})),
                OptimizeEvent::Stopped { reason } => Some(serde_json::json!({
                    "t": t0.elapsed().as_secs_f64(), "event": "stopped", "reason": reason})),
                _ => None,
            };
            if let Some(j) = json {
                let _ = dir.event(&j);
            }
        },
        &mut |st| write_report(st, heldout.as_ref()),
        &interrupted,
    )?;
    bar.finish();
    if !completed || (heldout.is_none() && interrupted()) {
        write_report(&state, heldout.as_ref())?;
        eprintln!(
            "interrupted after {} units; the checkpoint is written. Continue with: maspo optimize --resume {}",
            state.units,
            dir.root().display()
        );
        return Ok(Outcome {
            run_dir: dir.root().to_path_buf(),
            interrupted: true,
            finished: None,
            protected: plan.task.protected,
        });
    }
    if heldout.is_none() && !test.is_empty() {
        if !global.quiet {
            eprintln!(
                "evaluating seed vs optimized prompts on {} held-out test items …",
                test.len()
            );
        }
        let agents = Metered::new(lm(0), args.one_at_a_time);
        let inputs = EvalInputs {
            graph: &plan.graph,
            prompts: &state.seeds,
            lm: &agents,
            extractor: &extractor,
            judge: gold,
            run: &run,
            seed: s.seed,
        };
        // CoT and CoT-SC replace the system; every other method keeps the MAS.
        let system = baseline_system(&plan, &run, s.method)?;
        let (after_graph, after_prompts) = match &system {
            Some((g, _)) => (g, PromptSet::seeds(g)),
            None => (&plan.graph, state.prompts.clone()),
        };
        let after_inputs = EvalInputs {
            graph: after_graph,
            prompts: &after_prompts,
            ..inputs
        };
        let (mut h, before, after) = compare_systems(&inputs, &after_inputs, &test, "test")?;
        h.after_system = system.as_ref().map(|(_, name)| name.clone());
        if !plan.task.protected {
            // Both evaluations as `maspo eval` run directories: items, traces, prompts.
            for (name, (report, traces), graph, prompts) in [
                ("heldout-seed", before, &plan.graph, &state.seeds),
                ("heldout-optimized", after, after_graph, &after_prompts),
            ] {
                let title = format!("{name}: {} on {} (test)", graph.name(), plan.task.name);
                let out = crate::eval::output::EvalOutput {
                    dir: &dir.root().join(name),
                    config: plan.record.clone(),
                    compress_traces: false,
                };
                out.write(&report, &traces, graph, prompts, &title)?;
            }
        }
        dir.write_json("heldout.json", &h)?;
        heldout = Some(h);
    }
    write_report(&state, heldout.as_ref())?;
    for m in backends.remotes() {
        // Retries and failures of remote roles, for the record (never the API key).
        let st = m.stats();
        let _ = dir.event(
            &serde_json::json!({"t": t0.elapsed().as_secs_f64(), "event": "remote",
            "endpoint": m.base_url(), "model": m.model_id(), "stats": st}),
        );
        if !global.quiet {
            eprintln!(
                "remote {} @ {}: {} HTTP requests, {} retries, {} failed calls, {} cache hits",
                m.model_id(),
                m.base_url(),
                st.http_requests,
                st.retries,
                st.failed,
                st.cache_hits
            );
        }
    }
    Ok(Outcome {
        run_dir: dir.root().to_path_buf(),
        interrupted: false,
        finished: Some((state, heldout)),
        protected: plan.task.protected,
    })
}

/// The system a baseline method evaluates instead of the MAS, with its name for the report:
/// CoT (`single`), CoT-SC (`aggregate` with as many sampled predictors as the MAS spends
/// calls per question) or Self-Refine (`self_refine`, one round); `None` for methods that keep
/// the MAS.
fn baseline_system(
    plan: &Plan,
    run: &RunSettings,
    method: Method,
) -> anyhow::Result<Option<(AgentGraph, String)>> {
    let (topology, agents) = match method {
        Method::Cot => (Topology::Single, 1),
        Method::CotSc => (
            Topology::Aggregate,
            crate::optimize::budget::calls_per_question(&plan.graph, run).max(1),
        ),
        Method::SelfRefine => (Topology::SelfRefine, 1),
        _ => return Ok(None),
    };
    let opts = TopologyOptions {
        agents,
        ..TopologyOptions::default()
    };
    let g = build(topology, plan.task.kind, &opts)?;
    let name = match method {
        Method::Cot => "CoT (single agent)".to_string(),
        Method::SelfRefine => "Self-Refine (solver, critic, refiner)".to_string(),
        _ => format!("CoT-SC ({agents} samples, majority vote)"),
    };
    Ok(Some((g, name)))
}

/// The state before the first step: every agent's beam holds its starting prompt.
fn initial_state(plan: &Plan) -> State {
    let order: Vec<String> = plan
        .graph
        .optimizable()
        .iter()
        .map(|&i| plan.graph.agent(i).id.clone())
        .collect();
    State::new(&plan.prompts, &order)
}

/// Batched generation speed of the agents' engine: 16 sequences × 32 tokens (never cached).
fn measure_speed(engine: &Engine) -> f64 {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let reqs: Vec<GenRequest> = (0..16)
        .map(|i| {
            let mut r = GenRequest::chat(
                vec![crate::engine::chat_template::Message::user(format!(
                    "Count from {i} ({nonce})."
                ))],
                32,
            );
            r.ignore_eos = true;
            r
        })
        .collect();
    let before = engine.stats();
    let _ = engine.generate(&reqs);
    let after = engine.stats();
    let toks = (after.decode_tokens - before.decode_tokens) as f64;
    let secs = after.forward_secs - before.forward_secs;
    if secs > 0.0 {
        toks / secs
    } else {
        0.0
    }
}

fn print_projection(p: &Projection, peak: Option<f64>) {
    let time = match peak {
        Some(peak) => format!(
            " ≈ {:.0} min at {peak:.0} generated tokens/s",
            p.max_minutes.unwrap_or(0.0)
        ),
        None => String::new(),
    };
    eprintln!(
        "projection: {} units ({} steps, {} refreshes); at most {} calls, {} generated tokens{time} (upper bound; the progress bar's ETA follows the real pace)",
        p.units, p.steps, p.refreshes, p.calls, p.max_generated_tokens,
    );
    for ph in &p.phases {
        eprintln!(
            "  {:<9} {:<9} ≤ {:>6} calls, ≤ {:>8} generated tokens",
            ph.phase, ph.role, ph.calls, ph.max_generated_tokens
        );
    }
}

fn print_final(state: &State, h: Option<&HeldOut>, dir: &RunDir) {
    if let Some(reason) = &state.stopped {
        println!("stopped early: {reason}");
    }
    if let Some(h) = h {
        print!("{}", report::heldout_table(h));
    }
    println!(
        "{} calls, {:.0} s; best prompts: {}; report: {}",
        state.cost.calls(),
        state.elapsed_secs,
        dir.path("best_prompts.json").display(),
        dir.path("report.md").display()
    );
}

/// Progress: units done out of planned, with the current agent, phase and tokens/s.
struct UnitBar {
    bar: ProgressBar,
}

impl UnitBar {
    fn new(quiet: bool, units: usize, done: usize) -> Self {
        let bar = ProgressBar::new(units as u64).with_style(
            ProgressStyle::with_template("{prefix} [{bar:25}] {pos}/{len} units, ETA {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(done as u64);
        if quiet || !std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        Self { bar }
    }

    fn on(&mut self, e: &OptimizeEvent<'_>) {
        match e {
            OptimizeEvent::UnitStart { unit, agent, .. } => {
                let k = match unit {
                    Unit::Refresh(_) => "refresh",
                    Unit::Joint => "joint step",
                    Unit::TpePool => "candidate pool",
                    Unit::TpeTrial => "trial",
                    Unit::Step(_) => "step",
                };
                self.bar.set_prefix(format!("{agent} {k}"));
            }
            OptimizeEvent::Search(SearchEvent::Phase { phase, jobs }) => {
                self.bar.set_message(format!("{phase} ({jobs} jobs)"));
            }
            OptimizeEvent::UnitDone { state } => {
                self.bar.set_position(state.units as u64);
                let gen = state.cost.agents.generated_tokens
                    + state.cost.mutator.generated_tokens
                    + state.cost.evaluator.generated_tokens;
                self.bar.set_message(format!(
                    "{:.0} tok/s",
                    gen as f64 / state.elapsed_secs.max(1e-9)
                ));
            }
            _ => {}
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
