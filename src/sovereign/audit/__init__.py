"""Tamper-evident audit log: hash-chained records, signed checkpoints, retention.

One chain per data class, in daily segment files; every entry carries the hash
of the one before it, and signed checkpoints (ECDSA P-256) pin the chain so a
change, a deletion, a reordering or an insertion shows up in ``sovereign audit
verify``. See docs/audit.md for the format and what the verifier can and cannot
detect.
"""

from __future__ import annotations
