//! `maspo bench engine`: the engine benchmarks as a table or one JSON object.

use super::{args::EngineArgs, GlobalArgs};
use crate::bench::{self, BenchOptions};
use crate::engine::device::DeviceSpec;
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Prefill, decode (batch 1..64), prefix cache warm vs cold, MASPO-shaped workload.
    Engine(EngineBenchArgs),
    /// The same weights and prompts on two backends (`--reference`, default cpu, vs `--device`):
    /// max |Δlogit|, top-1 agreement per step, greedy identical up to the first near-tie.
    Parity(ParityBenchArgs),
    /// Load on an OpenAI-compatible server (`maspo serve`, llama-server, vLLM): concurrent
    /// clients sending MASPO-shaped chat requests; throughput and latency percentiles.
    Serve(ServeBenchArgs),
    /// The paper's comparison: tasks × topologies × methods (MASPO and the baselines), each
    /// cell optimized on the opt split and scored on held-out items; resumable cell by cell;
    /// Markdown + JSON table with bootstrap CIs, paired tests, cost and an SVG chart.
    Paper(Box<super::paper::PaperBenchArgs>),
}

/// Arguments of `maspo bench serve`.
#[derive(Debug, Args)]
pub struct ServeBenchArgs {
    /// Base URL of the API.
    #[arg(long, default_value = "http://127.0.0.1:8080/v1")]
    url: String,
    /// Model id to request [default: the first of GET /models].
    #[arg(long)]
    model_id: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Requests in all.
    #[arg(long, default_value_t = 128)]
    requests: usize,
    /// Tokens generated per request (exactly: end-of-turn is ignored).
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Seed of the generated questions.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn bench_serve(args: ServeBenchArgs) -> anyhow::Result<ExitCode> {
    use crate::openai::{load, RemoteModel, RemoteSpec};
    let spec = RemoteSpec::new(&args.url, args.model_id.clone());
    let remote = RemoteModel::connect(spec, None)?;
    let reqs = load::maspo_requests(args.requests, args.max_tokens, args.seed);
    let r = load::run(remote.base_url(), remote.model_id(), &reqs, args.clients);
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{}: {} requests, {} clients, {} errors; {:.1} generated tok/s, {:.2} req/s; latency ms p50 {:.0} p90 {:.0} p99 {:.0} max {:.0}",
            r.url, r.requests, r.clients, r.errors, r.tokens_per_s, r.requests_per_s,
            r.latency_ms.p50, r.latency_ms.p90, r.latency_ms.p99, r.latency_ms.max
        );
    }
    if let Some(e) = &r.first_error {
        eprintln!("first error: {e}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `maspo bench engine`.
#[derive(Debug, Args)]
pub struct EngineBenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// A seconds-long smoke run with tiny sizes.
    #[arg(long)]
    quick: bool,
    /// Concurrencies of the batched decode bench (comma separated).
    #[arg(long, value_delimiter = ',')]
    batch_sizes: Option<Vec<usize>>,
    /// Prompt length of the prefill and batched benches.
    #[arg(long)]
    prompt_tokens: Option<usize>,
    /// Tokens decoded per sequence.
    #[arg(long)]
    decode_tokens: Option<usize>,
    /// Skip the prefix-cache and MASPO-workload sections (minutes on the larger model).
    #[arg(long)]
    no_workload: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(global: &GlobalArgs, cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    let args = match cmd {
        BenchCommand::Engine(a) => a,
        BenchCommand::Serve(a) => return bench_serve(a),
        BenchCommand::Parity(a) => return bench_parity(global, a),
        BenchCommand::Paper(a) => return super::paper::run(global, *a),
    };
    let choice = args.engine.resolve(global)?;
    let engine = choice.load_local("bench", global)?;
    let mut opts = if args.quick {
        BenchOptions::quick()
    } else {
        BenchOptions::full()
    };
    if let Some(b) = args.batch_sizes {
        opts.batch_sizes = b;
    }
    if let Some(n) = args.prompt_tokens {
        opts.prompt_tokens = n;
    }
    if let Some(n) = args.decode_tokens {
        opts.decode_tokens = n;
    }
    opts.workload = !args.no_workload;
    let quiet = global.quiet;
    let report = bench::run(&engine, &opts, &mut |phase| {
        if !quiet {
            eprintln!("[bench] {phase}");
        }
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `maspo bench parity`.
#[derive(Debug, Args)]
pub struct ParityBenchArgs {
    /// The reference backend.
    #[arg(long, default_value = "cpu")]
    reference: DeviceSpec,
    /// Prompt ids from a golden file (llama.cpp's, `tests/fixtures/golden/*.json`) instead of
    /// the built-in chat prompts.
    #[arg(long)]
    golden: Option<PathBuf>,
    /// Built-in prompts to use (1..=8).
    #[arg(long, default_value_t = 4)]
    prompts: usize,
    /// Greedy tokens per prompt.
    #[arg(long, default_value_t = 32)]
    max_tokens: usize,
    /// A divergence is a near-tie when the reference's margin is at most this fraction of the
    /// row's largest |logit|.
    #[arg(long, default_value_t = 0.02)]
    tie_margin: f32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// The model and the candidate backend (`--device`, default cuda).
    #[command(flatten)]
    engine: EngineArgs,
}

/// Chat prompts of the built-in parity set (MASPO-like: math, code, a short answer).
const PARITY_PROMPTS: [&str; 8] = [
    "What is 17 * 23? Answer with the number only.",
    "Write a Python function that returns the reverse of a string.",
    "Name three prime numbers greater than 50.",
    "Explain in one sentence what a hash map is.",
    "Solve for x: 3x + 7 = 22. Show your steps briefly.",
    "Which is larger, 2^10 or 10^3? Explain.",
    "Give a one-line summary of the water cycle.",
    "List the first five Fibonacci numbers.",
];

fn bench_parity(global: &GlobalArgs, args: ParityBenchArgs) -> anyhow::Result<ExitCode> {
    use crate::bench::parity::{self, ParityOptions};
    use crate::engine::chat_template::Message;
    use crate::engine::Prompt;
    let mut choice = args.engine.resolve(global)?;
    if args.engine.device.is_none() {
        choice.settings.device = DeviceSpec::Cuda(0);
    }
    let mut reference_choice = args.engine.resolve(global)?;
    reference_choice.settings.device = args.reference;
    let reference = reference_choice.load_local("bench parity", global)?;
    let candidate = choice.load_local("bench parity", global)?;
    let prompts: Vec<Vec<u32>> = match &args.golden {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            let cases = v["greedy"].as_array().ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: no `greedy` array (a golden file from tests/fixtures/golden)",
                    path.display()
                )
            })?;
            cases
                .iter()
                .map(|c| {
                    c["prompt_ids"]
                        .as_array()
                        .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as u32)).collect())
                        .ok_or_else(|| {
                            anyhow::anyhow!("{}: a case without `prompt_ids`", path.display())
                        })
                })
                .collect::<anyhow::Result<_>>()?
        }
        None => {
            if !(1..=PARITY_PROMPTS.len()).contains(&args.prompts) {
                anyhow::bail!(
                    "--prompts {} is outside 1..={}",
                    args.prompts,
                    PARITY_PROMPTS.len()
                );
            }
            PARITY_PROMPTS[..args.prompts]
                .iter()
                .map(|q| {
                    reference.prompt_ids(&Prompt::Chat(vec![
                        Message::system("You are a helpful assistant."),
                        Message::user(*q),
                    ]))
                })
                .collect::<Result<_, _>>()?
        }
    };
    let opts = ParityOptions {
        max_tokens: args.max_tokens,
        tie_margin: args.tie_margin,
    };
    let report = parity::run(&reference, &candidate, &prompts, &opts)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(if report.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
