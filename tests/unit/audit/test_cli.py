"""``sovereign audit``: exit codes and one-line messages."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from sovereign import cli as top
from sovereign.audit.cli import main
from sovereign.audit.log import AuditLog
from tests.unit.audit.conftest import (
    DAY,
    Clock,
    KeyPair,
    only_segment,
    read_lines,
    request,
    write_lines,
    write_log,
)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_verify_ok_prints_a_summary(tmp_path: Path, keys: KeyPair) -> None:
    write_log(tmp_path, [request(0), request(1, "public")], signing_key=keys.private)
    code, out, err = run("verify", str(tmp_path), "--public-key", str(keys.public))
    assert (code, err) == (0, "")
    assert out == f"OK: {tmp_path}: 2 chain(s) (internal, public), 2 records, 2 checkpoints\n"


def test_verify_names_the_first_broken_record(tmp_path: Path, keys: KeyPair) -> None:
    write_log(tmp_path, [request(i) for i in range(4)], signing_key=keys.private)
    segment = only_segment(tmp_path / "internal")
    entries = read_lines(segment)
    del entries[1]
    write_lines(segment, entries)
    code, out, err = run("verify", str(tmp_path), "--public-key", str(keys.public))
    assert (code, out) == (1, "")
    assert err == (
        f"sovereign audit: error: {segment}:2: seq 1: missing: "
        "the entry before this line is missing\n"
    )


def test_verify_of_a_live_log(tmp_path: Path, keys: KeyPair) -> None:
    write_log(tmp_path, [request(0)], signing_key=keys.private, close=False)
    argv = ["verify", str(tmp_path), "--public-key", str(keys.public)]
    code, _, err = run(*argv)
    assert code == 1 and ": unsigned tail: " in err and "--allow-unsigned-tail" in err
    assert run(*argv, "--allow-unsigned-tail")[0] == 0


def test_verify_with_the_wrong_key(tmp_path: Path, keys: KeyPair, other_keys: KeyPair) -> None:
    write_log(tmp_path, [request(0)], signing_key=keys.private)
    code, _, err = run("verify", str(tmp_path), "--public-key", str(other_keys.public))
    assert code == 1 and ": bad checkpoint signature: made with key " in err


def test_prune_removes_expired_segments(tmp_path: Path, keys: KeyPair) -> None:
    clock = Clock()  # March 2025: long expired by now

    async def main() -> None:
        log = await AuditLog.open(tmp_path, signing_key=keys.private, clock=clock)
        for data_class in ("public", "public", "internal", "internal"):
            await log.append(request(0, data_class))
            clock.now += DAY
        await log.close()

    asyncio.run(main())
    code, out, err = run(
        "prune",
        str(tmp_path),
        "--signing-key",
        str(keys.private),
        "--retention",
        "public=30",
        "--default-days",
        "36500",
    )
    assert (code, err) == (0, "")
    assert out == (
        f"removed {tmp_path / 'public' / '2025-03-14.jsonl'}\nOK: 1 expired segment(s) removed\n"
    )
    assert run("verify", str(tmp_path), "--public-key", str(keys.public))[0] == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: command"),
        (["verify", "{dir}"], "--public-key"),
        (["verify", "/nonexistent/audit", "--public-key", "{pub}"], "does not exist"),
        (["verify", "{dir}", "--public-key", "/nonexistent/key.pub"], "cannot read public key"),
        (["verify", "{dir}", "--public-key", "{key}"], "not a PEM public key"),
        (["prune", "{dir}"], "--signing-key"),
        (["prune", "{dir}", "--signing-key", "{key}", "--retention", "public"], "CLASS=DAYS"),
        (["prune", "{dir}", "--signing-key", "{key}", "--retention", "a/b=3"], "CLASS=DAYS"),
        (["prune", "{dir}", "--signing-key", "{key}", "--retention", "public=0"], "CLASS=DAYS"),
        (["prune", "{dir}", "--signing-key", "{key}", "--default-days", "0"], "at least 1"),
        (["prune", "/nonexistent", "--signing-key", "{key}"], "not a directory"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    tmp_path: Path, keys: KeyPair, argv: list[str], message: str
) -> None:
    values = {"dir": str(tmp_path), "key": str(keys.private), "pub": str(keys.public)}
    code, out, err = run(*(arg.format(**values) for arg in argv))
    assert (code, out) == (2, "")
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_nothing_to_verify_fails(tmp_path: Path, keys: KeyPair) -> None:
    code, _, err = run("verify", str(tmp_path), "--public-key", str(keys.public))
    assert code == 1 and "no audit segments" in err


def test_sovereign_audit_is_dispatched(capsys: pytest.CaptureFixture[str]) -> None:
    assert top.main(["audit", "verify"]) == 2
    assert "sovereign audit" in capsys.readouterr().err
    assert top.main(["--help"]) == 0
    assert "audit" in capsys.readouterr().out


def _append(directory: Path, key: Path, text: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["append", str(directory), "--signing-key", str(key)],
        stdout=out,
        stderr=err,
        stdin=io.StringIO(text),
    )
    return code, out.getvalue(), err.getvalue()


def test_append_chains_change_records_that_verify(tmp_path: Path, keys: KeyPair) -> None:
    log = tmp_path / "changes"
    for decision in ("started", "rolled_back"):
        code, out, err = _append(log, keys.private, f'{{"event": "{decision}", "step": 5}}')
        assert (code, err) == (0, ""), err
        assert out.startswith("OK: appended change #")
    code, out, _ = run("verify", str(log), "--public-key", str(keys.public))
    assert code == 0
    assert "1 chain(s) (change), 2 records" in out
    segment = only_segment(log / "change")
    raw = segment.read_text("utf-8")
    assert raw.count('"event":"rolled_back"') == 1, raw
    # Changing a figure of an earlier record breaks the chain.
    segment.write_text(raw.replace('"step":5', '"step":50', 1), "utf-8")
    code, _, err = run("verify", str(log), "--public-key", str(keys.public))
    assert code == 1 and "change" in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "is not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"data_class": "internal"}', "differs from --data-class"),
        ("{" + '"a": "' + "x" * (300 * 1024) + '"}', "larger than"),
    ],
)
def test_append_refuses_what_it_cannot_chain(
    tmp_path: Path, keys: KeyPair, text: str, message: str
) -> None:
    code, out, err = _append(tmp_path / "changes", keys.private, text)
    assert (code, out) == (2, "")
    assert message in err
    assert not (tmp_path / "changes" / "change").exists()
