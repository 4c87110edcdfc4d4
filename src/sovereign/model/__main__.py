"""``python -m sovereign.model``: the same CLI as ``sovereign model``."""

from __future__ import annotations

import sys

from sovereign.model.cli import main

raise SystemExit(main(sys.argv[1:]))
