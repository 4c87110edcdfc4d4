"""The verifier finds the first broken entry and says what kind of break it is."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from sovereign.audit import record as fmt
from sovereign.audit.errors import AuditUsageError, AuditVerifyError, ChainBrokenError
from sovereign.audit.layout import list_segments
from sovereign.audit.log import AuditLog
from sovereign.audit.signing import load_signer, load_verifier
from sovereign.audit.verify import (
    KIND_BAD_SIGNATURE,
    KIND_INSERTED,
    KIND_MISSING,
    KIND_MODIFIED,
    KIND_REORDERED,
    KIND_UNSIGNED_TAIL,
    verify,
)
from tests.unit.audit.conftest import (
    DAY,
    Clock,
    KeyPair,
    only_segment,
    read_lines,
    request,
    reseal,
    write_lines,
    write_log,
)

# Eight records, a checkpoint every five: lines 1-5 are seq 0-4, line 6 the
# checkpoint (seq 5), lines 7-9 seq 6-8, line 10 the closing checkpoint.
RECORDS = 8


@pytest.fixture
def segment(tmp_path: Path, keys: KeyPair) -> Path:
    write_log(
        tmp_path, [request(i) for i in range(RECORDS)], signing_key=keys.private, checkpoint_every=5
    )
    path = only_segment(tmp_path / "internal")
    assert [e["type"][0] for e in read_lines(path)] == list("rrrrrcrrrc")
    return path


def broken(path: Path, keys: KeyPair, **options: Any) -> ChainBrokenError:
    with pytest.raises(ChainBrokenError) as caught:
        verify(path, load_verifier(keys.public), **options)
    return caught.value


def where(error: ChainBrokenError) -> tuple[str, int, int | None, str]:
    return error.path.name, error.line, error.sequence, error.kind


def test_an_untouched_log_verifies(segment: Path, keys: KeyPair) -> None:
    report = verify(segment.parent.parent, load_verifier(keys.public))
    assert report.summary() == "1 chain(s) (internal), 8 records, 2 checkpoints"
    assert verify(segment, load_verifier(keys.public)).records == RECORDS
    assert verify(segment.parent, load_verifier(keys.public)).records == RECORDS


def test_a_modified_record_is_found(segment: Path, keys: KeyPair) -> None:
    entries = read_lines(segment)
    entries[2]["record"]["admission"] = "refused"
    write_lines(segment, entries)
    error = broken(segment.parent.parent, keys)
    assert where(error) == (segment.name, 3, 2, KIND_MODIFIED)
    assert "hash does not match" in error.reason
    assert str(error).startswith(f"{segment}:3: seq 2: modified: ")


def test_a_modified_and_rehashed_record_is_found(segment: Path, keys: KeyPair) -> None:
    entries = read_lines(segment)
    entries[2]["record"]["admission"] = "refused"
    entries[2] = reseal(entries[2])
    write_lines(segment, entries)
    error = broken(segment, keys)
    assert where(error) == (segment.name, 3, 2, KIND_MODIFIED)
    assert "line 4) does not link to this one" in error.reason


def test_a_rewritten_chain_is_caught_by_the_next_checkpoint(segment: Path, keys: KeyPair) -> None:
    entries = read_lines(segment)
    entries[2]["record"]["admission"] = "refused"
    for index in range(2, 6):  # re-hash and re-link everything up to the checkpoint
        if index > 2:
            entries[index]["prev"] = entries[index - 1]["hash"]
        entries[index] = reseal(entries[index])
    write_lines(segment, entries)
    error = broken(segment, keys)
    assert where(error) == (segment.name, 6, 5, KIND_BAD_SIGNATURE)
    assert "forged or altered" in error.reason


def test_a_deleted_record_is_found(segment: Path, keys: KeyPair) -> None:
    entries = read_lines(segment)
    del entries[2]
    write_lines(segment, entries)
    error = broken(segment, keys)
    assert where(error) == (segment.name, 3, 2, KIND_MISSING)
    assert error.reason == "the entry before this line is missing"


def test_several_deleted_records_are_named(segment: Path, keys: KeyPair) -> None:
    entries = read_lines(segment)
    del entries[1:4]
    write_lines(segment, entries)
    error = broken(segment, keys)
    assert where(error) == (segment.name, 2, 1, KIND_MISSING)
    assert error.reason == "entries 1 to 3 are missing before this line"


def test_reordered_records_are_found(segment: Path, keys: KeyPair) -> None:
    entries = read_lines(segment)
    entries[2], entries[3] = entries[3], entries[2]
    write_lines(segment, entries)
    error = broken(segment, keys)
    assert where(error) == (segment.name, 3, 3, KIND_REORDERED)
    assert f"seq 3 comes before seq 2 ({segment.name} line 4)" in error.reason


def test_a_replayed_record_is_found(segment: Path, keys: KeyPair) -> None:
    entries = read_lines(segment)
    entries.insert(4, entries[1])
    write_lines(segment, entries)
    error = broken(segment, keys)
    assert where(error) == (segment.name, 5, 1, KIND_INSERTED)
    assert "seq 1 appears after seq 3" in error.reason


def test_a_duplicated_line_is_found(segment: Path, keys: KeyPair) -> None:
    entries = read_lines(segment)
    entries.insert(3, entries[2])
    write_lines(segment, entries)
    error = broken(segment, keys)
    assert where(error) == (segment.name, 4, 2, KIND_INSERTED)
    assert error.reason == f"a copy of {segment.name} line 3"


def test_a_forged_record_slipped_into_the_chain_is_found(segment: Path, keys: KeyPair) -> None:
    entries = read_lines(segment)
    forged = {**entries[2], "record": request(99)}  # same seq and prev as the genuine seq 2
    entries.insert(2, reseal(forged))
    write_lines(segment, entries)
    error = broken(segment, keys)
    assert where(error) == (segment.name, 3, 2, KIND_INSERTED)
    assert f"this entry and {segment.name} line 4 both claim seq 2" in error.reason


def test_a_forged_checkpoint_signature_is_found(
    segment: Path, keys: KeyPair, other_keys: KeyPair
) -> None:
    entries = read_lines(segment)
    checkpoint = entries[5]
    checkpoint["sig"] = load_signer(other_keys.private).sign(fmt.signed_text(checkpoint))
    entries[5] = reseal(checkpoint)
    write_lines(segment, entries)
    error = broken(segment, keys)
    assert where(error) == (segment.name, 6, 5, KIND_BAD_SIGNATURE)
    assert error.reason == "the signature does not match: forged or altered"


def test_the_wrong_public_key_is_named(segment: Path, other_keys: KeyPair) -> None:
    error = broken(segment, other_keys)
    assert where(error) == (segment.name, 6, 5, KIND_BAD_SIGNATURE)
    assert "not the given public key" in error.reason


def test_a_log_still_being_written_has_an_unsigned_tail(tmp_path: Path, keys: KeyPair) -> None:
    write_log(tmp_path, [request(i) for i in range(3)], signing_key=keys.private, close=False)
    error = broken(tmp_path, keys)
    assert where(error)[1:] == (1, 0, KIND_UNSIGNED_TAIL)
    assert error.reason.startswith("3 entries from here on are covered by no checkpoint")
    assert verify(tmp_path, load_verifier(keys.public), allow_unsigned_tail=True).records == 3


def test_cutting_off_the_closing_checkpoint_is_found(segment: Path, keys: KeyPair) -> None:
    write_lines(segment, read_lines(segment)[:-1])
    error = broken(segment.parent, keys)
    assert where(error) == (segment.name, 7, 6, KIND_UNSIGNED_TAIL)


def test_cutting_the_tail_back_to_a_checkpoint_is_found(segment: Path, keys: KeyPair) -> None:
    write_lines(segment, read_lines(segment)[:6])
    error = broken(segment.parent, keys)
    assert where(error) == (segment.name, 6, 5, KIND_UNSIGNED_TAIL)
    assert "ends at a 'count' checkpoint, not a closing one" in error.reason
    # Alone, a segment only has to end in a checkpoint: a closed day does.
    assert verify(segment, load_verifier(keys.public)).records == 5


def test_a_line_cut_short_is_found(segment: Path, keys: KeyPair) -> None:
    segment.write_bytes(segment.read_bytes()[:-20])
    assert where(broken(segment, keys)) == (segment.name, 10, 9, KIND_MODIFIED)


def test_an_entry_moved_to_another_chain_is_found(tmp_path: Path, keys: KeyPair) -> None:
    write_log(tmp_path, [request(0, "public"), request(1, "internal")], signing_key=keys.private)
    public = only_segment(tmp_path / "public")
    entries = read_lines(public)
    entries.insert(1, read_lines(only_segment(tmp_path / "internal"))[0])
    write_lines(public, entries)
    error = broken(tmp_path, keys)
    assert where(error) == (public.name, 2, 0, KIND_INSERTED)
    assert "belongs to chain 'internal'" in error.reason


def test_a_deleted_segment_in_the_middle_is_found(tmp_path: Path, keys: KeyPair) -> None:
    clock = Clock()

    async def main() -> None:
        log = await AuditLog.open(tmp_path, signing_key=keys.private, clock=clock)
        for _ in range(3):
            await log.append(request(0))
            clock.now += DAY
        await log.close()

    asyncio.run(main())
    first, middle, last = list_segments(tmp_path / "internal")
    assert verify(middle, load_verifier(keys.public)).records == 1  # a day on its own
    middle.unlink()
    error = broken(tmp_path, keys)
    assert where(error) == (last.name, 1, 2, KIND_MISSING)
    assert error.reason == "entries 2 to 3 are missing before this line"


def test_nothing_to_verify(tmp_path: Path, keys: KeyPair) -> None:
    with pytest.raises(AuditVerifyError, match="no audit segments"):
        verify(tmp_path, load_verifier(keys.public))
    with pytest.raises(AuditUsageError, match="does not exist"):
        verify(tmp_path / "nope", load_verifier(keys.public))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(AuditUsageError, match="not a segment file"):
        verify(tmp_path / "notes.txt", load_verifier(keys.public))
