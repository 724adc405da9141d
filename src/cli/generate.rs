//! `maspo generate`: one prompt in, streamed text out (stdout); speed on stderr.

use super::{args::EngineArgs, GlobalArgs};
use crate::engine::chat_template::Message;
use crate::engine::sampling::SamplingParams;
use crate::engine::{GenRequest, Prompt};
use anyhow::Context;
use clap::Args;
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `maspo generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// System message.
    #[arg(long, default_value = "You are a helpful assistant.")]
    system: String,
    /// User message; read from stdin when absent.
    #[arg(long, short)]
    prompt: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Top-p nucleus mass (1 = off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// The start of the reply: the assistant turn begins with this text (printed first) and the
    /// model continues it.
    #[arg(long)]
    prefill: Option<String>,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(global: &GlobalArgs, args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let user = match args.prompt {
        Some(p) => p,
        None => {
            if std::io::stdin().is_terminal() {
                anyhow::bail!("no prompt: pass --prompt TEXT or pipe the prompt on stdin");
            }
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the prompt from stdin")?;
            s
        }
    };
    let choice = args.engine.resolve(global)?;
    let t_load = Instant::now();
    let engine = choice.load_local("generate", global)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let request = GenRequest {
        prompt: Prompt::Chat(vec![Message::system(args.system), Message::user(user)]),
        max_new_tokens: args.max_tokens,
        sampling: SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            seed: args.seed,
        },
        stop: args.stop,
        ignore_eos: false,
        logprobs: None,
        thinking: None,
        prefill: args.prefill.clone(),
    };
    let t0 = Instant::now();
    let mut stdout = std::io::stdout().lock();
    let mut write_err = None;
    if let Some(p) = &request.prefill {
        stdout
            .write_all(p.as_bytes())
            .context("writing to stdout")?;
    }
    let mut results = engine.generate_streaming(std::slice::from_ref(&request), &mut |d| {
        if let Err(e) = stdout
            .write_all(d.text.as_bytes())
            .and_then(|_| stdout.flush())
        {
            write_err.get_or_insert(e);
        }
    });
    let secs = t0.elapsed().as_secs_f64();
    let completion = results.pop().context("the engine returned no result")??;
    if let Some(e) = write_err {
        return Err(e).context("writing to stdout");
    }
    writeln!(stdout)?;
    let n = completion.token_ids.len();
    eprintln!(
        "[{} prompt + {} generated tokens in {:.2}s, {:.1} tok/s, stop: {:?}, load {:.2}s{}]",
        completion.prompt_tokens,
        n,
        secs,
        n as f64 / secs.max(1e-9),
        completion.stop_reason,
        load_s,
        if completion.from_cache {
            ", from the completion cache"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
