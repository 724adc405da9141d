#!/usr/bin/env bash
# maspo's GPU measurements as one script, for a GPU machine that needs neither Rust nor network
# access: build target/cuda/dist/maspo with scripts/build-cuda.sh on any machine, copy it and this
# repository to the GPU machine, run this there (see docs/gpu.md).
#
#   scripts/gpu-check.sh BIN OUTDIR [first|smollm2|anchor|all]
#
# first:   parity — CPU (maspo's kernels on that machine's cores) vs GPU on synthetic
#          qwen2.5-0.5b and qwen3-8b shapes (same seeded weights): greedy tokens, max |Δlogit|,
#          top-1 per step; speed — `bench engine --device cuda` on both shapes: prefill, decode
#          b=1, aggregate decode at 1..256 sequences, 256-token prompts, 128 new tokens (the
#          anchor's settings).
# smollm2: parity on the real SmolLM2 GGUF and llama.cpp's golden prompts (the GGUF must be in
#          models/ first).
# anchor:  transformers + torch on the same card and shapes (scripts/hf_anchor.py).
# Every part writes JSON under OUTDIR and a log; a part that fails does not stop the others.
set -uo pipefail
BIN=${1:?usage: gpu-check.sh BIN OUTDIR [first|smollm2|anchor|all]}
OUT=${2:?usage: gpu-check.sh BIN OUTDIR [first|smollm2|anchor|all]}
WHAT=${3:-all}
mkdir -p "$OUT"
chmod +x "$BIN"
run() { # name timeout_s command...
  local name=$1 t=$2; shift 2
  echo "== $name: $*" | tee -a "$OUT/log.txt"
  local t0=$SECONDS
  timeout "$t" "$@" > "$OUT/$name.json" 2>> "$OUT/$name.err"
  local rc=$?
  echo "   rc=$rc in $((SECONDS - t0)) s" | tee -a "$OUT/log.txt"
  tail -c 600 "$OUT/$name.json" | tee -a "$OUT/log.txt"; echo
}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc; } > "$OUT/machine.txt" 2>&1
"$BIN" --version >> "$OUT/machine.txt" 2>&1
# In priority order; `first` takes at most about 8 minutes, `anchor` up to 4 more.
case $WHAT in first|all)
  run parity-qwen2.5-0.5b 90 "$BIN" bench parity --synthetic qwen2.5-0.5b --device cuda --prompts 4 --max-tokens 24 --json
  run speed-qwen2.5-0.5b 120 "$BIN" bench engine --synthetic qwen2.5-0.5b --device cuda --no-workload \
      --batch-sizes 1,16,64,256 --prompt-tokens 256 --decode-tokens 128 --kv-mb 65536 --max-running 256 --step-tokens 8192 --json
  run speed-qwen3-8b 150 "$BIN" bench engine --synthetic qwen3-8b --device cuda --no-workload \
      --batch-sizes 1,16,64 --prompt-tokens 256 --decode-tokens 128 --kv-mb 65536 --max-running 256 --step-tokens 8192 --json
  run parity-qwen3-8b 120 "$BIN" bench parity --synthetic qwen3-8b --device cuda --prompts 2 --max-tokens 8 --json
esac
case $WHAT in smollm2)
  # The real GGUF, which must already be in models/ (see docs/gpu.md).
  run parity-smollm2 120 "$BIN" bench parity -m models/SmolLM2-135M-Instruct.Q4_1.gguf --device cuda \
      --golden tests/fixtures/golden/smollm2-135m-instruct.json --max-tokens 32 --json
esac
case $WHAT in anchor|all)
  if [ -f scripts/hf_anchor.py ]; then run anchor 240 python3 scripts/hf_anchor.py; fi
esac
echo done >> "$OUT/log.txt"
