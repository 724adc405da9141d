//! Optimizer settings: the algorithm's hyperparameters, judging options, the fixes over the
//! reference (each a switch), presets (`default`, `faithful`) and budgets (`light`, `medium`,
//! `paper`). Serialized whole into `config.json`, so a run directory says exactly what ran.

use serde::{Deserialize, Serialize};

/// How agents are visited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Schedule {
    /// MASPO: topological coordinate ascent, `steps_per_turn` steps per agent per sweep,
    /// `sweeps` sweeps, beam refresh on each revisit.
    Maspo,
    /// Round robin with patience: an agent's turn ends after `patience` consecutive steps without
    /// improvement; sweeps repeat until every agent used `steps_per_turn × sweeps` steps.
    RoundRobin,
    /// Single cycle (ablation): one pass in topological order, `steps_per_turn × sweeps` steps per
    /// agent, peers frozen at their seed prompts during the pass, committed at its end.
    SingleCycle,
}

/// The optimization method (`--method`): MASPO and the baselines that share its search, evaluator,
/// model roles, budget accounting and run files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Method {
    /// MASPO (docs/design/algorithm.md §4).
    #[default]
    Maspo,
    /// The seed prompts, unoptimized: the run ends at once and the held-out comparison is the
    /// seed system's accuracy (the paper's "none" rows).
    Seed,
    /// Per-agent SPO (the reference's serial mode, docs/design/algorithm.md §4.7): each agent once, in topological
    /// order, for `depth` rounds of {3 questions, one proposal, a local-only pairwise judge}; a
    /// proposal replaces the prompt when its win rate is above ½. Later agents run against the
    /// earlier agents' accepted prompts.
    Spo,
    /// OPRO (Yang et al., 2023), per agent on SPO's schedule and local-only judge: the mutator
    /// sees the agent's trajectory of scored prompts (the best 8, worst first; score = win rate
    /// against the prompt current when it was judged) and a few of the batch's questions, and
    /// writes a new prompt meant to score higher; `proposals` per step on `batch` questions.
    Opro,
    /// PromptBreeder (Fernando et al., 2023), per agent with a local-only judge: a population
    /// (the beam, at least 2) evolved by binary tournament (each mutant against its parent on
    /// the batch; the best `beam` survive), mutants made by the paper's operators — a
    /// mutation-prompt × thinking-style rewrite, lineage (the elites so far, oldest first) or a
    /// first-order hypermutation that first rewrites the mutation prompt, which the child
    /// inherits.
    PromptBreeder,
    /// A TPE / MIPRO-style search (as the paper's TPE baseline, after MIPRO and MASS): first a
    /// pool of `proposals × depth` candidate prompts per agent, written by the mutator from the
    /// seed system's traces; then trials, each a TPE-chosen candidate per agent run as a whole
    /// system on a fresh batch and judged on the final answer against the seed system (a fixed
    /// anchor, so scores compare across trials); the best trial above ½ is committed.
    Tpe,
    /// Naive joint optimization: every agent rewritten together each step (one rewrite per
    /// agent per batch part), each joint candidate scored by the final answer only (the
    /// terminal agent's output on whole re-runs, judged pairwise) and committed when it wins more
    /// than half; `depth` steps, no beam, lookahead or mined cases.
    NaiveJoint,
    /// Chain-of-thought single agent (no optimization): the held-out "after" is the `single`
    /// topology with its seed prompt, beside the MAS's seed prompts.
    Cot,
    /// CoT self-consistency at matched compute (no optimization): the held-out "after" is the
    /// `aggregate` topology with as many sampled predictors (T = 0.7, own seeds) as the MAS
    /// spends LLM calls per question, majority-voted.
    CotSc,
    /// Self-Refine (no optimization): the held-out "after" is the `self_refine` topology
    /// (solver → critic → refiner, one round) with its seed prompts.
    SelfRefine,
}

impl Method {
    /// Whether the method optimizes nothing (the run has no unit).
    pub fn is_fixed(self) -> bool {
        matches!(
            self,
            Method::Seed | Method::Cot | Method::CotSc | Method::SelfRefine
        )
    }
}

/// Which of an agent's local wins become the hard cases injected into its successors' batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum CaseSampling {
    /// Misaligned cases (MASPO): a local win whose lookahead or global comparison was lost.
    Misaligned,
    /// Success cases (the paper's "w/ Success-Case Sampling" ablation): a local win with neither
    /// lost.
    Success,
}

/// What the mutator writes (docs/optimize.md, "Proposals").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum ProposalForm {
    /// The reference's: an analysis, a one-sentence modification and the whole rewritten
    /// prompt.
    Rewrite,
    /// One to three sentences of general advice, inserted into the parent prompt as a new
    /// paragraph before the question: a small mutator cannot damage the rest of the prompt,
    /// copy it back unchanged or drop its placeholders.
    Advice,
    /// One numbered sentence of the parent prompt to delete (a prompt with fewer than two
    /// deletable sentences gets advice instead): a small mutator can point at a harmful
    /// instruction that it cannot rewrite around.
    Delete,
    /// All three, in turn over a step's proposals (advice, rewrite, delete): advice adds,
    /// deletion removes, rewrites can do both and repair.
    Mixed,
}

/// The paper's Table 2 ablations (docs/design/algorithm.md §9.2), each a change of the settings (`self_optimized`
/// also points the mutator and evaluator at the agents' model, which the command does): name
/// and what it changes.
pub const ABLATIONS: [(&str, &str); 7] = [
    ("no_beam", "Serial Search: beam width 1"),
    (
        "single_cycle",
        "Single Cycle: one topological pass, peers frozen at their seeds",
    ),
    (
        "no_refresh",
        "w/o Beam Refresh: no re-scoring of the beam on revisits",
    ),
    (
        "no_joint",
        "w/o Joint Evaluate: local validity only (no lookahead, global weight 0)",
    ),
    (
        "random_sampling",
        "w/o Misalignment Sampling: batches are random draws only",
    ),
    (
        "success_sampling",
        "w/ Success-Case Sampling: successors get local wins that were not lost downstream",
    ),
    (
        "self_optimized",
        "Self-Optimized: the agents' model is also the mutator and the evaluator",
    ),
];

/// Which of the pair is shown first to the evaluator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum JudgeOrder {
    /// The candidate is always "A" (the reference).
    CandidateFirst,
    /// A seeded coin decides per comparison.
    Random,
    /// Each comparison judged in both orders: a win counts 1 when both agree, ½ when they split.
    Both,
}

/// How the evaluator answers a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum JudgeMode {
    /// Generate a reply and parse the choice.
    Generate,
    /// Compare the probabilities of the continuations "A" and "B" (one scoring pass, no
    /// generation).
    Logprob,
}

/// Judging settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeSettings {
    /// Position of the candidate.
    pub order: JudgeOrder,
    /// Generation or log-prob judging.
    pub mode: JudgeMode,
    /// The global term compares correctness against gold answers of the pool (off: label-free,
    /// the paper's setting).
    pub labels: bool,
    /// Most tokens of a role-aware (terminal) judgement, which reasons before choosing.
    pub max_tokens: usize,
    /// Most tokens of an A/B-only judgement (intermediate, final).
    pub short_max_tokens: usize,
    /// An unparsable reply counts as a win for "A" (the reference) instead of half a win.
    pub unparsed_is_a: bool,
    /// Identical outputs tie and an empty output loses, without asking the judge (the reference
    /// asks, so a position-biased judge accepts candidates that changed nothing).
    pub identical_is_tie: bool,
}

impl Default for JudgeSettings {
    fn default() -> Self {
        Self {
            order: JudgeOrder::Both,
            mode: JudgeMode::Generate,
            labels: false,
            max_tokens: 384,
            short_max_tokens: 16,
            unparsed_is_a: false,
            identical_is_tie: true,
        }
    }
}

/// The optimizer's settings (resolved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizeSettings {
    /// Preset this started from (recorded only).
    pub preset: String,
    /// Budget preset this started from (recorded only).
    pub budget_preset: String,
    /// Agent visiting order.
    pub schedule: Schedule,
    /// Steps per agent per turn (T).
    pub steps_per_turn: usize,
    /// Sweeps over all agents (D).
    pub sweeps: usize,
    /// Beam width (K).
    pub beam: usize,
    /// Proposals per beam node (one per batch part).
    pub proposals: usize,
    /// Questions in the optimization pool (drawn from the `opt` split).
    pub pool: usize,
    /// Mini-batch size per beam node.
    pub batch: usize,
    /// Misalignment cases kept per agent (K_mis).
    pub k_mis: usize,
    /// Most injected hard questions per batch.
    pub inject_cap: usize,
    /// Weights of local, lookahead and global win rates.
    pub weights: [f64; 3],
    /// Weights of local and global when no lookahead comparison exists (and in refresh).
    pub fallback_weights: [f64; 2],
    /// Lookahead term (direct successors re-run on the new output).
    pub lookahead: bool,
    /// Inject predecessors' misalignment cases into batches.
    pub misalignment_sampling: bool,
    /// Beam refresh at the start of each revisit.
    pub beam_refresh: bool,
    /// Which local wins are fed to successors as hard cases.
    pub case_sampling: CaseSampling,
    /// The Table 2 ablation these settings came from (recorded only; see [`ABLATIONS`]).
    pub ablation: Option<String>,
    /// The method these settings run (see [`OptimizeSettings::with_method`]).
    pub method: Method,
    /// Patience of the round-robin schedule.
    pub patience: usize,
    /// Fix: drop duplicate prompts from the beam (the reference keeps them).
    pub dedupe_beam: bool,
    /// Fix: literal braces (`{1,2}`, JSON) are allowed in proposals (the reference rejects them).
    pub literal_braces: bool,
    /// Fix: the mutator sees the successors' recent failures (the reference builds this block and
    /// never sends it).
    pub feedback: bool,
    /// Fix: proposals with fewer words than this besides their placeholders are rejected as
    /// stubs (0 = off, the reference).
    pub min_prompt_words: usize,
    /// Fix: a proposal must keep the answer format its parent asks for (`<answer>` tags, a code
    /// block); the reference accepts a prompt that drops it.
    pub keep_answer_format: bool,
    /// Fix: wrappers around a proposal (a lead-in such as "The rewritten prompt is:", quotes,
    /// a code fence, leftover tags, a role label) are removed; a proposal that copies 8 or more
    /// consecutive words of an optimization question is rejected as overfit; one that differs
    /// from its parent only in whitespace or punctuation counts as unchanged (see
    /// [`super::clean`]). The reference takes the proposal as it comes (`faithful`: off).
    pub clean_proposals: bool,
    /// Fix: the mutator's reply is pre-filled with its first tag (`<analyse>` for a rewrite,
    /// `<advice>` for advice) and stops at the closing tag of what it must write (`</prompt>`,
    /// `</advice>`): a small model cannot open with commentary or run on after the block. The
    /// reference hopes for the format (`faithful`: off).
    pub prefill_proposals: bool,
    /// Fix: what the mutator writes ([`ProposalForm`]); the reference rewrites the whole prompt
    /// (`faithful`: `rewrite`). OPRO and PromptBreeder keep their own meta-prompts.
    pub proposal_form: ProposalForm,
    /// Fix: a proposal that fails (no `<prompt>` block, cut at the token limit, rejected by
    /// the guards, or no change to its parent) is asked again this many times, each with a
    /// seed derived from its own and the attempt (counted in `proposals.retries`). Needs a
    /// sampling mutator (`mutator_temperature` > 0): a greedy one would repeat itself. The
    /// reference never retries (`faithful`: 0).
    pub proposal_retries: usize,
    /// Pool from the `opt` split (`heldout`) or, as the reference, from the file that is tested
    /// (`paper`).
    pub pool_split: String,
    /// Mutator temperature.
    pub mutator_temperature: f32,
    /// Most tokens of a proposal.
    pub mutator_max_tokens: usize,
    /// Judging.
    pub judge: JudgeSettings,
    /// Most tokens of an agent's answer during optimization.
    pub agent_max_tokens: usize,
    /// Test items of the final before/after evaluation (0 = none, `None` = the whole split).
    pub test_limit: Option<usize>,
    /// Run seed: every draw and sampled call derives from it.
    pub seed: u64,
    /// Stop at this many LLM calls.
    pub max_calls: Option<u64>,
    /// Stop at this many tokens (prompt + generated).
    pub max_tokens: Option<u64>,
    /// Stop after this many seconds of optimization.
    pub max_seconds: Option<f64>,
    /// Racing (successive halving within a step): every candidate is first re-run and judged on
    /// the first half of its batch; one that could not be accepted even by winning every
    /// remaining comparison is dropped there. Exact: the same prompts are accepted and
    /// committed as without racing; only dropped candidates' recorded rates (and the step's
    /// misalignment mean) come from half a batch.
    pub racing: bool,
    /// Pareto-front parent selection (GEPA): the beam keeps the candidates that are best on
    /// some question of the step and not dominated, instead of the top `beam` by cumulative
    /// score (see [`super::search::select_beam`]).
    pub pareto: bool,
}

impl Default for OptimizeSettings {
    fn default() -> Self {
        Self::preset("default", "paper").expect("built-in presets")
    }
}

impl OptimizeSettings {
    /// A preset (`default` fixes the reference's problems, `faithful` reproduces it) at a budget
    /// (`tiny`, `light`, `medium`, `paper`).
    pub fn preset(preset: &str, budget: &str) -> Result<Self, String> {
        let mut s = Self {
            preset: preset.into(),
            budget_preset: budget.into(),
            schedule: Schedule::Maspo,
            steps_per_turn: 3,
            sweeps: 3,
            beam: 2,
            proposals: 2,
            pool: 50,
            batch: 10,
            k_mis: 3,
            inject_cap: 5,
            weights: [0.4, 0.4, 0.2],
            fallback_weights: [0.7, 0.3],
            lookahead: true,
            misalignment_sampling: true,
            beam_refresh: true,
            case_sampling: CaseSampling::Misaligned,
            ablation: None,
            method: Method::Maspo,
            patience: 3,
            dedupe_beam: true,
            literal_braces: true,
            feedback: true,
            min_prompt_words: 8,
            keep_answer_format: true,
            clean_proposals: true,
            prefill_proposals: true,
            proposal_form: ProposalForm::Mixed,
            proposal_retries: 2,
            pool_split: "heldout".into(),
            mutator_temperature: 0.7,
            mutator_max_tokens: 1024,
            judge: JudgeSettings::default(),
            agent_max_tokens: 1024,
            test_limit: None,
            seed: 0,
            max_calls: None,
            max_tokens: None,
            max_seconds: None,
            racing: false,
            pareto: false,
        };
        match preset {
            "default" => {}
            "faithful" => {
                s.dedupe_beam = false;
                s.literal_braces = false;
                s.feedback = false;
                s.min_prompt_words = 0;
                s.keep_answer_format = false;
                s.clean_proposals = false;
                s.prefill_proposals = false;
                s.proposal_form = ProposalForm::Rewrite;
                s.proposal_retries = 0;
                s.pool_split = "paper".into();
                s.judge.order = JudgeOrder::CandidateFirst;
                s.judge.unparsed_is_a = true;
                s.judge.identical_is_tie = false;
            }
            other => return Err(format!("preset `{other}` is not one of: default, faithful")),
        }
        match budget {
            "paper" => {}
            "medium" => {
                s.steps_per_turn = 2;
                s.sweeps = 2;
                s.pool = 30;
                s.batch = 6;
                s.agent_max_tokens = 512;
                s.mutator_max_tokens = 640;
                s.judge.max_tokens = 256;
                s.test_limit = Some(100);
            }
            "tiny" => {
                // A smoke run (tests, `maspo bench paper --preset tiny`): minutes, not a result.
                s.steps_per_turn = 1;
                s.sweeps = 1;
                s.proposals = 1;
                s.pool = 4;
                s.batch = 2;
                s.agent_max_tokens = 64;
                s.mutator_max_tokens = 160;
                s.judge.max_tokens = 48;
                s.test_limit = Some(4);
                // A smoke run checks that everything runs: no repeated mutator calls.
                s.proposal_retries = 0;
            }
            "light" => {
                s.steps_per_turn = 1;
                s.sweeps = 2;
                s.pool = 20;
                s.batch = 4;
                s.agent_max_tokens = 384;
                s.mutator_max_tokens = 512;
                s.judge.max_tokens = 192;
                s.test_limit = Some(40);
            }
            other => {
                return Err(format!(
                    "budget preset `{other}` is not one of: tiny, light, medium, paper"
                ))
            }
        }
        Ok(s)
    }

    /// These settings set up for `method`. SPO keeps the budget's depth (the paper budget's 3 × 3
    /// steps are the reference's 9 rounds) as one turn per agent.
    pub fn with_method(&self, method: Method) -> Self {
        let mut s = self.clone();
        s.method = method;
        if matches!(method, Method::Spo | Method::Opro | Method::PromptBreeder) {
            s.steps_per_turn = self.depth();
            s.sweeps = 1;
            s.schedule = Schedule::Maspo;
            s.beam = 1;
            s.proposals = 1;
            s.batch = 3.min(s.pool);
            s.lookahead = false;
            s.weights = [1.0, 0.0, 0.0];
            s.fallback_weights = [1.0, 0.0];
            s.misalignment_sampling = false;
            s.beam_refresh = false;
        }
        if method == Method::Opro {
            s.proposals = self.proposals;
            s.batch = self.batch;
        }
        if method == Method::PromptBreeder {
            s.beam = self.beam.max(2);
            s.proposals = self.proposals;
            s.batch = self.batch;
        }
        if matches!(method, Method::NaiveJoint | Method::Tpe) {
            s.schedule = Schedule::Maspo;
            s.beam = 1;
            s.lookahead = false;
            s.misalignment_sampling = false;
            s.beam_refresh = false;
        }
        s
    }

    /// Whether the search asks the judge for lookahead comparisons: their weight is used, or
    /// misaligned cases are mined from them.
    pub fn judges_lookahead(&self) -> bool {
        self.lookahead || self.misalignment_sampling
    }

    /// Whether the search asks the judge for global comparisons: a weight uses them, or cases
    /// are mined from them.
    pub fn judges_global(&self) -> bool {
        self.weights[2] > 0.0 || self.fallback_weights[1] > 0.0 || self.misalignment_sampling
    }

    /// These settings with a Table 2 ablation applied (see [`ABLATIONS`]); the name is recorded.
    pub fn ablate(&self, name: &str) -> Result<Self, String> {
        let mut s = self.clone();
        match name {
            "no_beam" => s.beam = 1,
            "single_cycle" => s.schedule = Schedule::SingleCycle,
            "no_refresh" => s.beam_refresh = false,
            "no_joint" => {
                s.lookahead = false;
                s.weights = [1.0, 0.0, 0.0];
                s.fallback_weights = [1.0, 0.0];
            }
            "random_sampling" => s.misalignment_sampling = false,
            "success_sampling" => s.case_sampling = CaseSampling::Success,
            "self_optimized" => {}
            other => {
                let names: Vec<&str> = ABLATIONS.iter().map(|a| a.0).collect();
                return Err(format!(
                    "ablation `{other}` is not one of: {}",
                    names.join(", ")
                ));
            }
        }
        s.ablation = Some(name.to_string());
        Ok(s)
    }

    /// Checks the settings against each other, naming the bad key.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("steps_per_turn", self.steps_per_turn),
            ("sweeps", self.sweeps),
            ("beam", self.beam),
            ("proposals", self.proposals),
            ("pool", self.pool),
            ("batch", self.batch),
        ];
        for (k, v) in positive {
            if v == 0 {
                return Err(format!("{k} must be at least 1"));
            }
        }
        if self.batch > self.pool {
            return Err(format!(
                "batch ({}) is larger than the pool ({}); lower batch or raise pool",
                self.batch, self.pool
            ));
        }
        if self.proposals > self.batch {
            return Err(format!(
                "proposals ({}) exceed the batch ({}): each proposal needs its own part of the batch",
                self.proposals, self.batch
            ));
        }
        if self
            .weights
            .iter()
            .chain(&self.fallback_weights)
            .any(|w| !(w.is_finite() && *w >= 0.0))
        {
            return Err("weights must be finite and non-negative".into());
        }
        if self.weights.iter().sum::<f64>() <= 0.0
            || self.fallback_weights.iter().sum::<f64>() <= 0.0
        {
            return Err("weights must not all be zero".into());
        }
        if !matches!(self.pool_split.as_str(), "heldout" | "paper") {
            return Err(format!(
                "pool_split = `{}` is not one of: heldout, paper",
                self.pool_split
            ));
        }
        if !(self.mutator_temperature.is_finite() && self.mutator_temperature >= 0.0) {
            return Err("mutator_temperature must be a finite number >= 0".into());
        }
        Ok(())
    }

    /// These settings with the keys of a config table laid over them (nested tables merge);
    /// unknown keys and wrong types are errors naming the key.
    pub fn with_overrides(&self, table: &toml::Table) -> Result<Self, String> {
        fn merge(base: &mut toml::Table, over: &toml::Table) {
            for (k, v) in over {
                match (base.get_mut(k), v) {
                    (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
                    _ => {
                        base.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let mut base = toml::Table::try_from(self).map_err(|e| e.to_string())?;
        merge(&mut base, table);
        toml::Value::Table(base)
            .try_into()
            .map_err(|e: toml::de::Error| format!("[optimize]: {}", e.message()))
    }

    /// Steps per agent in the whole run.
    pub fn depth(&self) -> usize {
        self.steps_per_turn * self.sweeps
    }

    /// Normalized joint weights.
    pub fn joint_weights(&self) -> [f64; 3] {
        let s: f64 = self.weights.iter().sum();
        self.weights.map(|w| w / s)
    }

    /// Normalized fallback weights.
    pub fn fallback(&self) -> [f64; 2] {
        let s: f64 = self.fallback_weights.iter().sum();
        self.fallback_weights.map(|w| w / s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_differ_only_where_documented() {
        let d = OptimizeSettings::preset("default", "paper").unwrap();
        let f = OptimizeSettings::preset("faithful", "paper").unwrap();
        assert_eq!(
            (d.steps_per_turn, d.sweeps, d.beam, d.pool, d.batch),
            (3, 3, 2, 50, 10)
        );
        assert_eq!(d.weights, [0.4, 0.4, 0.2]);
        assert_eq!(f.judge.order, JudgeOrder::CandidateFirst);
        assert!(!f.dedupe_beam && !f.literal_braces && !f.feedback && !f.keep_answer_format);
        assert!(d.clean_proposals && !f.clean_proposals);
        assert!(d.prefill_proposals && !f.prefill_proposals);
        assert_eq!(
            (d.proposal_form, f.proposal_form),
            (ProposalForm::Mixed, ProposalForm::Rewrite)
        );
        assert_eq!((d.proposal_retries, f.proposal_retries), (2, 0));
        assert_eq!(f.pool_split, "paper");
        let l = OptimizeSettings::preset("default", "light").unwrap();
        assert!(l.batch < d.batch && l.depth() < d.depth());
        assert!(OptimizeSettings::preset("fast", "paper")
            .unwrap_err()
            .contains("default, faithful"));
        assert!(OptimizeSettings::preset("default", "huge")
            .unwrap_err()
            .contains("light"));
        for s in [d, f, l] {
            s.validate().unwrap();
        }
    }

    #[test]
    fn overrides_merge_and_name_bad_keys() {
        let t: toml::Table = toml::from_str("batch = 6\n[judge]\norder = \"random\"").unwrap();
        let s = OptimizeSettings::default().with_overrides(&t).unwrap();
        assert_eq!((s.batch, s.judge.order), (6, JudgeOrder::Random));
        assert_eq!(s.judge.max_tokens, JudgeSettings::default().max_tokens);
        assert!((s.mutator_temperature - 0.7).abs() < 1e-6);
        let bad: toml::Table = toml::from_str("batchsize = 6").unwrap();
        assert!(OptimizeSettings::default()
            .with_overrides(&bad)
            .unwrap_err()
            .contains("batchsize"));
    }

    #[test]
    fn validation_names_the_key() {
        let mut s = OptimizeSettings {
            batch: 80,
            ..OptimizeSettings::default()
        };
        assert!(s.validate().unwrap_err().contains("batch (80)"));
        s.batch = 0;
        assert!(s.validate().unwrap_err().contains("batch must be"));
    }
}
