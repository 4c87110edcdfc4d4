"""Entries cut from the end of a chain stay found, after the next writer start too;
with the checkpoint mirror, so does a chain deleted whole or cut back to a clean
shutdown (issue 8, point 9)."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from sovereign.audit import record as fmt
from sovereign.audit.cli import main as audit_cli
from sovereign.audit.errors import ChainBrokenError
from sovereign.audit.layout import list_segments
from sovereign.audit.log import AuditLog
from sovereign.audit.signing import load_verifier
from sovereign.audit.verify import KIND_CUT, KIND_LOST, KIND_MISSING, KIND_MODIFIED, verify
from tests.unit.audit.conftest import DAY, Clock, KeyPair, read_lines, request, write_log


def _cut_lines(count: int) -> Callable[[Path], None]:
    """Cut the last ``count`` lines off the chain's last segment."""

    def cut(chain: Path) -> None:
        segment = list_segments(chain)[-1]
        lines = segment.read_bytes().splitlines(keepends=True)
        segment.write_bytes(b"".join(lines[:-count]))

    return cut


def _cut_mid_line(chain: Path) -> None:
    segment = list_segments(chain)[-1]
    data = segment.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n")
    segment.write_bytes(data[: last + 1 + 40])  # the last line, cut after 40 bytes


def _drop_last_segment(chain: Path) -> None:
    list_segments(chain)[-1].unlink()


CUTS = {
    "at a line boundary": _cut_lines(3),
    "mid-line": _cut_mid_line,
    "a whole last segment": _drop_last_segment,
}


def _two_days(directory: Path, keys: KeyPair, clock: Clock, **options: object) -> None:
    write_log(directory, [request(i) for i in range(4)], signing_key=keys.private, clock=clock)
    clock.now += DAY
    write_log(directory, [request(i) for i in range(4, 8)], signing_key=keys.private, clock=clock)


@pytest.mark.parametrize("cut", CUTS.values(), ids=CUTS.keys())
def test_a_cut_tail_is_found_before_and_after_the_next_writer_start(
    tmp_path: Path, keys: KeyPair, cut: Callable[[Path], None]
) -> None:
    clock = Clock()
    _two_days(tmp_path, keys, clock)
    key = load_verifier(keys.public)
    verify(tmp_path, key)  # whole
    cut(tmp_path / "internal")

    with pytest.raises(ChainBrokenError) as before:
        verify(tmp_path, key, allow_unsigned_tail=True)
    # A line cut mid-way is itself a broken entry; otherwise HEAD names what is gone.
    assert before.value.kind in (KIND_CUT, KIND_MODIFIED)

    # The next writer start records the loss, then carries on.
    write_log(tmp_path, [request(9)], signing_key=keys.private, clock=clock)
    entries = [e for s in list_segments(tmp_path / "internal") for e in read_lines(s)]
    (loss,) = [e for e in entries if e.get("record", {}).get("event") == fmt.LOSS_EVENT]
    expected, found = loss["record"]["expected"], loss["record"]["found"]
    assert expected["seq"] > found["seq"] and expected["segment"].endswith(".jsonl")
    after = entries[entries.index(loss) + 1]
    assert (after["type"], after["reason"]) == ("checkpoint", "recover")  # signed at once

    with pytest.raises(ChainBrokenError) as later:
        verify(tmp_path, key)
    assert later.value.kind == KIND_LOST and f"to {expected['seq']}" in later.value.reason
    errors = io.StringIO()
    argv = ["verify", str(tmp_path), "--public-key", str(keys.public)]
    assert audit_cli(argv, stdout=io.StringIO(), stderr=errors) != 0
    assert "lost" in errors.getvalue()


def test_a_clean_restart_is_no_loss(tmp_path: Path, keys: KeyPair) -> None:
    clock = Clock()
    _two_days(tmp_path, keys, clock)
    write_log(tmp_path, [request(9)], signing_key=keys.private, clock=clock)
    report = verify(tmp_path, load_verifier(keys.public))
    assert report.records == 9


def test_a_head_left_behind_by_a_crash_is_no_loss(tmp_path: Path, keys: KeyPair) -> None:
    """The files may be ahead of a HEAD not yet on disk: that is not a loss."""
    clock = Clock()
    _two_days(tmp_path, keys, clock)
    head = tmp_path / "internal" / "HEAD"
    text = head.read_text()
    write_log(tmp_path, [request(9)], signing_key=keys.private, clock=clock)
    head.write_text(text)  # as if the last HEAD update never reached the disk
    write_log(tmp_path, [request(10)], signing_key=keys.private, clock=clock)
    assert verify(tmp_path, load_verifier(keys.public)).records == 10


def test_the_mirror_finds_a_deleted_chain_and_a_cut_back_to_a_clean_shutdown(
    tmp_path: Path, keys: KeyPair
) -> None:
    audit, mirror = tmp_path / "audit", tmp_path / "mirror"
    clock = Clock()
    key = load_verifier(keys.public)
    write_log(audit, [request(0)], signing_key=keys.private, clock=clock, mirror=mirror)
    saved = tmp_path / "saved"
    shutil.copytree(audit, saved)  # a clean shutdown to go back to later
    write_log(audit, [request(1), request(2)], signing_key=keys.private, clock=clock, mirror=mirror)
    assert verify(audit, key, checkpoints=mirror).records == 3
    assert sorted(p.name for p in mirror.iterdir()) == ["internal.jsonl"]

    # Cut back exactly to the earlier clean shutdown, HEAD included.
    shutil.rmtree(audit)
    shutil.copytree(saved, audit)
    verify(audit, key)  # the files alone look whole
    with pytest.raises(ChainBrokenError) as cut:
        verify(audit, key, checkpoints=mirror)
    assert cut.value.kind == KIND_CUT and "mirror" in cut.value.reason

    # A whole data class removed.
    write_log(
        audit, [request(5, data_class="public")], signing_key=keys.private, clock=clock,
        mirror=mirror,
    )  # fmt: skip
    shutil.rmtree(audit / "internal")
    with pytest.raises(ChainBrokenError) as gone:
        verify(audit, key, checkpoints=mirror)
    assert gone.value.kind == KIND_MISSING and "'internal' is gone" in gone.value.reason


def test_a_mirror_that_cannot_be_written_is_counted_and_the_log_goes_on(
    tmp_path: Path, keys: KeyPair
) -> None:
    mirror = tmp_path / "mirror"

    async def main() -> int:
        log = await AuditLog.open(tmp_path / "audit", signing_key=keys.private, mirror=mirror)
        os.chmod(mirror, 0o500)
        try:
            await log.append(request(0))
            await log.close()
        finally:
            os.chmod(mirror, 0o700)
        return log.mirror_failures

    if os.geteuid() == 0:
        # root writes through 0500: make the mirror's file a directory instead
        (mirror / "internal.jsonl").mkdir(parents=True)
    assert asyncio.run(main()) >= 1
    assert verify(tmp_path / "audit", load_verifier(keys.public)).records == 1
