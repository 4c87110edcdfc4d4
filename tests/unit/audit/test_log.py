"""The audit writer: durable appends, chains per data class, checkpoints, failures."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

from sovereign.audit import record as fmt
from sovereign.audit.errors import AuditKeyError, AuditUsageError, AuditWriteError
from sovereign.audit.layout import list_segments
from sovereign.audit.log import AuditLog
from sovereign.audit.signing import load_verifier
from sovereign.audit.verify import verify
from tests.unit.audit.conftest import (
    DAY,
    Clock,
    KeyPair,
    only_segment,
    read_lines,
    request,
    write_log,
)


def test_append_returns_receipts_that_match_the_chain(tmp_path: Path, keys: KeyPair) -> None:
    receipts = write_log(tmp_path, [request(i) for i in range(5)], signing_key=keys.private)
    entries = read_lines(only_segment(tmp_path / "internal"))
    records = [e for e in entries if e["type"] == "record"]
    assert [(r.sequence, r.hash) for r in receipts] == [(e["seq"], e["hash"]) for e in records]
    assert records[3]["record"] == request(3)
    assert [e["seq"] for e in entries] == list(range(len(entries)))
    assert entries[0]["prev"] == fmt.GENESIS
    assert all(b["prev"] == a["hash"] for a, b in zip(entries, entries[1:], strict=False))
    assert (entries[-1]["type"], entries[-1]["reason"]) == ("checkpoint", "close")
    report = verify(tmp_path, load_verifier(keys.public))
    assert (report.records, report.checkpoints) == (5, 1)


def test_one_chain_per_data_class(tmp_path: Path, keys: KeyPair) -> None:
    records = [request(0, "public"), request(1, None), request(2, "restricted"), request(3, None)]
    receipts = write_log(tmp_path, records, signing_key=keys.private)
    assert [r.sequence for r in receipts] == [0, 0, 0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["public", "restricted", "unclassified"]
    report = verify(tmp_path, load_verifier(keys.public))
    assert [(c.name, c.records) for c in report.chains] == [
        ("public", 1),
        ("restricted", 1),
        ("unclassified", 2),
    ]


def test_checkpoints_every_n_records(tmp_path: Path, keys: KeyPair) -> None:
    write_log(
        tmp_path, [request(i) for i in range(7)], signing_key=keys.private, checkpoint_every=3
    )
    kinds = [(e["type"], e.get("reason")) for e in read_lines(only_segment(tmp_path / "internal"))]
    record, count = ("record", None), ("checkpoint", "count")
    assert kinds == [record] * 3 + [count] + [record] * 3 + [count, record, ("checkpoint", "close")]


def test_an_interval_checkpoint_signs_a_quiet_log(tmp_path: Path, keys: KeyPair) -> None:
    async def main() -> list[str | None]:
        log = await AuditLog.open(tmp_path, signing_key=keys.private, checkpoint_interval_s=0.05)
        try:
            await log.append(request(0))
            for _ in range(100):
                await asyncio.sleep(0.02)
                reasons = [e.get("reason") for e in read_lines(only_segment(tmp_path / "internal"))]
                if "interval" in reasons:
                    return reasons
            return reasons
        finally:
            await log.close()

    assert asyncio.run(main()) == [None, "interval"]


def test_a_new_day_starts_a_segment_linked_to_the_last(tmp_path: Path, keys: KeyPair) -> None:
    clock = Clock()

    async def main() -> None:
        log = await AuditLog.open(tmp_path, signing_key=keys.private, clock=clock)
        await log.append(request(0))
        clock.now += DAY
        await log.append(request(1))
        clock.now -= 2 * DAY  # the clock steps back: stay in the newest segment
        await log.append(request(2))
        await log.close()

    asyncio.run(main())
    first, second = list_segments(tmp_path / "internal")
    assert (first.name, second.name) == ("2025-03-14.jsonl", "2025-03-15.jsonl")
    old, new = read_lines(first), read_lines(second)
    assert old[-1]["reason"] == "rollover"
    assert new[0]["prev"] == old[-1]["hash"] and new[0]["seq"] == 2
    assert [e["seq"] for e in new] == [2, 3, 4]
    assert verify(tmp_path, load_verifier(keys.public)).records == 3


def test_200_concurrent_appends_land_exactly_once(tmp_path: Path, keys: KeyPair) -> None:
    async def main() -> list[int]:
        log = await AuditLog.open(tmp_path, signing_key=keys.private, checkpoint_every=50)
        receipts = await asyncio.gather(*(log.append(request(i)) for i in range(200)))
        await log.close()
        return [r.sequence for r in receipts]

    sequences = asyncio.run(main())
    assert len(set(sequences)) == 200
    entries = read_lines(only_segment(tmp_path / "internal"))
    numbers = sorted(e["record"]["completion_tokens"] for e in entries if e["type"] == "record")
    assert numbers == list(range(200))
    report = verify(tmp_path, load_verifier(keys.public))
    assert (report.records, report.checkpoints) == (200, 5)


def test_append_is_durable_when_it_returns(
    tmp_path: Path, keys: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append(os.fstat(fd).st_size)

    monkeypatch.setattr(os, "fsync", fsync)

    async def main() -> None:
        log = await AuditLog.open(tmp_path, signing_key=keys.private)
        for number in range(3):
            await log.append(request(number))
            segment = only_segment(tmp_path / "internal")
            # The file was fsync'd at (at least) its current size before append returned.
            assert segment.stat().st_size in synced
        await log.close()

    asyncio.run(main())


@pytest.mark.parametrize("failing", ["write", "fsync"])
def test_a_failed_write_raises_and_marks_the_log_unhealthy_until_one_succeeds(
    tmp_path: Path, keys: KeyPair, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    real = getattr(os, failing)

    def disk_full(*args: object) -> object:
        raise OSError(errno.ENOSPC, "No space left on device")

    async def main() -> None:
        log = await AuditLog.open(tmp_path, signing_key=keys.private)
        await log.append(request(0))
        assert log.healthy
        monkeypatch.setattr(os, failing, disk_full)
        results = await asyncio.gather(
            *(log.append(request(i)) for i in range(1, 4)), return_exceptions=True
        )
        assert all(isinstance(r, AuditWriteError) for r in results)
        assert "No space left on device" in str(results[0])
        assert not log.healthy
        monkeypatch.setattr(os, failing, real)
        receipt = await log.append(request(4))
        assert log.healthy and receipt.sequence == 1
        await log.close()

    asyncio.run(main())
    records = [e for e in read_lines(only_segment(tmp_path / "internal")) if e["type"] == "record"]
    assert [e["record"]["completion_tokens"] for e in records] == [0, 4]
    assert verify(tmp_path, load_verifier(keys.public)).records == 2


def test_an_unusable_directory_is_a_write_error(tmp_path: Path, keys: KeyPair) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(AuditWriteError, match="cannot open audit directory"):
        write_log(tmp_path / "file" / "audit", [], signing_key=keys.private)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"data_class": "../etc"}, "not a valid name"),
        ({"data_class": 7}, "not a valid name"),
        ({"when": object()}, "cannot be written as JSON"),
        ({"ratio": float("nan")}, "cannot be written as JSON"),
        ({"text": "\ud800"}, "cannot be written as JSON"),
    ],
)
def test_a_record_that_cannot_be_logged_is_refused(
    tmp_path: Path, keys: KeyPair, record: dict[str, object], message: str
) -> None:
    async def main() -> None:
        log = await AuditLog.open(tmp_path, signing_key=keys.private)
        with pytest.raises(AuditWriteError, match=message):
            await log.append(record)
        assert log.healthy  # the storage is fine
        await log.close()

    asyncio.run(main())


def test_append_after_close_is_refused(tmp_path: Path, keys: KeyPair) -> None:
    async def main() -> None:
        log = await AuditLog.open(tmp_path, signing_key=keys.private)
        await log.close()
        await log.close()
        with pytest.raises(AuditWriteError, match="closed"):
            await log.append(request(0))

    asyncio.run(main())


def test_reopening_continues_the_chain(tmp_path: Path, keys: KeyPair) -> None:
    write_log(tmp_path, [request(0), request(1)], signing_key=keys.private)
    receipts = write_log(tmp_path, [request(2)], signing_key=keys.private)
    assert receipts[0].sequence == 3  # after two records and a closing checkpoint
    reasons = [e.get("reason") for e in read_lines(only_segment(tmp_path / "internal"))]
    assert reasons == [None, None, "close", None, "close"]
    report = verify(tmp_path, load_verifier(keys.public))
    assert (report.records, report.chains[0].recoveries) == (3, 0)


def test_after_a_crash_the_tail_is_signed_and_a_partial_line_dropped(
    tmp_path: Path, keys: KeyPair
) -> None:
    write_log(tmp_path, [request(0), request(1)], signing_key=keys.private, close=False)
    segment = only_segment(tmp_path / "internal")
    with segment.open("ab") as handle:
        handle.write(b'{"chain":"internal","hash":"12')  # a write cut short
    receipts = write_log(tmp_path, [request(2)], signing_key=keys.private)
    assert receipts[0].sequence == 3
    reasons = [e.get("reason") for e in read_lines(segment)]
    assert reasons == [None, None, "recover", None, "close"]
    report = verify(tmp_path, load_verifier(keys.public))
    assert (report.records, report.chains[0].recoveries) == (3, 1)
    assert "1 unclean shutdown(s) recovered" in report.summary()


def test_a_corrupt_last_entry_stops_the_writer_from_continuing(
    tmp_path: Path, keys: KeyPair
) -> None:
    write_log(tmp_path, [request(0)], signing_key=keys.private)
    segment = only_segment(tmp_path / "internal")
    segment.write_text(segment.read_text().replace('"close"', '"clone"'))
    with pytest.raises(AuditWriteError, match="last entry of .* is unreadable"):
        write_log(tmp_path, [request(1)], signing_key=keys.private)


def test_without_a_signing_key_there_are_no_checkpoints(tmp_path: Path, keys: KeyPair) -> None:
    write_log(tmp_path, [request(0), request(1)], signing_key=None, checkpoint_every=1)
    assert {e["type"] for e in read_lines(only_segment(tmp_path / "internal"))} == {"record"}
    assert verify(tmp_path, load_verifier(keys.public), allow_unsigned_tail=True).records == 2


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"checkpoint_every": 0}, AuditUsageError, "checkpoint_every"),
        ({"checkpoint_interval_s": 0.0}, AuditUsageError, "checkpoint_interval_s"),
        ({"retention_days": {"internal": 0}}, AuditUsageError, "retention of internal"),
        ({"default_retention_days": 0}, AuditUsageError, "default retention"),
        ({"signing_key": Path("/nonexistent/audit.pem")}, AuditKeyError, "cannot read"),
    ],
)
def test_bad_settings_are_named(
    tmp_path: Path,
    keys: KeyPair,
    options: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    settings: dict[str, object] = {"signing_key": keys.private, **options}

    async def main() -> None:
        await AuditLog.open(tmp_path, **settings)  # type: ignore[arg-type]

    with pytest.raises(error, match=message):
        asyncio.run(main())


def test_a_public_key_is_not_a_signing_key(tmp_path: Path, keys: KeyPair) -> None:
    with pytest.raises(AuditKeyError, match="not a PEM private key"):
        write_log(tmp_path, [], signing_key=keys.public)
