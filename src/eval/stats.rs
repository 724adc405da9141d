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
    percentile_interval(mean, &means, level)
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

/// Stratified percentile bootstrap of the mean of group means (e.g. the average accuracy over
/// tasks): each group's items are resampled within the group, so every resample keeps every
/// group. Empty groups are left out.
pub fn stratified_bootstrap_mean(
    groups: &[Vec<f64>],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Interval {
    let groups: Vec<&Vec<f64>> = groups.iter().filter(|g| !g.is_empty()).collect();
    if groups.is_empty() {
        return bootstrap_mean(&[], resamples, level, seed);
    }
    let k = groups.len() as f64;
    let mean_of = |g: &Vec<f64>| g.iter().sum::<f64>() / g.len() as f64;
    let mean = groups.iter().map(|g| mean_of(g)).sum::<f64>() / k;
    let mut rng = SplitMix64::new(seed);
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| {
            groups
                .iter()
                .map(|g| {
                    let n = g.len() as u64;
                    (0..g.len())
                        .map(|_| g[(rng.next_u64() % n) as usize])
                        .sum::<f64>()
                        / g.len() as f64
                })
                .sum::<f64>()
                / k
        })
        .collect();
    means.sort_by(f64::total_cmp);
    percentile_interval(mean, &means, level)
}

fn percentile_interval(mean: f64, sorted: &[f64], level: f64) -> Interval {
    let alpha = (1.0 - level) / 2.0;
    let at = |q: f64| {
        let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted[i.min(sorted.len() - 1)]
    };
    Interval {
        mean,
        low: at(alpha),
        high: at(1.0 - alpha),
        level,
        resamples: sorted.len(),
    }
}

/// Two-sided p-value of a paired sign-flip (permutation) test that the paired differences have
/// mean zero; `groups` are strata (tasks) and the statistic is the mean of group means. Under
/// the null each item's difference is as likely to have either sign, so the signs are flipped
/// at random `resamples` times (seeded). Exact for 0/1 outcomes up to Monte-Carlo error; the
/// +1 correction keeps p above zero. 1 when every difference is zero.
pub fn sign_flip_p(groups: &[Vec<f64>], resamples: usize, seed: u64) -> f64 {
    let groups: Vec<&Vec<f64>> = groups.iter().filter(|g| !g.is_empty()).collect();
    if groups.is_empty() {
        return 1.0;
    }
    let k = groups.len() as f64;
    let stat = |sign: &mut dyn FnMut() -> f64| {
        groups
            .iter()
            .map(|g| g.iter().map(|d| d * sign()).sum::<f64>() / g.len() as f64)
            .sum::<f64>()
            / k
    };
    let observed = stat(&mut || 1.0).abs();
    if groups.iter().all(|g| g.iter().all(|d| *d == 0.0)) {
        return 1.0;
    }
    let mut rng = SplitMix64::new(seed);
    let resamples = resamples.max(1);
    let mut extreme = 0usize;
    for _ in 0..resamples {
        let s = stat(&mut || if rng.next_u64() & 1 == 1 { 1.0 } else { -1.0 });
        if s.abs() >= observed - 1e-12 {
            extreme += 1;
        }
    }
    (extreme + 1) as f64 / (resamples + 1) as f64
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

    #[test]
    fn stratified_mean_keeps_every_group() {
        let a = vec![1.0; 10];
        let b = vec![0.0; 30];
        // The mean of group means, not of the pooled items (which would be 0.25).
        let s = stratified_bootstrap_mean(&[a.clone(), b.clone(), vec![]], 500, 0.95, 1);
        assert!((s.mean - 0.5).abs() < 1e-12);
        // Constant groups: every resample gives the same mean.
        assert_eq!((s.low, s.high), (0.5, 0.5));
        let one: Vec<f64> = (0..40).map(|i| f64::from(u8::from(i % 2 == 0))).collect();
        let x = stratified_bootstrap_mean(std::slice::from_ref(&one), 2000, 0.95, 5);
        let y = bootstrap_mean(&one, 2000, 0.95, 5);
        assert_eq!(x, y, "one group is the plain bootstrap");
    }

    #[test]
    fn sign_flip_test_separates_a_real_difference_from_none() {
        // 12 items all +1: p ≈ 2 / 2^12 (two-sided), far below 0.05.
        let strong = vec![1.0; 12];
        let p = sign_flip_p(std::slice::from_ref(&strong), 20_000, 3);
        assert!(p < 0.002, "{p}");
        // Balanced gains and losses: no evidence.
        let mixed = vec![1.0, -1.0, 1.0, -1.0, 0.0, 0.0, 1.0, -1.0];
        let q = sign_flip_p(std::slice::from_ref(&mixed), 5_000, 3);
        assert!(q > 0.9, "{q}");
        assert_eq!(sign_flip_p(&[vec![0.0; 5]], 100, 1), 1.0);
        assert_eq!(sign_flip_p(&[], 100, 1), 1.0);
        // 3 gains, 0 losses: exact two-sided p = 2/8 = 0.25.
        let few = vec![1.0, 1.0, 1.0, 0.0, 0.0];
        let r = sign_flip_p(std::slice::from_ref(&few), 40_000, 9);
        assert!((r - 0.25).abs() < 0.01, "{r}");
        assert_eq!(r, sign_flip_p(std::slice::from_ref(&few), 40_000, 9));
    }
}
