//! ggml block formats maspo computes with on the CPU, activation quantization, dequantization.
//!
//! Weight blocks keep ggml's exact byte layout (so a GGUF tensor is copied, not converted), and
//! activations are quantized the way ggml's CPU backend does it (per 32-value block,
//! d = max|x| / 127, round half to even), so our integer dot products see the same inputs as
//! llama.cpp's on the same file.

use half::f16;

/// Values per block for every format here.
pub const QK: usize = 32;

/// ggml `block_q4_1`: 32 4-bit values with scale and minimum; x = d·q + m.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BlockQ4_1 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Minimum (f16 bits).
    pub m: u16,
    /// Value j in the low nibble of byte j, value j+16 in the high nibble.
    pub qs: [u8; 16],
}

/// ggml `block_q5_0`: 32 5-bit values (4 low bits in `qs`, the fifth in `qh`); x = d·(q − 16).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BlockQ5_0 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Fifth bit of value j at bit j.
    pub qh: [u8; 4],
    /// Low nibbles, laid out as in Q4_1.
    pub qs: [u8; 16],
}

/// ggml `block_q8_0`: 32 signed bytes with one scale; x = d·q.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BlockQ8_0 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Values.
    pub qs: [i8; 32],
}

/// A quantized activation block (ggml `block_q8_1` semantics with the f16 fields pre-widened):
/// `d` is the f16-rounded scale and `s` the f16-rounded d·Σq used by Q4_1's minimum term.
#[repr(C, align(8))]
#[derive(Debug, Clone, Copy)]
pub struct ActBlock {
    /// Scale.
    pub d: f32,
    /// d · Σ qs.
    pub s: f32,
    /// Values.
    pub qs: [i8; 32],
}

impl Default for ActBlock {
    fn default() -> Self {
        Self {
            d: 0.0,
            s: 0.0,
            qs: [0; 32],
        }
    }
}

/// f16 bits to f32 (hardware F16C on x86-64-v3).
#[inline(always)]
pub fn f16_to_f32(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

fn f16_round(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// Quantizes one row (length a multiple of 32) into activation blocks.
pub fn quantize_row(x: &[f32], out: &mut [ActBlock]) {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    {
        for (chunk, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
            // SAFETY: compiled only for AVX2 targets; `chunk` has exactly 32 values.
            unsafe { quantize_block_avx2(chunk, b) };
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
    quantize_row_scalar(x, out);
}

/// The same computation 8 lanes at a time (identical results: max, one IEEE multiply and
/// round-half-even per value, an exact integer sum).
#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_block_avx2(chunk: &[f32], b: &mut ActBlock) {
    use std::arch::x86_64::*;
    let p = chunk.as_ptr();
    let v = [
        _mm256_loadu_ps(p),
        _mm256_loadu_ps(p.add(8)),
        _mm256_loadu_ps(p.add(16)),
        _mm256_loadu_ps(p.add(24)),
    ];
    let sign = _mm256_set1_ps(-0.0);
    let m = _mm256_max_ps(
        _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
        _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])),
    );
    let m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    let m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    let amax = _mm_cvtss_f32(m4);
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mul = _mm256_set1_ps(id);
    let q: [__m256i; 4] = std::array::from_fn(|i| {
        _mm256_cvtps_epi32(_mm256_round_ps::<
            { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
        >(_mm256_mul_ps(v[i], mul)))
    });
    let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    let s4 = _mm_add_epi32(
        _mm256_extracti128_si256(sum, 1),
        _mm256_castsi256_si128(sum),
    );
    let s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0b01_00_11_10));
    let s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0b10_11_00_01));
    let isum = _mm_cvtsi128_si32(s4);
    // i32 → i16 → i8 with saturation (values are within ±127), then undo the lane interleave.
    let p16a = _mm256_packs_epi32(q[0], q[1]);
    let p16b = _mm256_packs_epi32(q[2], q[3]);
    let p8 = _mm256_packs_epi16(p16a, p16b);
    let p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(b.qs.as_mut_ptr() as *mut __m256i, p8);
    b.d = f16_round(d);
    b.s = f16_round(d * isum as f32);
}

/// Portable quantization (the reference the SIMD path must equal).
pub fn quantize_row_scalar(x: &[f32], out: &mut [ActBlock]) {
    for (chunk, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in b.qs.iter_mut().zip(chunk) {
            let r = (v * id).round_ties_even() as i32;
            *q = r as i8;
            sum += r;
        }
        b.d = f16_round(d);
        b.s = f16_round(d * sum as f32);
    }
}

/// Quantizes weights (f32, length a multiple of 32) to Q8_0, ggml's reference rounding.
pub fn quantize_q8_0(x: &[f32]) -> Vec<BlockQ8_0> {
    let mut out = weight_vec(x.len() / QK);
    out.extend(x.chunks_exact(QK).map(|chunk| {
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0i8; 32];
        for (q, v) in qs.iter_mut().zip(chunk) {
            *q = (v * id).round() as i8;
        }
        BlockQ8_0 {
            d: f16::from_f32(d).to_bits(),
            qs,
        }
    }));
    out
}

/// Dequantizes Q4_1 blocks into `out`.
pub fn dequant_q4_1(blocks: &[BlockQ4_1], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let (d, m) = (f16_to_f32(b.d), f16_to_f32(b.m));
        for j in 0..16 {
            o[j] = d * (b.qs[j] & 0x0F) as f32 + m;
            o[j + 16] = d * (b.qs[j] >> 4) as f32 + m;
        }
    }
}

/// The 5-bit value j of a Q5_0 block, minus 16.
#[inline]
pub fn q5_0_value(b: &BlockQ5_0, j: usize) -> i32 {
    let qh = u32::from_le_bytes(b.qh);
    let low = if j < 16 {
        b.qs[j] & 0x0F
    } else {
        b.qs[j - 16] >> 4
    } as i32;
    let high = ((qh >> j) & 1) as i32;
    (low | (high << 4)) - 16
}

/// Dequantizes Q5_0 blocks into `out`.
pub fn dequant_q5_0(blocks: &[BlockQ5_0], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        for (j, v) in o.iter_mut().enumerate() {
            *v = d * q5_0_value(b, j) as f32;
        }
    }
}

/// Dequantizes Q8_0 blocks into `out`.
pub fn dequant_q8_0(blocks: &[BlockQ8_0], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        for (v, q) in o.iter_mut().zip(b.qs) {
            *v = d * q as f32;
        }
    }
}

/// An empty vector with room for `n` items whose memory is backed by transparent huge pages
/// where the OS allows it. Decode streams every weight once per token: with 4 KiB pages the
/// TLB misses on hundreds of MB of weights cost more than the arithmetic.
pub fn weight_vec<T>(n: usize) -> Vec<T> {
    let v: Vec<T> = Vec::with_capacity(n);
    #[cfg(target_os = "linux")]
    {
        let bytes = n * std::mem::size_of::<T>();
        const HUGE: usize = 2 << 20;
        if bytes >= HUGE {
            // Advise the 2 MiB-aligned interior before any page is touched. Failure is harmless.
            let start = (v.as_ptr() as usize).div_ceil(HUGE) * HUGE;
            let end = (v.as_ptr() as usize + bytes) / HUGE * HUGE;
            if end > start {
                // SAFETY: the range lies inside this vector's allocation.
                unsafe {
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE)
                };
            }
        }
    }
    v
}

/// Reinterprets ggml-layout bytes as blocks (copying, so alignment never matters).
pub fn blocks_from_bytes<T: Copy>(bytes: &[u8]) -> Option<Vec<T>> {
    let size = std::mem::size_of::<T>();
    if size == 0 || !bytes.len().is_multiple_of(size) {
        return None;
    }
    let n = bytes.len() / size;
    let mut v: Vec<T> = weight_vec(n);
    // SAFETY: T is a plain-old-data block type (integers only) and the copy is in bounds.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr() as *mut u8, bytes.len());
        v.set_len(n);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_match_ggml() {
        assert_eq!(std::mem::size_of::<BlockQ4_1>(), 20);
        assert_eq!(std::mem::size_of::<BlockQ5_0>(), 22);
        assert_eq!(std::mem::size_of::<BlockQ8_0>(), 34);
    }

    #[test]
    fn activation_quantization_round_trips_closely() {
        let x: Vec<f32> = (0..64).map(|i| ((i as f32) * 0.7).sin() * 3.0).collect();
        let mut q = vec![ActBlock::default(); 2];
        quantize_row(&x, &mut q);
        for (b, chunk) in q.iter().zip(x.chunks(32)) {
            let sum: i32 = b.qs.iter().map(|&v| v as i32).sum();
            assert!((b.s - b.d * sum as f32).abs() <= 1e-2 * b.d.abs() * 32.0);
            for (v, qv) in chunk.iter().zip(b.qs) {
                assert!((v - b.d * qv as f32).abs() <= b.d * 0.51 + 1e-3);
            }
        }
    }

    #[test]
    fn simd_quantization_equals_scalar() {
        let x: Vec<f32> = (0..320)
            .map(|i| {
                ((i as f32) * 1.37).sin() * (1.0 + i as f32 * 0.01)
                    + if i % 17 == 0 { 2.5 } else { 0.0 }
            })
            .collect();
        let (mut a, mut b) = (vec![ActBlock::default(); 10], vec![ActBlock::default(); 10]);
        quantize_row(&x, &mut a);
        quantize_row_scalar(&x, &mut b);
        for (p, q) in a.iter().zip(&b) {
            assert_eq!((p.d, p.s, p.qs), (q.d, q.s, q.qs));
        }
        let zeros = vec![0f32; 32];
        quantize_row(&zeros, &mut a[..1]);
        assert_eq!((a[0].d, a[0].s, a[0].qs), (0.0, 0.0, [0; 32]));
    }

    #[test]
    fn q5_0_values_cover_the_range() {
        let b = BlockQ5_0 {
            d: 0,
            qh: [0xFF, 0, 0, 0],
            qs: [0x0F; 16],
        };
        assert_eq!(q5_0_value(&b, 0), 15);
        assert_eq!(q5_0_value(&b, 16), -16);
        assert_eq!(q5_0_value(&b, 8), -1);
    }
}
