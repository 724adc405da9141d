//! Engine benchmarks shared by `maspo bench engine` and the criterion benches: prefill, batch-1
//! decode, aggregate decode at several concurrencies, prefix cache cold vs warm, and a
//! MASPO-shaped workload batched vs sent one request at a time.
//!
//! Owns workload construction and measurement. Numbers are reported, never asserted. Shapes
//! follow llama.cpp's tools so results compare side by side: prefill of a 256-token prompt
//! (llama-bench pp256), 128 decoded tokens from an empty context (tg128), and B sequences with
//! 256-token prompts decoding 128 tokens each (llama-batched-bench S_TG).

pub mod parity;

use crate::engine::chat_template::Message;
use crate::engine::{Engine, EngineError, GenRequest, Prompt};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchOptions {
    /// Prompt length of the prefill and batched benches.
    pub prompt_tokens: usize,
    /// Tokens decoded per sequence.
    pub decode_tokens: usize,
    /// Concurrencies of the batched decode bench.
    pub batch_sizes: Vec<usize>,
    /// Repetitions of the single-sequence benches (the median is reported).
    pub reps: usize,
    /// MASPO workload: prompt variants × questions.
    pub variants: usize,
    /// MASPO workload: questions.
    pub questions: usize,
    /// Whether to run the prefix-cache and MASPO-workload sections (the slow ones).
    pub workload: bool,
}

impl BenchOptions {
    /// The full benchmark (llama.cpp's shapes).
    pub fn full() -> Self {
        Self {
            prompt_tokens: 256,
            decode_tokens: 128,
            batch_sizes: vec![1, 4, 8, 16, 32, 64],
            reps: 3,
            variants: 8,
            questions: 16,
            workload: true,
        }
    }

    /// A seconds-long smoke run (tests, CI).
    pub fn quick() -> Self {
        Self {
            prompt_tokens: 32,
            decode_tokens: 8,
            batch_sizes: vec![1, 4],
            reps: 1,
            variants: 2,
            questions: 2,
            workload: true,
        }
    }
}

/// Prefix cache cold vs warm on requests sharing a long system prompt.
#[derive(Debug, Clone, Serialize)]
pub struct PrefixReport {
    /// Requests.
    pub requests: usize,
    /// Shared prefix length in tokens.
    pub shared_tokens: usize,
    /// Seconds with reuse off.
    pub cold_s: f64,
    /// Seconds with the shared prefix already cached.
    pub warm_s: f64,
    /// Time to first token of one request, reuse off (ms).
    pub ttft_cold_ms: f64,
    /// Time to first token of one request whose prefix is cached (ms).
    pub ttft_warm_ms: f64,
}

/// The MASPO-shaped workload.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadReport {
    /// Generation requests (variants × questions × 2 agents).
    pub requests: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Seconds, all requests of a level submitted together (prefix reuse on).
    pub batched_s: f64,
    /// Seconds, one request at a time with no reuse (how an API client sends them).
    pub one_by_one_s: f64,
    /// one_by_one_s / batched_s.
    pub speedup: f64,
    /// Whether both ways produced identical outputs.
    pub identical_outputs: bool,
}

/// Everything `maspo bench engine` reports.
#[derive(Debug, Clone, Serialize)]
pub struct EngineReport {
    /// Model file.
    pub model: String,
    /// Compute threads.
    pub threads: usize,
    /// Weight formats the kernels run on.
    pub weight_formats: Vec<String>,
    /// Weight bytes one decode step reads (every matrix once, the LM head included).
    pub decode_weight_bytes: usize,
    /// Options used.
    pub options: BenchOptions,
    /// Prefill throughput of one prompt of `prompt_tokens` (tok/s).
    pub prefill_tok_s: f64,
    /// Time to first token of that prompt (ms).
    pub ttft_ms: f64,
    /// Batch-1 decode throughput (tok/s).
    pub decode_tok_s: f64,
    /// Aggregate decode throughput by number of concurrent sequences (tok/s).
    pub batched_decode_tok_s: BTreeMap<String, f64>,
    /// Prefix cache cold vs warm (absent when the workload sections were skipped).
    pub prefix_cache: Option<PrefixReport>,
    /// MASPO-shaped workload (absent when skipped).
    pub maspo_workload: Option<WorkloadReport>,
}

const FILLER: &str = "The committee reviewed each proposal carefully, weighing costs, benefits and risks. \
                      Members asked detailed questions about schedules, budgets and the evidence behind every claim. ";

/// `n` prompt tokens, distinct per `variant` from the first token on.
fn prompt_tokens(engine: &Engine, n: usize, variant: usize) -> Result<Vec<u32>, EngineError> {
    let text = format!("Document {variant}. {}", FILLER.repeat(n / 20 + 2));
    let mut ids = engine.tokenizer().encode_plain(&text)?;
    ids.truncate(n.max(1));
    Ok(ids)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64())
}

fn bench_req(prompt: Vec<u32>, max_new: usize) -> GenRequest {
    GenRequest {
        prompt: Prompt::Tokens(prompt),
        ignore_eos: true,
        logprobs: None,
        ..GenRequest::chat(vec![], max_new)
    }
}

fn run_all(
    engine: &Engine,
    reqs: &[GenRequest],
) -> Result<Vec<crate::engine::Completion>, EngineError> {
    engine.generate(reqs).into_iter().collect()
}

/// Runs every engine benchmark. The engine's prefix cache is reset along the way (and left at
/// `prefix_cache_mb` of its settings).
pub fn run(
    engine: &Engine,
    opts: &BenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<EngineReport, EngineError> {
    let cap = engine.settings().prefix_cache_mb;
    engine.reset_prefix_cache(0);
    progress("prefill");
    let mut prefill = Vec::new();
    for r in 0..opts.reps {
        let p = prompt_tokens(engine, opts.prompt_tokens, 1000 + r)?;
        let (_, s) = timed(|| run_all(engine, &[bench_req(p, 1)]));
        prefill.push(s);
    }
    let ttft = median(prefill);
    progress("decode, batch 1");
    let mut decode = Vec::new();
    for r in 0..opts.reps {
        engine.reset_stats();
        run_all(
            engine,
            &[bench_req(
                prompt_tokens(engine, 1, r)?,
                opts.decode_tokens + 1,
            )],
        )?;
        let st = engine.stats();
        decode.push(st.decode_only_tokens as f64 / st.decode_only_secs.max(1e-9));
    }
    let mut batched = BTreeMap::new();
    for &b in &opts.batch_sizes {
        progress(&format!("decode, {b} concurrent sequences"));
        let reqs = (0..b)
            .map(|i| {
                Ok(bench_req(
                    prompt_tokens(engine, opts.prompt_tokens, 2000 + i)?,
                    opts.decode_tokens + 1,
                ))
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        engine.reset_stats();
        run_all(engine, &reqs)?;
        let st = engine.stats();
        batched.insert(
            b.to_string(),
            st.decode_only_tokens as f64 / st.decode_only_secs.max(1e-9),
        );
    }
    let (mut prefix_cache, mut maspo_workload) = (None, None);
    if opts.workload {
        progress("prefix cache cold vs warm");
        prefix_cache = Some(prefix_bench(engine, opts, cap)?);
        progress("MASPO-shaped workload");
        maspo_workload = Some(workload_bench(engine, opts, cap)?);
    }
    engine.reset_prefix_cache(cap);
    Ok(EngineReport {
        model: engine.path().display().to_string(),
        threads: engine.model().threads(),
        weight_formats: engine.model().weight_formats(),
        decode_weight_bytes: engine.model().decode_weight_bytes(),
        options: opts.clone(),
        prefill_tok_s: opts.prompt_tokens as f64 / ttft,
        ttft_ms: ttft * 1e3,
        decode_tok_s: median(decode),
        batched_decode_tok_s: batched,
        prefix_cache,
        maspo_workload,
    })
}

fn prefix_bench(
    engine: &Engine,
    opts: &BenchOptions,
    cap: usize,
) -> Result<PrefixReport, EngineError> {
    let shared = prompt_tokens(engine, opts.prompt_tokens.max(64), 7)?;
    let n = opts
        .batch_sizes
        .iter()
        .copied()
        .max()
        .unwrap_or(8)
        .clamp(2, 32);
    let reqs: Vec<GenRequest> = (0..n)
        .map(|i| {
            let mut p = shared.clone();
            p.extend(prompt_tokens(engine, 12, 3000 + i)?);
            Ok(bench_req(p, 8))
        })
        .collect::<Result<_, EngineError>>()?;
    // Time to first token: one more request of the same shape, one token.
    let mut probe = shared.clone();
    probe.extend(prompt_tokens(engine, 12, 4000)?);
    let probe = [bench_req(probe, 1)];
    engine.reset_prefix_cache(0);
    let (_, ttft_cold) = timed(|| run_all(engine, &probe));
    let (_, cold) = timed(|| run_all(engine, &reqs));
    engine.reset_prefix_cache(cap.max(64));
    run_all(engine, &[bench_req(shared.clone(), 1)])?;
    let (_, ttft_warm) = timed(|| run_all(engine, &probe));
    let (_, warm) = timed(|| run_all(engine, &reqs));
    Ok(PrefixReport {
        requests: n,
        shared_tokens: shared.len(),
        cold_s: cold,
        warm_s: warm,
        ttft_cold_ms: ttft_cold * 1e3,
        ttft_warm_ms: ttft_warm * 1e3,
    })
}

const SOLVER_ROLE: &str = "You are the solver agent of a two-agent team. Read the problem, work through it step by step, \
                           state intermediate results explicitly, and end with 'Answer: <value>'. ";
const REVIEWER_ROLE: &str = "You are the reviewer agent. Check the solver's reasoning for arithmetic and logical errors \
                             and reply with the corrected final answer in the form 'Answer: <value>'.";

fn workload(opts: &BenchOptions) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in 0..opts.variants {
        for q in 0..opts.questions {
            let system = format!(
                "{SOLVER_ROLE}Style hint {v}: {}",
                [
                    "be concise",
                    "show every step",
                    "double-check units",
                    "use small numbers first"
                ][v % 4]
            );
            let question = format!("A shop sells {} pens at {} cents each and {} pencils at {} cents each. What is the total in cents?", 3 + q, 20 + 5 * q, 2 + q % 5, 15 + q);
            out.push((system, question));
        }
    }
    out
}

fn level_one(pairs: &[(String, String)]) -> Vec<GenRequest> {
    pairs
        .iter()
        .map(|(s, q)| {
            GenRequest::chat(
                vec![Message::system(s.clone()), Message::user(q.clone())],
                24,
            )
        })
        .collect()
}

fn level_two(pairs: &[(String, String)], answers: &[crate::engine::Completion]) -> Vec<GenRequest> {
    pairs
        .iter()
        .zip(answers)
        .map(|((_, q), a)| {
            let user = format!("Problem: {q}\nSolver's answer: {}", a.text);
            GenRequest::chat(
                vec![Message::system(REVIEWER_ROLE), Message::user(user)],
                16,
            )
        })
        .collect()
}

fn workload_bench(
    engine: &Engine,
    opts: &BenchOptions,
    cap: usize,
) -> Result<WorkloadReport, EngineError> {
    let pairs = workload(opts);
    engine.reset_prefix_cache(cap.max(64));
    let (batched, batched_s) = timed(|| -> Result<_, EngineError> {
        let first = run_all(engine, &level_one(&pairs))?;
        let second = run_all(engine, &level_two(&pairs, &first))?;
        Ok((first, second))
    });
    let (first, second) = batched?;
    engine.reset_prefix_cache(0);
    let (seq, one_by_one_s) = timed(|| -> Result<_, EngineError> {
        let mut a = Vec::new();
        for r in level_one(&pairs) {
            a.extend(run_all(engine, &[r])?);
        }
        let mut b = Vec::new();
        for r in level_two(&pairs, &a) {
            b.extend(run_all(engine, &[r])?);
        }
        Ok((a, b))
    });
    let (seq_first, seq_second) = seq?;
    let same = |x: &[crate::engine::Completion], y: &[crate::engine::Completion]| {
        x.iter().zip(y).all(|(p, q)| p.token_ids == q.token_ids)
    };
    let generated_tokens = first.iter().chain(&second).map(|c| c.token_ids.len()).sum();
    Ok(WorkloadReport {
        requests: first.len() + second.len(),
        generated_tokens,
        batched_s,
        one_by_one_s,
        speedup: one_by_one_s / batched_s.max(1e-9),
        identical_outputs: same(&first, &seq_first) && same(&second, &seq_second),
    })
}

impl EngineReport {
    /// A human-readable table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "model {}\nthreads {}, weights {} ({:.1} MB read per decode step)\n\n{:<34}{:>12}\n",
            self.model,
            self.threads,
            self.weight_formats.join("+"),
            self.decode_weight_bytes as f64 / 1e6,
            "metric",
            "value"
        );
        let mut row = |k: String, v: String| s.push_str(&format!("{k:<34}{v:>12}\n"));
        row(
            format!("prefill {} tokens (tok/s)", self.options.prompt_tokens),
            format!("{:.1}", self.prefill_tok_s),
        );
        row(
            "time to first token (ms)".into(),
            format!("{:.1}", self.ttft_ms),
        );
        row(
            format!(
                "decode batch 1, {} tokens (tok/s)",
                self.options.decode_tokens
            ),
            format!("{:.1}", self.decode_tok_s),
        );
        for (b, v) in &self.batched_decode_tok_s {
            row(
                format!("decode total, {b} sequences (tok/s)"),
                format!("{v:.1}"),
            );
        }
        let Some(p) = &self.prefix_cache else {
            return s;
        };
        row(
            format!("prefix cold, {} req (s)", p.requests),
            format!("{:.2}", p.cold_s),
        );
        row(
            format!("prefix warm, {} req (s)", p.requests),
            format!("{:.2}", p.warm_s),
        );
        row(
            "ttft cold / warm (ms)".into(),
            format!("{:.0}/{:.0}", p.ttft_cold_ms, p.ttft_warm_ms),
        );
        let Some(w) = &self.maspo_workload else {
            return s;
        };
        row(
            format!("MASPO workload, {} req, batched (s)", w.requests),
            format!("{:.2}", w.batched_s),
        );
        row(
            "MASPO workload, one by one (s)".into(),
            format!("{:.2}", w.one_by_one_s),
        );
        row(
            "MASPO workload speedup".into(),
            format!("{:.2}x", w.speedup),
        );
        row("identical outputs".into(), w.identical_outputs.to_string());
        s
    }
}
