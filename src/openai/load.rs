//! A concurrent load generator for OpenAI-compatible servers: the same MASPO-shaped requests
//! against `maspo serve` and any other server (llama.cpp's `llama-server`, vLLM), reporting
//! throughput and latency percentiles. Numbers are reported, never asserted.

use super::wire::{ChatRequest, ChatResponse, Content, WireMessage};
use crate::rng::{derive_seed, SplitMix64};
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The role prompt every request shares (as agents' calls share their system prompt).
const SOLVER: &str = "You are a careful math solver in a team of agents. Read the problem, \
reason step by step, check every intermediate result, and keep the explanation short and \
precise. Other agents will review your work, so state the assumptions you make, show each \
computation on its own line, and end with the line 'Answer: <value>'.";

/// `n` MASPO-shaped chat requests: the shared solver prompt plus a distinct seeded arithmetic
/// word problem each, greedy, exactly `max_tokens` generated (`ignore_eos`).
pub fn maspo_requests(n: usize, max_tokens: usize, seed: u64) -> Vec<ChatRequest> {
    (0..n)
        .map(|i| {
            let mut rng = SplitMix64::new(derive_seed(&[seed, i as u64]));
            let mut r = |m: u64| 2 + rng.next_u64() % m;
            let (a, b, c, d) = (r(90), r(40), r(500), r(12));
            let q = format!(
                "A workshop makes {a} chairs a day for {b} days, sells {c} of them, then \
                 packs the rest into boxes of {d}. How many full boxes are there, and how many \
                 chairs are left over?"
            );
            ChatRequest {
                messages: vec![
                    WireMessage {
                        role: "system".into(),
                        content: Some(Content::Text(SOLVER.into())),
                    },
                    WireMessage {
                        role: "user".into(),
                        content: Some(Content::Text(q)),
                    },
                ],
                max_tokens: Some(max_tokens),
                temperature: Some(0.0),
                seed: Some(i as u64),
                ignore_eos: Some(true),
                ..Default::default()
            }
        })
        .collect()
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `v` (any order).
    pub fn of(v: &[f64]) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let at = |q: f64| s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
        Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: s[s.len() - 1],
        }
    }
}

/// What one load run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Base URL.
    pub url: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Requests sent.
    pub requests: usize,
    /// Requests that failed (HTTP error, transport error, unreadable reply).
    pub errors: usize,
    /// The first error, if any.
    pub first_error: Option<String>,
    /// Wall seconds from first send to last answer.
    pub wall_s: f64,
    /// Generated tokens, as the server counted them.
    pub generated_tokens: usize,
    /// Prompt tokens, as the server counted them.
    pub prompt_tokens: usize,
    /// Generated tokens per wall second.
    pub tokens_per_s: f64,
    /// Finished requests per wall second.
    pub requests_per_s: f64,
    /// Request latency (send to full answer), ms.
    pub latency_ms: Percentiles,
}

/// Sends `requests` with `clients` concurrent connections (each client sends its next request
/// as soon as the previous one is answered).
pub fn run(base_url: &str, model: &str, requests: &[ChatRequest], clients: usize) -> LoadReport {
    let base = base_url.trim_end_matches('/').to_string();
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(3600))
        .max_idle_connections_per_host(clients.max(1))
        .build();
    let next = AtomicUsize::new(0);
    // (latency ms, generated tokens, prompt tokens) per answered request.
    type Outcome = Result<(f64, usize, usize), String>;
    let results: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(req) = requests.get(i) else { return };
                let mut req = req.clone();
                req.model = model.to_string();
                let t = Instant::now();
                let r = agent
                    .post(&format!("{base}/chat/completions"))
                    .set("Content-Type", "application/json")
                    .send_string(&serde_json::to_string(&req).unwrap_or_default())
                    .map_err(|e| e.to_string())
                    .and_then(|resp| resp.into_string().map_err(|e| e.to_string()))
                    .and_then(|body| {
                        serde_json::from_str::<ChatResponse>(&body).map_err(|e| e.to_string())
                    })
                    .map(|resp| {
                        let u = resp.usage.unwrap_or_default();
                        (
                            t.elapsed().as_secs_f64() * 1e3,
                            u.completion_tokens,
                            u.prompt_tokens,
                        )
                    });
                results.lock().unwrap_or_else(|p| p.into_inner()).push(r);
            });
        }
    });
    let wall = t0.elapsed().as_secs_f64();
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let ok: Vec<(f64, usize, usize)> = results.iter().filter_map(|r| r.clone().ok()).collect();
    let first_error = results.iter().find_map(|r| r.clone().err());
    let generated: usize = ok.iter().map(|r| r.1).sum();
    LoadReport {
        url: base,
        clients,
        requests: requests.len(),
        errors: results.len() - ok.len(),
        first_error,
        wall_s: wall,
        generated_tokens: generated,
        prompt_tokens: ok.iter().map(|r| r.2).sum(),
        tokens_per_s: generated as f64 / wall.max(1e-9),
        requests_per_s: ok.len() as f64 / wall.max(1e-9),
        latency_ms: Percentiles::of(&ok.iter().map(|r| r.0).collect::<Vec<_>>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Percentiles::of(&[]).max, 0.0);
    }

    #[test]
    fn requests_share_the_role_prompt_and_differ_in_the_question() {
        let r = maspo_requests(3, 16, 1);
        assert_eq!(r[0].messages[0], r[2].messages[0]);
        assert_ne!(r[0].messages[1], r[1].messages[1]);
        assert_eq!(maspo_requests(3, 16, 1), r);
    }
}
