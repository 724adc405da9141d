//! The packed ("varlen") forward on candle tensors, for GPUs (`--device cuda`) and, through
//! candle's CPU backend, for checking that code on machines without one (`candle-cpu`).
//!
//! Same contract as [`super::Transformer::forward`]: the new tokens of every scheduled sequence
//! form one `(T, hidden)` matrix for all row-wise work (one launch per op for the whole step:
//! cuBLAS or candle's quantized kernels for projections, fused RMSNorm / RoPE / softmax
//! kernels), and only attention knows about sequences. K/V stay on the device in each
//! sequence's [`KvCache`] (preallocated at admission, shared prefix segments referenced). A
//! prompt chunk attends as its own small batched matmul; the single-token (decode) rows of a
//! step attend together, their keys and values gathered into one zero-padded block with the
//! padding masked (a few launches per layer instead of a dozen per sequence). Padding adds
//! exact zeros after the softmax, so a row's output depends only on its own sequence, as on the
//! CPU path (up to the device libraries' own reduction orders, which may vary with the batch).
//!
//! Owns the device numerics. Weight naming and shapes come from [`super::loader::read_parts`].

use super::attention::RopeStyle;
use super::loader::{LinearParts, ModelParts, WeightReader};
use super::transformer::{logit_rows, pack, SeqStep, TransformerConfig};
use crate::engine::error::{EngineError, Result};
use crate::engine::gguf::GgufFile;
use crate::engine::kv::{KvCache, KvStore};
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use std::sync::Arc;

/// A matrix read for the device: quantized (GGUF blocks, candle's quantized kernels) or dense.
pub enum DeviceMat {
    /// GGUF blocks on the device.
    Quant(Arc<QTensor>),
    /// A dense `(rows, cols)` tensor in the compute type.
    Dense(Tensor),
}

impl DeviceMat {
    fn format(&self) -> String {
        match self {
            Self::Quant(q) => format!("{:?}", q.dtype()).to_lowercase(),
            Self::Dense(t) => format!("{:?}", t.dtype()).to_lowercase(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Self::Quant(q) => q.storage_size_in_bytes(),
            Self::Dense(t) => t.elem_count() * t.dtype().size_in_bytes(),
        }
    }

    fn linear(self, bias: Option<Tensor>) -> candle_core::Result<DLinear> {
        let format = self.format();
        let bytes = self.bytes();
        let w = match self {
            Self::Quant(q) => DWeight::Quant(QMatMul::from_arc(q)?),
            Self::Dense(t) => DWeight::Dense(t),
        };
        Ok(DLinear {
            w,
            bias,
            format,
            bytes,
        })
    }
}

enum DWeight {
    Quant(QMatMul),
    Dense(Tensor),
}

/// A projection on the device.
struct DLinear {
    w: DWeight,
    bias: Option<Tensor>,
    format: String,
    bytes: usize,
}

impl DLinear {
    /// `(T, k)` → `(T, n)` in the activations' type.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = match &self.w {
            // Candle's quantized kernels take f32 activations.
            DWeight::Quant(m) if x.dtype() != DType::F32 => {
                m.forward(&x.to_dtype(DType::F32)?)?.to_dtype(x.dtype())?
            }
            DWeight::Quant(m) => m.forward(x)?,
            DWeight::Dense(w) => x.matmul(&w.t()?)?,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

struct DBlock {
    attn_norm: Tensor,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    wq: DLinear,
    wk: DLinear,
    wv: DLinear,
    wo: DLinear,
    ffn_norm: Tensor,
    gate: DLinear,
    up: DLinear,
    down: DLinear,
}

/// Weights on a device plus RoPE tables; immutable and shareable.
pub struct DeviceTransformer {
    /// Hyper-parameters.
    pub cfg: TransformerConfig,
    device: Device,
    /// Activation / KV element type.
    act: DType,
    /// Embedding lookup (quantized rows gathered and dequantized, or a dense table).
    embed: DWeight,
    blocks: Vec<DBlock>,
    norm: Tensor,
    head: DLinear,
    cos: Tensor,
    sin: Tensor,
    ctx: usize,
}

fn dev_err(e: candle_core::Error) -> EngineError {
    EngineError::Candle(e)
}

impl DeviceTransformer {
    /// Assembles a model from parts read for `device`; `act` is the activation and KV type
    /// (f32 for GGUF weights; bf16 or f16 for dense checkpoints on a GPU). RoPE uses the CPU
    /// path's exact angle tables ([`super::attention::RopeTables`]), uploaded once.
    pub fn new(
        cfg: TransformerConfig,
        parts: ModelParts<DeviceMat, Tensor>,
        device: &Device,
        act: DType,
    ) -> Result<Self> {
        let rope = super::attention::RopeTables::new(
            cfg.head_dim,
            cfg.rope_base,
            cfg.ctx_len,
            cfg.rope_style,
        );
        let half = cfg.head_dim / 2;
        let (cos, sin) = rope.tables();
        let ctx = rope.len();
        let table = |v: &[f32]| -> Result<Tensor> {
            Ok(Tensor::from_slice(v, (ctx, half), device)?.to_dtype(act)?)
        };
        let lin = |l: LinearParts<DeviceMat, Tensor>| l.w.linear(l.bias);
        let mut blocks = Vec::with_capacity(parts.blocks.len());
        for b in parts.blocks {
            blocks.push(DBlock {
                attn_norm: b.attn_norm,
                q_norm: b.q_norm,
                k_norm: b.k_norm,
                wq: lin(b.wq)?,
                wk: lin(b.wk)?,
                wv: lin(b.wv)?,
                wo: lin(b.wo)?,
                ffn_norm: b.ffn_norm,
                gate: lin(b.gate)?,
                up: lin(b.up)?,
                down: lin(b.down)?,
            });
        }
        let (embed, head) = match (parts.embed, parts.lm_head) {
            (DeviceMat::Quant(q), head) => {
                let head = match head {
                    Some(h) => h.linear(None)?,
                    None => DeviceMat::Quant(q.clone()).linear(None)?,
                };
                (DWeight::Quant(QMatMul::QTensor(q)), head)
            }
            (DeviceMat::Dense(t), head) => {
                let head = match head {
                    Some(h) => h.linear(None)?,
                    None => DeviceMat::Dense(t.clone()).linear(None)?,
                };
                (DWeight::Dense(t), head)
            }
        };
        Ok(Self {
            cos: table(cos)?,
            sin: table(sin)?,
            ctx,
            cfg,
            device: device.clone(),
            act,
            embed,
            blocks,
            norm: parts.norm,
            head,
        })
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Activation and KV element type.
    pub fn act_dtype(&self) -> DType {
        self.act
    }

    /// A fresh, empty KV cache on the device.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new_in(
            self.cfg.n_layer,
            self.cfg.n_kv_head * self.cfg.head_dim,
            KvStore::Device {
                device: self.device.clone(),
                dtype: self.act,
            },
        )
    }

    fn linears(&self) -> impl Iterator<Item = &DLinear> {
        self.blocks
            .iter()
            .flat_map(|b| [&b.wq, &b.wk, &b.wv, &b.wo, &b.gate, &b.up, &b.down])
            .chain([&self.head])
    }

    /// Weight formats in use (for reports).
    pub fn weight_formats(&self) -> Vec<String> {
        let mut f: Vec<String> = self.linears().map(|l| l.format.clone()).collect();
        f.sort_unstable();
        f.dedup();
        f
    }

    /// Weight bytes one decode step reads.
    pub fn decode_weight_bytes(&self) -> usize {
        self.linears().map(|l| l.bytes).sum()
    }

    /// Positions the RoPE tables cover.
    pub fn ctx_len(&self) -> usize {
        self.ctx
    }

    /// Runs one packed step over several sequences; see [`super::Transformer::forward`].
    pub fn forward(&self, seqs: &mut [SeqStep<'_>]) -> Result<Vec<Vec<f32>>> {
        let (ids, pos, _) = pack(&self.cfg, self.ctx, seqs)?;
        self.forward_packed(&ids, &pos, seqs).map_err(dev_err)
    }

    fn forward_packed(
        &self,
        ids: &[u32],
        pos: &[usize],
        seqs: &mut [SeqStep<'_>],
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let c = &self.cfg;
        let t = ids.len();
        let dev = &self.device;
        let ids_t = Tensor::from_slice(ids, t, dev)?;
        let pos32: Vec<u32> = pos.iter().map(|&p| p as u32).collect();
        let pos_t = Tensor::from_slice(&pos32, t, dev)?;
        let mut x = match &self.embed {
            DWeight::Quant(q) => q.embedding(&ids_t)?.to_dtype(self.act)?,
            DWeight::Dense(w) => w.index_select(&ids_t, 0)?,
        };
        let order = RowOrder::new(seqs, dev)?;
        let cos = self.cos.index_select(&pos_t, 0)?;
        let sin = self.sin.index_select(&pos_t, 0)?;
        let eps = c.eps as f32;
        for (l, b) in self.blocks.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &b.attn_norm, eps)?;
            let q = self.rope(b.wq.forward(&h)?, c.n_head, b.q_norm.as_ref(), &cos, &sin)?;
            let k = self.rope(
                b.wk.forward(&h)?,
                c.n_kv_head,
                b.k_norm.as_ref(),
                &cos,
                &sin,
            )?;
            let v = b.wv.forward(&h)?;
            let mut start = 0;
            let mut outs = Vec::with_capacity(seqs.len());
            for step in seqs.iter_mut() {
                let n = step.tokens.len();
                step.cache
                    .append_device(l, &k.narrow(0, start, n)?, &v.narrow(0, start, n)?)?;
                if n > 1 {
                    let q_s = q.narrow(0, start, n)?;
                    outs.push(self.attend(l, &q_s, step.cache, pos[start])?);
                }
                start += n;
            }
            if let Some(rows) = &order.decode_rows {
                let caches: Vec<&KvCache> = seqs
                    .iter()
                    .filter(|s| s.tokens.len() == 1)
                    .map(|s| &*s.cache)
                    .collect();
                outs.push(self.attend_decode(l, &q.index_select(rows, 0)?, &caches)?);
            }
            let attn = if outs.len() == 1 {
                outs.remove(0)
            } else {
                Tensor::cat(&outs, 0)?
            };
            let attn = match &order.unpermute {
                Some(idx) => attn.index_select(idx, 0)?,
                None => attn,
            };
            x = (x + b.wo.forward(&attn)?)?;
            let h = candle_nn::ops::rms_norm(&x, &b.ffn_norm, eps)?;
            let g = (candle_nn::ops::silu(&b.gate.forward(&h)?)? * b.up.forward(&h)?)?;
            x = (x + b.down.forward(&g)?)?;
        }
        let (out_rows, per_seq) = logit_rows(seqs);
        if out_rows.is_empty() {
            return Ok(vec![Vec::new(); seqs.len()]);
        }
        let rows32: Vec<u32> = out_rows.iter().map(|&r| r as u32).collect();
        let rows_t = Tensor::from_slice(&rows32, rows32.len(), dev)?;
        let last = x.index_select(&rows_t, 0)?;
        let normed = candle_nn::ops::rms_norm(&last, &self.norm, eps)?;
        let logits = self.head.forward(&normed)?.to_dtype(DType::F32)?;
        let flat = logits.flatten_all()?.to_vec1::<f32>()?;
        let vocab = c.vocab;
        let mut at = 0;
        Ok(per_seq
            .into_iter()
            .map(|n| {
                let rows = flat[at * vocab..(at + n) * vocab].to_vec();
                at += n;
                rows
            })
            .collect())
    }

    /// Attention of single-token steps (decode), all sequences in one batched matmul: each
    /// sequence's keys and values copied into a zero-padded `(D, L_max)` block, positions past a
    /// sequence's length masked. `q` is `(D, n_head·e)`, one row per cache.
    fn attend_decode(
        &self,
        layer: usize,
        q: &Tensor,
        caches: &[&KvCache],
    ) -> candle_core::Result<Tensor> {
        let c = &self.cfg;
        let (d, e, kvh) = (caches.len(), c.head_dim, c.n_kv_head);
        let g = c.n_head / kvh;
        let lens: Vec<usize> = caches.iter().map(|c| c.len()).collect();
        let lmax = lens.iter().copied().max().unwrap_or(0);
        let row = kvh * e;
        let kp = Tensor::zeros((d * lmax, row), self.act, &self.device)?;
        let vp = Tensor::zeros((d * lmax, row), self.act, &self.device)?;
        for (i, cache) in caches.iter().enumerate() {
            let mut at = i * lmax;
            for (kb, vb) in cache.device_blocks(layer)? {
                kp.slice_set(&kb, 0, at)?;
                vp.slice_set(&vb, 0, at)?;
                at += kb.dim(0)?;
            }
        }
        let heads = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((d, lmax, kvh, e))?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((d * kvh, lmax, e))
        };
        let (k, v) = (heads(kp)?, heads(vp)?);
        let q = q.reshape((d * kvh, g, e))?;
        let scale = 1.0 / (e as f64).sqrt();
        let mut scores = (q.matmul(&k.t()?)?.to_dtype(DType::F32)? * scale)?;
        if lens.iter().any(|&n| n < lmax) {
            let mask: Vec<f32> = lens
                .iter()
                .flat_map(|&n| (0..lmax).map(move |p| if p < n { 0.0 } else { f32::NEG_INFINITY }))
                .collect();
            let mask = Tensor::from_vec(mask, (d, 1, 1, lmax), &self.device)?;
            scores = scores
                .reshape((d, kvh, g, lmax))?
                .broadcast_add(&mask)?
                .reshape((d * kvh, g, lmax))?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(self.act)?;
        probs.matmul(&v)?.reshape((d, c.n_head * e))
    }

    /// Optional per-head RMSNorm, then RoPE at each row's position; `(T, heads·e)` in and out.
    fn rope(
        &self,
        x: Tensor,
        heads: usize,
        norm: Option<&Tensor>,
        cos: &Tensor,
        sin: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (t, e) = (x.dim(0)?, self.cfg.head_dim);
        // (1, T, heads, e): the "thd" layout, each row rotated at its own position.
        let mut x = x.reshape((1, t, heads, e))?;
        if let Some(w) = norm {
            x = candle_nn::ops::rms_norm(&x, w, self.cfg.eps as f32)?;
        }
        let x = match self.cfg.rope_style {
            RopeStyle::Neox => candle_nn::rotary_emb::rope_thd(&x.contiguous()?, cos, sin)?,
            RopeStyle::Interleaved => {
                let x = x.transpose(1, 2)?.contiguous()?;
                candle_nn::rotary_emb::rope_i(&x, cos, sin)?
                    .transpose(1, 2)?
                    .contiguous()?
            }
        };
        x.reshape((t, heads * e))
    }

    /// Causal attention of one sequence's `n` new query rows (`(n, n_head·e)`, the first at
    /// absolute position `first`) over its layer-`layer` keys and values (which include them).
    fn attend(
        &self,
        layer: usize,
        q: &Tensor,
        cache: &KvCache,
        first: usize,
    ) -> candle_core::Result<Tensor> {
        let c = &self.cfg;
        let (n, e, kvh) = (q.dim(0)?, c.head_dim, c.n_kv_head);
        let g = c.n_head / kvh;
        let (k, v) = cache.device_kv(layer)?;
        let len = k.dim(0)?;
        // Query heads of a GQA group are contiguous: (n, kvh, g, e) → (kvh, g·n, e).
        let q = q
            .reshape((n, kvh, g, e))?
            .permute((1, 2, 0, 3))?
            .contiguous()?
            .reshape((kvh, g * n, e))?;
        let k = k.reshape((len, kvh, e))?.transpose(0, 1)?.contiguous()?;
        let v = v.reshape((len, kvh, e))?.transpose(0, 1)?.contiguous()?;
        let scale = 1.0 / (e as f64).sqrt();
        let mut scores = (q.matmul(&k.t()?)?.to_dtype(DType::F32)? * scale)?;
        if n > 1 {
            // Row j (position first + j) sees keys 0..=first + j.
            let mask: Vec<f32> = (0..n)
                .flat_map(|j| {
                    (0..len).map(move |p| {
                        if p <= first + j {
                            0.0
                        } else {
                            f32::NEG_INFINITY
                        }
                    })
                })
                .collect();
            let mask = Tensor::from_vec(mask, (1, 1, n, len), &self.device)?;
            scores = scores
                .reshape((kvh, g, n, len))?
                .broadcast_add(&mask)?
                .reshape((kvh, g * n, len))?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(self.act)?;
        probs
            .matmul(&v)?
            .reshape((kvh, g, n, e))?
            .permute((2, 0, 1, 3))?
            .contiguous()?
            .reshape((n, c.n_head * e))
    }
}

/// How a step's attention outputs are assembled: sequences with several new tokens attend one
/// by one (in step order), single-token ones together (`decode_rows`, after them); `unpermute`
/// puts the rows back in packed order when that differs.
struct RowOrder {
    decode_rows: Option<Tensor>,
    unpermute: Option<Tensor>,
}

impl RowOrder {
    fn new(seqs: &[SeqStep<'_>], dev: &Device) -> candle_core::Result<Self> {
        let mut prompt_rows = Vec::new();
        let mut decode_rows = Vec::new();
        let mut row = 0u32;
        for s in seqs {
            let n = s.tokens.len() as u32;
            if n == 1 {
                decode_rows.push(row);
            } else {
                prompt_rows.extend(row..row + n);
            }
            row += n;
        }
        // Output row j (in assembly order) is packed row `order[j]`; invert it.
        let order: Vec<u32> = prompt_rows.iter().chain(&decode_rows).copied().collect();
        let identity = order.iter().enumerate().all(|(j, &r)| j as u32 == r);
        let unpermute = if identity {
            None
        } else {
            let mut inv = vec![0u32; order.len()];
            for (j, &r) in order.iter().enumerate() {
                inv[r as usize] = j as u32;
            }
            Some(Tensor::from_vec(inv, order.len(), dev)?)
        };
        let decode_rows = if decode_rows.is_empty() {
            None
        } else {
            let n = decode_rows.len();
            Some(Tensor::from_vec(decode_rows, n, dev)?)
        };
        Ok(Self {
            decode_rows,
            unpermute,
        })
    }
}

/// A GGUF file read onto a candle device: quantized matrices stay quantized (candle's kernels),
/// f32/f16/bf16 ones become dense tensors; vectors in the activation type.
pub struct GgufDevice<'a> {
    /// The file.
    pub gguf: &'a GgufFile,
    /// Where the weights go.
    pub device: &'a Device,
    /// Activation type (norm weights and biases are converted to it).
    pub act: DType,
}

impl WeightReader for GgufDevice<'_> {
    type Mat = DeviceMat;
    type Vec = Tensor;

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<DeviceMat> {
        let q = self.gguf.tensor(name, &[rows, cols], self.device)?;
        use candle_core::quantized::GgmlDType as G;
        Ok(match q.dtype() {
            G::F32 | G::F16 | G::BF16 => {
                DeviceMat::Dense(q.dequantize(self.device)?.to_dtype(self.act)?)
            }
            _ => DeviceMat::Quant(Arc::new(q)),
        })
    }

    fn vector(&self, name: &str, n: usize) -> Result<Tensor> {
        Ok(self
            .gguf
            .tensor(name, &[n], self.device)?
            .dequantize(self.device)?
            .to_dtype(self.act)?)
    }

    fn has(&self, name: &str) -> bool {
        self.gguf.has_tensor(name)
    }
}
