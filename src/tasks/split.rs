//! Deterministic optimization / validation / test splits of a task's examples.
//!
//! Examples are ordered by a hash of (seed, example id), not by a shuffle of row positions, so an
//! example keeps its rank when rows are appended or reordered in the file. Splits are lists of
//! indices into [`super::Task::examples`], each in that hashed order, so taking the first `n` of
//! a split ([`Splits::limited`]) is a seeded random sample.

use super::Example;
use serde::{Deserialize, Serialize};

/// How examples are divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum SplitMode {
    /// Disjoint splits: the first `opt` examples in hashed order form the optimization pool, the
    /// next `val` the validation set, the rest the test set. Each is clamped to what is left, so
    /// a small dataset can end up with a short or empty test set.
    Heldout {
        /// Optimization pool size.
        opt: usize,
        /// Validation set size.
        val: usize,
    },
    /// The reference's protocol: an optimization pool of `opt` examples drawn from the whole file,
    /// no validation set, and the whole file as the test set (so the two overlap).
    Paper {
        /// Optimization pool size.
        opt: usize,
    },
}

impl Default for SplitMode {
    /// Held-out 50 / 50 / rest.
    fn default() -> Self {
        SplitMode::Heldout { opt: 50, val: 50 }
    }
}

/// One of the three splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitName {
    /// Questions the optimizer runs and scores candidates on.
    Optimize,
    /// Held-out examples for choosing among candidates.
    Validation,
    /// Final evaluation.
    Test,
}

/// The three splits, as indices into the task's examples.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Splits {
    /// Optimization pool.
    pub optimize: Vec<usize>,
    /// Validation set (empty in paper mode).
    pub validation: Vec<usize>,
    /// Test set.
    pub test: Vec<usize>,
}

impl Splits {
    /// Splits `examples` by `mode` with `seed`.
    pub fn new(examples: &[Example], mode: SplitMode, seed: u64) -> Self {
        let order = hashed_order(examples, seed);
        match mode {
            SplitMode::Heldout { opt, val } => {
                let opt = opt.min(order.len());
                let val = val.min(order.len() - opt);
                Splits {
                    optimize: order[..opt].to_vec(),
                    validation: order[opt..opt + val].to_vec(),
                    test: order[opt + val..].to_vec(),
                }
            }
            SplitMode::Paper { opt } => Splits {
                optimize: order[..opt.min(order.len())].to_vec(),
                validation: Vec::new(),
                // An independent order, so a limited test set is a sample of its own (the
                // reference draws its `--sample-size` subset independently of the pool).
                test: hashed_order(examples, seed ^ 0x7465_7374_7365_7421),
            },
        }
    }

    /// One split.
    pub fn get(&self, name: SplitName) -> &[usize] {
        match name {
            SplitName::Optimize => &self.optimize,
            SplitName::Validation => &self.validation,
            SplitName::Test => &self.test,
        }
    }

    /// The first `limit` indices of a split (all of it when `limit` is `None` or larger).
    pub fn limited(&self, name: SplitName, limit: Option<usize>) -> &[usize] {
        let split = self.get(name);
        &split[..limit.unwrap_or(split.len()).min(split.len())]
    }
}

/// Example indices sorted by [`order_key`] (ties, from duplicate ids, by index).
pub fn hashed_order(examples: &[Example], seed: u64) -> Vec<usize> {
    let mut keyed: Vec<(u64, usize)> = examples
        .iter()
        .enumerate()
        .map(|(i, e)| (order_key(seed, &e.id), i))
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// The rank key of an example id under a seed: FNV-1a of the id, mixed with the seed by the
/// SplitMix64 finalizer. Platform-independent.
pub fn order_key(seed: u64, id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::Gold;
    use std::collections::HashSet;

    fn examples(n: usize) -> Vec<Example> {
        (0..n)
            .map(|i| Example {
                id: format!("ex-{i}"),
                question: format!("q{i}"),
                gold: Gold::Answer(i.to_string()),
            })
            .collect()
    }

    fn ids<'a>(ex: &'a [Example], idx: &[usize]) -> Vec<&'a str> {
        idx.iter().map(|&i| ex[i].id.as_str()).collect()
    }

    #[test]
    fn heldout_is_disjoint_and_complete() {
        let ex = examples(300);
        let s = Splits::new(&ex, SplitMode::default(), 3);
        assert_eq!(
            (s.optimize.len(), s.validation.len(), s.test.len()),
            (50, 50, 200)
        );
        let all: HashSet<usize> = s
            .optimize
            .iter()
            .chain(&s.validation)
            .chain(&s.test)
            .copied()
            .collect();
        assert_eq!(all.len(), 300);
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let ex = examples(200);
        let a = Splits::new(&ex, SplitMode::default(), 1);
        assert_eq!(a, Splits::new(&ex, SplitMode::default(), 1));
        assert_ne!(
            a.optimize,
            Splits::new(&ex, SplitMode::default(), 2).optimize
        );
        assert_ne!(a.optimize, (0..50).collect::<Vec<_>>(), "not file order");
    }

    #[test]
    fn stable_when_rows_are_appended_or_reordered() {
        let ex = examples(200);
        let mut more = examples(260);
        more.reverse();
        let order_a = ids(&ex, &hashed_order(&ex, 9));
        let order_b: Vec<&str> = ids(&more, &hashed_order(&more, 9))
            .into_iter()
            .filter(|id| ex.iter().any(|e| e.id == *id))
            .collect();
        assert_eq!(order_a, order_b);
    }

    #[test]
    fn paper_mode_overlaps() {
        let ex = examples(120);
        let s = Splits::new(&ex, SplitMode::Paper { opt: 50 }, 4);
        assert_eq!(
            (s.optimize.len(), s.validation.len(), s.test.len()),
            (50, 0, 120)
        );
        assert!(s.optimize.iter().all(|i| s.test.contains(i)));
        assert_ne!(s.limited(SplitName::Test, Some(50)), &s.optimize[..]);
    }

    #[test]
    fn small_datasets_clamp() {
        let ex = examples(70);
        let s = Splits::new(&ex, SplitMode::default(), 0);
        assert_eq!(
            (s.optimize.len(), s.validation.len(), s.test.len()),
            (50, 20, 0)
        );
        let s = Splits::new(&ex[..0], SplitMode::Paper { opt: 50 }, 0);
        assert!(s.optimize.is_empty() && s.test.is_empty());
    }

    #[test]
    fn limit_takes_a_prefix() {
        let ex = examples(100);
        let s = Splits::new(&ex, SplitMode::Heldout { opt: 10, val: 10 }, 5);
        assert_eq!(s.limited(SplitName::Test, Some(5)), &s.test[..5]);
        assert_eq!(s.limited(SplitName::Optimize, Some(500)).len(), 10);
        assert_eq!(
            s.limited(SplitName::Validation, None),
            s.get(SplitName::Validation)
        );
    }

    #[test]
    fn mode_from_toml() {
        let m: SplitMode = toml::from_str("mode = \"heldout\"\nopt = 20\nval = 30").unwrap();
        assert_eq!(m, SplitMode::Heldout { opt: 20, val: 30 });
        let m: SplitMode = toml::from_str("mode = \"paper\"\nopt = 50").unwrap();
        assert_eq!(m, SplitMode::Paper { opt: 50 });
        assert!(toml::from_str::<SplitMode>("mode = \"paper\"\nopt = 5\nval = 3").is_err());
    }
}
