//! A Tree-structured Parzen Estimator over categorical choices (Bergstra et al., 2011), as
//! MIPRO and MASS use it to pick one instruction per module from a generated pool: each trial
//! picks one candidate prompt per agent; past trials are split into the best fraction γ ("good")
//! and the rest, each dimension's choice gets smoothed frequencies l(x) (good) and g(x) (bad),
//! and of `samples` draws from l the one with the highest Π l/g is suggested. The first
//! `startup` trials are uniform draws. Deterministic from its seed.

use crate::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// Fraction of trials counted as good.
pub const GAMMA: f64 = 0.25;
/// Draws from l(x) per suggestion.
pub const SAMPLES: usize = 24;

/// One finished trial: the candidate index per dimension, and its score (higher is better).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// Candidate index per agent.
    pub config: Vec<usize>,
    /// Score (win rate against the seed system).
    pub score: f64,
}

/// The search's size for `agents` optimizable agents: (candidates generated per agent besides
/// its starting prompt, trials, uniform start-up trials). Candidates: `proposals` per unit of
/// depth, as many as one MASPO beam path proposes; trials: one per agent per candidate.
pub fn plan(agents: usize, proposals: usize, depth: usize) -> (usize, usize, usize) {
    let candidates = (proposals * depth).max(1);
    let trials = (agents * candidates).max(2);
    (candidates, trials, (trials / 4).max(2))
}

fn draw(rng: &mut SplitMix64, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.next_f64() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// The next configuration for `dims` (options per dimension) after `history`. Prefers a
/// configuration not tried yet when a draw offers one.
pub fn suggest(history: &[Trial], dims: &[usize], startup: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    let tried = |c: &[usize]| history.iter().any(|t| t.config == c);
    if history.len() < startup.max(1) {
        // Uniform, avoiding repeats within a few attempts.
        let mut c = Vec::new();
        for _ in 0..8 {
            c = dims
                .iter()
                .map(|&k| (rng.next_u64() % k.max(1) as u64) as usize)
                .collect();
            if !tried(&c) {
                break;
            }
        }
        return c;
    }
    let mut order: Vec<usize> = (0..history.len()).collect();
    // Best first; earlier first among ties.
    order.sort_by(|&a, &b| {
        history[b]
            .score
            .total_cmp(&history[a].score)
            .then(a.cmp(&b))
    });
    let n_good = ((GAMMA * history.len() as f64).ceil() as usize).clamp(1, history.len());
    let (good, bad) = order.split_at(n_good);
    let density = |set: &[usize], d: usize, k: usize| -> Vec<f64> {
        let mut w = vec![1.0; k];
        for &t in set {
            if let Some(&x) = history[t].config.get(d) {
                if x < k {
                    w[x] += 1.0;
                }
            }
        }
        let total: f64 = w.iter().sum();
        w.iter().map(|v| v / total).collect()
    };
    let l: Vec<Vec<f64>> = dims
        .iter()
        .enumerate()
        .map(|(d, &k)| density(good, d, k.max(1)))
        .collect();
    let g: Vec<Vec<f64>> = dims
        .iter()
        .enumerate()
        .map(|(d, &k)| density(bad, d, k.max(1)))
        .collect();
    let mut best: Option<(bool, f64, Vec<usize>)> = None;
    for _ in 0..SAMPLES {
        let c: Vec<usize> = l.iter().map(|w| draw(&mut rng, w)).collect();
        let ratio: f64 = c
            .iter()
            .enumerate()
            .map(|(d, &x)| (l[d][x] / g[d][x]).ln())
            .sum();
        let fresh = !tried(&c);
        let better = match &best {
            None => true,
            Some((bf, br, _)) => (fresh && !bf) || (fresh == *bf && ratio > *br),
        };
        if better {
            best = Some((fresh, ratio, c));
        }
    }
    best.map(|b| b.2).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_is_uniform_then_the_good_region_is_exploited() {
        let dims = [4, 4];
        // Uniform start: every option of each dimension shows up over many seeds.
        let mut seen = [[false; 4]; 2];
        for s in 0..200 {
            let c = suggest(&[], &dims, 3, s);
            seen[0][c[0]] = true;
            seen[1][c[1]] = true;
        }
        assert!(seen.iter().all(|d| d.iter().all(|x| *x)));
        // A history where option 2 of dimension 0 is what scores: TPE proposes it.
        let mut history = Vec::new();
        for a in 0..4 {
            for b in 0..4 {
                history.push(Trial {
                    config: vec![a, b],
                    score: if a == 2 { 0.8 } else { 0.2 },
                });
            }
        }
        let picks: Vec<Vec<usize>> = (0..100).map(|s| suggest(&history, &dims, 3, s)).collect();
        let hits = picks.iter().filter(|c| c[0] == 2).count();
        assert!(hits > 80, "{hits}/100");
        assert_eq!(
            suggest(&history, &dims, 3, 5),
            suggest(&history, &dims, 3, 5)
        );
    }

    #[test]
    fn untried_configurations_are_preferred() {
        let dims = [2, 1];
        let history = vec![Trial {
            config: vec![0, 0],
            score: 1.0,
        }];
        // l favours [0, 0], but it was tried and [1, 0] is drawn among 24 samples.
        for s in 0..20 {
            assert_eq!(suggest(&history, &dims, 1, s), vec![1, 0]);
        }
    }
}
