"""``python -m sovereign.gateway``: the same as ``sovereign gateway``."""

from __future__ import annotations

from sovereign.gateway.cli import main

raise SystemExit(main())
