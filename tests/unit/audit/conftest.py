"""Fixtures of the audit log tests: keys, a clock, a written log, line surgery."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sovereign.audit import record as fmt
from sovereign.audit.log import AuditLog, AuditReceipt
from tests.support.keys import write_ec_key_pair

DAY = 86400.0
START = datetime(2025, 3, 14, 9, 30, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path


def _write_pair(directory: Path, stem: str) -> KeyPair:
    return KeyPair(*write_ec_key_pair(directory, stem))


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return _write_pair(tmp_path_factory.mktemp("audit-keys"), "audit")


@pytest.fixture(scope="session")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return _write_pair(tmp_path_factory.mktemp("other-audit-keys"), "other")


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def request(number: int, data_class: str | None = "internal") -> dict[str, object]:
    """A record as the gateway writes one."""
    record: dict[str, object] = {
        "request_id": f"req-{number}",
        "user": "alice",
        "model": "llama",
        "model_digest": "sha256:" + "ab" * 32,
        "admission": "admitted",
        "prompt_tokens": 12,
        "completion_tokens": number,
        "prompt_sha256": "cd" * 32,
        "note": "réponse ✓",
    }
    if data_class is not None:
        record["data_class"] = data_class
    return record


def write_log(
    directory: Path,
    records: Sequence[Mapping[str, object]],
    *,
    signing_key: Path | None,
    clock: Clock | None = None,
    close: bool = True,
    **options: Any,
) -> list[AuditReceipt]:
    """Append ``records`` one after another (then close the log)."""

    async def main() -> list[AuditReceipt]:
        log = await AuditLog.open(
            directory, signing_key=signing_key, clock=clock or Clock(), **options
        )
        receipts = [await log.append(r) for r in records]
        if close:
            await log.close()
        return receipts

    return asyncio.run(main())


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def write_lines(path: Path, entries: Sequence[Mapping[str, Any]]) -> None:
    path.write_text("".join(fmt.canonical_json(e) + "\n" for e in entries), "utf-8")


def reseal(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry with its hash recomputed, as a forger would."""
    digest, _ = fmt.seal({k: v for k, v in entry.items() if k != "hash"})
    return {**entry, "hash": digest}


def only_segment(chain_dir: Path) -> Path:
    (segment,) = sorted(chain_dir.glob("*.jsonl"))
    return segment
