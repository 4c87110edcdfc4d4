#!/usr/bin/env bash
# Where pip finds the CPU build of torch (torch==2.13.0+cpu), which PyPI does
# not carry (PyPI's torch is the CUDA build, 2.5 GB of libraries a CPU node
# never loads). Prints the pip options, one per line, for the first that has it:
#   1. the local wheel directory named by PIP_FIND_LINKS, or /opt/wheels
#      (SOVEREIGN_WHEEL_DIR names another default);
#   2. PyTorch's own CPU wheel index (TORCH_INDEX_URL, default below), when it
#      answers within 10 s.
# Fails with one line naming both when neither can be reached.
#   scripts/torch-source.sh            used by ensure-venv.sh and build-vllm-wheelhouse.sh
set -euo pipefail

INDEX="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"

for dir in ${PIP_FIND_LINKS:-} "${SOVEREIGN_WHEEL_DIR:-/opt/wheels}"; do
  if compgen -G "$dir/torch-*+cpu-*.whl" >/dev/null; then
    printf -- '--find-links\n%s\n' "$dir"
    exit 0
  fi
done

if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)' \
  "$INDEX/torch/" >/dev/null 2>&1; then
  printf -- '--extra-index-url\n%s\n' "$INDEX"
  exit 0
fi

echo "torch-source: no CPU torch wheel: put torch-2.13.0+cpu in a directory named by PIP_FIND_LINKS (or /opt/wheels), or make PyTorch's CPU index $INDEX reachable (TORCH_INDEX_URL names a mirror of it)" >&2
exit 1
