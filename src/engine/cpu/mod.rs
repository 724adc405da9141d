//! maspo's own CPU kernels: ggml-compatible block formats, integer dot products (AVX2),
//! a batched quantized matmul and the spin pool that runs it.
//!
//! Owns everything performance-critical on the CPU path. Knows nothing about transformers:
//! the model code composes these pieces. Why own kernels: candle 0.11's CPU quantized matmul has
//! no SIMD for Q4_1/Q5_0 (the shipped formats) and no batched path (docs/design/engine.md §5), and
//! its op dispatch costs more than the work at decode sizes.

pub mod dot;
pub mod linear;
pub mod packed;
pub mod pool;
pub mod quant;
pub mod tiling;
pub mod vmath;

pub use linear::{Acts, QMatrix};
pub use pool::Pool;
