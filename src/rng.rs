//! Seeded randomness shared by every layer (engine sampling, task generation, splits, the
//! bootstrap, the optimizer's draws): one generator, one seed-derivation rule, and the draws built
//! on them. Nothing here keeps global state; every caller passes its seed.

/// SplitMix64: a tiny, well-mixed, seedable generator (Vigna). Deterministic across platforms.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Mixes several words into one seed (for deriving per-call seeds from a run seed).
pub fn derive_seed(parts: &[u64]) -> u64 {
    let mut rng = SplitMix64::new(0x6D61_7370_6F00_0001);
    let mut acc = rng.next_u64();
    for p in parts {
        rng = SplitMix64::new(acc ^ p.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        acc = rng.next_u64();
    }
    acc
}

/// A stable 64-bit seed from a string (FNV-1a), for mixing names into [`derive_seed`].
pub fn str_seed(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `k` distinct indices of `0..n` (all of them when `k >= n`), drawn without replacement by a
/// partial Fisher–Yates shuffle from `seed`, in draw order.
pub fn sample_indices(n: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    let k = k.min(n);
    for i in 0..k {
        let j = i + (rng.next_u64() % (n - i) as u64) as usize;
        idx.swap(i, j);
    }
    idx.truncate(k);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_without_replacement_is_seeded_and_distinct() {
        let a = sample_indices(50, 10, 7);
        assert_eq!(a, sample_indices(50, 10, 7));
        assert_ne!(a, sample_indices(50, 10, 8));
        let mut s = a.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 10);
        assert!(a.iter().all(|&i| i < 50));
        assert_eq!(sample_indices(3, 10, 1).len(), 3);
        assert_ne!(str_seed("a"), str_seed("b"));
    }
}
