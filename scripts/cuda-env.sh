#!/usr/bin/env bash
# Sets up a CUDA 13.0 toolchain from PyPI wheels on a machine without CUDA, for building a `cuda`
# feature of candle-core 0.11 that runs on a GPU machine with a CUDA 13.0 driver (580).
# Usage:  source scripts/cuda-env.sh [DIR]          (DIR default: $HOME/.cache/cuda13; ~1.7 GB)
# Then:   cargo build --release --features cuda      (first build compiles candle's PTX: ~7 min)
# Checked 2026-11-29 on an H200 with a probe built this way: candle's bf16 matmul at 765 TFLOP/s,
# and QMatMul (Q4_0/Q8_0/Q4K) on CUDA agreeing with the CPU.
DIR=${1:-$HOME/.cache/cuda13}
CU=$DIR/nvidia/cu13
if [ ! -x "$CU/bin/nvcc" ] || [ ! -f "$CU/include/crt/host_config.h" ]; then
  mkdir -p "$DIR/wheels"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$DIR/wheels" \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 nvidia-curand==10.4.0.35 \
    nvidia-cublas==13.1.0.3 nvidia-cuda-cccl || { echo "cuda-env: download failed" >&2; return 1 2>/dev/null || exit 1; }
  for w in "$DIR"/wheels/*.whl; do python3 -m zipfile -e "$w" "$DIR"; done
  chmod +x "$CU"/bin/* "$CU"/nvvm/bin/* 2>/dev/null || true
fi
# Link-time names: unversioned symlinks to the wheels' libraries, and a stub libcuda.so.1 (the
# driver library is not in any wheel; the real one is on the GPU machine and binds at run time).
LINK=$DIR/link; mkdir -p "$LINK"
for l in nvrtc cublas cublasLt cudart; do ln -sf "$CU/lib/lib$l.so.13" "$LINK/lib$l.so"; done
ln -sf "$CU/lib/libcurand.so.10" "$LINK/libcurand.so"
if [ ! -f "$LINK/libcuda.so" ]; then
  # Every driver entry point the headers declare, under the names the versioned macros resolve to.
  python3 - "$CU/include" > "$LINK/stub.c" <<'PY'
import glob, re, sys
inc = sys.argv[1]
src = open(inc + "/cuda.h").read()
names = set(re.findall(r"\b(cu[A-Z]\w*)\s*\(", src))
names |= set(re.findall(r"#define\s+cu\w+\s+(cu[A-Z]\w*)", src))
for t in glob.glob(inc + "/cuda*Typedefs.h"):  # also entry points gone from cuda.h (profiler)
    names |= set(re.findall(r"PFN_(cu[A-Z][A-Za-z0-9]*?)(?:_v\d+)?\b", open(t).read()))
for n in sorted(names):
    print(f"void {n}(void) {{}}")
PY
  gcc -shared -fPIC -o "$LINK/libcuda.so" "$LINK/stub.c" -Wl,-soname,libcuda.so.1
fi
export CUDA_ROOT=$CU CUDA_PATH=$CU CUDA_COMPUTE_CAP=90
export PATH=$CU/bin:$PATH LIBRARY_PATH=$LINK${LIBRARY_PATH:+:$LIBRARY_PATH}
echo "cuda-env: nvcc $(nvcc --version | grep -o 'release [0-9.]*'), compute cap 90, link dir $LINK"
