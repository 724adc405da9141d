//! `maspo bench engine`: the engine benchmarks as a table or one JSON object.

use super::{args::EngineArgs, catalog, progress::FetchBar, GlobalArgs};
use crate::bench::{self, BenchOptions};
use crate::engine::Engine;
use clap::{Args, Subcommand};
use std::process::ExitCode;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Prefill, decode (batch 1..64), prefix cache warm vs cold, MASPO-shaped workload.
    Engine(EngineBenchArgs),
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
        BenchCommand::Paper(a) => return super::paper::run(global, *a),
    };
    let choice = args.engine.resolve(global)?;
    let path =
        catalog(global)?.resolve(choice.local("bench")?, &mut FetchBar::new(global.quiet))?;
    let engine = Engine::load(&path, choice.settings)?;
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
