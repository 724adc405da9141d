//! Weights repacked at load for AVX-512 VNNI, and the matmul kernels over them.
//!
//! Why: ggml's block layouts give one 32-byte `vpdpbusd` per block and leave the per-block scale
//! work (an f16 conversion, a scalar multiply, a broadcast, Q4_1's minimum term) to run once per
//! block and activation row — about six vector uops per 32 multiply-adds, which is what bounded
//! the old kernels (both vCPUs share one core's vector ports). Here two blocks travel together
//! in one 64-byte register whose bytes are arranged so that lane `l` of the 16 dword lanes
//! belongs to block `l % 2`: a block pair's weight scales become one vector per weight row, and
//! each (block pair, activation row) costs four uops — `vpdpbusd`, convert, multiply by the
//! activation scales, fused multiply-add by the weight scales.
//!
//! Formats: codes are stored unsigned (Q4_1 and Q4_K nibbles as they are; Q5_0 as q + 16 in a
//! nibble plus a 64-bit mask of fifth bits; Q6_K as q + 32 in a nibble plus 16 bytes of
//! two-bit high parts; Q8_0 as q + 128 in a byte) and the signed offset is removed exactly in
//! the integer domain by starting `vpdpbusd` from −offset × (sum of the four activation bytes of
//! each lane), precomputed per activation row.
//!
//! Bytes: a batch-1 decode step reads every weight once, so the scales are kept as small as
//! the file has them, never wider: Q4_1/Q5_0/Q8_0 keep their f16 scales (and Q4_1 its f16
//! minimums), converted per block pair in the kernel; Q4_K keeps its 6-bit sub-block scales and
//! minimums as bytes with the super-block's `d`/`dmin`, Q6_K its signed 8-bit scales per 16
//! values with the super-block's `d` — 5, 5.5 and 8.5 bits per weight as in the file, 4.75 and
//! 6.75 for the K-quants (the file's 4.5 and 6.56 pack scales in 6 bits and factors in f16). Every scale the kernels form (f16 → f32, `d · sc`, `dmin · m`) is exact in f32, so
//! results are the same as with f32 scales, and the same as ggml's dequantization.
//!
//! Numerics: every kernel (1, 4, 8, 16 activation rows against one weight row, or four weight
//! rows against one activation row) runs the same per-(row, pair) instruction sequence and the
//! same final reduction, so a row's result never depends on how a batch was tiled.

use super::pool::Pool;
use super::quant::{f16_to_f32, quantize_row, ActBlock, BlockQ4_1, BlockQ5_0, BlockQ8_0, QK};
use super::tiling::{self, Tiles};

/// Values per K-quant super-block.
const QK_K: usize = 256;

/// Packed code formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PackedKind {
    /// 4-bit codes with f16 scale and minimum (Q4_1).
    Q4_1 = 0,
    /// 5-bit codes, offset 16, f16 scale (Q5_0).
    Q5_0 = 1,
    /// 8-bit codes, offset 128, f16 scale (Q8_0).
    Q8_0 = 2,
    /// 4-bit codes with 6-bit scales and minimums per 32 values under f32 super-block factors
    /// (Q4_K).
    Q4K = 3,
    /// 6-bit codes, offset 32, signed 8-bit scales per 16 values under an f32 super-block
    /// factor (Q6_K).
    Q6K = 4,
}

const Q4_1: u8 = PackedKind::Q4_1 as u8;
const Q5_0: u8 = PackedKind::Q5_0 as u8;
const Q8_0: u8 = PackedKind::Q8_0 as u8;
const Q4K: u8 = PackedKind::Q4K as u8;
const Q6K: u8 = PackedKind::Q6K as u8;

impl PackedKind {
    /// Indexed by the `repr(u8)` value (the kernels' const parameter).
    const ALL: [PackedKind; 5] = [
        PackedKind::Q4_1,
        PackedKind::Q5_0,
        PackedKind::Q8_0,
        PackedKind::Q4K,
        PackedKind::Q6K,
    ];

    /// Stored code bytes per block pair.
    const fn pair_bytes(self) -> usize {
        match self {
            PackedKind::Q4_1 | PackedKind::Q4K => 32,
            PackedKind::Q5_0 => 40,
            PackedKind::Q6K => 48,
            PackedKind::Q8_0 => 64,
        }
    }

    const fn offset(self) -> i32 {
        match self {
            PackedKind::Q4_1 | PackedKind::Q4K => 0,
            PackedKind::Q5_0 => 16,
            PackedKind::Q6K => 32,
            PackedKind::Q8_0 => 128,
        }
    }

    /// Sub-block scale bytes per block pair (K-quants).
    const fn scale_bytes(self) -> usize {
        match self {
            PackedKind::Q4K => 2,
            PackedKind::Q6K => 4,
            _ => 0,
        }
    }
}

/// Byte position of value `v` (0..32) of block `b` (0 or 1) of a pair in the 64-byte register:
/// dword lane `l` holds four consecutive values of block `l % 2`, and lanes with `l % 4 < 2`
/// hold values 0..16 of their block, the others values 16..32 (Q6_K's scale halves).
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
    /// Q4_1 and Q4_K: per-row length of the minimum vectors (blocks, rounded up to 16).
    mpad: usize,
    /// K-quants: super-blocks per row, rounded up to even (two per 16 minimums).
    sups: usize,
    /// Per row: `pairs × pair_bytes` code bytes.
    qs: Vec<u8>,
    /// Q4_1/Q5_0/Q8_0, per row: `pairs × 2` f16 scales (block 2p, block 2p+1).
    d16: Vec<u16>,
    /// Q4_1, per row: `mpad` f16 minimums (zero past the last block).
    m16: Vec<u16>,
    /// K-quants, per row: `pairs × scale_bytes` sub-block scales — Q4_K: u8 (block 2p, 2p+1);
    /// Q6_K: i8 per 16 values in lane order (2p low half, 2p+1 low, 2p high, 2p+1 high).
    sc: Vec<u8>,
    /// Q4_K, per row: `mpad` u8 minimums (zero past the last block).
    mins: Vec<u8>,
    /// K-quants, per row: `sups × 2` f32 (d, dmin) per super-block (Q6_K: dmin 0).
    sup: Vec<f32>,
}

/// One row's storage in a [`PackedMatrix`] under construction.
struct RowMut<'a> {
    kind: PackedKind,
    qs: &'a mut [u8],
    d16: &'a mut [u16],
    m16: &'a mut [u16],
    sc: &'a mut [u8],
    mins: &'a mut [u8],
    sup: &'a mut [f32],
}

impl RowMut<'_> {
    /// Stores the unsigned codes (offset included) of block `b`.
    fn put_codes(&mut self, b: usize, q: &[u8; 32]) {
        let pb = self.kind.pair_bytes();
        let (p, half) = (b / 2, b % 2);
        let dst = &mut self.qs[p * pb..(p + 1) * pb];
        for (v, &code) in q.iter().enumerate() {
            let at = lane_pos(half, v);
            if self.kind == PackedKind::Q8_0 {
                dst[at] = code;
                continue;
            }
            let nib = code & 0x0F;
            if at < 32 {
                dst[at] |= nib;
            } else {
                dst[at - 32] |= nib << 4;
            }
            match self.kind {
                PackedKind::Q5_0 if code & 0x10 != 0 => dst[32 + at / 8] |= 1 << (at % 8),
                PackedKind::Q6K => dst[32 + at % 16] |= (code >> 4) << (2 * (at / 16)),
                _ => {}
            }
        }
    }

    /// Q4_1/Q5_0/Q8_0: the f16 scale (and Q4_1 minimum) of block `b`.
    fn put_half(&mut self, b: usize, d: u16, m: u16) {
        self.d16[(b / 2) * 2 + b % 2] = d;
        if self.kind == PackedKind::Q4_1 {
            self.m16[b] = m;
        }
    }
}

impl PackedMatrix {
    /// Zeroed storage for `n` rows of width `k`.
    fn alloc(kind: PackedKind, n: usize, k: usize) -> Self {
        let bpr = k / QK;
        let pairs = bpr.div_ceil(2);
        let kquant = matches!(kind, PackedKind::Q4K | PackedKind::Q6K);
        let mpad = if matches!(kind, PackedKind::Q4_1 | PackedKind::Q4K) {
            bpr.div_ceil(16) * 16
        } else {
            0
        };
        let sups = if kquant { bpr.div_ceil(16) * 2 } else { 0 };
        let len = n * pairs * kind.pair_bytes();
        let mut qs = super::quant::weight_vec::<u8>(len);
        qs.resize(len, 0);
        let half = matches!(kind, PackedKind::Q4_1 | PackedKind::Q5_0 | PackedKind::Q8_0);
        Self {
            kind,
            n,
            k,
            pairs,
            mpad,
            sups,
            qs,
            d16: vec![0; if half { n * pairs * 2 } else { 0 }],
            m16: vec![
                0;
                if kind == PackedKind::Q4_1 {
                    n * mpad
                } else {
                    0
                }
            ],
            sc: vec![0; n * pairs * kind.scale_bytes()],
            mins: vec![0; if kind == PackedKind::Q4K { n * mpad } else { 0 }],
            sup: vec![0.0; n * sups * 2],
        }
    }

    /// Fills every row with `f(row index, row storage)`, rows in parallel (repacking is most
    /// of a model's load time).
    fn fill(mut self, f: impl Fn(usize, &mut RowMut<'_>) + Sync) -> Self {
        use rayon::prelude::*;
        fn split<T>(v: &mut [T], n: usize) -> Vec<&mut [T]> {
            if v.is_empty() {
                (0..n).map(|_| Default::default()).collect()
            } else {
                v.chunks_mut(v.len() / n).collect()
            }
        }
        let n = self.n;
        if n == 0 {
            return self;
        }
        let kind = self.kind;
        let rows: Vec<RowMut<'_>> = split(&mut self.qs, n)
            .into_iter()
            .zip(split(&mut self.d16, n))
            .zip(split(&mut self.m16, n))
            .zip(split(&mut self.sc, n))
            .zip(split(&mut self.mins, n))
            .zip(split(&mut self.sup, n))
            .map(|(((((qs, d16), m16), sc), mins), sup)| RowMut {
                kind,
                qs,
                d16,
                m16,
                sc,
                mins,
                sup,
            })
            .collect();
        rows.into_par_iter()
            .enumerate()
            .for_each(|(r, mut row)| f(r, &mut row));
        self
    }

    /// From ggml Q4_1 blocks (row-major).
    pub fn from_q4_1(blocks: &[BlockQ4_1], n: usize, k: usize) -> Self {
        let bpr = k / QK;
        Self::alloc(PackedKind::Q4_1, n, k).fill(|r, row| {
            for i in 0..bpr {
                let x = &blocks[r * bpr + i];
                let q = std::array::from_fn(|j| {
                    if j < 16 {
                        x.qs[j] & 0x0F
                    } else {
                        x.qs[j - 16] >> 4
                    }
                });
                row.put_codes(i, &q);
                row.put_half(i, x.d, x.m);
            }
        })
    }

    /// From ggml Q5_0 blocks.
    pub fn from_q5_0(blocks: &[BlockQ5_0], n: usize, k: usize) -> Self {
        let bpr = k / QK;
        Self::alloc(PackedKind::Q5_0, n, k).fill(|r, row| {
            for i in 0..bpr {
                let x = &blocks[r * bpr + i];
                let q = std::array::from_fn(|j| (super::quant::q5_0_value(x, j) + 16) as u8);
                row.put_codes(i, &q);
                row.put_half(i, x.d, 0);
            }
        })
    }

    /// From ggml Q8_0 blocks.
    pub fn from_q8_0(blocks: &[BlockQ8_0], n: usize, k: usize) -> Self {
        let bpr = k / QK;
        Self::alloc(PackedKind::Q8_0, n, k).fill(|r, row| {
            for i in 0..bpr {
                let x = &blocks[r * bpr + i];
                let q = std::array::from_fn(|j| (x.qs[j] as i32 + 128) as u8);
                row.put_codes(i, &q);
                row.put_half(i, x.d, 0);
            }
        })
    }

    /// Super-blocks of `bytes` for an `n × k` K-quant matrix of `size`-byte super-blocks, or
    /// `None` if `k` is not a multiple of 256 or the bytes do not fit.
    fn super_blocks(bytes: &[u8], n: usize, k: usize, size: usize) -> Option<usize> {
        (k.is_multiple_of(QK_K) && bytes.len() == n * (k / QK_K) * size).then_some(k / QK_K)
    }

    /// From ggml Q4_K super-blocks (144 bytes per 256 values), exactly: sub-block `j` of a
    /// super-block has values `d·sc_j·q − dmin·m_j`. `None` if `k` is not a multiple of 256 or
    /// the bytes do not fit.
    pub fn from_q4_k(bytes: &[u8], n: usize, k: usize) -> Option<Self> {
        const BLOCK: usize = 144;
        let spr = Self::super_blocks(bytes, n, k, BLOCK)?;
        Some(Self::alloc(PackedKind::Q4K, n, k).fill(|r, row| {
            for s in 0..spr {
                let sb = &bytes[(r * spr + s) * BLOCK..][..BLOCK];
                row.sup[s * 2] = f16_to_f32(u16::from_le_bytes([sb[0], sb[1]]));
                row.sup[s * 2 + 1] = f16_to_f32(u16::from_le_bytes([sb[2], sb[3]]));
                let scales = &sb[4..16];
                for j in 0..8 {
                    let (sc, m) = if j < 4 {
                        (scales[j] & 63, scales[j + 4] & 63)
                    } else {
                        (
                            (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4),
                            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
                        )
                    };
                    let b = s * 8 + j;
                    row.sc[(b / 2) * 2 + b % 2] = sc;
                    row.mins[b] = m;
                    // Sub-blocks 2t and 2t+1 share 32 bytes: low nibbles, then high nibbles.
                    let q = &sb[16 + (j / 2) * 32..][..32];
                    let high = j % 2 == 1;
                    let codes = std::array::from_fn(|l| if high { q[l] >> 4 } else { q[l] & 0x0F });
                    row.put_codes(b, &codes);
                }
            }
        }))
    }

    /// From ggml Q6_K super-blocks (210 bytes per 256 values: 128 bytes of low nibbles, 64 of
    /// two-bit high parts, 16 signed scales, f16 d), exactly: values `d·sc_{j/16}·(q − 32)`.
    /// `None` if `k` is not a multiple of 256 or the bytes do not fit.
    pub fn from_q6_k(bytes: &[u8], n: usize, k: usize) -> Option<Self> {
        const BLOCK: usize = 210;
        let spr = Self::super_blocks(bytes, n, k, BLOCK)?;
        Some(Self::alloc(PackedKind::Q6K, n, k).fill(|r, row| {
            for s in 0..spr {
                let sb = &bytes[(r * spr + s) * BLOCK..][..BLOCK];
                let (ql, qh, scales) = (&sb[..128], &sb[128..192], &sb[192..208]);
                row.sup[s * 2] = f16_to_f32(u16::from_le_bytes([sb[208], sb[209]]));
                for j in 0..8 {
                    let b = s * 8 + j;
                    let codes = std::array::from_fn(|v| {
                        let x = j * 32 + v;
                        let (half, l, g) = (x / 128, x % 32, (x % 128) / 32);
                        let low = ql[half * 64 + l + (g & 1) * 32];
                        let nib = if g >= 2 { low >> 4 } else { low & 0x0F };
                        nib | ((qh[half * 32 + l] >> (2 * g)) & 3) << 4
                    });
                    row.put_codes(b, &codes);
                    for sub in 0..2 {
                        row.sc[(b / 2) * 4 + 2 * sub + b % 2] = scales[2 * j + sub];
                    }
                }
            }
        }))
    }

    /// The format's name (for reports).
    pub fn format(&self) -> &'static str {
        match self.kind {
            PackedKind::Q4_1 => "q4_1x2",
            PackedKind::Q5_0 => "q5_0x2",
            PackedKind::Q8_0 => "q8_0x2",
            PackedKind::Q4K => "q4_kx2",
            PackedKind::Q6K => "q6_kx2",
        }
    }

    /// Bytes the kernels read for one pass over the matrix (codes and scales).
    pub fn bytes(&self) -> usize {
        self.qs.len()
            + 2 * (self.d16.len() + self.m16.len())
            + self.sc.len()
            + self.mins.len()
            + 4 * self.sup.len()
    }

    /// Code `v` of block `b` of row `r`.
    fn code(&self, r: usize, b: usize, v: usize) -> i32 {
        let pb = self.kind.pair_bytes();
        let src = &self.qs[(r * self.pairs + b / 2) * pb..][..pb];
        let at = lane_pos(b % 2, v);
        if self.kind == PackedKind::Q8_0 {
            return src[at] as i32;
        }
        let nib = if at < 32 {
            src[at] & 0x0F
        } else {
            src[at - 32] >> 4
        } as i32;
        match self.kind {
            PackedKind::Q5_0 => nib | (((src[32 + at / 8] >> (at % 8)) & 1) as i32) << 4,
            PackedKind::Q6K => nib | (((src[32 + at % 16] >> (2 * (at / 16))) & 3) as i32) << 4,
            _ => nib,
        }
    }

    /// The scale of value `v` of block `b` of row `r` (as the kernels form it).
    fn scale(&self, r: usize, b: usize, v: usize) -> f32 {
        let (p, half) = (b / 2, b % 2);
        let d = self.sup.get((r * self.sups + p / 4) * 2).copied();
        match self.kind {
            PackedKind::Q4K => self.sc[(r * self.pairs + p) * 2 + half] as f32 * d.unwrap_or(0.0),
            PackedKind::Q6K => {
                let s = self.sc[(r * self.pairs + p) * 4 + 2 * (v / 16) + half] as i8;
                s as f32 * d.unwrap_or(0.0)
            }
            _ => f16_to_f32(self.d16[(r * self.pairs + p) * 2 + half]),
        }
    }

    /// The minimum of block `b` of row `r` (Q4_1, Q4_K; zero for the other formats).
    fn min(&self, r: usize, b: usize) -> f32 {
        match self.kind {
            PackedKind::Q4_1 => f16_to_f32(self.m16[r * self.mpad + b]),
            PackedKind::Q4K => {
                -(self.sup[(r * self.sups + b / 8) * 2 + 1] * self.mins[r * self.mpad + b] as f32)
            }
            _ => 0.0,
        }
    }

    /// Writes row `r` as f32 (the same values ggml's dequantization gives).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let off = self.kind.offset();
        for (b, chunk) in out.chunks_exact_mut(QK).enumerate() {
            let m = self.min(r, b);
            for (v, o) in chunk.iter_mut().enumerate() {
                let (d, q) = (self.scale(r, b, v), self.code(r, b, v));
                *o = match self.kind {
                    // ggml: d·q + m (Q4_1), d·q − dmin·m (Q4_K).
                    PackedKind::Q4_1 | PackedKind::Q4K => d * q as f32 + m,
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
    /// Per row: `mpad` values of d·Σq (the minimum terms), zero past the last block.
    s: Vec<f32>,
    /// 16 per slot: −16·(sum of each lane's four values) (Q5_0's offset).
    c16: Vec<i32>,
    /// The same with −32 (Q6_K's offset).
    c32: Vec<i32>,
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
            c32: vec![0; slots * 16],
            c128: vec![0; slots * 16],
        };
        let ptrs = (
            a.qs.as_mut_ptr() as usize,
            a.da.as_mut_ptr() as usize,
            a.s.as_mut_ptr() as usize,
            [
                a.c16.as_mut_ptr() as usize,
                a.c32.as_mut_ptr() as usize,
                a.c128.as_mut_ptr() as usize,
            ],
        );
        pool.run(m, &|i| {
            // SAFETY: task i writes only row i's slots of each buffer, all sized above.
            let (qs, da, s) = (ptrs.0 as *mut i8, ptrs.1 as *mut f32, ptrs.2 as *mut f32);
            let c = ptrs.3.map(|p| p as *mut i32);
            let mut blocks = vec![ActBlock::default(); pairs * 2];
            quantize_row(&x[i * k..(i + 1) * k], &mut blocks[..bpr]);
            for p in 0..pairs {
                let (b0, b1) = (&blocks[2 * p], &blocks[2 * p + 1]);
                let at = slot(pairs, i, p);
                // SAFETY: slot `at` of each buffer belongs to this row (see above).
                unsafe {
                    *da.add(at * 2) = b0.d;
                    *da.add(at * 2 + 1) = b1.d;
                    let c = c.map(|c| c.add(at * 16));
                    #[cfg(target_arch = "x86_64")]
                    if vbmi() {
                        x86::arrange(b0, b1, qs.add(at * 64), c);
                        continue;
                    }
                    let dst = std::slice::from_raw_parts_mut(qs.add(at * 64), 64);
                    for (j, &g) in GATHER.iter().enumerate() {
                        let g = g as usize;
                        dst[j] = if g < 32 { b0.qs[g] } else { b1.qs[g - 32] };
                    }
                    for l in 0..16 {
                        let sum: i32 = dst[4 * l..4 * l + 4].iter().map(|&v| v as i32).sum();
                        for (c, off) in c.iter().zip([16, 32, 128]) {
                            *c.add(l) = -off * sum;
                        }
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

/// Calls `$f::<…, K>` with the matrix's format as the const parameter `K`.
macro_rules! by_kind {
    ($kind:expr, $f:ident $(::<$n:ident>)?, $($arg:expr),*) => {
        match $kind {
            PackedKind::Q4_1 => x86::$f::<$($n,)? Q4_1>($($arg),*),
            PackedKind::Q5_0 => x86::$f::<$($n,)? Q5_0>($($arg),*),
            PackedKind::Q8_0 => x86::$f::<$($n,)? Q8_0>($($arg),*),
            PackedKind::Q4K => x86::$f::<$($n,)? Q4K>($($arg),*),
            PackedKind::Q6K => x86::$f::<$($n,)? Q6K>($($arg),*),
        }
    };
}

impl Tiles for PackedTiles<'_> {
    #[inline]
    fn rows<const N: usize>(&self, r: usize, i: usize) -> [f32; N] {
        let mut v = [0f32; N];
        // SAFETY: `available()` gated building the matrix; the schedule passes in-bounds rows
        // and never lets a tile cross a 16-row activation group.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            by_kind!(self.w.kind, dotn::<N>, self.w, r, self.a, i, &mut v)
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
            by_kind!(self.w.kind, rows4, self.w, r, self.a, i, &mut v)
        };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("packed matrices are only built where available() holds ({r}, {i})");
        #[allow(unreachable_code)]
        v
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{PackedActs, PackedMatrix, Q4K, Q4_1, Q5_0, Q6K, Q8_0};
    use std::arch::x86_64::*;

    /// The 16-bit-lane mask selecting the upper 256 bits.
    const UPPER: __mmask32 = 0xFFFF_0000;

    /// Writes one activation block pair in lane order (one byte permute) and its offset
    /// corrections for offsets 16, 32 and 128 (four-value sums by one `vpdpbusd` against ones).
    ///
    /// # Safety
    /// AVX-512 VBMI/VNNI present; `qs` has 64 bytes, each of `c` 16 values.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni,avx2")]
    pub unsafe fn arrange(
        b0: &super::ActBlock,
        b1: &super::ActBlock,
        qs: *mut i8,
        c: [*mut i32; 3],
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
            c[0] as *mut _,
            _mm512_sub_epi32(zero, _mm512_slli_epi32::<4>(sums)),
        );
        _mm512_storeu_si512(
            c[1] as *mut _,
            _mm512_sub_epi32(zero, _mm512_slli_epi32::<5>(sums)),
        );
        _mm512_storeu_si512(
            c[2] as *mut _,
            _mm512_sub_epi32(zero, _mm512_slli_epi32::<7>(sums)),
        );
    }

    /// A pair's 64 unsigned codes in lane order.
    #[inline(always)]
    unsafe fn unpack<const K: u8>(p: *const u8) -> __m512i {
        if K == Q8_0 {
            return _mm512_loadu_si512(p as *const _);
        }
        let x = _mm512_broadcast_i64x4(_mm256_loadu_si256(p as *const __m256i));
        let x = _mm512_mask_srli_epi16(x, UPPER, x, 4);
        let q = _mm512_and_si512(x, _mm512_set1_epi8(0x0F));
        if K == Q5_0 {
            let fifth = (p.add(32) as *const u64).read_unaligned();
            _mm512_mask_add_epi8(q, fifth, q, _mm512_set1_epi8(16))
        } else if K == Q6K {
            // Byte j's high part sits in byte 32 + j % 16 at bits 2·(j / 16).
            let h = _mm512_broadcast_i32x4(_mm_loadu_si128(p.add(32) as *const __m128i));
            let h = _mm512_srlv_epi64(h, _mm512_set_epi64(6, 6, 4, 4, 2, 2, 0, 0));
            let h = _mm512_slli_epi16::<4>(_mm512_and_si512(h, _mm512_set1_epi8(3)));
            _mm512_or_si512(q, h)
        } else {
            q
        }
    }

    /// Weight row `r`'s scales for pair `p`, one per dword lane.
    #[inline(always)]
    unsafe fn wscale<const K: u8>(w: &PackedMatrix, r: usize, p: usize) -> __m512 {
        if K == Q4K || K == Q6K {
            let d = _mm512_set1_ps(*w.sup.as_ptr().add((r * w.sups + p / 4) * 2));
            let s = if K == Q4K {
                let s = (w.sc.as_ptr().add((r * w.pairs + p) * 2) as *const u16).read_unaligned();
                _mm512_cvtepu8_epi32(_mm_set1_epi16(s as i16))
            } else {
                let s = (w.sc.as_ptr().add((r * w.pairs + p) * 4) as *const u32).read_unaligned();
                _mm512_cvtepi8_epi32(_mm_set1_epi32(s as i32))
            };
            _mm512_mul_ps(_mm512_cvtepi32_ps(s), d)
        } else {
            let h = (w.d16.as_ptr().add((r * w.pairs + p) * 2) as *const u32).read_unaligned();
            _mm512_cvtph_ps(_mm256_set1_epi32(h as i32))
        }
    }

    /// How far ahead of the kernels' reads the weight stream is prefetched (bytes). Without it
    /// the batch-1 path waits on memory at a third of the machine's read bandwidth (four
    /// interleaved row streams defeat the hardware prefetcher): Qwen2.5-0.5B batch-1 decode went
    /// from 63 to 85 tok/s on the 2-core reference machine (4096: 83, 16384: 85).
    const PREFETCH: usize = 8192;

    /// Prefetches the cache lines of `bytes` bytes from `at` (an address that may lie past the
    /// matrix: prefetches never fault).
    #[inline(always)]
    unsafe fn prefetch(at: *const u8, bytes: usize) {
        let mut o = 0;
        while o < bytes {
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(o) as *const i8);
            o += 64;
        }
    }

    #[inline(always)]
    unsafe fn pair2(p: *const f32) -> __m512 {
        _mm512_castpd_ps(_mm512_set1_pd((p as *const f64).read_unaligned()))
    }

    #[inline(always)]
    unsafe fn init<const K: u8>(a: &PackedActs, at: usize) -> __m512i {
        let at = at * 16;
        match K {
            Q5_0 => _mm512_loadu_si512(a.c16.as_ptr().add(at) as *const _),
            Q6K => _mm512_loadu_si512(a.c32.as_ptr().add(at) as *const _),
            Q8_0 => _mm512_loadu_si512(a.c128.as_ptr().add(at) as *const _),
            _ => _mm512_setzero_si512(),
        }
    }

    /// One (block pair, activation row) step: the per-row arithmetic every kernel shares.
    #[inline(always)]
    unsafe fn step<const K: u8>(
        acc: __m512,
        wq: __m512i,
        dw: __m512,
        a: &PackedActs,
        at: usize,
    ) -> __m512 {
        let qy = _mm512_loadu_si512(a.qs.as_ptr().add(at * 64) as *const _);
        let dot = _mm512_dpbusd_epi32(init::<K>(a, at), wq, qy);
        let da = pair2(a.da.as_ptr().add(at * 2));
        _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot), da), dw, acc)
    }

    /// Adds the minimum terms (Q4_1, Q4_K) and reduces the 16 lanes in a fixed order.
    #[inline(always)]
    unsafe fn finish<const K: u8>(
        mut acc: __m512,
        w: &PackedMatrix,
        r: usize,
        a: &PackedActs,
        i: usize,
    ) -> f32 {
        let sa = a.s.as_ptr().add(i * a.mpad);
        if K == Q4_1 {
            let mw = w.m16.as_ptr().add(r * w.mpad);
            for c in (0..w.mpad).step_by(16) {
                let m = _mm512_cvtph_ps(_mm256_loadu_si256(mw.add(c) as *const __m256i));
                acc = _mm512_fmadd_ps(m, _mm512_loadu_ps(sa.add(c)), acc);
            }
        } else if K == Q4K {
            let mins = w.mins.as_ptr().add(r * w.mpad);
            let sup = w.sup.as_ptr().add(r * w.sups * 2);
            for c in (0..w.mpad).step_by(16) {
                // Blocks c..c+16 are super-blocks c/8 and c/8 + 1.
                let dmin = _mm512_mask_blend_ps(
                    0xFF00,
                    _mm512_set1_ps(*sup.add(c / 8 * 2 + 1)),
                    _mm512_set1_ps(*sup.add(c / 8 * 2 + 3)),
                );
                let m = _mm512_cvtepu8_epi32(_mm_loadu_si128(mins.add(c) as *const __m128i));
                let m = _mm512_mul_ps(_mm512_cvtepi32_ps(m), dmin);
                acc = _mm512_fnmadd_ps(m, _mm512_loadu_ps(sa.add(c)), acc);
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
    pub unsafe fn dotn<const N: usize, const K: u8>(
        w: &PackedMatrix,
        r: usize,
        a: &PackedActs,
        i: usize,
        out: &mut [f32; N],
    ) {
        let pb = const { super::PackedKind::ALL[K as usize].pair_bytes() };
        let mut acc = [_mm512_setzero_ps(); N];
        let wq_row = w.qs.as_ptr().add(r * w.pairs * pb);
        let first = super::slot(a.pairs, i, 0);
        // Later tiles of the same weight rows find them in cache.
        let first_tile = i == 0;
        for p in 0..w.pairs {
            if first_tile {
                prefetch(wq_row.wrapping_add(p * pb + PREFETCH), pb);
            }
            let wq = unpack::<K>(wq_row.add(p * pb));
            let dw = wscale::<K>(w, r, p);
            let base = first + p * super::GROUP;
            for (j, acc) in acc.iter_mut().enumerate() {
                *acc = step::<K>(*acc, wq, dw, a, base + j);
            }
        }
        for (j, acc) in acc.into_iter().enumerate() {
            out[j] = finish::<K>(acc, w, r, a, i + j);
        }
    }

    /// Weight rows `r..r+4` against activation row `i` (the batch-1 path).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
    pub unsafe fn rows4<const K: u8>(
        w: &PackedMatrix,
        r: usize,
        a: &PackedActs,
        i: usize,
        out: &mut [f32; 4],
    ) {
        let pb = const { super::PackedKind::ALL[K as usize].pair_bytes() };
        let mut acc = [_mm512_setzero_ps(); 4];
        let first = super::slot(a.pairs, i, 0);
        // Rows r..r+4 are one contiguous run, and the next call takes the next four: the
        // stream ahead advances by four pairs' bytes per pair.
        let ahead = w.qs.as_ptr().wrapping_add(r * w.pairs * pb + PREFETCH);
        for p in 0..w.pairs {
            prefetch(ahead.wrapping_add(p * 4 * pb), 4 * pb);
            let base = first + p * super::GROUP;
            for (j, acc) in acc.iter_mut().enumerate() {
                let wq = unpack::<K>(w.qs.as_ptr().add(((r + j) * w.pairs + p) * pb));
                let dw = wscale::<K>(w, r + j, p);
                *acc = step::<K>(*acc, wq, dw, a, base);
            }
        }
        for (j, acc) in acc.into_iter().enumerate() {
            out[j] = finish::<K>(acc, w, r + j, a, i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cpu::quant::blocks_from_bytes;
    use crate::engine::sampling::SplitMix64;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    #[test]
    fn lane_positions_are_a_permutation() {
        let mut seen = [false; 64];
        for b in 0..2 {
            for v in 0..32 {
                let p = lane_pos(b, v);
                assert!(!seen[p]);
                seen[p] = true;
                assert_eq!((p / 4) % 2, b, "lane parity names the block");
                assert_eq!((p / 4) % 4 / 2, v / 16, "lane bit 1 names the half block");
            }
        }
    }

    /// A random `n × k` matrix quantized by candle (ggml's reference) to `dtype`, packed, and
    /// candle's dequantization of it.
    fn quantized(dtype: GgmlDType, n: usize, k: usize, seed: u64) -> (PackedMatrix, Vec<f32>) {
        let mut rng = SplitMix64::new(seed);
        // Rows of different magnitudes, so sub-block scales differ.
        let w: Vec<f32> = (0..n * k)
            .map(|i| (rng.next_f64() as f32 * 2.0 - 0.7) * (1.0 + (i / 16 % 7) as f32))
            .collect();
        let t = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
        let qt = QTensor::quantize(&t, dtype).unwrap();
        let deq = qt
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let raw = qt.data().unwrap().into_owned();
        let p = match dtype {
            GgmlDType::Q4_1 => PackedMatrix::from_q4_1(&blocks_from_bytes(&raw).unwrap(), n, k),
            GgmlDType::Q5_0 => PackedMatrix::from_q5_0(&blocks_from_bytes(&raw).unwrap(), n, k),
            GgmlDType::Q8_0 => PackedMatrix::from_q8_0(&blocks_from_bytes(&raw).unwrap(), n, k),
            GgmlDType::Q4K => PackedMatrix::from_q4_k(&raw, n, k).unwrap(),
            GgmlDType::Q6K => PackedMatrix::from_q6_k(&raw, n, k).unwrap(),
            _ => unreachable!(),
        };
        (p, deq)
    }

    const DTYPES: [GgmlDType; 5] = [
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q8_0,
        GgmlDType::Q4K,
        GgmlDType::Q6K,
    ];

    /// Packing keeps every weight: the packed matrix dequantizes to exactly ggml's values.
    #[test]
    fn every_format_dequantizes_to_ggml_values() {
        for dtype in DTYPES {
            let (n, k) = (5, 768);
            let (w, deq) = quantized(dtype, n, k, 3);
            let mut row = vec![0f32; k];
            for r in 0..n {
                w.dequantize_row(r, &mut row);
                assert_eq!(&row[..], &deq[r * k..(r + 1) * k], "{dtype:?} row {r}");
            }
        }
    }

    /// Every tile shape gives bit-identical rows, and the result equals the dequantized weights
    /// times the dequantized activations up to f32 rounding.
    #[test]
    fn every_tiling_is_bit_identical_and_correct() {
        if !available() {
            return;
        }
        let pool = Pool::new(2);
        // 23 rows exercise 16-, 4- and 1-row tiles; 13 weight rows the four-row and single-row
        // batch-1 paths. 7 blocks per row (an odd count: a padded half pair) for the ggml
        // formats, 3 super-blocks (an odd count: padded minimums) for the K-quants.
        let (n, m) = (13, 23);
        for dtype in DTYPES {
            let k = if matches!(dtype, GgmlDType::Q4K | GgmlDType::Q6K) {
                3 * QK_K
            } else {
                7 * QK
            };
            let mut rng = SplitMix64::new(4);
            let x: Vec<f32> = (0..m * k)
                .map(|_| rng.next_f64() as f32 * 2.0 - 1.0)
                .collect();
            let (w, deq) = quantized(dtype, n, k, 7);
            let a = PackedActs::new(&pool, &x, m, k);
            let mut out = vec![0f32; m * n];
            w.matmul(&pool, &a, &mut out);
            let mut blocks = vec![ActBlock::default(); k / QK];
            for i in 0..m {
                let one = PackedActs::new(&pool, &x[i * k..(i + 1) * k], 1, k);
                let mut single = vec![0f32; n];
                w.matmul(&pool, &one, &mut single);
                assert_eq!(&single[..], &out[i * n..(i + 1) * n], "{dtype:?} row {i}");
                quantize_row(&x[i * k..(i + 1) * k], &mut blocks);
                for r in 0..n {
                    let row = &deq[r * k..(r + 1) * k];
                    // The kernels' decomposition, in f64: Σ (w − min)·a + min·s, where s is
                    // the activation block's f16-rounded d·Σq (as in ggml).
                    let want: f64 = blocks
                        .iter()
                        .enumerate()
                        .map(|(b, blk)| {
                            let min = w.min(r, b) as f64;
                            (0..QK)
                                .map(|v| {
                                    (row[b * QK + v] as f64 - min) * blk.d as f64 * blk.qs[v] as f64
                                })
                                .sum::<f64>()
                                + min * blk.s as f64
                        })
                        .sum();
                    let got = out[i * n + r] as f64;
                    assert!(
                        (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                        "{dtype:?} ({i},{r}): {got} vs {want}"
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
                    assert_eq!(a.c32[at * 16 + l], -32 * sum);
                    assert_eq!(a.c128[at * 16 + l], -128 * sum);
                }
            }
            for (b, blk) in blocks[..5].iter().enumerate() {
                assert_eq!(a.s[i * a.mpad + b], blk.s);
            }
        }
    }

    /// Scales are stored as narrow as the file has them: the packed matrices are within a few
    /// bytes per row of ggml's own sizes.
    #[test]
    fn packed_sizes_match_the_file_formats() {
        let (n, k) = (8, 4 * QK_K);
        for (dtype, ggml_bits) in DTYPES.into_iter().zip([5.0, 5.5, 8.5, 4.5, 6.5625]) {
            let (w, _) = quantized(dtype, n, k, 1);
            let bits = w.bytes() as f64 * 8.0 / (n * k) as f64;
            assert!(
                bits >= ggml_bits && bits <= ggml_bits + 0.26,
                "{dtype:?}: {bits} bits per weight vs ggml's {ggml_bits}"
            );
        }
    }

    #[test]
    fn k_quants_reject_widths_that_are_not_whole_super_blocks() {
        assert!(PackedMatrix::from_q4_k(&[0; 144], 1, 128).is_none());
        assert!(PackedMatrix::from_q6_k(&[0; 210], 1, 128).is_none());
        assert!(PackedMatrix::from_q6_k(&[0; 209], 1, 256).is_none());
    }
}
