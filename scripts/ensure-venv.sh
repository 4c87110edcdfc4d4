#!/usr/bin/env bash
# Create .venv with the pinned controller toolchain (requirements-dev.txt)
# and the sovereign package, once; re-create it when either input changes.
set -euo pipefail

VENV="${1:-.venv}"
stamp="$VENV/.sovereign-stamp"
want=$(cat requirements-dev.txt pyproject.toml | sha256sum | cut -c1-16)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-venv: installing Debian's python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else
    echo "ensure-venv: python3 cannot create a virtualenv: install python3-venv" >&2
    exit 1
  fi
fi

# torch must be the CPU build (a local wheel directory or PyTorch's CPU
# index, see torch-source.sh), never PyPI's CUDA build.
torch_source=$(scripts/torch-source.sh)
mapfile -t TORCH_SOURCE <<<"$torch_source"

# Upgrade in place: pip replaces what changed and keeps what did not, which
# is much faster than a rebuild (and keeps tools that are running working).
echo "ensure-venv: installing requirements-dev.txt and the sovereign package into $VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "${TORCH_SOURCE[@]}" -r requirements-dev.txt
"$VENV/bin/pip" install --quiet --editable .
echo "$want" >"$stamp"
