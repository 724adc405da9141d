//! The `maspo` binary: parse the command line, run it, print the error chain on failure.

use std::process::ExitCode;

fn main() -> ExitCode {
    match maspo::cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
