#!/usr/bin/env bash
# Builds maspo with the `cuda` feature (candle's CUDA backend) on a machine without CUDA or a GPU:
# CUDA 13.0 from PyPI wheels (scripts/cuda-env.sh: nvcc 13.0.88, the libraries pinned to what a
# CUDA 13.0 driver loads), then a stripped release binary small enough to copy to a GPU machine.
#
#   scripts/build-cuda.sh [COMPUTE_CAP]      # default 90 (H100/H200); e.g. 89 for an L4/4090
#
# Output: target/cuda/dist/maspo (≈61 MB; candle's PTX kernels are embedded) and maspo.gz (≈17 MB). On the GPU
# machine it needs the driver (libcuda.so.1) and CUDA 13 libcublas/libcublasLt/libcurand/
# libnvrtc/libcudart on the loader path; it runs `--device cuda` (and everything else as usual).
# The CPU build and the tests are unaffected: the feature is off by default.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/cuda-env.sh
source scripts/cuda-env.sh
export CUDA_COMPUTE_CAP=${1:-90}
CARGO_TARGET_DIR=target/cuda cargo build --profile dist --features cuda --bin maspo
bin=target/cuda/dist/maspo
# A gzip copy (~17 MB) is what to copy to the GPU machine.
gzip -9 -c "$bin" > "$bin.gz"
ls -l "$bin" "$bin.gz"
sha256sum "$bin" "$bin.gz"
