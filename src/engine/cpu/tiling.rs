//! The matmul schedule every kernel set shares: which weight rows each pool task owns and how
//! activation rows are grouped into tiles.
//!
//! Each task owns a chunk of weight rows and runs it against every activation row, so a weight
//! chunk is read from memory once per call however many sequences are batched. Activation rows
//! go through tiles of `W` (the kernel set's widest), then 4, then single rows against four
//! weight rows at a time (the batch-1 decode path), then single rows. Kernel sets guarantee
//! bit-identical per-row results for every tile shape, so how a batch is tiled never changes
//! outputs.

use super::pool::{Pool, SharedOut};

/// One weight matrix's kernels against one set of activations.
pub trait Tiles: Sync {
    /// Weight row `r` against activation rows `i..i+N`.
    fn rows<const N: usize>(&self, r: usize, i: usize) -> [f32; N];
    /// Weight rows `r..r+4` against activation row `i`.
    fn four_weights(&self, r: usize, i: usize) -> [f32; 4];
}

/// `out (m × n) = acts · Wᵀ` with `k`'s kernels, split over weight rows across the pool.
pub fn run<const W: usize>(k: &impl Tiles, pool: &Pool, n: usize, m: usize, out: &mut [f32]) {
    assert_eq!(out.len(), m * n, "matmul: output buffer size");
    // Enough chunks to balance the threads, big enough to amortize the hand-out.
    let chunk = (n / (pool.threads() * 8)).clamp(4, 64);
    let o = SharedOut::new(out);
    // SAFETY (every write below): (activation row, weight row) pairs are disjoint across tasks
    // (each owns its weight rows) and in bounds.
    pool.run(n.div_ceil(chunk), &|c| {
        let rows = c * chunk..((c + 1) * chunk).min(n);
        let wide = m / W * W;
        let quads = wide + (m - wide) / 4 * 4;
        for i in (0..wide).step_by(W) {
            for r in rows.clone() {
                for (j, v) in k.rows::<W>(r, i).into_iter().enumerate() {
                    unsafe { o.write((i + j) * n + r, v) };
                }
            }
        }
        for i in (wide..quads).step_by(4) {
            for r in rows.clone() {
                for (j, v) in k.rows::<4>(r, i).into_iter().enumerate() {
                    unsafe { o.write((i + j) * n + r, v) };
                }
            }
        }
        for i in quads..m {
            let mut r = rows.start;
            while r + 4 <= rows.end {
                for (j, v) in k.four_weights(r, i).into_iter().enumerate() {
                    unsafe { o.write(i * n + r + j, v) };
                }
                r += 4;
            }
            for r in r..rows.end {
                unsafe { o.write(i * n + r, k.rows::<1>(r, i)[0]) };
            }
        }
    });
}
