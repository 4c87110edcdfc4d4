#!/usr/bin/env bash
# Build the wheelhouse of the sovereign package: its wheel and the wheels of
# its pinned dependencies (pyproject.toml), for nodes that install with
# `pip install --no-index --find-links` (the air-gap path, used everywhere).
# Rebuilt only when pyproject.toml or src/ change.
set -euo pipefail

OUT="${1:-.cache/wheelhouse/sovereign}"
PY="${PYTHON:-.venv/bin/python}"
want=$( (cat pyproject.toml; find src -type f -name '*.py' -print0 | sort -z | xargs -0 cat) | sha256sum | cut -c1-16)
stamp="$OUT/.sovereign-stamp"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
rm -rf "$OUT"
mkdir -p "$OUT"
echo "build-wheelhouse: building the sovereign wheel and its dependencies into $OUT"
"$PY" -m pip wheel --quiet --only-binary=:all: --wheel-dir "$OUT" . 2>&1 | grep -v "^WARNING: Location" || true
ls "$OUT"/sovereign-*.whl >/dev/null
(cd "$OUT" && sha256sum ./*.whl >SHA256SUMS)
echo "$want" >"$stamp"
