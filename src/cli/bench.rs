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
    let BenchCommand::Engine(args) = cmd;
    let choice = args.engine.resolve(global)?;
    let path = catalog(global)?.resolve(&choice.model, &mut FetchBar::new(global.quiet))?;
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
