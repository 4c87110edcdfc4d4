"""Load a filter plugin file the way Ansible does: by path, not by package."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

FILTERS = Path(__file__).resolve().parents[3] / "src" / "sovereign" / "ansible" / "filter"


def load_filter(filename: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"plugin_{Path(filename).stem}", FILTERS / filename
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
