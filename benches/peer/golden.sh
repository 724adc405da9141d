#!/usr/bin/env bash
# Golden references from llama.cpp for a catalog model (tests/fixtures/golden/<ID>.json):
# the 34 tokenization strings and 8 chat conversations of the Qwen 0.5B golden file, run through
# the llama.cpp that llamacpp.sh builds (CPU, 2 threads).
#
#   benches/peer/golden.sh MODEL_ID
set -euo pipefail
cd "$(dirname "$0")/../.."
ID=${1:?usage: benches/peer/golden.sh MODEL_ID}
PEER=target/peer
benches/peer/llamacpp.sh --build-only
LL="$PEER/src/vendor/llama.cpp"
if [ ! -x "$PEER/golden" ] || [ benches/peer/golden.cpp -nt "$PEER/golden" ]; then
  g++ -O2 -std=c++17 -fopenmp -I"$LL/include" -I"$LL/ggml/include" -I"$LL/vendor" \
    benches/peer/golden.cpp -o "$PEER/golden" \
    "$PEER/build/src/libllama.a" "$PEER/build/ggml/src/libggml.a" "$PEER/build/ggml/src/libggml-cpu.a" \
    "$PEER/build/ggml/src/libggml-base.a" -lpthread -ldl -lm
fi
FILE=$(cargo run --release --quiet -- models fetch "$ID")
"$PEER/golden" "$FILE" tests/fixtures/golden/qwen2.5-coder-0.5b-instruct.json > "tests/fixtures/golden/$ID.json.tmp"
mv "tests/fixtures/golden/$ID.json.tmp" "tests/fixtures/golden/$ID.json"
echo "wrote tests/fixtures/golden/$ID.json" >&2
