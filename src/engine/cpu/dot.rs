//! Dot products of one weight row (ggml blocks) with one quantized activation row.
//!
//! AVX2 kernels follow ggml's x86 implementations (same integer arithmetic and accumulation
//! order per block), with scalar fallbacks for other targets. The repository builds for
//! x86-64-v3 (`.cargo/config.toml`), so the AVX2 paths are selected at compile time.

use super::quant::{f16_to_f32, ActBlock, BlockQ4_1, BlockQ5_0, BlockQ8_0};

/// Σ over blocks of Q4_1 weights × activations.
#[inline]
pub fn dot_q4_1(w: &[BlockQ4_1], a: &[ActBlock]) -> f32 {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        // SAFETY: compiled only when the target has AVX2 and FMA.
        unsafe { avx2::dot_q4_1(w, a) }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    {
        scalar::dot_q4_1(w, a)
    }
}

/// Σ over blocks of Q5_0 weights × activations.
#[inline]
pub fn dot_q5_0(w: &[BlockQ5_0], a: &[ActBlock]) -> f32 {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        // SAFETY: compiled only when the target has AVX2 and FMA.
        unsafe { avx2::dot_q5_0(w, a) }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    {
        scalar::dot_q5_0(w, a)
    }
}

/// Σ over blocks of Q8_0 weights × activations.
#[inline]
pub fn dot_q8_0(w: &[BlockQ8_0], a: &[ActBlock]) -> f32 {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        // SAFETY: compiled only when the target has AVX2 and FMA.
        unsafe { avx2::dot_q8_0(w, a) }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    {
        scalar::dot_q8_0(w, a)
    }
}

/// f32 dot product with 8 independent accumulators (vectorizes without fast-math).
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] = x[l].mul_add(y[l], acc[l]);
        }
    }
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Portable reference implementations (also the oracle in tests).
pub mod scalar {
    use super::*;
    use crate::engine::cpu::quant::q5_0_value;

    /// See [`super::dot_q4_1`].
    pub fn dot_q4_1(w: &[BlockQ4_1], a: &[ActBlock]) -> f32 {
        let mut sum = 0f32;
        for (x, y) in w.iter().zip(a) {
            let mut isum = 0i32;
            for j in 0..16 {
                isum += (x.qs[j] & 0x0F) as i32 * y.qs[j] as i32;
                isum += (x.qs[j] >> 4) as i32 * y.qs[j + 16] as i32;
            }
            sum += f16_to_f32(x.d) * y.d * isum as f32 + f16_to_f32(x.m) * y.s;
        }
        sum
    }

    /// See [`super::dot_q5_0`].
    pub fn dot_q5_0(w: &[BlockQ5_0], a: &[ActBlock]) -> f32 {
        let mut sum = 0f32;
        for (x, y) in w.iter().zip(a) {
            let isum: i32 = (0..32).map(|j| q5_0_value(x, j) * y.qs[j] as i32).sum();
            sum += f16_to_f32(x.d) * y.d * isum as f32;
        }
        sum
    }

    /// See [`super::dot_q8_0`].
    pub fn dot_q8_0(w: &[BlockQ8_0], a: &[ActBlock]) -> f32 {
        let mut sum = 0f32;
        for (x, y) in w.iter().zip(a) {
            let isum: i32 =
                x.qs.iter()
                    .zip(y.qs)
                    .map(|(&p, q)| p as i32 * q as i32)
                    .sum();
            sum += f16_to_f32(x.d) * y.d * isum as f32;
        }
        sum
    }
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn hsum(x: __m256) -> f32 {
        let r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
        let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        let r = _mm_add_ss(r, _mm_movehdup_ps(r));
        _mm_cvtss_f32(r)
    }

    /// 16 bytes of nibbles → 32 bytes: low nibbles first, then high nibbles.
    #[inline(always)]
    unsafe fn nibbles(p: *const u8) -> __m256i {
        let tmp = _mm_loadu_si128(p as *const __m128i);
        let bytes =
            _mm256_insertf128_si256::<1>(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4));
        _mm256_and_si256(_mm256_set1_epi8(0x0F), bytes)
    }

    /// 32 bits → 32 bytes, 0xFF where the bit is set.
    #[inline(always)]
    unsafe fn bits(qh: [u8; 4]) -> __m256i {
        let x32 = u32::from_le_bytes(qh) as i32;
        let shuf = _mm256_set_epi64x(
            0x0303030303030303,
            0x0202020202020202,
            0x0101010101010101,
            0,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x32), shuf);
        let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
        _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
    }

    /// unsigned × signed bytes, summed in pairs twice → 8 × f32.
    #[inline(always)]
    unsafe fn mul_sum_us8(ax: __m256i, sy: __m256i) -> __m256 {
        let dot = _mm256_maddubs_epi16(ax, sy);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot))
    }

    #[inline(always)]
    unsafe fn mul_sum_i8(x: __m256i, y: __m256i) -> __m256 {
        mul_sum_us8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q4_1(w: &[BlockQ4_1], a: &[ActBlock]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut summs = 0f32;
        for (x, y) in w.iter().zip(a) {
            let d0 = f16_to_f32(x.d);
            summs += f16_to_f32(x.m) * y.s;
            let dd = _mm256_set1_ps(d0 * y.d);
            let qx = nibbles(x.qs.as_ptr());
            let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
            acc = _mm256_fmadd_ps(dd, mul_sum_us8(qx, qy), acc);
        }
        hsum(acc) + summs
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q5_0(w: &[BlockQ5_0], a: &[ActBlock]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (x, y) in w.iter().zip(a) {
            let d = _mm256_set1_ps(f16_to_f32(x.d) * y.d);
            let qx = nibbles(x.qs.as_ptr());
            let hi = _mm256_andnot_si256(bits(x.qh), _mm256_set1_epi8(0xF0u8 as i8));
            let qx = _mm256_or_si256(qx, hi);
            let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
            acc = _mm256_fmadd_ps(d, mul_sum_i8(qx, qy), acc);
        }
        hsum(acc)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q8_0(w: &[BlockQ8_0], a: &[ActBlock]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (x, y) in w.iter().zip(a) {
            let d = _mm256_set1_ps(f16_to_f32(x.d) * y.d);
            let qx = _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i);
            let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
            acc = _mm256_fmadd_ps(d, mul_sum_i8(qx, qy), acc);
        }
        hsum(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cpu::quant::{quantize_row, BlockQ4_1, BlockQ5_0, BlockQ8_0};
    use crate::engine::sampling::SplitMix64;

    fn acts(rng: &mut SplitMix64, n: usize) -> Vec<ActBlock> {
        let x: Vec<f32> = (0..n * 32)
            .map(|_| rng.next_f64() as f32 * 4.0 - 2.0)
            .collect();
        let mut a = vec![ActBlock::default(); n];
        quantize_row(&x, &mut a);
        a
    }

    fn byte(rng: &mut SplitMix64) -> u8 {
        (rng.next_u64() & 0xFF) as u8
    }

    fn f16b(v: f32) -> u16 {
        half::f16::from_f32(v).to_bits()
    }

    #[test]
    fn simd_kernels_agree_with_scalar_reference() {
        let mut rng = SplitMix64::new(9);
        let n = 18;
        let a = acts(&mut rng, n);
        let q41: Vec<BlockQ4_1> = (0..n)
            .map(|i| BlockQ4_1 {
                d: f16b(0.01 + i as f32 * 1e-3),
                m: f16b(-0.05),
                qs: std::array::from_fn(|_| byte(&mut rng)),
            })
            .collect();
        let q50: Vec<BlockQ5_0> = (0..n)
            .map(|i| BlockQ5_0 {
                d: f16b(0.02 - i as f32 * 1e-4),
                qh: std::array::from_fn(|_| byte(&mut rng)),
                qs: std::array::from_fn(|_| byte(&mut rng)),
            })
            .collect();
        let q80: Vec<BlockQ8_0> = (0..n)
            .map(|_| BlockQ8_0 {
                d: f16b(0.003),
                qs: std::array::from_fn(|_| byte(&mut rng) as i8),
            })
            .collect();
        let close = |x: f32, y: f32| (x - y).abs() <= 1e-4 * (1.0 + y.abs());
        assert!(close(dot_q4_1(&q41, &a), scalar::dot_q4_1(&q41, &a)));
        assert!(close(dot_q5_0(&q50, &a), scalar::dot_q5_0(&q50, &a)));
        assert!(close(dot_q8_0(&q80, &a), scalar::dot_q8_0(&q80, &a)));
    }
}
