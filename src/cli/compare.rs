//! `maspo compare RUN_A RUN_B`: the paired difference of two runs' held-out verdicts.

use super::GlobalArgs;
use crate::eval::compare::{compare, load, to_markdown};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `maspo compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Run A: a `maspo eval` run directory, a `maspo optimize` run directory (its optimized
    /// side) or `RUN/heldout-seed` (an optimization's seed side).
    pub a: PathBuf,
    /// Run B, the same kinds; the difference is B − A.
    pub b: PathBuf,
    /// Seed of the bootstrap and sign-flip resamples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the comparison as JSON (with the ids of the items gained and lost).
    #[arg(long)]
    pub json: bool,
}

pub fn run(_global: &GlobalArgs, args: CompareArgs) -> anyhow::Result<ExitCode> {
    let a = load(&args.a)?;
    let b = load(&args.b)?;
    let c = compare(&a, &b, args.seed)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print!(
            "{}",
            to_markdown(
                &c,
                (&a.file.display().to_string(), &b.file.display().to_string())
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}
