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
