#!/usr/bin/env bash
# Side-by-side server benchmark: `maspo serve` vs llama.cpp's `llama-server` on the same GGUF,
# same threads, the same concurrent MASPO-shaped load (`maspo bench serve`), one run.
#
#   benches/peer/serve.sh [--threads N] [--clients N] [--requests N] [--max-tokens N] [--model ID|PATH]...
#
# llama-server is built by benches/peer/llamacpp.sh --build-only (cached in target/peer/).
# Prints one JSON line per server and model, then the maspo/llama-server throughput ratio.
# Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
THREADS=2
CLIENTS=32
REQUESTS=128
MAX_TOKENS=64
MODELS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --requests) REQUESTS=$2; shift ;;
    --max-tokens) MAX_TOKENS=$2; shift ;;
    --model) MODELS+=("$2"); shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
[ ${#MODELS[@]} -gt 0 ] || MODELS=(smollm2-135m-instruct)
log() { echo "[serve-peer] $*" >&2; }

benches/peer/llamacpp.sh --build-only
cargo build --release --quiet
MASPO="$ROOT/target/release/maspo"
LLAMA_SERVER="$ROOT/target/peer/build/bin/llama-server"
PORT_M=18731
PORT_L=18732
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_up() {
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  log "server on port $1 did not come up"; return 1
}

load() {
  "$MASPO" bench serve --url "http://127.0.0.1:$1/v1" --clients "$CLIENTS" --requests "$REQUESTS" \
    --max-tokens "$MAX_TOKENS" --json
}

for model in "${MODELS[@]}"; do
  path=$("$MASPO" --quiet models fetch "$model" 2>/dev/null || true)
  [ -n "$path" ] || path="$model"
  [ -f "$path" ] || { log "cannot find the GGUF of $model"; exit 1; }
  log "$model: maspo serve ($THREADS threads)"
  "$MASPO" --quiet --threads "$THREADS" serve -m "$path" --port "$PORT_M" --max-queue 1024 >/dev/null 2>&1 &
  PIDS+=($!); wait_up "$PORT_M"
  "$MASPO" bench serve --url "http://127.0.0.1:$PORT_M/v1" --clients 4 --requests 8 --max-tokens 4 --json >/dev/null
  m=$(load "$PORT_M")
  kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
  log "$model: llama-server ($THREADS threads, $CLIENTS slots)"
  "$LLAMA_SERVER" -m "$path" --host 127.0.0.1 --port "$PORT_L" -t "$THREADS" -tb "$THREADS" \
    -np "$CLIENTS" -c $((CLIENTS * 512)) >/dev/null 2>&1 &
  PIDS+=($!); wait_up "$PORT_L"
  "$MASPO" bench serve --url "http://127.0.0.1:$PORT_L/v1" --clients 4 --requests 8 --max-tokens 4 --json >/dev/null
  l=$(load "$PORT_L")
  kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
  echo "{\"model\":\"$model\",\"server\":\"maspo\",\"result\":$m}"
  echo "{\"model\":\"$model\",\"server\":\"llama-server\",\"result\":$l}"
  python3 - "$m" "$l" <<'PY'
import json, sys
m, l = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"throughput maspo/llama-server: {m['tokens_per_s']/max(l['tokens_per_s'],1e-9):.2f}x "
      f"({m['tokens_per_s']:.1f} vs {l['tokens_per_s']:.1f} generated tok/s); "
      f"p50 latency {m['latency_ms']['p50']:.0f} vs {l['latency_ms']['p50']:.0f} ms; "
      f"p99 {m['latency_ms']['p99']:.0f} vs {l['latency_ms']['p99']:.0f} ms; "
      f"errors {m['errors']} vs {l['errors']}")
PY
done
