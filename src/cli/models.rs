//! `maspo models list|fetch`.

use super::{catalog, progress::FetchBar, GlobalArgs};
use clap::Subcommand;
use std::process::ExitCode;

/// Catalog subcommands.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List catalog models and whether each is on disk.
    List,
    /// Download and verify a model (no-op when already present and verified).
    Fetch {
        /// Catalog id (e.g. `smollm2-135m-instruct`, `qwen3-8b`) or `hf:OWNER/NAME[/FILE.gguf][@REV]`.
        id: String,
    },
}

pub fn run(global: &GlobalArgs, cmd: ModelsCommand) -> anyhow::Result<ExitCode> {
    let cat = catalog(global)?;
    match cmd {
        ModelsCommand::List => {
            println!(
                "{:<30} {:<6} {:>9}  {:<8} description",
                "id", "arch", "size", "status"
            );
            for m in &cat.models {
                let status = if cat.is_ready(m) {
                    "ready"
                } else if cat.local_path(m).exists() {
                    "unverified"
                } else {
                    "missing"
                };
                println!(
                    "{:<30} {:<6} {:>6} MB  {:<8} {}",
                    m.id,
                    m.arch,
                    m.size / 1_000_000,
                    status,
                    m.description
                );
            }
            // Hub artifacts live in the Hugging Face cache (HF_HOME), verified when fetched.
            for c in &cat.checkpoints {
                println!(
                    "{:<30} {:<6} {:>6} MB  {:<8} {} [{}]",
                    c.id,
                    c.arch,
                    c.size / 1_000_000,
                    "hub",
                    c.description,
                    c.hub.label()
                );
            }
            println!("synthetic shapes (--synthetic SHAPE[:SEED], seeded random weights, no download): {}",
                crate::engine::model::synthetic::SHAPES.iter().map(|s| s.name).collect::<Vec<_>>().join(", "));
        }
        ModelsCommand::Fetch { id } => {
            let path = cat.resolve(&id, &mut FetchBar::new(global.quiet))?;
            println!("{}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
