//! Progress bars on stderr (hidden with `--quiet` or when stderr is not a terminal).

use crate::catalog::FetchObserver;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// An indicatif bar implementing the catalog's fetch observer.
pub struct FetchBar {
    bar: Option<ProgressBar>,
    visible: bool,
}

impl FetchBar {
    /// A bar that draws only when `!quiet` and stderr is a TTY.
    pub fn new(quiet: bool) -> Self {
        Self {
            bar: None,
            visible: !quiet && std::io::stderr().is_terminal(),
        }
    }
}

impl FetchObserver for FetchBar {
    fn start(&mut self, what: &str, total: Option<u64>) {
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner(),
        };
        if !self.visible {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        } else if total.is_none() {
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
        }
        bar.set_message(what.to_string());
        self.bar = Some(bar);
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
