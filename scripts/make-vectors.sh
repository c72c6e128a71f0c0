#!/usr/bin/env bash
# Regenerate every shipped vector in vectors/ and its JSON sidecar:
#  - the demo model's refusal direction (every layer; the steering layer chosen by `select` and
#    the monitoring layer by `monitor --scan-layers`, both on training prompts), and one
#    direction per kept over-refusal round;
#  - SmolLM2-135M-Instruct's refusal direction (assets/prompts/refusal) and its cheerful-gloomy
#    contrast (assets/prompts/contrast).
# Usage: bash scripts/make-vectors.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/steerscope
demo=assets/demo-model
dp=$demo/prompts

"$bin" vector --model "$demo" --positive "$dp/harmful_train.json" --negative "$dp/harmless_train.json" \
  --out vectors/demo-model.refusal.safetensors
"$bin" select --model "$demo" --vector vectors/demo-model.refusal.safetensors \
  --harmful "$dp/harmful_train.json" --harmless "$dp/harmless_train.json" --limit 80 --scope prompt --write-sidecar
# The layer whose projection tracks the rounds' refusal rate best, on training prompts.
"$bin" monitor --checkpoints "$demo" "$demo"/rounds/round-* --vector vectors/demo-model.refusal.safetensors \
  --prompts "$dp/harmless_train.json" --limit 400 --scan-layers --write-sidecar
for round in "$demo"/rounds/round-*; do
  "$bin" vector --model "$round" --positive "$dp/harmful_train.json" --negative "$dp/harmless_train.json" \
    --out "vectors/demo-model.$(basename "$round").refusal.safetensors"
done

smol=$(bash scripts/fetch-model.sh)
"$bin" vector --model "$smol" --positive assets/prompts/refusal/harmful_train.json \
  --negative assets/prompts/refusal/harmless_train.json --out vectors/smollm2-135m-instruct.refusal.safetensors
"$bin" vector --model "$smol" --positive assets/prompts/contrast/cheerful.txt \
  --negative assets/prompts/contrast/gloomy.txt --out vectors/smollm2-135m-instruct.cheerful-gloomy.safetensors
