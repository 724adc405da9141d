//! `LanguageModel`: the one thing the MAS runtime needs from an engine — many requests in,
//! one completion (or per-request error) each out. The real [`Engine`] implements it; tests can
//! plug in a scripted model for fast logic tests (never instead of the real engine).

use crate::engine::{Completion, Engine, EngineError, GenRequest, Prompt};

/// A batched text generator.
pub trait LanguageModel: Sync {
    /// Runs all requests (batched inside); `on_progress(i)` is called whenever request `i`
    /// produced more text. One result per request, in order.
    fn generate(
        &self,
        requests: &[GenRequest],
        on_progress: &mut dyn FnMut(usize),
    ) -> Vec<Result<Completion, EngineError>>;

    /// A short description (model file), for reports.
    fn describe(&self) -> String;

    /// [`LanguageModel::score`] for many prompts at once (the engine prefills them in one
    /// batch). One result per item.
    fn score_batch(&self, items: &[(Prompt, Vec<String>)]) -> Vec<Result<Vec<f64>, EngineError>> {
        items.iter().map(|(p, c)| self.score(p, c)).collect()
    }

    /// Dataflow generation: runs `initial`; whenever request `i` finishes, `on_done(i, result)`
    /// returns the requests that depend on it, which run next (numbered after all earlier ones).
    /// Every request gets exactly one `on_done` call. The default runs rounds of
    /// [`LanguageModel::generate`] (each round waits for its slowest request); the engine keeps
    /// one continuous batch instead, so nothing waits for a "level" to finish.
    fn generate_flow(
        &self,
        initial: Vec<GenRequest>,
        on_done: &mut dyn FnMut(usize, Result<Completion, EngineError>) -> Vec<GenRequest>,
    ) {
        let mut next = initial;
        let mut base = 0;
        while !next.is_empty() {
            let n = next.len();
            let mut out = self.generate(&next, &mut |_| {}).into_iter();
            let mut follow = Vec::new();
            for i in 0..n {
                let r = out.next().unwrap_or_else(|| {
                    Err(EngineError::Request(
                        "the model returned no result for this call".into(),
                    ))
                });
                follow.extend(on_done(base + i, r));
            }
            base += n;
            next = follow;
        }
    }

    /// The total log-probability of each continuation after `prompt`, computed without
    /// generating (log-prob judging). Models that cannot score say so with an error.
    fn score(&self, prompt: &Prompt, continuations: &[String]) -> Result<Vec<f64>, EngineError> {
        let _ = (prompt, continuations);
        Err(EngineError::Request(format!(
            "{} cannot score continuations (use generate judging)",
            self.describe()
        )))
    }
}

impl LanguageModel for Engine {
    fn generate(
        &self,
        requests: &[GenRequest],
        on_progress: &mut dyn FnMut(usize),
    ) -> Vec<Result<Completion, EngineError>> {
        self.generate_streaming(requests, &mut |d| on_progress(d.request))
    }

    fn describe(&self) -> String {
        self.path().display().to_string()
    }

    fn generate_flow(
        &self,
        initial: Vec<GenRequest>,
        on_done: &mut dyn FnMut(usize, Result<Completion, EngineError>) -> Vec<GenRequest>,
    ) {
        Engine::generate_flow(self, initial, &mut |_| {}, on_done)
    }

    fn score_batch(&self, items: &[(Prompt, Vec<String>)]) -> Vec<Result<Vec<f64>, EngineError>> {
        Engine::score_batch(self, items)
            .into_iter()
            .map(|r| r.map(|v| v.iter().map(crate::engine::Scored::total).collect()))
            .collect()
    }

    fn score(&self, prompt: &Prompt, continuations: &[String]) -> Result<Vec<f64>, EngineError> {
        Ok(Engine::score(self, prompt, continuations)?
            .iter()
            .map(crate::engine::Scored::total)
            .collect())
    }
}
