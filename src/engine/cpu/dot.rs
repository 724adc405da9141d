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
        unsafe {
            if use_vnni() {
                vnni::dot_q4_1(w, a)
            } else {
                avx2::dot_q4_1(w, a)
            }
        }
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
        unsafe {
            if use_vnni() {
                vnni::dot_q5_0(w, a)
            } else {
                avx2::dot_q5_0(w, a)
            }
        }
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
        unsafe {
            if use_vnni() {
                vnni::dot_q8_0(w, a)
            } else {
                avx2::dot_q8_0(w, a)
            }
        }
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

/// `N` activation rows at once (prefill and large batches: the weight block is unpacked once
/// per `N` products); `out[r]` = dot(w, a[r]), bit-identical to the one-row kernels.
#[inline]
pub fn dotn<const N: usize>(w: WeightRow<'_>, a: [&[ActBlock]; N], out: &mut [f32; N]) {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        // SAFETY: compiled only when the target has AVX2 and FMA.
        unsafe {
            match (w, use_vnni()) {
                (WeightRow::Q4_1(w), true) => vnni::dotn_q4_1::<N>(w, a, out),
                (WeightRow::Q5_0(w), true) => vnni::dotn_q5_0::<N>(w, a, out),
                (WeightRow::Q8_0(w), true) => vnni::dotn_q8_0::<N>(w, a, out),
                (WeightRow::Q4_1(w), false) => avx2::dotn_q4_1::<N>(w, a, out),
                (WeightRow::Q5_0(w), false) => avx2::dotn_q5_0::<N>(w, a, out),
                (WeightRow::Q8_0(w), false) => avx2::dotn_q8_0::<N>(w, a, out),
            }
        }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    {
        for r in 0..N {
            out[r] = match w {
                WeightRow::Q4_1(w) => scalar::dot_q4_1(w, a[r]),
                WeightRow::Q5_0(w) => scalar::dot_q5_0(w, a[r]),
                WeightRow::Q8_0(w) => scalar::dot_q8_0(w, a[r]),
            };
        }
    }
}

/// One weight row of one format.
#[derive(Clone, Copy)]
pub enum WeightRow<'a> {
    /// A Q4_1 row.
    Q4_1(&'a [BlockQ4_1]),
    /// A Q5_0 row.
    Q5_0(&'a [BlockQ5_0]),
    /// A Q8_0 row.
    Q8_0(&'a [BlockQ8_0]),
}

/// Four weight rows against one activation row: four independent accumulation chains hide the
/// FMA latency that bounds a single dot product (the batch-1 decode fast path). Each `out[r]`
/// is bit-identical to the one-row kernel's result for `w[r]`.
#[inline]
pub fn dot_rows4(w: WeightRows4<'_>, a: &[ActBlock], out: &mut [f32; 4]) {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        // SAFETY: compiled only when the target has AVX2 and FMA.
        unsafe {
            match (w, use_vnni()) {
                (WeightRows4::Q4_1(w), true) => vnni::rows4_q4_1(w, a, out),
                (WeightRows4::Q5_0(w), true) => vnni::rows4_q5_0(w, a, out),
                (WeightRows4::Q8_0(w), true) => vnni::rows4_q8_0(w, a, out),
                (WeightRows4::Q4_1(w), false) => avx2::rows4_q4_1(w, a, out),
                (WeightRows4::Q5_0(w), false) => avx2::rows4_q5_0(w, a, out),
                (WeightRows4::Q8_0(w), false) => avx2::rows4_q8_0(w, a, out),
            }
        }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    {
        for r in 0..4 {
            out[r] = match w {
                WeightRows4::Q4_1(w) => scalar::dot_q4_1(w[r], a),
                WeightRows4::Q5_0(w) => scalar::dot_q5_0(w[r], a),
                WeightRows4::Q8_0(w) => scalar::dot_q8_0(w[r], a),
            };
        }
    }
}

/// Four weight rows of one format.
#[derive(Clone, Copy)]
pub enum WeightRows4<'a> {
    /// Q4_1 rows.
    Q4_1([&'a [BlockQ4_1]; 4]),
    /// Q5_0 rows.
    Q5_0([&'a [BlockQ5_0]; 4]),
    /// Q8_0 rows.
    Q8_0([&'a [BlockQ8_0]; 4]),
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

/// The x86 kernels, instantiated twice: plain AVX2, and with AVX-512 VNNI's `vpdpbusd` doing
/// the u8×i8 multiply-add in one instruction instead of `maddubs` + `madd` (the multiply ports
/// are the bottleneck). Both compute identical integers (the AVX2 pair sums never saturate for
/// these formats: |q| ≤ 15 or ≤ 127 against |y| ≤ 127), so results are bit-identical either way.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
macro_rules! x86_kernels {
    ($features:literal) => {
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

        #[inline(always)]
        unsafe fn mul_sum_i8(x: __m256i, y: __m256i) -> __m256 {
            mul_sum_us8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
        }

        #[target_feature(enable = $features)]
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

        #[target_feature(enable = $features)]
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

        #[target_feature(enable = $features)]
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

        #[target_feature(enable = $features)]
        pub unsafe fn dotn_q4_1<const N: usize>(
            w: &[BlockQ4_1],
            a: [&[ActBlock]; N],
            out: &mut [f32; N],
        ) {
            let mut acc = [_mm256_setzero_ps(); N];
            let mut summs = [0f32; N];
            for (b, x) in w.iter().enumerate() {
                let d0 = f16_to_f32(x.d);
                let m0 = f16_to_f32(x.m);
                let qx = nibbles(x.qs.as_ptr());
                for r in 0..N {
                    let y = a[r].get_unchecked(b);
                    summs[r] += m0 * y.s;
                    let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * y.d), mul_sum_us8(qx, qy), acc[r]);
                }
            }
            for r in 0..N {
                out[r] = hsum(acc[r]) + summs[r];
            }
        }

        #[target_feature(enable = $features)]
        pub unsafe fn dotn_q5_0<const N: usize>(
            w: &[BlockQ5_0],
            a: [&[ActBlock]; N],
            out: &mut [f32; N],
        ) {
            let mut acc = [_mm256_setzero_ps(); N];
            for (b, x) in w.iter().enumerate() {
                let d0 = f16_to_f32(x.d);
                let qx = nibbles(x.qs.as_ptr());
                let hi = _mm256_andnot_si256(bits(x.qh), _mm256_set1_epi8(0xF0u8 as i8));
                let qx = _mm256_or_si256(qx, hi);
                let ax = _mm256_sign_epi8(qx, qx);
                for r in 0..N {
                    let y = a[r].get_unchecked(b);
                    let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                    let p = mul_sum_us8(ax, _mm256_sign_epi8(qy, qx));
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * y.d), p, acc[r]);
                }
            }
            for r in 0..N {
                out[r] = hsum(acc[r]);
            }
        }

        #[target_feature(enable = $features)]
        pub unsafe fn dotn_q8_0<const N: usize>(
            w: &[BlockQ8_0],
            a: [&[ActBlock]; N],
            out: &mut [f32; N],
        ) {
            let mut acc = [_mm256_setzero_ps(); N];
            for (b, x) in w.iter().enumerate() {
                let d0 = f16_to_f32(x.d);
                let qx = _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i);
                let ax = _mm256_sign_epi8(qx, qx);
                for r in 0..N {
                    let y = a[r].get_unchecked(b);
                    let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                    let p = mul_sum_us8(ax, _mm256_sign_epi8(qy, qx));
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * y.d), p, acc[r]);
                }
            }
            for r in 0..N {
                out[r] = hsum(acc[r]);
            }
        }

        #[target_feature(enable = $features)]
        pub unsafe fn rows4_q4_1(w: [&[BlockQ4_1]; 4], a: &[ActBlock], out: &mut [f32; 4]) {
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut summs = [0f32; 4];
            for (b, y) in a.iter().enumerate() {
                let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                for r in 0..4 {
                    let x = w[r].get_unchecked(b);
                    summs[r] += f16_to_f32(x.m) * y.s;
                    let dd = _mm256_set1_ps(f16_to_f32(x.d) * y.d);
                    acc[r] = _mm256_fmadd_ps(dd, mul_sum_us8(nibbles(x.qs.as_ptr()), qy), acc[r]);
                }
            }
            for r in 0..4 {
                out[r] = hsum(acc[r]) + summs[r];
            }
        }

        #[target_feature(enable = $features)]
        pub unsafe fn rows4_q5_0(w: [&[BlockQ5_0]; 4], a: &[ActBlock], out: &mut [f32; 4]) {
            let mut acc = [_mm256_setzero_ps(); 4];
            for (b, y) in a.iter().enumerate() {
                let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                for r in 0..4 {
                    let x = w[r].get_unchecked(b);
                    let d = _mm256_set1_ps(f16_to_f32(x.d) * y.d);
                    let hi = _mm256_andnot_si256(bits(x.qh), _mm256_set1_epi8(0xF0u8 as i8));
                    let qx = _mm256_or_si256(nibbles(x.qs.as_ptr()), hi);
                    acc[r] = _mm256_fmadd_ps(d, mul_sum_i8(qx, qy), acc[r]);
                }
            }
            for r in 0..4 {
                out[r] = hsum(acc[r]);
            }
        }

        #[target_feature(enable = $features)]
        pub unsafe fn rows4_q8_0(w: [&[BlockQ8_0]; 4], a: &[ActBlock], out: &mut [f32; 4]) {
            let mut acc = [_mm256_setzero_ps(); 4];
            for (b, y) in a.iter().enumerate() {
                let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                for r in 0..4 {
                    let x = w[r].get_unchecked(b);
                    let d = _mm256_set1_ps(f16_to_f32(x.d) * y.d);
                    let qx = _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i);
                    acc[r] = _mm256_fmadd_ps(d, mul_sum_i8(qx, qy), acc[r]);
                }
            }
            for r in 0..4 {
                out[r] = hsum(acc[r]);
            }
        }
    };
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// unsigned × signed bytes, summed in pairs twice → 8 × f32.
    #[inline(always)]
    unsafe fn mul_sum_us8(ax: __m256i, sy: __m256i) -> __m256 {
        let dot = _mm256_maddubs_epi16(ax, sy);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot))
    }

    x86_kernels!("avx2,fma,f16c");
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
mod vnni {
    use super::*;
    use std::arch::x86_64::*;

    /// unsigned × signed bytes, summed in fours → 8 × f32 (one `vpdpbusd`).
    #[inline(always)]
    unsafe fn mul_sum_us8(ax: __m256i, sy: __m256i) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy))
    }

    x86_kernels!("avx2,fma,f16c,avx512f,avx512vl,avx512vnni");
}

/// Whether the VNNI kernels run (detected once; `MASPO_NO_VNNI=1` forces plain AVX2).
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
fn use_vnni() -> bool {
    static FLAG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FLAG.get_or_init(|| {
        std::env::var_os("MASPO_NO_VNNI").is_none()
            && std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512vl")
    })
}

/// Which kernel numerics run: `"avx512-packed"` (repacked weights, [`super::packed`]),
/// `"avx2"` (ggml layouts; the VNNI variants are bit-identical to it), or `"scalar"`. Outputs can
/// differ between these, so completion-cache keys include it.
pub fn kernel_isa() -> &'static str {
    if super::packed::available() {
        return "avx512-packed";
    }
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        "avx2"
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    {
        "scalar"
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
        // The four-row kernels give each row exactly what the one-row kernels give.
        let rows: Vec<Vec<ActBlock>> = (0..4).map(|_| acts(&mut rng, n)).collect();
        let four = [&rows[0][..], &rows[1][..], &rows[2][..], &rows[3][..]];
        let mut out = [0f32; 4];
        dotn(WeightRow::Q4_1(&q41), four, &mut out);
        assert_eq!(out, std::array::from_fn(|r| dot_q4_1(&q41, four[r])));
        dotn(WeightRow::Q5_0(&q50), four, &mut out);
        assert_eq!(out, std::array::from_fn(|r| dot_q5_0(&q50, four[r])));
        dotn(WeightRow::Q8_0(&q80), four, &mut out);
        assert_eq!(out, std::array::from_fn(|r| dot_q8_0(&q80, four[r])));
        // Eight activation rows, likewise.
        let rows8: Vec<Vec<ActBlock>> = (0..8).map(|_| acts(&mut rng, n)).collect();
        let eight: [&[ActBlock]; 8] = std::array::from_fn(|r| &rows8[r][..]);
        let mut out8 = [0f32; 8];
        dotn(WeightRow::Q4_1(&q41), eight, &mut out8);
        assert_eq!(out8, std::array::from_fn(|r| dot_q4_1(&q41, eight[r])));
        dotn(WeightRow::Q5_0(&q50), eight, &mut out8);
        assert_eq!(out8, std::array::from_fn(|r| dot_q5_0(&q50, eight[r])));
        dotn(WeightRow::Q8_0(&q80), eight, &mut out8);
        assert_eq!(out8, std::array::from_fn(|r| dot_q8_0(&q80, eight[r])));
        // Four weight rows against one activation row, likewise.
        let q41b: Vec<Vec<BlockQ4_1>> = (0..4)
            .map(|i| q41.iter().cycle().skip(i).take(n).copied().collect())
            .collect();
        let q50b: Vec<Vec<BlockQ5_0>> = (0..4)
            .map(|i| q50.iter().cycle().skip(i).take(n).copied().collect())
            .collect();
        let q80b: Vec<Vec<BlockQ8_0>> = (0..4)
            .map(|i| q80.iter().cycle().skip(i).take(n).copied().collect())
            .collect();
        dot_rows4(
            WeightRows4::Q4_1(std::array::from_fn(|r| &q41b[r][..])),
            &a,
            &mut out,
        );
        assert_eq!(out, std::array::from_fn(|r| dot_q4_1(&q41b[r], &a)));
        dot_rows4(
            WeightRows4::Q5_0(std::array::from_fn(|r| &q50b[r][..])),
            &a,
            &mut out,
        );
        assert_eq!(out, std::array::from_fn(|r| dot_q5_0(&q50b[r], &a)));
        dot_rows4(
            WeightRows4::Q8_0(std::array::from_fn(|r| &q80b[r][..])),
            &a,
            &mut out,
        );
        assert_eq!(out, std::array::from_fn(|r| dot_q8_0(&q80b[r], &a)));
        // The VNNI kernels are bit-identical to the AVX2 ones (where the CPU has VNNI).
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        ))]
        if std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            unsafe {
                assert_eq!(vnni::dot_q4_1(&q41, &a), avx2::dot_q4_1(&q41, &a));
                assert_eq!(vnni::dot_q5_0(&q50, &a), avx2::dot_q5_0(&q50, &a));
                assert_eq!(vnni::dot_q8_0(&q80, &a), avx2::dot_q8_0(&q80, &a));
                let (mut x, mut y) = ([0f32; 4], [0f32; 4]);
                vnni::dotn_q5_0::<4>(&q50, four, &mut x);
                avx2::dotn_q5_0::<4>(&q50, four, &mut y);
                assert_eq!(x, y);
                vnni::rows4_q4_1(std::array::from_fn(|r| &q41b[r][..]), &a, &mut x);
                avx2::rows4_q4_1(std::array::from_fn(|r| &q41b[r][..]), &a, &mut y);
                assert_eq!(x, y);
            }
        }
    }
}
