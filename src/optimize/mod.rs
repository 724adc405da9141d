//! MASPO: joint optimization of every agent's prompt (docs/design/algorithm.md §4): evolutionary beam search per
//! agent in topological order, joint evaluation (local validity, lookahead, global alignment)
//! by pairwise judgements, misalignment mining, beam refresh — batched through one engine,
//! seeded, checkpointed after every step and resumable.
//!
//! Layout: [`config`] (settings, presets), [`search`] (the algorithm), [`evaluator`] (the seam to
//! the MAS and models), [`meta`] (mutator and judge prompts), [`sanitize`], [`state`]
//! (checkpoint), [`rundir`] (files of a run), [`report`] (report.md and plots), [`heldout`]
//! (before/after on the test split), [`budget`] (projection). [`optimize`] drives a run.

pub mod breeder;
pub mod budget;
pub mod clean;
pub mod config;
pub mod diff;
pub mod edit;
pub mod evaluator;
pub mod heldout;
pub mod meta;
pub mod opro;
pub mod report;
pub mod rundir;
pub mod sanitize;
pub mod search;
pub mod state;
pub mod tpe;

pub use config::{
    CaseSampling, JudgeMode, JudgeOrder, Method, OptimizeSettings, Schedule, ABLATIONS,
};
pub use evaluator::{Cost, Evaluator, MasEvaluator, Metered};
pub use search::{next_unit, Search, SearchEvent, Unit};
pub use state::State;

use crate::mas::MasError;
use rundir::RunDir;
use std::path::PathBuf;
use std::time::Instant;

/// Why an optimization could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OptimizeError {
    /// The MAS could not run.
    #[error(transparent)]
    Mas(#[from] MasError),
    /// A run file could not be read or written (the checkpoint before it stays intact: run the
    /// same command again once the cause, e.g. a full disk, is fixed).
    #[error("{path}: {source} (the last checkpoint is intact: fix this and run the same command again to continue)")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A run file is not what it should be.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Settings that cannot work.
    #[error("{0}")]
    Settings(String),
}

/// Progress of an optimization, for observers (progress bars, the events log).
#[derive(Debug, Clone)]
pub enum OptimizeEvent<'a> {
    /// A unit starts.
    UnitStart {
        /// The unit.
        unit: Unit,
        /// Agent id.
        agent: &'a str,
        /// Units done so far.
        done: usize,
    },
    /// A search event.
    Search(&'a SearchEvent),
    /// A unit finished (its record is the last of `state.history`).
    UnitDone {
        /// The state after it.
        state: &'a State,
    },
    /// Stopped before the schedule ended.
    Stopped {
        /// Why.
        reason: &'a str,
    },
}

/// Whether the budget is spent; the reason when it is.
pub fn over_budget(s: &OptimizeSettings, state: &State) -> Option<String> {
    let c = &state.cost;
    if let Some(m) = s.max_calls {
        if c.calls() >= m {
            return Some(format!("call budget reached ({} of {m} calls)", c.calls()));
        }
    }
    if let Some(m) = s.max_tokens {
        if c.tokens() >= m {
            return Some(format!(
                "token budget reached ({} of {m} tokens)",
                c.tokens()
            ));
        }
    }
    if let Some(m) = s.max_seconds {
        if state.elapsed_secs >= m {
            return Some(format!(
                "time budget reached ({:.0} of {m:.0} s)",
                state.elapsed_secs
            ));
        }
    }
    None
}

/// Runs (or continues) the optimization: units until the schedule ends or the budget is spent.
/// After every unit: its candidates are appended to `candidates.jsonl`, the checkpoint,
/// `best_prompts.json` and the events are written, and `after_unit` runs (the report).
/// `interrupted` is asked before each unit: when it says so the run stops there, its checkpoint
/// intact and not finished, and `Ok(false)` says a resume will continue it.
pub fn optimize(
    ev: &dyn Evaluator,
    s: &OptimizeSettings,
    dir: &RunDir,
    state: &mut State,
    observe: &mut dyn FnMut(OptimizeEvent<'_>),
    after_unit: &mut dyn FnMut(&State) -> Result<(), OptimizeError>,
    interrupted: &dyn Fn() -> bool,
) -> Result<bool, OptimizeError> {
    let search = Search::new(ev, s);
    let base_cost = state.cost;
    let base_secs = state.elapsed_secs;
    let t0 = Instant::now();
    let ids = search.agent_ids();
    loop {
        if state.finished {
            break;
        }
        if interrupted() {
            dir.save_best(&state.prompts, ev.graph())?;
            return Ok(false);
        }
        if let Some(reason) = over_budget(s, state) {
            state.stopped = Some(reason.clone());
            state.finished = true;
            dir.checkpoint(state)?;
            observe(OptimizeEvent::Stopped { reason: &reason });
            break;
        }
        let Some(unit) = next_unit(state, s) else {
            state.finished = true;
            dir.checkpoint(state)?;
            break;
        };
        let agent = match unit {
            Unit::Step(p) | Unit::Refresh(p) => ids[p].as_str(),
            Unit::Joint | Unit::TpePool | Unit::TpeTrial => "all agents",
        };
        observe(OptimizeEvent::UnitStart {
            unit,
            agent,
            done: state.units,
        });
        let mut lines = Vec::new();
        let mut record = search.run_unit(unit, state, &mut |e| {
            observe(OptimizeEvent::Search(&e));
            if let SearchEvent::Candidate(r) = &e {
                lines.push(serde_json::to_string(r).unwrap_or_default());
            }
        })?;
        state.cost = base_cost.plus(&ev.cost());
        state.elapsed_secs = base_secs + t0.elapsed().as_secs_f64();
        record.cost = state.cost;
        dir.append_candidates(&lines)?;
        state.candidate_lines += lines.len();
        state.history.push(record);
        state.units += 1;
        dir.checkpoint(state)?;
        dir.save_best(&state.prompts, ev.graph())?;
        after_unit(state)?;
        observe(OptimizeEvent::UnitDone { state });
    }
    dir.save_best(&state.prompts, ev.graph())?;
    Ok(true)
}

#[cfg(test)]
mod tests;
