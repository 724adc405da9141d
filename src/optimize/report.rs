//! `report.md`, rewritten after every unit: status, before/after table, prompts, judging and
//! proposal statistics, cost by role, and SVG plots (plotters' SVG backend): score per step per
//! agent, beam over time, misalignment rate per depth, cost by role.

use super::heldout::HeldOut;
use super::rundir::RunDir;
use super::state::State;
use super::OptimizeError;
use plotters::prelude::*;
use std::fmt::Write as _;

/// What the report shows besides the state.
pub struct ReportInputs<'a> {
    /// Title line (task, graph, models).
    pub title: &'a str,
    /// Settings summary lines.
    pub settings: &'a [String],
    /// Units the schedule has in all.
    pub planned_units: usize,
    /// The held-out comparison, when done.
    pub heldout: Option<&'a HeldOut>,
    /// Engine peak generation speed (tokens/s), for the achieved-speed line.
    pub peak_tokens_per_sec: Option<f64>,
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// Writes `report.md` and the plots.
pub fn write(dir: &RunDir, state: &State, r: &ReportInputs<'_>) -> Result<(), OptimizeError> {
    let mut md = String::new();
    let _ = writeln!(md, "# maspo optimize — {}\n", r.title);
    let status = if let Some(s) = &state.stopped {
        format!(
            "stopped early: {s} ({} of {} units done)",
            state.units, r.planned_units
        )
    } else if state.finished {
        format!("finished ({} units)", state.units)
    } else {
        format!(
            "running ({} of {} units done)",
            state.units, r.planned_units
        )
    };
    let _ = writeln!(md, "Status: **{status}**\n");
    for l in r.settings {
        let _ = writeln!(md, "- {l}");
    }
    md.push('\n');
    if let Some(h) = r.heldout {
        let _ = writeln!(
            md,
            "## Before / after (held-out `{}` split, {} items)\n",
            h.split, h.n
        );
        md.push_str(&heldout_table(h));
        md.push('\n');
        let _ = writeln!(
            md,
            "Items gained: {}, lost: {}; rollouts with a failed call: {} (seed), {} (optimized); {} calls, {:.0} s.\n",
            h.gained, h.lost, h.failed.0, h.failed.1, h.calls, h.secs
        );
    } else {
        md.push_str("## Before / after\n\nNot evaluated yet (runs after the optimization).\n\n");
    }
    md.push_str("## Prompts\n\n");
    for a in &state.agents {
        let seed = state.seeds.get(&a.agent).unwrap_or_default();
        let best = state.prompts.get(&a.agent).unwrap_or_default();
        let _ = writeln!(
            md,
            "### {} ({})\n\nbest cumulative score {:.3}, {} steps, refreshes kept the top prompt {}/{}\n",
            a.agent,
            if seed == best { "unchanged" } else { "changed" },
            a.best.cum,
            a.explored,
            a.kendall.iter().filter(|k| **k).count(),
            a.kendall.len()
        );
        if seed != best {
            let _ = writeln!(
                md,
                "Optimized:\n\n```text\n{best}\n```\n\nAgainst the seed (`-` removed, `+` added):\n\n```diff\n{}```\n",
                super::diff::line_diff(seed, best)
            );
        } else {
            let _ = writeln!(md, "```text\n{best}\n```\n");
        }
    }
    let p = &state.proposals;
    let j = &state.judge;
    md.push_str("## Where the signal goes\n\n");
    let _ = writeln!(
        md,
        "- Proposals: {} requested, {} format failures (no `<prompt>`, `<advice>` or `<delete>` block, a sentence number out of range, or cut at the token limit), {} rejected by the guards, {} duplicates/unchanged, {} evaluated, {} accepted{}.",
        p.requested,
        rate(p.format_failures, p.requested),
        rate(p.rejected, p.requested),
        rate(p.duplicates, p.requested),
        p.evaluated,
        p.accepted,
        if p.raced_out > 0 {
            format!(
                "; racing dropped {} after half their batch (they could no longer be accepted)",
                p.raced_out
            )
        } else {
            String::new()
        }
    );
    if p.retries > 0 {
        let _ = writeln!(
            md,
            "- Retries: {} mutator calls repeated for failed or unchanged proposals (`proposal_retries`, each with its own derived seed; `retries` in candidates.jsonl); the outcomes above are each proposal's last attempt.",
            p.retries
        );
    }
    if !p.forms.is_empty() {
        let forms: Vec<String> = p
            .forms
            .iter()
            .map(|(name, f)| {
                format!(
                    "{name} {} proposed, {} evaluated, {} accepted",
                    f.proposed, f.evaluated, f.accepted
                )
            })
            .collect();
        let _ = writeln!(
            md,
            "- By form (`proposal_form`; `form` in candidates.jsonl): {}.",
            forms.join("; ")
        );
    }
    if p.cleaned > 0 || p.overfit > 0 {
        let _ = writeln!(
            md,
            "- Cleaning: {} proposals had wrappers removed (a lead-in, quotes, a fence, tags or a role label; `cleaned` in candidates.jsonl), {} of the rejected ones copied optimization-question text.",
            p.cleaned, p.overfit
        );
    }
    let first = if j.verdicts > 0 {
        j.chose_first as f64 / j.verdicts as f64
    } else {
        0.0
    };
    let _ = writeln!(
        md,
        "- Judge: {} verdicts, first position chosen {} of the time, {} unparsable; {} decided without the judge (identical or empty outputs).",
        j.verdicts,
        pct(first),
        j.unparsed,
        j.decided_without_judge
    );
    if j.both_orders > 0 {
        let _ = writeln!(
            md,
            "- Position bias: of {} comparisons judged in both orders, the same output won both times in {} ({}); the rest split by position or were unparsable (each counted as half a win).",
            j.both_orders,
            j.consistent,
            pct(j.consistent as f64 / j.both_orders as f64)
        );
    }
    if j.gold_pairs > 0 {
        let _ = writeln!(
            md,
            "- Judge agreement with gold: of {} final-answer comparisons the judge decided where exactly one output was correct by the gold answer, it favoured the correct one in {} (a split or unparsable pair counts half); single verdicts {} of {} ({}). Measured only, never used to score.",
            j.gold_pairs,
            pct(j.gold_agree / j.gold_pairs as f64),
            j.gold_verdicts_agree,
            j.gold_verdicts,
            pct(j.gold_verdicts_agree as f64 / j.gold_verdicts.max(1) as f64)
        );
    }
    if j.verdicts > 0
        && j.scored == 0
        && j.chose_first == j.verdicts
        && j.both_orders > 0
        && j.consistent == 0
    {
        md.push_str("- **The judge decided by position alone**: every generated verdict chose the first position, so in both orders every comparison was a tie (half a win each way) and no candidate could score above 0 — nothing could be accepted, whatever the proposals. The evaluator model cannot compare these outputs: pass a stronger one (`--evaluator-model`) or judge by log-probability (`mode = \"logprob\"` under `[optimize.judge]`).\n");
    }
    md.push('\n');
    md.push_str("## Cost by role\n\n| role | calls | cache hits | batches | calls/batch | prompt tokens | generated tokens | seconds | generated tok/s |\n|---|---|---|---|---|---|---|---|---|\n");
    let c = &state.cost;
    for (name, rc) in [
        ("agents", c.agents),
        ("mutator", c.mutator),
        ("evaluator", c.evaluator),
    ] {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {:.1} | {} | {} | {:.0} | {:.1} |",
            rc.calls,
            rc.cached,
            rc.batches,
            rc.calls as f64 / rc.batches.max(1) as f64,
            rc.prompt_tokens,
            rc.generated_tokens,
            rc.secs,
            rc.generated_tokens as f64 / rc.secs.max(1e-9)
        );
    }
    let gen: u64 =
        c.agents.generated_tokens + c.mutator.generated_tokens + c.evaluator.generated_tokens;
    let _ = write!(
        md,
        "\nOptimization wall time {:.0} s; {} calls; {:.1} generated tokens/s overall",
        state.elapsed_secs,
        c.calls(),
        gen as f64 / state.elapsed_secs.max(1e-9)
    );
    if let Some(peak) = r.peak_tokens_per_sec {
        let _ = write!(md, " (engine's batched peak here: {peak:.0} tokens/s)");
    }
    md.push_str(".\n\n");
    md.push_str("## Steps\n\n| unit | kind | agent | sweep | step | best step score | best cum | beam | misalignment | evaluated | accepted | improved |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for h in &state.history {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.3} | {} | {} | {} | {} | {} |",
            h.unit,
            h.kind,
            h.agent,
            h.sweep,
            h.step,
            h.best_score.map_or("–".into(), |v| format!("{v:+.3}")),
            h.best_cum,
            h.beam
                .iter()
                .map(|v| format!("{v:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            h.misalignment.map_or("–".into(), pct),
            h.evaluated,
            h.accepted,
            if h.improved { "yes" } else { "" }
        );
    }
    md.push_str("\n## Plots\n\n![score per step](score.svg)\n![beam](beam.svg)\n![misalignment](misalignment.svg)\n![cost](cost.svg)\n");
    plots(dir, state)?;
    dir.write("report.md", md.as_bytes())
}

/// The before/after table (markdown): seed, optimized and the paired difference, with CIs.
pub fn heldout_table(h: &HeldOut) -> String {
    let row = |name: &str, i: &crate::eval::stats::Interval| {
        format!(
            "| {name} | {} | {} – {} |\n",
            pct(i.mean),
            pct(i.low),
            pct(i.high)
        )
    };
    format!(
        "| prompts | accuracy on {} held-out items | 95% CI |\n|---|---|---|\n{}{}| difference (paired bootstrap) | {:+.1} pts | {:+.1} – {:+.1} |\n",
        h.n,
        row("seed", &h.before),
        row(h.after_system.as_deref().unwrap_or("optimized"), &h.after),
        100.0 * h.diff.mean,
        100.0 * h.diff.low,
        100.0 * h.diff.high
    )
}

type Series = Vec<(String, Vec<(f64, f64)>)>;

fn plots(dir: &RunDir, state: &State) -> Result<(), OptimizeError> {
    let agents: Vec<String> = state.agents.iter().map(|a| a.agent.clone()).collect();
    let by_agent =
        |f: &dyn Fn(&super::state::StepRecord) -> Option<f64>, steps_only: bool| -> Series {
            agents
                .iter()
                .map(|a| {
                    let pts = state
                        .history
                        .iter()
                        .filter(|h| {
                            // A naive joint step or a TPE trial is every agent's step.
                            (&h.agent == a || h.agent == "all")
                                && (!steps_only
                                    || ["step", "joint", "trial"].contains(&h.kind.as_str()))
                        })
                        .filter_map(|h| f(h).map(|v| (h.unit as f64, v)))
                        .collect();
                    (a.clone(), pts)
                })
                .collect()
        };
    let score = by_agent(&|h| h.best_score, true);
    line_chart(
        dir,
        "score.svg",
        "best candidate score per step (win − 0.5)",
        "unit",
        &score,
    )?;
    let mut beam = by_agent(&|h| Some(h.best_cum), false);
    for s in &mut beam {
        s.0 = format!("{} best cum", s.0);
    }
    beam.extend(
        by_agent(&|h| h.beam.last().copied(), false)
            .into_iter()
            .map(|(a, p)| (format!("{a} beam min"), p)),
    );
    line_chart(dir, "beam.svg", "beam cumulative scores", "unit", &beam)?;
    let mis: Series = state
        .agents
        .iter()
        .map(|a| {
            (
                a.agent.clone(),
                a.misalignment
                    .iter()
                    .enumerate()
                    .filter_map(|(d, m)| m.map(|m| (d as f64 + 1.0, m)))
                    .collect(),
            )
        })
        .filter(|(_, p): &(String, Vec<(f64, f64)>)| !p.is_empty())
        .collect();
    line_chart(
        dir,
        "misalignment.svg",
        "misalignment rate per depth",
        "depth (step of the agent)",
        &mis,
    )?;
    let cost: Series = ["agents", "mutator", "evaluator"]
        .iter()
        .map(|role| {
            let pts = state
                .history
                .iter()
                .map(|h| {
                    let rc = match *role {
                        "agents" => h.cost.agents,
                        "mutator" => h.cost.mutator,
                        _ => h.cost.evaluator,
                    };
                    (h.unit as f64, rc.tokens() as f64)
                })
                .collect();
            (format!("{role} tokens"), pts)
        })
        .collect();
    line_chart(dir, "cost.svg", "cumulative tokens by role", "unit", &cost)
}

fn line_chart(
    dir: &RunDir,
    name: &str,
    title: &str,
    x_label: &str,
    series: &Series,
) -> Result<(), OptimizeError> {
    let mut svg = String::new();
    let mut draw = || -> Result<(), String> {
        let root = SVGBackend::with_string(&mut svg, (640, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let pts = series.iter().flat_map(|s| s.1.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (0.0f64, 1.0f64, f64::MAX, f64::MIN);
        for &(x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if y0 > y1 {
            (y0, y1) = (0.0, 1.0);
        }
        if (y1 - y0).abs() < 1e-9 {
            y1 = y0 + 1.0;
        }
        let pad = (y1 - y0) * 0.05;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (label, pts)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
        Ok(())
    };
    draw().map_err(|reason| OptimizeError::Corrupt {
        path: dir.path(name),
        reason: format!("drawing the plot failed: {reason}"),
    })?;
    dir.write(name, svg.as_bytes())
}

/// `n (x%)` of `of`.
fn rate(n: u64, of: u64) -> String {
    if of == 0 {
        return n.to_string();
    }
    format!("{n} ({:.0}%)", 100.0 * n as f64 / of as f64)
}
