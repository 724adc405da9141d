//! Vectorized element-wise math of the forward pass: f16 storage conversion (the KV cache is
//! kept in f16, as llama.cpp keeps it), `exp` for softmax and SiLU, and the f32 dot / axpy
//! loops attention runs on.
//!
//! Every function has one numeric definition: the AVX2 path and the scalar path (other targets,
//! and the tails of rows whose length is not a multiple of 8) perform the same IEEE operations
//! in the same order per element, so results never depend on where an element falls in a row.

use half::f16;

/// Appends `src` converted to f16 bits (round to nearest even) to `dst`.
pub fn extend_f16(dst: &mut Vec<u16>, src: &[f32]) {
    let start = dst.len();
    dst.resize(start + src.len(), 0);
    let out = &mut dst[start..];
    let mut done = 0;
    #[cfg(all(target_arch = "x86_64", target_feature = "f16c"))]
    {
        use std::arch::x86_64::*;
        while done + 8 <= src.len() {
            // SAFETY: in bounds (8 values from `done`); F16C is a compile-time target feature.
            unsafe {
                let v = _mm256_loadu_ps(src.as_ptr().add(done));
                let h = _mm256_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(v);
                _mm_storeu_si128(out.as_mut_ptr().add(done) as *mut __m128i, h);
            }
            done += 8;
        }
    }
    for (o, &x) in out[done..].iter_mut().zip(&src[done..]) {
        *o = f16::from_f32(x).to_bits();
    }
}

/// Widens f16 bits into `dst` (same length).
#[inline]
pub fn f16_to_f32_into(src: &[u16], dst: &mut [f32]) {
    let mut done = 0;
    #[cfg(all(target_arch = "x86_64", target_feature = "f16c"))]
    {
        use std::arch::x86_64::*;
        while done + 8 <= src.len().min(dst.len()) {
            // SAFETY: in bounds; F16C is a compile-time target feature.
            unsafe {
                let h = _mm_loadu_si128(src.as_ptr().add(done) as *const __m128i);
                _mm256_storeu_ps(dst.as_mut_ptr().add(done), _mm256_cvtph_ps(h));
            }
            done += 8;
        }
    }
    for (o, &h) in dst[done..].iter_mut().zip(&src[done..]) {
        *o = f16::from_bits(h).to_f32();
    }
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const EXP_LO: f32 = -87.336_55;
const EXP_HI: f32 = 88.376_26;
const P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    0.166_666_65,
    0.5,
];

/// e^x (Cephes' single-precision polynomial, ~1 ulp; 0 < result < ∞ on the clamped range).
#[inline]
pub fn exp_scalar(x: f32) -> f32 {
    let x = x.clamp(EXP_LO, EXP_HI);
    let n = (x * LOG2E).round_ties_even();
    let r = (-n).mul_add(LN2_HI, x);
    let r = (-n).mul_add(LN2_LO, r);
    let mut p = P[0];
    for c in &P[1..] {
        p = p.mul_add(r, *c);
    }
    let y = p.mul_add(r * r, r) + 1.0;
    y * f32::from_bits((((n as i32) + 127) as u32) << 23)
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
unsafe fn exp8(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // Operand order keeps NaN as NaN (maxps/minps return the second operand on NaN), as
    // `f32::clamp` does in the scalar path.
    let x = _mm256_min_ps(
        _mm256_set1_ps(EXP_HI),
        _mm256_max_ps(_mm256_set1_ps(EXP_LO), x),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(LOG2E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    let mut p = _mm256_set1_ps(P[0]);
    for c in &P[1..] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
    }
    let y = _mm256_add_ps(
        _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r),
        _mm256_set1_ps(1.0),
    );
    let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    _mm256_mul_ps(y, _mm256_castsi256_ps(e))
}

/// `x[i] = e^(x[i] − shift)`, returning Σ x[i] summed in a fixed order (8 running lanes).
pub fn exp_shifted_sum(x: &mut [f32], shift: f32) -> f32 {
    let mut lanes = [0f32; 8];
    let mut done = 0;
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        use std::arch::x86_64::*;
        // SAFETY: every access is within `x`; AVX2/FMA are compile-time target features.
        unsafe {
            let s = _mm256_set1_ps(shift);
            let mut acc = _mm256_setzero_ps();
            while done + 8 <= x.len() {
                let p = x.as_mut_ptr().add(done);
                let v = exp8(_mm256_sub_ps(_mm256_loadu_ps(p), s));
                _mm256_storeu_ps(p, v);
                acc = _mm256_add_ps(acc, v);
                done += 8;
            }
            _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
        }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    {
        while done + 8 <= x.len() {
            for (l, v) in lanes.iter_mut().zip(&mut x[done..done + 8]) {
                *v = exp_scalar(*v - shift);
                *l += *v;
            }
            done += 8;
        }
    }
    for (l, v) in lanes.iter_mut().zip(&mut x[done..]) {
        *v = exp_scalar(*v - shift);
        *l += *v;
    }
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
}

/// `g[i] = silu(g[i]) · u[i]` with silu(x) = x / (1 + e^−x) (the SwiGLU gate).
pub fn silu_mul(g: &mut [f32], u: &[f32]) {
    assert_eq!(g.len(), u.len(), "silu_mul: gate and up lengths");
    let mut done = 0;
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        use std::arch::x86_64::*;
        // SAFETY: every access is within `g`/`u` (equal lengths); compile-time target features.
        unsafe {
            let one = _mm256_set1_ps(1.0);
            let neg = _mm256_set1_ps(-0.0);
            while done + 8 <= g.len() {
                let p = g.as_mut_ptr().add(done);
                let x = _mm256_loadu_ps(p);
                let e = exp8(_mm256_xor_ps(x, neg));
                let s = _mm256_div_ps(x, _mm256_add_ps(one, e));
                _mm256_storeu_ps(p, _mm256_mul_ps(s, _mm256_loadu_ps(u.as_ptr().add(done))));
                done += 8;
            }
        }
    }
    for (x, &u) in g[done..].iter_mut().zip(&u[done..]) {
        *x = *x / (1.0 + exp_scalar(-*x)) * u;
    }
}

/// Σ a[i]·b[i] over equal-length rows, 16 running lanes (two 8-wide accumulators) reduced in a
/// fixed order.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut lanes = [0f32; 16];
    let mut done = 0;
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        use std::arch::x86_64::*;
        // SAFETY: every access is within both rows; compile-time target features.
        unsafe {
            let (mut x, mut y) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            while done + 16 <= n {
                let (pa, pb) = (a.as_ptr().add(done), b.as_ptr().add(done));
                x = _mm256_fmadd_ps(_mm256_loadu_ps(pa), _mm256_loadu_ps(pb), x);
                y = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(8)), _mm256_loadu_ps(pb.add(8)), y);
                done += 16;
            }
            _mm256_storeu_ps(lanes.as_mut_ptr(), x);
            _mm256_storeu_ps(lanes.as_mut_ptr().add(8), y);
        }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    while done + 16 <= n {
        for (l, (x, y)) in lanes
            .iter_mut()
            .zip(a[done..].iter().zip(&b[done..done + 16]))
        {
            *l = x.mul_add(*y, *l);
        }
        done += 16;
    }
    for (i, (x, y)) in a[done..n].iter().zip(&b[done..n]).enumerate() {
        lanes[i] = x.mul_add(*y, lanes[i]);
    }
    let mut h = [0f32; 8];
    for (i, v) in h.iter_mut().enumerate() {
        *v = lanes[i] + lanes[i + 8];
    }
    ((h[0] + h[4]) + (h[1] + h[5])) + ((h[2] + h[6]) + (h[3] + h[7]))
}

/// `out[i] += w · v[i]` (fused multiply-add per element) with `v` in f16 bits.
#[inline]
pub fn axpy_f16(w: f32, v: &[u16], out: &mut [f32]) {
    let n = v.len().min(out.len());
    let mut done = 0;
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        use std::arch::x86_64::*;
        // SAFETY: every access is within both rows; compile-time target features.
        unsafe {
            let s = _mm256_set1_ps(w);
            while done + 8 <= n {
                let x = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(done) as *const __m128i));
                let o = out.as_mut_ptr().add(done);
                _mm256_storeu_ps(o, _mm256_fmadd_ps(s, x, _mm256_loadu_ps(o)));
                done += 8;
            }
        }
    }
    for (o, &h) in out[done..n].iter_mut().zip(&v[done..n]) {
        *o = w.mul_add(f16::from_bits(h).to_f32(), *o);
    }
}

/// Scores of one 64-wide query against eight 64-wide keys (`keys` = 8 rows back to back):
/// per key, eight lanes accumulate the products of dims l, l+8, … by fused multiply-add, then
/// the lanes are reduced by a fixed pairwise tree shared by all eight keys. Any key's score is
/// independent of the other seven.
#[inline]
pub fn scores8_64(q: &[f32], keys: &[f32]) -> [f32; 8] {
    assert!(q.len() >= 64 && keys.len() >= 8 * 64, "scores8_64: shapes");
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        use std::arch::x86_64::*;
        // SAFETY: bounds asserted above; AVX2/FMA are compile-time target features.
        unsafe {
            let qv: [__m256; 8] = std::array::from_fn(|c| _mm256_loadu_ps(q.as_ptr().add(8 * c)));
            let acc: [__m256; 8] = std::array::from_fn(|p| {
                let k = keys.as_ptr().add(64 * p);
                let mut a = _mm256_mul_ps(qv[0], _mm256_loadu_ps(k));
                for (c, qc) in qv.iter().enumerate().skip(1) {
                    a = _mm256_fmadd_ps(*qc, _mm256_loadu_ps(k.add(8 * c)), a);
                }
                a
            });
            let t0 = _mm256_hadd_ps(acc[0], acc[1]);
            let t1 = _mm256_hadd_ps(acc[2], acc[3]);
            let t2 = _mm256_hadd_ps(acc[4], acc[5]);
            let t3 = _mm256_hadd_ps(acc[6], acc[7]);
            let u0 = _mm256_hadd_ps(t0, t1);
            let u1 = _mm256_hadd_ps(t2, t3);
            let r = _mm256_add_ps(
                _mm256_permute2f128_ps::<0x20>(u0, u1),
                _mm256_permute2f128_ps::<0x31>(u0, u1),
            );
            let mut out = [0f32; 8];
            _mm256_storeu_ps(out.as_mut_ptr(), r);
            out
        }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    {
        std::array::from_fn(|p| dot(&q[..64], &keys[64 * p..64 * (p + 1)]))
    }
}

/// `out[d] += Σ_p w[p] · vals[p·64 + d]` for a 64-wide `out`, one fused multiply-add per
/// (p, d) in order of p, with the running sums kept in registers.
#[inline]
pub fn accumulate64(w: &[f32], vals: &[f32], out: &mut [f32]) {
    assert!(
        out.len() == 64 && vals.len() >= w.len() * 64,
        "accumulate64: shapes"
    );
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        use std::arch::x86_64::*;
        // SAFETY: bounds asserted above; AVX2/FMA are compile-time target features.
        unsafe {
            let mut acc: [__m256; 8] =
                std::array::from_fn(|c| _mm256_loadu_ps(out.as_ptr().add(8 * c)));
            for (p, &wp) in w.iter().enumerate() {
                let s = _mm256_set1_ps(wp);
                let v = vals.as_ptr().add(64 * p);
                for (c, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(s, _mm256_loadu_ps(v.add(8 * c)), *a);
                }
            }
            for (c, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.as_mut_ptr().add(8 * c), *a);
            }
        }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    for (p, &wp) in w.iter().enumerate() {
        for (o, v) in out.iter_mut().zip(&vals[64 * p..64 * (p + 1)]) {
            *o = wp.mul_add(*v, *o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_scores_and_accumulation() {
        let q: Vec<f32> = (0..64).map(|i| ((i as f32) * 0.3).sin()).collect();
        let keys: Vec<f32> = (0..512).map(|i| ((i as f32) * 0.17).cos()).collect();
        let s = scores8_64(&q, &keys);
        for (p, got) in s.iter().enumerate() {
            let want: f32 = (0..64).map(|d| q[d] * keys[64 * p + d]).sum();
            assert!((got - want).abs() < 1e-4, "key {p}: {got} vs {want}");
        }
        // A key's score does not depend on its neighbours.
        let mut other = keys.clone();
        other[..64].iter_mut().for_each(|x| *x = 7.0);
        assert_eq!(scores8_64(&q, &other)[1..], s[1..]);
        let w = [0.5f32, -0.25, 0.125];
        let mut out = vec![1f32; 64];
        accumulate64(&w, &keys[..192], &mut out);
        for (d, o) in out.iter().enumerate() {
            let mut want = 1f32;
            for (p, wp) in w.iter().enumerate() {
                want = wp.mul_add(keys[64 * p + d], want);
            }
            assert_eq!(*o, want);
        }
    }

    #[test]
    fn exp_is_accurate_and_simd_equals_scalar() {
        let xs: Vec<f32> = (0..203).map(|i| -90.0 + i as f32 * 0.4567).collect();
        let mut v = xs.clone();
        let sum = exp_shifted_sum(&mut v, 0.0);
        let mut want_sum = 0f64;
        for (x, got) in xs.iter().zip(&v) {
            assert_eq!(*got, exp_scalar(*x), "exp({x}): SIMD vs scalar");
            let want = (*x as f64).exp();
            want_sum += want;
            if want > 1e-37 {
                assert!(
                    ((*got as f64) - want).abs() <= 3e-7 * want,
                    "exp({x}) = {got} vs {want}"
                );
            }
        }
        assert!(((sum as f64) - want_sum).abs() <= 1e-5 * want_sum);
        assert_eq!(exp_scalar(0.0), 1.0);
        let mut nan = [f32::NAN; 9];
        exp_shifted_sum(&mut nan, 0.0);
        assert!(
            nan.iter().all(|v| v.is_nan()),
            "NaN stays NaN in both paths"
        );
        assert!(exp_scalar(-1000.0) >= 0.0 && exp_scalar(-1000.0) < 1e-37);
    }

    #[test]
    fn silu_dot_axpy_and_f16_round_trip() {
        let g0: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.7).collect();
        let u: Vec<f32> = (0..37).map(|i| 1.0 + i as f32 * 0.1).collect();
        let mut g = g0.clone();
        silu_mul(&mut g, &u);
        for ((got, x), u) in g.iter().zip(&g0).zip(&u) {
            let want = x / (1.0 + (-x).exp()) * u;
            assert!(
                (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{got} vs {want}"
            );
        }
        let a: Vec<f32> = (0..70).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..70).map(|i| (i as f32 * 0.11).cos()).collect();
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - want).abs() < 1e-4);
        let mut h = Vec::new();
        extend_f16(&mut h, &a);
        assert_eq!(h.len(), 70);
        for (x, hb) in a.iter().zip(&h) {
            assert_eq!(
                *hb,
                f16::from_f32(*x).to_bits(),
                "F16C and half round alike"
            );
        }
        let mut back = vec![0f32; 70];
        f16_to_f32_into(&h, &mut back);
        let mut out = vec![1f32; 70];
        axpy_f16(2.0, &h, &mut out);
        for ((o, b), x) in out.iter().zip(&back).zip(&a) {
            assert_eq!(*o, 2f32.mul_add(*b, 1.0));
            assert!((b - x).abs() < 1e-3);
        }
    }
}
