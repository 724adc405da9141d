//! `maspo serve`: the engine behind the OpenAI-compatible HTTP API until SIGINT or SIGTERM.

use super::{args::EngineArgs, GlobalArgs};
use crate::openai::serve::{run as serve, Listener, ServeSettings};
use clap::Args;
use std::process::ExitCode;

/// Arguments of `maspo serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Model id reported by /v1/models [default: the catalog id or file name].
    #[arg(long)]
    model_id: Option<String>,
    /// Most generation requests admitted at once (queued + running); more get HTTP 503.
    #[arg(long, default_value_t = 256)]
    max_queue: usize,
    /// Largest max_tokens a request may ask for.
    #[arg(long, default_value_t = 4096)]
    max_tokens_limit: usize,
    /// Largest request body in MiB.
    #[arg(long, default_value_t = 8)]
    max_body_mb: usize,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let choice = args.engine.resolve(global)?;
    let engine = choice.load_local("serve", global)?;
    if !global.quiet {
        eprintln!("memory: {}", engine.memory_plan());
    }
    let model_id = args
        .model_id
        .clone()
        .unwrap_or_else(|| choice.model.label());
    let mut settings = ServeSettings::new(model_id);
    settings.max_queue = args.max_queue.max(1);
    settings.max_tokens_limit = args.max_tokens_limit.min(engine.context_len());
    settings.default_max_tokens = settings.default_max_tokens.min(settings.max_tokens_limit);
    settings.max_body_bytes = args.max_body_mb.max(1) << 20;
    let listener = Listener::bind(&format!("{}:{}", args.host, args.port))?;
    let stop = super::signals::install();
    // The one line scripts wait for (stdout, flushed).
    println!(
        "maspo serve: {} on http://{}/v1 (model id `{}`)",
        engine.path().display(),
        listener.addr(),
        settings.model_id
    );
    use std::io::Write;
    std::io::stdout().flush()?;
    let stats = serve(&engine, listener, &settings, stop);
    eprintln!(
        "maspo serve: stopped after {} requests ({} refused as full, {} malformed, {} withdrawn by their clients)",
        stats.admitted, stats.rejected_full, stats.bad_requests, stats.cancelled
    );
    Ok(ExitCode::SUCCESS)
}
