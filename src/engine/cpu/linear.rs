//! Weight matrices in a CPU-friendly format and the batched matmul over them.
//!
//! Q4_1, Q5_0 and Q8_0 (the formats of both shipped files' big matrices) are kept byte for byte;
//! so are Q4_K and Q6_K (Qwen's ffn_down) where the packed AVX-512 kernels run. Any other
//! quantized format (and the K-quants on the AVX2 path) is converted to Q8_0 at load, which is
//! near-lossless and runs on the fastest kernel; f32/f16 weights stay f32.

use super::dot::{dot_q4_1, dot_q5_0, dot_q8_0, dot_rows4, dotn, WeightRow, WeightRows4};
use super::packed::{self, PackedActs, PackedMatrix};
use super::pool::Pool;
use super::quant::{
    blocks_from_bytes, dequant_q4_1, dequant_q5_0, dequant_q8_0, quantize_q8_0, quantize_row,
    ActBlock, BlockQ4_1, BlockQ5_0, BlockQ8_0, QK,
};
use super::tiling::{self, Tiles};
use candle_core::quantized::{GgmlDType, QTensor};
use std::sync::OnceLock;

/// Weight storage.
pub enum Weights {
    /// ggml Q4_1 blocks, row-major.
    Q4_1(Vec<BlockQ4_1>),
    /// ggml Q5_0 blocks, row-major.
    Q5_0(Vec<BlockQ5_0>),
    /// ggml Q8_0 blocks, row-major.
    Q8_0(Vec<BlockQ8_0>),
    /// Plain f32, row-major.
    F32(Vec<f32>),
    /// Repacked for the AVX-512 VNNI kernels (see [`super::packed`]).
    Packed(PackedMatrix),
}

/// An `n × k` weight matrix (n outputs, k inputs) computing `y = x · Wᵀ`.
pub struct QMatrix {
    /// Output features (rows).
    pub n: usize,
    /// Input features (columns).
    pub k: usize,
    w: Weights,
}

/// Activations `m × k`, with their block quantization computed once and reused by every matrix
/// that reads the same input (Q, K and V; gate and up).
pub struct Acts<'a> {
    /// The f32 rows.
    pub x: &'a [f32],
    /// Rows.
    pub m: usize,
    /// Columns.
    pub k: usize,
    pool: &'a Pool,
    q: OnceLock<Vec<ActBlock>>,
    packed: OnceLock<PackedActs>,
}

impl<'a> Acts<'a> {
    /// `m` rows of `x`; each quantized form is computed on first use (parallel over rows).
    pub fn new(pool: &'a Pool, x: &'a [f32], m: usize, k: usize) -> Self {
        Self {
            x,
            m,
            k,
            pool,
            q: OnceLock::new(),
            packed: OnceLock::new(),
        }
    }

    fn blocks(&self) -> &[ActBlock] {
        self.q.get_or_init(|| {
            let (m, k, x) = (self.m, self.k, self.x);
            let bpr = k / QK;
            let mut q = vec![ActBlock::default(); m * bpr];
            if k.is_multiple_of(QK) {
                let qp = q.as_mut_ptr() as usize;
                self.pool.run(m, &|i| {
                    // SAFETY: each task writes its own row of blocks.
                    let row = unsafe {
                        std::slice::from_raw_parts_mut((qp as *mut ActBlock).add(i * bpr), bpr)
                    };
                    quantize_row(&x[i * k..(i + 1) * k], row);
                });
            }
            q
        })
    }

    fn packed(&self) -> &PackedActs {
        self.packed
            .get_or_init(|| PackedActs::new(self.pool, self.x, self.m, self.k))
    }

    fn row(&self, i: usize) -> &[ActBlock] {
        let bpr = self.k / QK;
        &self.blocks()[i * bpr..(i + 1) * bpr]
    }
}

impl QMatrix {
    /// Converts a candle quantized tensor of shape `(n, k)`.
    pub fn from_qtensor(t: &QTensor) -> candle_core::Result<Self> {
        let (n, k) = t.shape().dims2()?;
        let raw = || t.data().map(|c| c.into_owned());
        let bad = || {
            candle_core::Error::Msg(format!(
                "tensor bytes do not form whole {:?} blocks",
                t.dtype()
            ))
        };
        let w = match t.dtype() {
            GgmlDType::Q4_1 => Weights::Q4_1(blocks_from_bytes(&raw()?).ok_or_else(bad)?),
            GgmlDType::Q5_0 => Weights::Q5_0(blocks_from_bytes(&raw()?).ok_or_else(bad)?),
            GgmlDType::Q8_0 => Weights::Q8_0(blocks_from_bytes(&raw()?).ok_or_else(bad)?),
            // Exact in the packed form (the AVX2 path converts them to Q8_0 below).
            GgmlDType::Q4K if packed::available() && k.is_multiple_of(256) => {
                Weights::Packed(PackedMatrix::from_q4_k(&raw()?, n, k).ok_or_else(bad)?)
            }
            GgmlDType::Q6K if packed::available() && k.is_multiple_of(256) => {
                Weights::Packed(PackedMatrix::from_q6_k(&raw()?, n, k).ok_or_else(bad)?)
            }
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => Weights::F32(
                t.dequantize(&candle_core::Device::Cpu)?
                    .flatten_all()?
                    .to_vec1()?,
            ),
            _ if k % QK == 0 => {
                let f = t
                    .dequantize(&candle_core::Device::Cpu)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                Weights::Q8_0(quantize_q8_0(&f))
            }
            _ => Weights::F32(
                t.dequantize(&candle_core::Device::Cpu)?
                    .flatten_all()?
                    .to_vec1()?,
            ),
        };
        if !packed::available() {
            return Ok(Self { n, k, w });
        }
        let w = match w {
            Weights::Q4_1(b) => Weights::Packed(PackedMatrix::from_q4_1(&b, n, k)),
            Weights::Q5_0(b) => Weights::Packed(PackedMatrix::from_q5_0(&b, n, k)),
            Weights::Q8_0(b) => Weights::Packed(PackedMatrix::from_q8_0(&b, n, k)),
            w => w,
        };
        Ok(Self { n, k, w })
    }

    /// A dense f32 `n × k` matrix (row-major), kept as f32.
    pub fn from_f32(n: usize, k: usize, w: Vec<f32>) -> Self {
        assert_eq!(w.len(), n * k, "from_f32: {} values for {n} × {k}", w.len());
        Self {
            n,
            k,
            w: Weights::F32(w),
        }
    }

    /// The storage format's name (for reports).
    pub fn format(&self) -> &'static str {
        match self.w {
            Weights::Q4_1(_) => "q4_1",
            Weights::Q5_0(_) => "q5_0",
            Weights::Q8_0(_) => "q8_0",
            Weights::F32(_) => "f32",
            Weights::Packed(ref p) => p.format(),
        }
    }

    /// Bytes one pass over the matrix reads (codes and scales; what a batch-1 decode step
    /// costs in memory traffic).
    pub fn bytes(&self) -> usize {
        match &self.w {
            Weights::Q4_1(b) => std::mem::size_of_val(&b[..]),
            Weights::Q5_0(b) => std::mem::size_of_val(&b[..]),
            Weights::Q8_0(b) => std::mem::size_of_val(&b[..]),
            Weights::F32(v) => std::mem::size_of_val(&v[..]),
            Weights::Packed(p) => p.bytes(),
        }
    }

    /// Writes row `r` as f32 (embedding lookup).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let (bpr, k) = (self.k / QK, self.k);
        match &self.w {
            Weights::Q4_1(b) => dequant_q4_1(&b[r * bpr..(r + 1) * bpr], out),
            Weights::Q5_0(b) => dequant_q5_0(&b[r * bpr..(r + 1) * bpr], out),
            Weights::Q8_0(b) => dequant_q8_0(&b[r * bpr..(r + 1) * bpr], out),
            Weights::F32(w) => out.copy_from_slice(&w[r * k..(r + 1) * k]),
            Weights::Packed(p) => p.dequantize_row(r, out),
        }
    }

    #[inline]
    fn dot_row(&self, r: usize, a: &Acts<'_>, i: usize) -> f32 {
        let bpr = self.k / QK;
        let blocks = r * bpr..(r + 1) * bpr;
        match &self.w {
            Weights::Q4_1(b) => dot_q4_1(&b[blocks], a.row(i)),
            Weights::Q5_0(b) => dot_q5_0(&b[blocks], a.row(i)),
            Weights::Q8_0(b) => dot_q8_0(&b[blocks], a.row(i)),
            Weights::F32(w) => super::vmath::dot(
                &w[r * self.k..(r + 1) * self.k],
                &a.x[i * self.k..(i + 1) * self.k],
            ),
            Weights::Packed(_) => unreachable!("packed matrices run PackedMatrix::matmul"),
        }
    }

    /// Row `r` against activation rows `i..i+N`; bit-identical to `N` [`Self::dot_row`] calls.
    #[inline]
    fn dot_rown<const N: usize>(&self, r: usize, a: &Acts<'_>, i: usize) -> [f32; N] {
        let bpr = self.k / QK;
        let blocks = r * bpr..(r + 1) * bpr;
        let rows = || -> [&[ActBlock]; N] { std::array::from_fn(|j| a.row(i + j)) };
        let mut out = [0f32; N];
        match &self.w {
            Weights::Q4_1(b) => dotn(WeightRow::Q4_1(&b[blocks]), rows(), &mut out),
            Weights::Q5_0(b) => dotn(WeightRow::Q5_0(&b[blocks]), rows(), &mut out),
            Weights::Q8_0(b) => dotn(WeightRow::Q8_0(&b[blocks]), rows(), &mut out),
            Weights::F32(_) | Weights::Packed(_) => {
                out = std::array::from_fn(|j| self.dot_row(r, a, i + j))
            }
        }
        out
    }

    /// Rows `r..r+4` against activation row `i`; bit-identical to four [`Self::dot_row`] calls.
    #[inline]
    fn dot_rows4(&self, r: usize, a: &Acts<'_>, i: usize) -> [f32; 4] {
        let bpr = self.k / QK;
        let rows = |j: usize| (r + j) * bpr..(r + j + 1) * bpr;
        let mut out = [0f32; 4];
        match &self.w {
            Weights::Q4_1(b) => dot_rows4(
                WeightRows4::Q4_1(std::array::from_fn(|j| &b[rows(j)])),
                a.row(i),
                &mut out,
            ),
            Weights::Q5_0(b) => dot_rows4(
                WeightRows4::Q5_0(std::array::from_fn(|j| &b[rows(j)])),
                a.row(i),
                &mut out,
            ),
            Weights::Q8_0(b) => dot_rows4(
                WeightRows4::Q8_0(std::array::from_fn(|j| &b[rows(j)])),
                a.row(i),
                &mut out,
            ),
            Weights::F32(_) | Weights::Packed(_) => {
                out = std::array::from_fn(|j| self.dot_row(r + j, a, i))
            }
        }
        out
    }

    /// `out (m × n) = acts (m × k) · Wᵀ` on the shared schedule ([`tiling::run`]): tiles of 16
    /// activation rows (8 for Q4_1, whose extra minimum term makes 16-row tiles spill
    /// registers), then 4, then single rows against four weight rows at a time.
    pub fn matmul(&self, pool: &Pool, a: &Acts<'_>, out: &mut [f32]) {
        assert_eq!(
            a.k, self.k,
            "matmul: activation width {} vs weight width {}",
            a.k, self.k
        );
        if let Weights::Packed(p) = &self.w {
            return p.matmul(pool, a.packed(), out);
        }
        // Quantize before the tasks start (the pool cannot run a nested job); f32 weights take
        // the f32 rows as they are.
        if !matches!(self.w, Weights::F32(_)) {
            a.blocks();
        }
        let tiles = GgmlTiles { w: self, a };
        match self.w {
            Weights::Q4_1(_) => tiling::run::<8>(&tiles, pool, self.n, a.m, out),
            _ => tiling::run::<16>(&tiles, pool, self.n, a.m, out),
        }
    }
}

/// The ggml-layout kernels against one set of activations.
struct GgmlTiles<'a, 'x> {
    w: &'a QMatrix,
    a: &'a Acts<'x>,
}

impl Tiles for GgmlTiles<'_, '_> {
    #[inline]
    fn rows<const N: usize>(&self, r: usize, i: usize) -> [f32; N] {
        self.w.dot_rown::<N>(r, self.a, i)
    }

    #[inline]
    fn four_weights(&self, r: usize, i: usize) -> [f32; 4] {
        self.w.dot_rows4(r, self.a, i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sampling::SplitMix64;
    use candle_core::{Device, Tensor};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut r = SplitMix64::new(seed);
        (0..n).map(|_| r.next_f64() as f32 * 2.0 - 1.0).collect()
    }

    /// Every format's matmul against dequantized f32 math, and row independence (a row's result
    /// does not depend on which other rows share the call).
    #[test]
    fn matmul_matches_dequantized_reference_for_every_format() {
        let (n, k, m) = (40, 96, 5);
        let pool = Pool::new(2);
        for dtype in [
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q8_0,
            GgmlDType::F32,
            GgmlDType::Q4_0,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
        ] {
            // K-quants need whole 256-value super-blocks.
            let k = if matches!(dtype, GgmlDType::Q4K | GgmlDType::Q6K) {
                256
            } else {
                k
            };
            let w = random(n * k, 1);
            let x = random(m * k, 2);
            let t = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap();
            let qt = QTensor::quantize(&t, dtype).unwrap();
            let deq = qt
                .dequantize(&Device::Cpu)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let mat = QMatrix::from_qtensor(&qt).unwrap();
            let acts = Acts::new(&pool, &x, m, k);
            let mut out = vec![0f32; m * n];
            mat.matmul(&pool, &acts, &mut out);
            for i in 0..m {
                for r in 0..n {
                    let want: f32 = (0..k).map(|j| deq[r][j] * x[i * k + j]).sum();
                    let mag: f32 = (0..k).map(|j| (deq[r][j] * x[i * k + j]).abs()).sum();
                    let got = out[i * n + r];
                    // Activation quantization error: ~1% of the row's magnitude (Σ|w·x|; the
                    // sum itself may cancel to near zero).
                    assert!(
                        (got - want).abs() < 0.02 * (1.0 + mag),
                        "{dtype:?} ({i},{r}): {got} vs {want}"
                    );
                }
                let single = Acts::new(&pool, &x[i * k..(i + 1) * k], 1, k);
                let mut one = vec![0f32; n];
                mat.matmul(&pool, &single, &mut one);
                assert_eq!(
                    &one[..],
                    &out[i * n..(i + 1) * n],
                    "{dtype:?}: row {i} alone vs batched"
                );
            }
            let mut row = vec![0f32; k];
            mat.dequantize_row(3, &mut row);
            // Q4_0, and the K-quants on the AVX2 path, are converted to Q8_0.
            if !matches!(dtype, GgmlDType::Q4_0)
                && (packed::available() || !matches!(dtype, GgmlDType::Q4K | GgmlDType::Q6K))
            {
                assert_eq!(row, deq[3], "{dtype:?}: dequantized row");
            }
        }
    }
}
