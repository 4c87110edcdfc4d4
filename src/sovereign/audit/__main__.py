"""``python -m sovereign.audit``: the same CLI as ``sovereign audit``."""

from __future__ import annotations

import sys

from sovereign.audit.cli import main

raise SystemExit(main(sys.argv[1:]))
