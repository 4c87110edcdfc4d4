"""Retention: expired segments go, with a signed statement the verifier accepts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sovereign.audit import record as fmt
from sovereign.audit.errors import AuditUsageError, ChainBrokenError
from sovereign.audit.layout import RETENTION_FILE
from sovereign.audit.log import AuditLog
from sovereign.audit.retention import prune
from sovereign.audit.signing import load_signer, load_verifier
from sovereign.audit.verify import KIND_BAD_RETENTION, KIND_MISSING, verify
from tests.unit.audit.conftest import DAY, START, Clock, KeyPair, read_lines, request, write_lines

# Segments of 2025-03-14 .. 2025-03-18 (five days) in two data classes.
DAYS = 5
LATER = datetime(2025, 3, 20, 8, 0, tzinfo=UTC)  # the 14th is 6 days old, the 18th 2


def five_days(directory: Path, keys: KeyPair) -> None:
    clock = Clock(START)

    async def main() -> None:
        log = await AuditLog.open(directory, signing_key=keys.private, clock=clock)
        for day in range(DAYS):
            await log.append(request(day, "public"))
            await log.append(request(day, "restricted"))
            clock.now += DAY
        await log.close()

    asyncio.run(main())


def names(chain_dir: Path) -> list[str]:
    return sorted(p.name for p in chain_dir.glob("*.jsonl") if p.name != RETENTION_FILE)


def test_prune_removes_only_expired_segments_of_each_class(tmp_path: Path, keys: KeyPair) -> None:
    five_days(tmp_path, keys)
    removed = prune(
        tmp_path,
        signer=load_signer(keys.private),
        retention_days={"public": 3},
        default_retention_days=5,
        now=LATER,
    )
    # public keeps 3 days: the 14th, 15th and 16th (older than the 17th) go;
    # restricted (default 5) loses only the 14th.
    assert sorted(str(p.relative_to(tmp_path)) for p in removed) == [
        "public/2025-03-14.jsonl",
        "public/2025-03-15.jsonl",
        "public/2025-03-16.jsonl",
        "restricted/2025-03-14.jsonl",
    ]
    assert names(tmp_path / "public") == ["2025-03-17.jsonl", "2025-03-18.jsonl"]
    assert len(names(tmp_path / "restricted")) == 4
    report = verify(tmp_path, load_verifier(keys.public))
    assert [(c.name, c.records, c.first_seq) for c in report.chains] == [
        ("public", 2, 6),  # three days of a record and a rollover checkpoint went
        ("restricted", 4, 2),
    ]
    assert "2 chain(s) start after pruning" in report.summary()
    (statement,) = read_lines(tmp_path / "public" / RETENTION_FILE)
    assert statement["removed"] == ["2025-03-14.jsonl", "2025-03-15.jsonl", "2025-03-16.jsonl"]
    assert (statement["start_seq"], statement["start_segment"]) == (6, "2025-03-17.jsonl")
    # Pruning again removes nothing more; a second round later removes more and still verifies.
    assert (
        prune(
            tmp_path,
            signer=load_signer(keys.private),
            retention_days={"public": 3},
            default_retention_days=5,
            now=LATER,
        )
        == []
    )
    prune(
        tmp_path,
        signer=load_signer(keys.private),
        retention_days={},
        default_retention_days=1,
        now=LATER,
    )
    assert names(tmp_path / "public") == ["2025-03-18.jsonl"]
    assert verify(tmp_path, load_verifier(keys.public)).records == 2


def test_the_newest_segment_is_kept_however_old(tmp_path: Path, keys: KeyPair) -> None:
    five_days(tmp_path, keys)
    far = datetime(2030, 1, 1, tzinfo=UTC)
    prune(
        tmp_path,
        signer=load_signer(keys.private),
        retention_days={},
        default_retention_days=1,
        now=far,
    )
    assert names(tmp_path / "public") == ["2025-03-18.jsonl"]
    assert verify(tmp_path, load_verifier(keys.public)).records == 2


def test_deleting_a_segment_that_had_not_expired_is_found(tmp_path: Path, keys: KeyPair) -> None:
    five_days(tmp_path, keys)
    prune(
        tmp_path,
        signer=load_signer(keys.private),
        retention_days={"public": 3},
        default_retention_days=5,
        now=LATER,
    )
    (tmp_path / "public" / "2025-03-17.jsonl").unlink()  # still within retention
    with pytest.raises(ChainBrokenError) as caught:
        verify(tmp_path, load_verifier(keys.public))
    error = caught.value
    assert (error.path.name, error.line, error.sequence, error.kind) == (
        "2025-03-18.jsonl",
        1,
        8,
        KIND_MISSING,
    )
    assert "no signed retention statement says they were pruned" in error.reason


def test_deleting_old_segments_without_pruning_is_found(tmp_path: Path, keys: KeyPair) -> None:
    five_days(tmp_path, keys)
    (tmp_path / "restricted" / "2025-03-14.jsonl").unlink()
    with pytest.raises(ChainBrokenError) as caught:
        verify(tmp_path, load_verifier(keys.public))
    assert (caught.value.path.parent.name, caught.value.kind) == ("restricted", KIND_MISSING)


def test_a_forged_retention_statement_is_found(
    tmp_path: Path, keys: KeyPair, other_keys: KeyPair
) -> None:
    five_days(tmp_path, keys)
    # An attacker without the key deletes two days and signs with their own key.
    prune(
        tmp_path,
        signer=load_signer(other_keys.private),
        retention_days={"public": 1},
        default_retention_days=3650,
        now=LATER,
    )
    with pytest.raises(ChainBrokenError) as caught:
        verify(tmp_path, load_verifier(keys.public))
    assert (caught.value.path.name, caught.value.line, caught.value.kind) == (
        RETENTION_FILE,
        1,
        KIND_BAD_RETENTION,
    )


def test_an_edited_retention_statement_is_found(tmp_path: Path, keys: KeyPair) -> None:
    five_days(tmp_path, keys)
    signer = load_signer(keys.private)
    prune(
        tmp_path, signer=signer, retention_days={"public": 3}, default_retention_days=9, now=LATER
    )
    statements = read_lines(tmp_path / "public" / RETENTION_FILE)
    statements[0]["start_seq"] = 8  # to cover deleting the 17th as well
    write_lines(tmp_path / "public" / RETENTION_FILE, statements)
    with pytest.raises(ChainBrokenError) as caught:
        verify(tmp_path, load_verifier(keys.public))
    assert caught.value.kind == KIND_BAD_RETENTION
    assert "signature does not match" in caught.value.reason
    assert fmt.RETENTION == statements[0]["type"]


def test_the_log_prunes_with_its_own_settings(tmp_path: Path, keys: KeyPair) -> None:
    five_days(tmp_path, keys)

    async def main() -> list[Path]:
        log = await AuditLog.open(
            tmp_path,
            signing_key=keys.private,
            retention_days={"restricted": 2},
            default_retention_days=100,
        )
        try:
            return await log.prune(LATER)
        finally:
            await log.close()

    removed = asyncio.run(main())
    # Two days kept on the 20th: the 18th; the newest segment stays anyway.
    assert sorted(p.name for p in removed) == [f"2025-03-{day}.jsonl" for day in (14, 15, 16, 17)]
    assert {p.parent.name for p in removed} == {"restricted"}
    assert verify(tmp_path, load_verifier(keys.public)).records == DAYS + 1


def test_pruning_needs_a_signing_key(tmp_path: Path) -> None:
    async def main() -> None:
        log = await AuditLog.open(tmp_path, signing_key=None)
        try:
            await log.prune()
        finally:
            await log.close()

    with pytest.raises(AuditUsageError, match="needs a signing key"):
        asyncio.run(main())
