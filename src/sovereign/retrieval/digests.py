"""One canonical digest for configuration: sorted-key compact JSON, SHA-256."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping


def canonical_digest(value: Mapping[str, object]) -> str:
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(encoded.encode("ascii")).hexdigest()
