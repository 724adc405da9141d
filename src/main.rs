//! The `maspo` binary: parse the command line, run it, print the error chain on failure.

use std::process::ExitCode;

fn main() -> ExitCode {
    keep_large_allocations();
    match maspo::cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Every forward step allocates and frees buffers of several MiB (logits are vocabulary × batch
/// floats). glibc serves those with fresh `mmap`s or trims them off the heap top, so each step
/// page-faults them in again (~4% of a batched decode step on the 0.5B model). Keeping freed
/// memory in the process avoids that; the engine's peak footprint is unchanged.
fn keep_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator thresholds; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
