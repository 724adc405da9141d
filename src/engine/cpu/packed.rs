//! Weights repacked at load for AVX-512 VNNI, and the matmul kernels over them.
//!
//! Why: ggml's block layouts give one 32-byte `vpdpbusd` per block and leave the per-block scale
//! work (an f16 conversion, a scalar multiply, a broadcast, Q4_1's minimum term) to run once per
//! block and activation row — about six vector uops per 32 multiply-adds, which is what bounded
//! the old kernels (both vCPUs share one core's vector ports). Here two blocks travel together
//! in one 64-byte register whose bytes are arranged so that lane `l` of the 16 dword lanes
//! belongs to block `l % 2`: a block pair's two scales then become a vector with one
//! `vbroadcastsd` load, and each (block pair, activation row) costs four uops — `vpdpbusd`,
//! convert, multiply by the activation scales, fused multiply-add by the weight scales.
//!
//! Formats: codes are stored unsigned (Q4_1 nibbles as they are; Q5_0 as q + 16 in a nibble plus
//! a 64-bit mask of fifth bits; Q8_0 as q + 128 in a byte) and the signed offset is removed
//! exactly in the integer domain by starting `vpdpbusd` from −offset × (sum of the four
//! activation bytes of each lane), precomputed per activation row. Q4_K converts exactly into
//! the Q4_1 form (scale d·sc, minimum −dmin·m per 32 values). Scales are kept as f32.
//!
//! Numerics: every kernel (1, 4, 8, 16 activation rows against one weight row, or four weight
//! rows against one activation row) runs the same per-(row, pair) instruction sequence and the
//! same final reduction, so a row's result never depends on how a batch was tiled.

use super::pool::Pool;
use super::quant::{f16_to_f32, quantize_row, ActBlock, BlockQ4_1, BlockQ5_0, BlockQ8_0, QK};
use super::tiling::{self, Tiles};

/// Packed code formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackedKind {
    /// 4-bit codes with scale and minimum (Q4_1, and Q4_K converted).
    Q4_1,
    /// 5-bit codes, offset 16 (Q5_0).
    Q5_0,
    /// 8-bit codes, offset 128 (Q8_0).
    Q8_0,
}

impl PackedKind {
    /// Stored code bytes per block pair.
    fn pair_bytes(self) -> usize {
        match self {
            PackedKind::Q4_1 => 32,
            PackedKind::Q5_0 => 40,
            PackedKind::Q8_0 => 64,
        }
    }

    fn offset(self) -> i32 {
        match self {
            PackedKind::Q4_1 => 0,
            PackedKind::Q5_0 => 16,
            PackedKind::Q8_0 => 128,
        }
    }
}

/// Byte position of value `v` (0..32) of block `b` (0 or 1) of a pair in the 64-byte register:
/// dword lane `l` holds four consecutive values of block `l % 2`.
#[inline]
pub const fn lane_pos(b: usize, v: usize) -> usize {
    let (sub, w) = (v / 16, v % 16);
    4 * (4 * (w / 4) + 2 * sub + b) + w % 4
}

/// Whether this CPU runs the packed kernels (AVX-512 F/BW/VL/VNNI; detected once;
/// `MASPO_NO_VNNI=1` forces the ggml-layout AVX2 kernels).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static FLAG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *FLAG.get_or_init(|| {
            std::env::var_os("MASPO_NO_VNNI").is_none()
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether AVX-512 VBMI's byte permute (with VNNI sums) can arrange activations (else a scalar
/// loop does).
#[cfg(target_arch = "x86_64")]
fn vbmi() -> bool {
    static FLAG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FLAG.get_or_init(|| available() && std::arch::is_x86_feature_detected!("avx512vbmi"))
}

/// An `n × k` weight matrix in the packed layout.
pub struct PackedMatrix {
    kind: PackedKind,
    /// Output rows.
    pub n: usize,
    /// Input columns.
    pub k: usize,
    pairs: usize,
    mpad: usize,
    /// Per row: `pairs × pair_bytes` code bytes.
    qs: Vec<u8>,
    /// Per row: `pairs × 2` scales (block 2p, block 2p+1).
    d: Vec<f32>,
    /// Q4_1 only, per row: `mpad` minimums (zero past the last block).
    m: Vec<f32>,
}

/// Codes (unsigned, offset included), scale and minimum of one 32-value block.
pub struct BlockCodes {
    /// Unsigned codes.
    pub q: [u8; 32],
    /// Scale.
    pub d: f32,
    /// Minimum (Q4_1 only).
    pub m: f32,
}

impl PackedMatrix {
    /// Packs `n` rows of `k / 32` blocks given by `block(row, b)`.
    pub fn build(
        kind: PackedKind,
        n: usize,
        k: usize,
        block: impl Fn(usize, usize) -> BlockCodes,
    ) -> Self {
        let bpr = k / QK;
        let pairs = bpr.div_ceil(2);
        let mpad = if kind == PackedKind::Q4_1 {
            bpr.div_ceil(16) * 16
        } else {
            0
        };
        let pb = kind.pair_bytes();
        let mut qs = super::quant::weight_vec::<u8>(n * pairs * pb);
        qs.resize(n * pairs * pb, 0);
        let mut d = vec![0f32; n * pairs * 2];
        let mut m = vec![0f32; n * mpad];
        for r in 0..n {
            for b in 0..bpr {
                let c = block(r, b);
                let (p, half) = (b / 2, b % 2);
                d[(r * pairs + p) * 2 + half] = c.d;
                if kind == PackedKind::Q4_1 {
                    m[r * mpad + b] = c.m;
                }
                let dst = &mut qs[(r * pairs + p) * pb..(r * pairs + p + 1) * pb];
                for (v, &code) in c.q.iter().enumerate() {
                    let at = lane_pos(half, v);
                    match kind {
                        PackedKind::Q8_0 => dst[at] = code,
                        _ => {
                            let nib = code & 0x0F;
                            if at < 32 {
                                dst[at] |= nib;
                            } else {
                                dst[at - 32] |= nib << 4;
                            }
                            if kind == PackedKind::Q5_0 && code & 0x10 != 0 {
                                dst[32 + at / 8] |= 1 << (at % 8);
                            }
                        }
                    }
                }
            }
        }
        Self {
            kind,
            n,
            k,
            pairs,
            mpad,
            qs,
            d,
            m,
        }
    }

    /// From ggml Q4_1 blocks (row-major).
    pub fn from_q4_1(b: &[BlockQ4_1], n: usize, k: usize) -> Self {
        let bpr = k / QK;
        Self::build(PackedKind::Q4_1, n, k, |r, i| {
            let x = &b[r * bpr + i];
            BlockCodes {
                q: std::array::from_fn(|j| {
                    if j < 16 {
                        x.qs[j] & 0x0F
                    } else {
                        x.qs[j - 16] >> 4
                    }
                }),
                d: f16_to_f32(x.d),
                m: f16_to_f32(x.m),
            }
        })
    }

    /// From ggml Q5_0 blocks.
    pub fn from_q5_0(b: &[BlockQ5_0], n: usize, k: usize) -> Self {
        let bpr = k / QK;
        Self::build(PackedKind::Q5_0, n, k, |r, i| {
            let x = &b[r * bpr + i];
            BlockCodes {
                q: std::array::from_fn(|j| (super::quant::q5_0_value(x, j) + 16) as u8),
                d: f16_to_f32(x.d),
                m: 0.0,
            }
        })
    }

    /// From ggml Q8_0 blocks.
    pub fn from_q8_0(b: &[BlockQ8_0], n: usize, k: usize) -> Self {
        let bpr = k / QK;
        Self::build(PackedKind::Q8_0, n, k, |r, i| {
            let x = &b[r * bpr + i];
            BlockCodes {
                q: std::array::from_fn(|j| (x.qs[j] as i32 + 128) as u8),
                d: f16_to_f32(x.d),
                m: 0.0,
            }
        })
    }

    /// From ggml Q4_K super-blocks (144 bytes per 256 values), exactly: each 32-value sub-block
    /// becomes a Q4_1 block with scale d·sc and minimum −dmin·m. `None` if `k` is not a multiple
    /// of 256 or the bytes do not fit.
    pub fn from_q4_k(bytes: &[u8], n: usize, k: usize) -> Option<Self> {
        const QK_K: usize = 256;
        const BLOCK: usize = 144;
        if !k.is_multiple_of(QK_K) || bytes.len() != n * (k / QK_K) * BLOCK {
            return None;
        }
        let spr = k / QK_K;
        Some(Self::build(PackedKind::Q4_1, n, k, |r, i| {
            let sb = &bytes[(r * spr + i / 8) * BLOCK..][..BLOCK];
            let d = f16_to_f32(u16::from_le_bytes([sb[0], sb[1]]));
            let dmin = f16_to_f32(u16::from_le_bytes([sb[2], sb[3]]));
            let scales = &sb[4..16];
            let j = i % 8;
            let (sc, m) = if j < 4 {
                (scales[j] & 63, scales[j + 4] & 63)
            } else {
                (
                    (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4),
                    (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
                )
            };
            // Sub-blocks 2t and 2t+1 share 32 bytes: low nibbles, then high nibbles.
            let q = &sb[16 + (j / 2) * 32..][..32];
            let high = j % 2 == 1;
            BlockCodes {
                q: std::array::from_fn(|l| if high { q[l] >> 4 } else { q[l] & 0x0F }),
                d: d * sc as f32,
                m: -(dmin * m as f32),
            }
        }))
    }

    /// The format's name (for reports).
    pub fn format(&self) -> &'static str {
        match self.kind {
            PackedKind::Q4_1 => "q4_1x2",
            PackedKind::Q5_0 => "q5_0x2",
            PackedKind::Q8_0 => "q8_0x2",
        }
    }

    /// Code `v` of block `b` of row `r`.
    fn code(&self, r: usize, b: usize, v: usize) -> i32 {
        let pb = self.kind.pair_bytes();
        let src = &self.qs[(r * self.pairs + b / 2) * pb..][..pb];
        let at = lane_pos(b % 2, v);
        match self.kind {
            PackedKind::Q8_0 => src[at] as i32,
            _ => {
                let nib = if at < 32 {
                    src[at] & 0x0F
                } else {
                    src[at - 32] >> 4
                } as i32;
                let fifth = self.kind == PackedKind::Q5_0 && src[32 + at / 8] >> (at % 8) & 1 == 1;
                nib | if fifth { 16 } else { 0 }
            }
        }
    }

    /// Writes row `r` as f32 (the same values ggml's dequantization gives).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let off = self.kind.offset();
        for (b, chunk) in out.chunks_exact_mut(QK).enumerate() {
            let d = self.d[(r * self.pairs + b / 2) * 2 + b % 2];
            for (v, o) in chunk.iter_mut().enumerate() {
                let q = self.code(r, b, v);
                *o = match self.kind {
                    PackedKind::Q4_1 => d * q as f32 + self.m[r * self.mpad + b],
                    _ => d * (q - off) as f32,
                };
            }
        }
    }
}

/// Activations quantized (ggml's per-block rounding, as [`quantize_row`]) and laid out for the
/// packed kernels.
pub struct PackedActs {
    /// Rows.
    pub m: usize,
    pairs: usize,
    mpad: usize,
    /// Values in lane order, 64 per slot (see [`slot`]).
    qs: Vec<i8>,
    /// Two scales per slot.
    da: Vec<f32>,
    /// Per row: `mpad` values of d·Σq (Q4_1's minimum term), zero past the last block.
    s: Vec<f32>,
    /// 16 per slot: −16·(sum of each lane's four values) (Q5_0's offset).
    c16: Vec<i32>,
    /// The same with −128 (Q8_0's offset).
    c128: Vec<i32>,
}

/// Source index (block-major 0..64) of each lane-order byte.
const GATHER: [u8; 64] = {
    let mut g = [0u8; 64];
    let mut b = 0;
    while b < 2 {
        let mut v = 0;
        while v < 32 {
            g[lane_pos(b, v)] = (b * 32 + v) as u8;
            v += 1;
        }
        b += 1;
    }
    g
};

/// Activation rows are stored in groups of 16 (the largest tile): within a group, pair-major,
/// so a tile's rows at one pair are adjacent and the whole tile is one contiguous run (no 4 KiB
/// aliasing between pairs, constant offsets between rows).
const GROUP: usize = 16;

/// Slot of (row `i`, pair `p`).
#[inline(always)]
fn slot(pairs: usize, i: usize, p: usize) -> usize {
    ((i / GROUP) * pairs + p) * GROUP + i % GROUP
}

impl PackedActs {
    /// Quantizes and packs `m` rows of width `k` (a multiple of 32), parallel over rows.
    pub fn new(pool: &Pool, x: &[f32], m: usize, k: usize) -> Self {
        let bpr = k / QK;
        let pairs = bpr.div_ceil(2);
        let mpad = bpr.div_ceil(16) * 16;
        let slots = m.div_ceil(GROUP) * GROUP * pairs;
        let mut a = Self {
            m,
            pairs,
            mpad,
            qs: vec![0; slots * 64],
            da: vec![0.0; slots * 2],
            s: vec![0.0; m * mpad],
            c16: vec![0; slots * 16],
            c128: vec![0; slots * 16],
        };
        let ptrs = (
            a.qs.as_mut_ptr() as usize,
            a.da.as_mut_ptr() as usize,
            a.s.as_mut_ptr() as usize,
            a.c16.as_mut_ptr() as usize,
            a.c128.as_mut_ptr() as usize,
        );
        pool.run(m, &|i| {
            // SAFETY: task i writes only row i's slots of each buffer, all sized above.
            let (qs, da, s, c16, c128) = (
                ptrs.0 as *mut i8,
                ptrs.1 as *mut f32,
                ptrs.2 as *mut f32,
                ptrs.3 as *mut i32,
                ptrs.4 as *mut i32,
            );
            let mut blocks = vec![ActBlock::default(); pairs * 2];
            quantize_row(&x[i * k..(i + 1) * k], &mut blocks[..bpr]);
            for p in 0..pairs {
                let (b0, b1) = (&blocks[2 * p], &blocks[2 * p + 1]);
                let at = slot(pairs, i, p);
                // SAFETY: slot `at` of each buffer belongs to this row (see above).
                unsafe {
                    *da.add(at * 2) = b0.d;
                    *da.add(at * 2 + 1) = b1.d;
                    #[cfg(target_arch = "x86_64")]
                    if vbmi() {
                        x86::arrange(b0, b1, qs.add(at * 64), c16.add(at * 16), c128.add(at * 16));
                        continue;
                    }
                    let dst = std::slice::from_raw_parts_mut(qs.add(at * 64), 64);
                    for (j, &g) in GATHER.iter().enumerate() {
                        let g = g as usize;
                        dst[j] = if g < 32 { b0.qs[g] } else { b1.qs[g - 32] };
                    }
                    for l in 0..16 {
                        let sum: i32 = dst[4 * l..4 * l + 4].iter().map(|&v| v as i32).sum();
                        *c16.add(at * 16 + l) = -16 * sum;
                        *c128.add(at * 16 + l) = -128 * sum;
                    }
                }
            }
            for (b, blk) in blocks[..bpr].iter().enumerate() {
                // SAFETY: as above.
                unsafe { *s.add(i * mpad + b) = blk.s };
            }
        });
        a
    }
}

impl PackedMatrix {
    /// `out (m × n) = acts · Wᵀ` on the shared schedule ([`tiling::run`], tiles of 16).
    pub fn matmul(&self, pool: &Pool, a: &PackedActs, out: &mut [f32]) {
        assert_eq!(a.pairs, self.pairs, "packed matmul: activation width");
        tiling::run::<16>(&PackedTiles { w: self, a }, pool, self.n, a.m, out);
    }
}

/// The packed kernels against one set of activations.
struct PackedTiles<'a> {
    w: &'a PackedMatrix,
    a: &'a PackedActs,
}

impl Tiles for PackedTiles<'_> {
    #[inline]
    fn rows<const N: usize>(&self, r: usize, i: usize) -> [f32; N] {
        let mut v = [0f32; N];
        // SAFETY: `available()` gated building the matrix; the schedule passes in-bounds rows
        // and never lets a tile cross a 16-row activation group.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            x86::dotn::<N>(self.w, r, self.a, i, &mut v)
        };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("packed matrices are only built where available() holds ({r}, {i})");
        #[allow(unreachable_code)]
        v
    }

    #[inline]
    fn four_weights(&self, r: usize, i: usize) -> [f32; 4] {
        let mut v = [0f32; 4];
        // SAFETY: as above; the schedule only asks for four rows that exist.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            x86::rows4(self.w, r, self.a, i, &mut v)
        };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("packed matrices are only built where available() holds ({r}, {i})");
        #[allow(unreachable_code)]
        v
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{PackedActs, PackedKind, PackedMatrix};
    use std::arch::x86_64::*;

    /// The 16-bit-lane mask selecting the upper 256 bits.
    const UPPER: __mmask32 = 0xFFFF_0000;

    /// Writes one activation block pair in lane order (one byte permute) and its offset
    /// corrections (four-value sums by one `vpdpbusd` against ones).
    ///
    /// # Safety
    /// AVX-512 VBMI/VNNI present; `qs` has 64 bytes, `c16` and `c128` 16 values each.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni,avx2")]
    pub unsafe fn arrange(
        b0: &super::ActBlock,
        b1: &super::ActBlock,
        qs: *mut i8,
        c16: *mut i32,
        c128: *mut i32,
    ) {
        let src = _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_loadu_si256(b0.qs.as_ptr() as *const __m256i)),
            _mm256_loadu_si256(b1.qs.as_ptr() as *const __m256i),
        );
        let idx = _mm512_loadu_si512(super::GATHER.as_ptr() as *const _);
        let dst = _mm512_permutexvar_epi8(idx, src);
        _mm512_storeu_si512(qs as *mut _, dst);
        let sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), dst);
        let zero = _mm512_setzero_si512();
        _mm512_storeu_si512(
            c16 as *mut _,
            _mm512_sub_epi32(zero, _mm512_slli_epi32::<4>(sums)),
        );
        _mm512_storeu_si512(
            c128 as *mut _,
            _mm512_sub_epi32(zero, _mm512_slli_epi32::<7>(sums)),
        );
    }

    #[inline(always)]
    unsafe fn unpack(kind: PackedKind, p: *const u8) -> __m512i {
        match kind {
            PackedKind::Q8_0 => _mm512_loadu_si512(p as *const _),
            _ => {
                let x = _mm512_broadcast_i64x4(_mm256_loadu_si256(p as *const __m256i));
                let x = _mm512_mask_srli_epi16(x, UPPER, x, 4);
                let q = _mm512_and_si512(x, _mm512_set1_epi8(0x0F));
                if kind == PackedKind::Q5_0 {
                    let fifth = (p.add(32) as *const u64).read_unaligned();
                    _mm512_mask_add_epi8(q, fifth, q, _mm512_set1_epi8(16))
                } else {
                    q
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn pair2(p: *const f32) -> __m512 {
        _mm512_castpd_ps(_mm512_set1_pd((p as *const f64).read_unaligned()))
    }

    #[inline(always)]
    unsafe fn init(kind: PackedKind, a: &PackedActs, at: usize) -> __m512i {
        let at = at * 16;
        match kind {
            PackedKind::Q4_1 => _mm512_setzero_si512(),
            PackedKind::Q5_0 => _mm512_loadu_si512(a.c16.as_ptr().add(at) as *const _),
            PackedKind::Q8_0 => _mm512_loadu_si512(a.c128.as_ptr().add(at) as *const _),
        }
    }

    /// One (block pair, activation row) step: the per-row arithmetic every kernel shares.
    #[inline(always)]
    unsafe fn step(
        acc: __m512,
        kind: PackedKind,
        wq: __m512i,
        dw: __m512,
        a: &PackedActs,
        at: usize,
    ) -> __m512 {
        let qy = _mm512_loadu_si512(a.qs.as_ptr().add(at * 64) as *const _);
        let dot = _mm512_dpbusd_epi32(init(kind, a, at), wq, qy);
        let da = pair2(a.da.as_ptr().add(at * 2));
        _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot), da), dw, acc)
    }

    /// Adds Q4_1's minimum terms and reduces the 16 lanes in a fixed order.
    #[inline(always)]
    unsafe fn finish(mut acc: __m512, w: &PackedMatrix, r: usize, a: &PackedActs, i: usize) -> f32 {
        if w.kind == PackedKind::Q4_1 {
            let (mw, sa) = (w.m.as_ptr().add(r * w.mpad), a.s.as_ptr().add(i * a.mpad));
            for c in (0..w.mpad).step_by(16) {
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(mw.add(c)), _mm512_loadu_ps(sa.add(c)), acc);
            }
        }
        let lo = _mm512_castps512_ps256(acc);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc)));
        let h8 = _mm256_add_ps(lo, hi);
        let h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps::<1>(h8));
        let h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
        _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)))
    }

    /// Weight row `r` against activation rows `i..i+N`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
    pub unsafe fn dotn<const N: usize>(
        w: &PackedMatrix,
        r: usize,
        a: &PackedActs,
        i: usize,
        out: &mut [f32; N],
    ) {
        let kind = w.kind;
        let pb = kind.pair_bytes();
        let mut acc = [_mm512_setzero_ps(); N];
        let wq_row = w.qs.as_ptr().add(r * w.pairs * pb);
        let wd_row = w.d.as_ptr().add(r * w.pairs * 2);
        let first = super::slot(a.pairs, i, 0);
        for p in 0..w.pairs {
            let wq = unpack(kind, wq_row.add(p * pb));
            let dw = pair2(wd_row.add(p * 2));
            let base = first + p * super::GROUP;
            for (j, acc) in acc.iter_mut().enumerate() {
                *acc = step(*acc, kind, wq, dw, a, base + j);
            }
        }
        for (j, acc) in acc.into_iter().enumerate() {
            out[j] = finish(acc, w, r, a, i + j);
        }
    }

    /// Weight rows `r..r+4` against activation row `i` (the batch-1 path).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
    pub unsafe fn rows4(w: &PackedMatrix, r: usize, a: &PackedActs, i: usize, out: &mut [f32; 4]) {
        let kind = w.kind;
        let pb = kind.pair_bytes();
        let mut acc = [_mm512_setzero_ps(); 4];
        let first = super::slot(a.pairs, i, 0);
        for p in 0..w.pairs {
            let base = first + p * super::GROUP;
            for (j, acc) in acc.iter_mut().enumerate() {
                let wq = unpack(kind, w.qs.as_ptr().add(((r + j) * w.pairs + p) * pb));
                let dw = pair2(w.d.as_ptr().add(((r + j) * w.pairs + p) * 2));
                *acc = step(*acc, kind, wq, dw, a, base);
            }
        }
        for (j, acc) in acc.into_iter().enumerate() {
            out[j] = finish(acc, w, r + j, a, i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sampling::SplitMix64;

    #[test]
    fn lane_positions_are_a_permutation() {
        let mut seen = [false; 64];
        for b in 0..2 {
            for v in 0..32 {
                let p = lane_pos(b, v);
                assert!(!seen[p]);
                seen[p] = true;
                assert_eq!((p / 4) % 2, b, "lane parity names the block");
            }
        }
    }

    fn random_matrix(kind: PackedKind, n: usize, k: usize, seed: u64) -> PackedMatrix {
        let mut rng = SplitMix64::new(seed);
        let codes: Vec<BlockCodes> = (0..n * k / QK)
            .map(|_| BlockCodes {
                q: std::array::from_fn(|_| {
                    let x = rng.next_u64() as u8;
                    match kind {
                        PackedKind::Q4_1 => x & 15,
                        PackedKind::Q5_0 => x & 31,
                        PackedKind::Q8_0 => x,
                    }
                }),
                d: (rng.next_f64() as f32 + 0.1) * 0.01,
                m: (rng.next_f64() as f32 - 0.5) * 0.1,
            })
            .collect();
        let bpr = k / QK;
        PackedMatrix::build(kind, n, k, |r, b| {
            let c = &codes[r * bpr + b];
            BlockCodes {
                q: c.q,
                d: c.d,
                m: c.m,
            }
        })
    }

    /// Every tile shape gives bit-identical rows, and the result equals the dequantized weights
    /// times the dequantized activations up to f32 rounding.
    #[test]
    fn every_tiling_is_bit_identical_and_correct() {
        if !available() {
            return;
        }
        let pool = Pool::new(2);
        // 7 blocks per row: an odd count exercises the padded half pair; 23 rows exercise 16-,
        // 4- and 1-row tiles.
        let (n, k, m) = (13, 7 * QK, 23);
        let mut rng = SplitMix64::new(4);
        let x: Vec<f32> = (0..m * k)
            .map(|_| rng.next_f64() as f32 * 2.0 - 1.0)
            .collect();
        for kind in [PackedKind::Q4_1, PackedKind::Q5_0, PackedKind::Q8_0] {
            let w = random_matrix(kind, n, k, 7);
            let a = PackedActs::new(&pool, &x, m, k);
            let mut out = vec![0f32; m * n];
            w.matmul(&pool, &a, &mut out);
            let mut row = vec![0f32; k];
            let mut blocks = vec![ActBlock::default(); k / QK];
            for i in 0..m {
                let one = PackedActs::new(&pool, &x[i * k..(i + 1) * k], 1, k);
                let mut single = vec![0f32; n];
                w.matmul(&pool, &one, &mut single);
                assert_eq!(&single[..], &out[i * n..(i + 1) * n], "{kind:?} row {i}");
                quantize_row(&x[i * k..(i + 1) * k], &mut blocks);
                for r in 0..n {
                    w.dequantize_row(r, &mut row);
                    let want: f64 = blocks
                        .iter()
                        .enumerate()
                        .map(|(b, blk)| {
                            (0..QK)
                                .map(|v| row[b * QK + v] as f64 * blk.d as f64 * blk.qs[v] as f64)
                                .sum::<f64>()
                        })
                        .sum();
                    // Q4_1's minimum term uses ggml's f16-rounded d·Σq.
                    let got = out[i * n + r] as f64;
                    assert!(
                        (got - want).abs() < 5e-3 * (1.0 + want.abs()),
                        "{kind:?} ({i},{r}): {got} vs {want}"
                    );
                }
            }
        }
    }

    /// The packed activation layout (byte permute and corrections, SIMD where available) is
    /// the scalar definition: value v of block b at `lane_pos`, corrections −off·(lane sum).
    #[test]
    fn activation_layout_matches_its_definition() {
        let pool = Pool::new(1);
        let (m, k) = (19, 5 * QK);
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i as f32) * 0.731).sin() * 3.0)
            .collect();
        let a = PackedActs::new(&pool, &x, m, k);
        let mut blocks = vec![ActBlock::default(); 6];
        for i in 0..m {
            quantize_row(&x[i * k..(i + 1) * k], &mut blocks[..5]);
            for p in 0..3 {
                let at = slot(a.pairs, i, p);
                let q = &a.qs[at * 64..(at + 1) * 64];
                for b in 0..2 {
                    for v in 0..32 {
                        assert_eq!(q[lane_pos(b, v)], blocks[2 * p + b].qs[v]);
                    }
                    assert_eq!(a.da[at * 2 + b], blocks[2 * p + b].d);
                }
                for l in 0..16 {
                    let sum: i32 = q[4 * l..4 * l + 4].iter().map(|&v| v as i32).sum();
                    assert_eq!(a.c16[at * 16 + l], -16 * sum);
                    assert_eq!(a.c128[at * 16 + l], -128 * sum);
                }
            }
            for (b, blk) in blocks[..5].iter().enumerate() {
                assert_eq!(a.s[i * a.mpad + b], blk.s);
            }
        }
    }

    #[test]
    fn q4_k_converts_exactly() {
        // One super-block with hand-made scales, checked against ggml's dequantization formula.
        let mut sb = vec![0u8; 144];
        sb[0..2].copy_from_slice(&half::f16::from_f32(0.5).to_bits().to_le_bytes());
        sb[2..4].copy_from_slice(&half::f16::from_f32(0.25).to_bits().to_le_bytes());
        for (i, s) in sb[4..16].iter_mut().enumerate() {
            *s = (i * 37 % 256) as u8;
        }
        for (i, q) in sb[16..].iter_mut().enumerate() {
            *q = (i * 11 % 256) as u8;
        }
        let w = PackedMatrix::from_q4_k(&sb, 1, 256).unwrap();
        let mut got = vec![0f32; 256];
        w.dequantize_row(0, &mut got);
        let sc = &sb[4..16];
        for (j, chunk) in got.chunks(32).enumerate() {
            let (s, m) = if j < 4 {
                (sc[j] & 63, sc[j + 4] & 63)
            } else {
                (
                    (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4),
                    (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4),
                )
            };
            for (l, g) in chunk.iter().enumerate() {
                let byte = sb[16 + (j / 2) * 32 + l];
                let q = if j % 2 == 0 { byte & 0xF } else { byte >> 4 };
                let want = 0.5 * s as f32 * q as f32 - 0.25 * m as f32;
                assert_eq!(*g, want, "sub-block {j} value {l}");
            }
        }
        assert!(PackedMatrix::from_q4_k(&sb, 1, 128).is_none());
    }
}
