//! Choosing the next token from a logits row: greedy, or temperature/top-k/top-p with a seeded
//! per-request RNG.
//!
//! Owns the sampler state of one sequence. Each sequence carries its own RNG seeded from its
//! request, so a request's tokens never depend on what else shares the batch (no shared RNG).

use serde::{Deserialize, Serialize};

/// How to pick tokens. `temperature == 0` means greedy (argmax, lowest id on ties).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingParams {
    /// Softmax temperature; 0 = greedy.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = no limit).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability mass reaches p (1.0 = no limit).
    pub top_p: f32,
    /// Seed of this request's RNG.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self::greedy()
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub const fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }

    /// Whether this is greedy decoding (the seed is then irrelevant).
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }

    /// Checks the parameters, naming the bad one.
    pub fn validate(&self) -> Result<(), String> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(format!(
                "temperature must be a finite number >= 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        Ok(())
    }
}

pub use crate::rng::{derive_seed, SplitMix64};

/// Per-sequence sampler.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: SplitMix64,
}

impl Sampler {
    /// A sampler for one request.
    pub fn new(params: SamplingParams) -> Self {
        Self {
            params,
            rng: SplitMix64::new(params.seed),
        }
    }

    /// Picks the next token. `banned` ids are never chosen.
    pub fn sample(&mut self, logits: &[f32], banned: &[u32]) -> u32 {
        if self.params.is_greedy() {
            return argmax(logits, banned);
        }
        let mut is_banned = vec![false; logits.len()];
        for &b in banned {
            if let Some(x) = is_banned.get_mut(b as usize) {
                *x = true;
            }
        }
        let mut cands: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(i, l)| l.is_finite() && !is_banned[*i])
            .map(|(i, l)| (i as u32, *l))
            .collect();
        if cands.is_empty() {
            return argmax(logits, banned);
        }
        // Sort by logit descending, id ascending: a total, platform-independent order.
        cands.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if self.params.top_k > 0 {
            cands.truncate(self.params.top_k);
        }
        let t = self.params.temperature as f64;
        let max = cands[0].1 as f64;
        let mut probs: Vec<f64> = cands
            .iter()
            .map(|c| ((c.1 as f64 - max) / t).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if self.params.top_p < 1.0 {
            let mut mass = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                mass += p;
                if mass >= self.params.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            let total: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= total);
        }
        let u = self.rng.next_f64();
        let mut acc = 0.0;
        for (i, p) in probs.iter().enumerate() {
            acc += p;
            if u < acc {
                return cands[i].0;
            }
        }
        cands[probs.len() - 1].0
    }
}

/// Index of the largest logit, lowest id on ties, skipping `banned` and NaN.
pub fn argmax(logits: &[f32], banned: &[u32]) -> u32 {
    let mut best = 0u32;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        // The banned check runs only on a new maximum, which is rare.
        if v > best_v && !banned.contains(&(i as u32)) {
            best = i as u32;
            best_v = v;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_lowest_id_on_ties_and_skips_banned() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0], &[]), 1);
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0], &[1]), 2);
    }

    #[test]
    fn same_seed_same_tokens_different_seed_differs() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 7,
        };
        let run = |p: SamplingParams| {
            let mut s = Sampler::new(p);
            (0..32).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(p), run(p));
        assert_ne!(run(p), run(SamplingParams { seed: 8, ..p }));
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_limits_support() {
        let logits = [0.0, 5.0, 4.9, -3.0];
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 1,
            top_p: 1.0,
            seed: 1,
        });
        assert_eq!(s.sample(&logits, &[]), 1);
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.4,
            seed: 3,
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&logits, &[]), 1);
        }
    }

    #[test]
    fn bad_params_are_named() {
        let p = SamplingParams {
            temperature: -1.0,
            ..SamplingParams::greedy()
        };
        assert!(p.validate().unwrap_err().contains("temperature"));
        let p = SamplingParams {
            top_p: 0.0,
            ..SamplingParams::greedy()
        };
        assert!(p.validate().unwrap_err().contains("top_p"));
    }
}
