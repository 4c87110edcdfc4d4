#!/usr/bin/env bash
# Build the wheelhouse of the sovereign package: its wheel and the wheels of
# its pinned dependencies (pyproject.toml), for nodes that install with
# `pip install --no-index --find-links` (the air-gap path, used everywhere).
#   scripts/build-wheelhouse.sh [OUT [EXTRAS]]
# EXTRAS (e.g. "eval") adds an extra's dependencies: the evaluation hosts'
# wheelhouse (.cache/wheelhouse/sovereign-eval) carries Inspect AI's.
# Dependencies are resolved for the nodes' Python (Debian bookworm's 3.11.2,
# SOVEREIGN_NODE_PYTHON), not the controller's: a dependency whose newest
# release asks for a later 3.11 would otherwise reach the nodes and fail there.
# Rebuilt only when pyproject.toml, src/, EXTRAS or the nodes' Python change.
set -euo pipefail

OUT="${1:-.cache/wheelhouse/sovereign}"
EXTRAS="${2:-}"
PY="${PYTHON:-.venv/bin/python}"
NODE_PYTHON="${SOVEREIGN_NODE_PYTHON:-3.11.2}"
want=$( (echo "extras=$EXTRAS python=$NODE_PYTHON"; cat pyproject.toml; find src -type f -name '*.py' -print0 | sort -z | xargs -0 cat) | sha256sum | cut -c1-16)
stamp="$OUT/.sovereign-stamp"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
rm -rf "$OUT"
mkdir -p "$OUT"
echo "build-wheelhouse: building the sovereign wheel and its dependencies${EXTRAS:+ [$EXTRAS]} for Python $NODE_PYTHON into $OUT"
"$PY" -m pip wheel --quiet --no-deps --wheel-dir "$OUT" . 2>&1 | grep -v "^WARNING: Location" || true
wheel=$(ls "$OUT"/sovereign-*.whl)
"$PY" -m pip download --quiet --only-binary=:all: --python-version "$NODE_PYTHON" --dest "$OUT" \
  "$wheel${EXTRAS:+[$EXTRAS]}" 2>&1 | grep -v "^WARNING: Location" || true
if [ "$(find "$OUT" -name '*.whl' ! -name 'sovereign-*' | wc -l)" -eq 0 ]; then
  echo "build-wheelhouse: pip downloaded no dependencies into $OUT" >&2
  exit 1
fi
(cd "$OUT" && sha256sum ./*.whl >SHA256SUMS)
echo "$want" >"$stamp"
