"""``python -m sovereign.model.tiny``: see :mod:`sovereign.model.tiny.cli`."""

from __future__ import annotations

import sys

from sovereign.model.tiny.cli import main

if __name__ == "__main__":
    sys.exit(main())
