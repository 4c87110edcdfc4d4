"""``python -m sovereign.eval``: the same CLI as ``sovereign eval``."""

from __future__ import annotations

import sys

from sovereign.eval.cli import main

raise SystemExit(main(sys.argv[1:]))
