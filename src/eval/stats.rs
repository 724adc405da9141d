//! Accuracy with a seeded percentile-bootstrap confidence interval.

use crate::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// A mean with its bootstrap confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The mean of the sample.
    pub mean: f64,
    /// Lower bound of the interval.
    pub low: f64,
    /// Upper bound of the interval.
    pub high: f64,
    /// Confidence level (0.95).
    pub level: f64,
    /// Bootstrap resamples used.
    pub resamples: usize,
}

/// Percentile bootstrap of the mean of `values` (e.g. 0/1 correctness), `resamples` draws with
/// replacement from a seeded generator, so the interval is reproducible.
pub fn bootstrap_mean(values: &[f64], resamples: usize, level: f64, seed: u64) -> Interval {
    let n = values.len();
    if n == 0 {
        return Interval {
            mean: 0.0,
            low: 0.0,
            high: 0.0,
            level,
            resamples: 0,
        };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let mut rng = SplitMix64::new(seed);
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| {
            let s: f64 = (0..n)
                .map(|_| values[(rng.next_u64() % n as u64) as usize])
                .sum();
            s / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let alpha = (1.0 - level) / 2.0;
    let at = |q: f64| {
        let i = ((means.len() as f64 - 1.0) * q).round() as usize;
        means[i.min(means.len() - 1)]
    };
    Interval {
        mean,
        low: at(alpha),
        high: at(1.0 - alpha),
        level,
        resamples: means.len(),
    }
}

/// Percentile bootstrap of the mean paired difference `after[i] − before[i]` (the same items
/// evaluated twice, e.g. seed vs optimized prompts): items are resampled together, so the
/// interval reflects only the change, not the spread of item difficulty.
pub fn paired_bootstrap_diff(
    before: &[f64],
    after: &[f64],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Interval {
    let diffs: Vec<f64> = before.iter().zip(after).map(|(b, a)| a - b).collect();
    bootstrap_mean(&diffs, resamples, level, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_brackets_the_mean_and_is_seeded() {
        let v: Vec<f64> = (0..50).map(|i| f64::from(u8::from(i % 5 < 2))).collect();
        let a = bootstrap_mean(&v, 2000, 0.95, 7);
        assert!((a.mean - 0.4).abs() < 1e-12);
        assert!(a.low < 0.4 && a.high > 0.4, "{a:?}");
        // Normal approximation: ±1.96·sqrt(.4·.6/50) ≈ ±0.136.
        assert!((a.high - a.low - 0.27).abs() < 0.06, "{a:?}");
        assert_eq!(a, bootstrap_mean(&v, 2000, 0.95, 7));
        let all = bootstrap_mean(&[1.0; 10], 100, 0.95, 1);
        assert_eq!((all.low, all.high), (1.0, 1.0));
        assert_eq!(bootstrap_mean(&[], 100, 0.95, 1).resamples, 0);
    }

    #[test]
    fn paired_difference_interval() {
        let before = [0.0, 1.0, 0.0, 1.0, 0.0, 0.0];
        let after = [1.0, 1.0, 1.0, 1.0, 0.0, 1.0];
        let d = paired_bootstrap_diff(&before, &after, 1000, 0.95, 3);
        assert!((d.mean - 0.5).abs() < 1e-12);
        assert!(d.low >= 0.0 && d.high <= 1.0 && d.low <= d.mean && d.mean <= d.high);
        let same = paired_bootstrap_diff(&before, &before, 1000, 0.95, 3);
        assert_eq!((same.low, same.high), (0.0, 0.0));
    }
}
