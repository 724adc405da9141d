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

/// Progress of `maspo eval`: LLM calls done out of the expected total, tokens streamed.
pub struct EvalBar {
    bar: ProgressBar,
    tokens: u64,
}

impl EvalBar {
    /// A bar sized by the calls a full run makes (two per non-terminal LLM agent under the
    /// summary protocol, one otherwise).
    pub fn new(
        quiet: bool,
        graph: &crate::mas::AgentGraph,
        run: &crate::mas::RunSettings,
        examples: usize,
    ) -> Self {
        let per: usize = graph
            .optimizable()
            .iter()
            .map(|&i| {
                if i != graph.terminal() && run.protocol == crate::mas::Protocol::Summary {
                    2
                } else {
                    1
                }
            })
            .sum();
        let bar = ProgressBar::new((per * examples) as u64).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} calls {elapsed_precise}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        if quiet || !std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_message("running agents");
        Self { bar, tokens: 0 }
    }

    /// Feeds one evaluation event.
    pub fn on(&mut self, e: crate::eval::EvalEvent) {
        use crate::eval::EvalEvent;
        use crate::mas::RunEvent;
        match e {
            EvalEvent::Run(RunEvent::BatchStart { calls }) => {
                self.bar.set_message(format!("batch of {calls} calls"));
            }
            EvalEvent::Run(RunEvent::Progress) => {
                self.tokens += 1;
                if self.tokens.is_multiple_of(64) {
                    self.bar
                        .set_message(format!("{} tokens streamed", self.tokens));
                }
            }
            EvalEvent::Run(RunEvent::CallDone) => self.bar.inc(1),
            EvalEvent::Run(RunEvent::BatchDone { .. }) => {}
            EvalEvent::Judging { n } => self.bar.set_message(format!("judging {n}")),
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
