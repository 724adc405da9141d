//! The command line: argument parsing and one function per subcommand. The only module that
//! prints or uses `anyhow`.

mod args;
mod bench;
mod compare;
mod eval;
mod generate;
mod models;
mod optimize;
mod paper;
mod progress;
mod serve;
mod signals;

use crate::catalog::Catalog;
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// maspo: jointly optimize the role prompts of an LLM multi-agent system, in-process.
#[derive(Debug, Parser)]
#[command(name = "maspo", version, about)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand understands.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Directory holding model files.
    #[arg(
        long,
        global = true,
        env = "MASPO_MODELS_DIR",
        default_value = "models"
    )]
    pub models_dir: PathBuf,
    /// A model catalog TOML replacing the built-in one.
    #[arg(long, global = true, env = "MASPO_CATALOG")]
    pub catalog: Option<PathBuf>,
    /// A TOML config file (see configs/); command-line flags override it.
    #[arg(long, global = true, env = "MASPO_CONFIG")]
    pub config: Option<PathBuf>,
    /// Compute threads (candle's pool and rayon); default: all cores.
    #[arg(long, global = true, env = "MASPO_THREADS")]
    pub threads: Option<usize>,
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate text from one prompt with a model, streaming it to stdout.
    Generate(generate::GenerateArgs),
    /// List or fetch catalog models.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Evaluate a multi-agent system on a task split (accuracy with a 95% CI, per-example results).
    Eval(Box<eval::EvalArgs>),
    /// Jointly optimize the agents' prompts (MASPO) into a resumable run directory, then compare
    /// seed vs optimized prompts on held-out items.
    Optimize(Box<optimize::OptimizeArgs>),
    /// The paired difference of two runs' held-out verdicts on the items both judged (CI,
    /// sign-flip p, items gained and lost).
    Compare(compare::CompareArgs),
    /// Serve the engine over the OpenAI-compatible HTTP API (chat and text completions,
    /// streaming, log-probabilities), batching concurrent requests; stops on Ctrl-C/SIGTERM.
    Serve(Box<serve::ServeArgs>),
    /// Benchmarks (numbers are reported, never asserted).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Parses `std::env::args` and runs the command.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    init_tracing();
    configure_threads(cli.global.threads)?;
    match cli.command {
        Command::Generate(args) => generate::run(&cli.global, args),
        Command::Models(cmd) => models::run(&cli.global, cmd),
        Command::Bench(cmd) => bench::run(&cli.global, cmd),
        Command::Eval(args) => eval::run(&cli.global, *args),
        Command::Optimize(args) => optimize::run(&cli.global, *args),
        Command::Serve(args) => serve::run(&cli.global, *args),
        Command::Compare(args) => compare::run(&cli.global, args),
    }
}

fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("MASPO_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Sets both thread pools explicitly: candle's spin-barrier pool reads `CANDLE_NUM_THREADS` on
/// first use and rayon its global pool; container core detection is not trusted.
fn configure_threads(threads: Option<usize>) -> anyhow::Result<()> {
    let n = threads
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1);
    std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .context("configuring the rayon thread pool")?;
    Ok(())
}

/// One `memory (<model file>): …` line per in-process engine, unless quiet.
fn print_memory(backends: &crate::backend::Backends, quiet: bool) {
    if quiet {
        return;
    }
    for engine in backends.engines() {
        let name = engine.path().file_name().unwrap_or_default();
        eprintln!(
            "memory ({}): {}",
            name.to_string_lossy(),
            engine.memory_plan()
        );
    }
}

/// The catalog the global options select.
fn catalog(global: &GlobalArgs) -> anyhow::Result<Catalog> {
    Ok(Catalog::load(
        global.catalog.as_deref(),
        global.models_dir.clone(),
    )?)
}
