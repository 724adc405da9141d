#!/usr/bin/env bash
# Side-by-side engine benchmark: maspo vs llama.cpp on the same GGUF, same threads, one run.
#
#   benches/peer/llamacpp.sh [--json] [--threads N] [--runs N] [--model ID|PATH]... [--build-only]
#
# llama.cpp comes from the llama-cpp-python source distribution on PyPI (it vendors
# ggml-org/llama.cpp); only llama-bench and llama-batched-bench are built, into
# target/peer/ (cached between runs). Prints, per model, maspo's and llama.cpp's numbers and the
# maspo/llama.cpp ratios; with --json one JSON object per model with the same keys for both.
# Run it on an otherwise idle machine: both engines spin their threads (shared/bench/README.md).
# llama.cpp's absolute numbers are checked against the team's reference table for this machine
# (shared/bench/README.md): a figure more than 15% below it marks the run as suspect (a busy or
# throttled machine makes the peer slow and every ratio flattering) — a warning on stderr and
# `suspect` in the JSON. `--runs N` repeats everything N times in a row (report two).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PEER="$ROOT/target/peer"
VERSION=0.3.36
JSON=0
THREADS=2
BUILD_ONLY=0
RUNS=1
MODELS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --json) JSON=1 ;;
    --threads) THREADS=$2; shift ;;
    --model) MODELS+=("$2"); shift ;;
    --build-only) BUILD_ONLY=1 ;;
    --runs) RUNS=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
[ ${#MODELS[@]} -gt 0 ] || MODELS=(smollm2-135m-instruct qwen2.5-coder-0.5b-instruct)

log() { echo "[peer] $*" >&2; }

build_llamacpp() {
  local bin="$PEER/build/bin"
  if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-batched-bench" ] && [ -x "$bin/llama-server" ]; then return; fi
  mkdir -p "$PEER"
  if [ ! -d "$PEER/venv" ]; then
    python3 -m venv "$PEER/venv"
    "$PEER/venv/bin/python" -m pip install --quiet cmake ninja
  fi
  if [ ! -d "$PEER/src/vendor/llama.cpp" ]; then
    log "downloading llama-cpp-python==$VERSION source"
    rm -rf "$PEER/sdist" "$PEER/src"
    python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python -d "$PEER/sdist" "llama-cpp-python==$VERSION"
    mkdir -p "$PEER/src"
    tar -xzf "$PEER"/sdist/llama_cpp_python-*.tar.gz -C "$PEER/src" --strip-components=1
  fi
  log "building llama-bench, llama-batched-bench and llama-server (about 12 minutes on 2 cores, cached afterwards)"
  PATH="$PEER/venv/bin:$PATH" cmake -S "$PEER/src/vendor/llama.cpp" -B "$PEER/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF >&2
  PATH="$PEER/venv/bin:$PATH" cmake --build "$PEER/build" -j2 --target llama-bench llama-batched-bench llama-server >&2
}

build_llamacpp
[ "$BUILD_ONLY" = 1 ] && exit 0

cargo build --release --quiet
MASPO="$ROOT/target/release/maspo"

for run in $(seq 1 "$RUNS"); do
for model in "${MODELS[@]}"; do
  path=$("$MASPO" --quiet models fetch "$model" 2>/dev/null || true)
  [ -n "$path" ] || path="$model"
  log "$model: maspo (run $run of $RUNS)"
  ours=$("$MASPO" --quiet --threads "$THREADS" bench engine --model "$path" --json --batch-sizes 1,4,8,16,32)
  log "$model: llama-bench"
  lb=$("$PEER/build/bin/llama-bench" -m "$path" -t "$THREADS" -p 256 -n 128 -r 3 -o json 2>/dev/null)
  log "$model: llama-batched-bench"
  bb=$("$PEER/build/bin/llama-batched-bench" -m "$path" -t "$THREADS" -tb "$THREADS" -c 12416 \
        -npp 256 -ntg 128 -npl 1,4,8,16,32 2>/dev/null)
  echo "$ours" > "$PEER/maspo-$(basename "$model").json"
  python3 - "$model" "$JSON" "$ours" "$lb" "$bb" "$THREADS" "$run" <<'PY'
import json, sys
model, as_json, ours, lb, bb = sys.argv[1], sys.argv[2] == "1", json.loads(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
threads, run = int(sys.argv[6]), int(sys.argv[7])
# llama.cpp on this machine, 2 threads, idle (shared/bench/README.md).
REFERENCE = {
    "smollm2-135m-instruct": {"prefill": 324, "decode": 117, "batched": {"1": 108, "4": 158, "8": 179, "16": 202, "32": 220}},
    "qwen2.5-coder-0.5b-instruct": {"prefill": 253, "decode": 50.6, "batched": {"1": 47, "4": 76, "8": 87, "16": 115, "32": 136}},
}
peer = {"prefill_tok_s": None, "decode_tok_s": None, "batched_decode_tok_s": {}}
for row in lb:
    if row.get("n_prompt", 0) > 0 and row.get("n_gen", 0) == 0:
        peer["prefill_tok_s"] = row["avg_ts"]
    if row.get("n_gen", 0) > 0 and row.get("n_prompt", 0) == 0:
        peer["decode_tok_s"] = row["avg_ts"]
for line in bb.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) >= 8 and cells[0].isdigit():
        # | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |
        peer["batched_decode_tok_s"][cells[2]] = float(cells[7])
def ratio(a, b):
    return round(a / b, 3) if a and b else None
ratios = {
    "prefill": ratio(ours.get("prefill_tok_s"), peer["prefill_tok_s"]),
    "decode": ratio(ours.get("decode_tok_s"), peer["decode_tok_s"]),
    "batched_decode": {k: ratio(ours.get("batched_decode_tok_s", {}).get(k), v) for k, v in peer["batched_decode_tok_s"].items()},
}
ref = REFERENCE.get(model) if threads == 2 else None
suspect = []
if ref:
    checks = [("prefill", peer["prefill_tok_s"], ref["prefill"]), ("decode", peer["decode_tok_s"], ref["decode"])]
    checks += [("batched B=" + k, peer["batched_decode_tok_s"].get(k), v) for k, v in ref["batched"].items()]
    for name, got, want in checks:
        if got is not None and got < 0.85 * want:
            suspect.append(f"{name}: llama.cpp {got:.1f} t/s is {100 * (1 - got / want):.0f}% below the reference {want}")
for msg in suspect:
    print(f"[peer] WARNING suspect run ({model}, run {run}): {msg} — is the machine busy?", file=sys.stderr)
if as_json:
    print(json.dumps({"model": model, "run": run, "maspo": ours, "llama.cpp": peer, "llama.cpp_reference": ref, "ratio": ratios, "suspect": suspect}))
else:
    print(f"\n{model} (run {run})")
    r = ref or {"prefill": 0, "decode": 0, "batched": {}}
    print(f"{'':26}{'maspo':>10}{'llama.cpp':>12}{'ratio':>8}{'llama ref':>11}")
    print(f"{'prefill 256 (tok/s)':26}{ours.get('prefill_tok_s', 0):>10.1f}{peer['prefill_tok_s'] or 0:>12.1f}{ratios['prefill'] or 0:>8.2f}{r['prefill']:>11}")
    print(f"{'decode b=1 (tok/s)':26}{ours.get('decode_tok_s', 0):>10.1f}{peer['decode_tok_s'] or 0:>12.1f}{ratios['decode'] or 0:>8.2f}{r['decode']:>11}")
    for k, v in peer["batched_decode_tok_s"].items():
        o = ours.get("batched_decode_tok_s", {}).get(k)
        print(f"{'batched decode B=' + k:26}{(o or 0):>10.1f}{v:>12.1f}{(ratios['batched_decode'][k] or 0):>8.2f}{r['batched'].get(k, ''):>11}")
    if suspect:
        print("SUSPECT RUN: llama.cpp ran more than 15% below its reference; the ratios flatter maspo")
    w, p = ours.get("maspo_workload", {}), ours.get("prefix_cache", {})
    print(f"MASPO-shaped workload ({w.get('requests')} requests): batched {w.get('batched_s', 0):.1f}s, "
          f"one by one {w.get('one_by_one_s', 0):.1f}s, speedup {w.get('speedup', 0):.2f}x, identical outputs {w.get('identical_outputs')}")
    print(f"prefix cache ({p.get('requests')} requests sharing {p.get('shared_tokens')} tokens): cold {p.get('cold_s', 0):.2f}s, "
          f"warm {p.get('warm_s', 0):.2f}s; ttft cold {p.get('ttft_cold_ms', 0):.0f} ms, warm {p.get('ttft_warm_ms', 0):.0f} ms")
PY
done
done
