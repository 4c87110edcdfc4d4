"""The entries of an audit chain: canonical JSON, hashes, parsing.

Canonical JSON, the bytes that are hashed and signed, is::

    json.dumps(value, sort_keys=True, separators=(",", ":"),
               ensure_ascii=False, allow_nan=False).encode("utf-8")

keys sorted by code point, no whitespace, non-ASCII characters as themselves
(UTF-8), strings escaped as JSON requires, no NaN or Infinity. Integers are
exact; floats are written as Python writes them (shortest round trip), so a
verifier in another language should prefer records without floats.

Each line of a segment file is the canonical JSON of one entry, and an entry's
``hash`` is the SHA-256 (hex) of the canonical JSON of the entry without its
``hash`` key. Every entry carries ``v`` (format version), ``type``, ``chain``,
``seq`` (0, 1, 2... along the chain), ``prev`` (hash of entry ``seq - 1``, or 64
zeros for seq 0) and ``time`` (UTC, when the writer chained it):

- ``record``: ``record`` holds the caller's record, unchanged;
- ``checkpoint``: ``reason`` (count, interval, rollover, recover, close), ``key``
  (id of the signing key) and ``sig``, an ECDSA signature over the canonical
  JSON of the entry without ``sig`` and ``hash``. Since the signed text holds
  ``prev``, a checkpoint pins every entry before it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

FORMAT_VERSION = 1
GENESIS = "0" * 64
RECORD = "record"
CHECKPOINT = "checkpoint"
RETENTION = "retention"

# Why a checkpoint was written; "close" marks a clean shutdown.
REASON_COUNT = "count"
REASON_INTERVAL = "interval"
REASON_ROLLOVER = "rollover"
REASON_RECOVER = "recover"
REASON_CLOSE = "close"
# The record a writer adds when it starts on a chain cut short (sovereign.audit.log).
LOSS_EVENT = "audit_loss"

_REQUIRED = {"v": int, "type": str, "chain": str, "seq": int, "prev": str, "time": str, "hash": str}


class EntryFormatError(ValueError):
    """A line is not a well-formed entry; the message says why."""


def canonical_json(value: object) -> str:
    """The canonical JSON text of ``value`` (see the module docstring).

    Raises TypeError or ValueError for values JSON cannot hold exactly.
    """
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    text.encode("utf-8")  # lone surrogates cannot be written: fail here, not later
    return text


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def entry_hash(entry: Mapping[str, object]) -> str:
    """The hash of an entry: SHA-256 of its canonical JSON without ``hash``."""
    return sha256_hex(canonical_json({k: v for k, v in entry.items() if k != "hash"}))


def signed_text(entry: Mapping[str, object]) -> str:
    """What a checkpoint's (or retention statement's) signature covers."""
    return canonical_json({k: v for k, v in entry.items() if k not in ("sig", "hash")})


def format_time(timestamp: float) -> str:
    """UTC, microseconds, ``Z``: ``2025-01-31T23:59:59.123456Z``."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seal(entry: Mapping[str, object]) -> tuple[str, str]:
    """Add the hash to an entry: returns (hash, line without the newline)."""
    digest = entry_hash(entry)
    return digest, canonical_json({**entry, "hash": digest})


def record_line(chain: str, seq: int, prev: str, time: str, record_json: str) -> tuple[str, str]:
    """:func:`seal` for a record entry whose record is already canonical JSON.

    The writer's fast path: it builds the canonical text without parsing the
    record again. Keys are in sorted order; ``chain`` is escaped as JSON,
    ``prev`` and ``time`` need no escaping.
    """
    name = json.dumps(chain, ensure_ascii=False)
    tail = (
        f'"prev":"{prev}","record":{record_json},"seq":{seq},'
        f'"time":"{time}","type":"record","v":{FORMAT_VERSION}}}'
    )
    digest = sha256_hex(f'{{"chain":{name},{tail}')
    return digest, f'{{"chain":{name},"hash":"{digest}",{tail}'


def parse_line(raw: bytes) -> dict[str, Any]:
    """Parse and check one line (without its newline): canonical form and own hash.

    Raises EntryFormatError naming what is wrong. Links to other entries and
    signatures are the verifier's business.
    """
    try:
        text = raw.decode("utf-8")
        entry = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EntryFormatError("not a JSON entry") from exc
    if not isinstance(entry, dict):
        raise EntryFormatError("not a JSON object")
    for key, kind in _REQUIRED.items():
        if not isinstance(entry.get(key), kind) or isinstance(entry.get(key), bool):
            raise EntryFormatError(f"field {key!r} is missing or not a {kind.__name__}")
    try:
        canonical = canonical_json(entry)
    except ValueError as exc:
        raise EntryFormatError("holds a value canonical JSON cannot") from exc
    if canonical != text:
        raise EntryFormatError("not in canonical form: the line was edited")
    if entry_hash(entry) != entry["hash"]:
        raise EntryFormatError("its hash does not match its content: the entry was altered")
    return entry
