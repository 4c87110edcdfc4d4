"""Verify audit chains and point at the first entry that breaks one.

What is detected, given the public key:

- a modified entry (its hash no longer matches; or, re-hashed, the next entry
  no longer links to it; or, with every later hash recomputed, the next
  checkpoint's signature no longer covers it): ``modified``, or
  ``bad checkpoint signature`` at that checkpoint;
- deleted entries, a deleted segment in the middle, or segments deleted at the
  start without a signed retention statement naming the new start: ``missing``;
- entries (or segments) out of order: ``reordered``; a duplicated, replayed,
  forged or foreign entry: ``inserted``;
- a checkpoint or retention statement not signed by the given key:
  ``bad checkpoint signature`` / ``bad retention signature``;
- a tail that no checkpoint covers: ``unsigned tail``. Checking a directory,
  every chain must end in the ``close`` checkpoint :meth:`AuditLog.close`
  writes; checking one segment, it must end in a checkpoint. So cutting off the
  end of a chain is caught unless the cut falls exactly on an earlier closing
  checkpoint. A live log has an unsigned tail by design: with
  ``allow_unsigned_tail`` its end is not checked, and entries after the last
  checkpoint could be changed or cut off undetected.

- entries cut from the end (at a line boundary, mid-line, or a whole last
  segment): while the chain's ``HEAD`` file still names the lost last entry,
  ``cut off``; once a writer restarted on the shortened chain, the
  ``audit_loss`` record it wrote (what it expected, what it found): ``lost``.
  Either way the loss stays reported: it is not repaired;
- with ``checkpoints`` (the writer's checkpoint mirror on another host): a
  chain whose directory is gone, or that ends before (or differs at) the last
  checkpoint the mirror holds, so also a cut back to an earlier clean
  shutdown: ``missing`` / ``cut off``.

What cannot be detected: cutting a chain and its HEAD back together when no
mirror is checked, and changes made by someone holding the signing key.
Verifying a single segment file checks it in isolation (not its links to the
segments around it).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sovereign.audit import record as fmt
from sovereign.audit.errors import AuditUsageError, AuditVerifyError, ChainBrokenError
from sovereign.audit.layout import (
    HEAD_FILE,
    RETENTION_FILE,
    list_chains,
    list_segments,
    segment_day,
)
from sovereign.audit.signing import Verifier

KIND_MODIFIED = "modified"
KIND_MISSING = "missing"
KIND_REORDERED = "reordered"
KIND_INSERTED = "inserted"
KIND_BAD_SIGNATURE = "bad checkpoint signature"
KIND_BAD_RETENTION = "bad retention signature"
KIND_UNSIGNED_TAIL = "unsigned tail"
KIND_CUT = "cut off"
KIND_LOST = "lost"

# How far ahead to look for an entry that is missing where it should be, to
# tell a reordering from a deletion.
LOOKAHEAD = 4096


@dataclass(frozen=True)
class ChainReport:
    name: str
    records: int
    checkpoints: int
    recoveries: int  # checkpoints written after an unclean shutdown
    first_seq: int
    last_seq: int


@dataclass(frozen=True)
class VerifyReport:
    chains: tuple[ChainReport, ...]

    @property
    def records(self) -> int:
        return sum(c.records for c in self.chains)

    @property
    def checkpoints(self) -> int:
        return sum(c.checkpoints for c in self.chains)

    def summary(self) -> str:
        """One line: chains, records, checkpoints."""
        names = ", ".join(c.name for c in self.chains)
        recoveries = sum(c.recoveries for c in self.chains)
        pruned = sum(1 for c in self.chains if c.first_seq > 0)
        notes = ""
        if recoveries:
            notes += f"; {recoveries} unclean shutdown(s) recovered"
        if pruned:
            notes += f"; {pruned} chain(s) start after pruning"
        return (
            f"{len(self.chains)} chain(s) ({names}), {self.records} records, "
            f"{self.checkpoints} checkpoints{notes}"
        )


@dataclass
class _Item:
    path: Path
    line: int
    entry: dict[str, Any] | None
    error: str | None

    @property
    def seq(self) -> int | None:
        seq = self.entry.get("seq") if self.entry is not None else None
        return seq if isinstance(seq, int) else None


def verify(
    path: Path,
    key: Verifier,
    *,
    allow_unsigned_tail: bool = False,
    checkpoints: Path | None = None,
) -> VerifyReport:
    """Verify an audit directory, one chain directory, or one segment file;
    with ``checkpoints``, also against the writer's checkpoint mirror.

    Raises ChainBrokenError at the first broken entry, AuditVerifyError when
    there is nothing to verify, AuditUsageError when ``path`` does not exist.
    """
    mirrored = _mirrored(checkpoints, key) if checkpoints is not None else {}
    if path.is_file():
        first = _first_chain_name(path)
        return VerifyReport((_Chain(first, [path], key, single=True).run(allow_unsigned_tail),))
    if not path.is_dir():
        raise AuditUsageError(f"{path} does not exist")
    try:
        chain_dirs = [path] if list_segments(path) else list_chains(path)
    except OSError as exc:
        raise AuditUsageError(f"cannot read {path}: {exc.strerror}") from exc
    if not chain_dirs and not mirrored:
        raise AuditVerifyError(f"no audit segments under {path}")
    reports = []
    for chain_dir in chain_dirs:
        segments = list_segments(chain_dir)
        head = _head(chain_dir)
        if not segments and head is not None:
            raise ChainBrokenError(
                chain_dir / HEAD_FILE,
                1,
                head[0],
                KIND_CUT,
                f"every segment is gone: entries up to seq {head[0]} were written",
            )
        if not segments:
            raise AuditVerifyError(f"{chain_dir} holds a retention file but no segments")
        chain = _Chain(chain_dir.name, segments, key, single=False)
        chain.load_retention(chain_dir / RETENTION_FILE)
        chain.expect = mirrored.pop(chain_dir.name, None)
        chain.wanted = {noted[0] for noted in (head, chain.expect) if noted is not None}
        report = chain.run(allow_unsigned_tail)
        if head is not None and (head[0] > report.last_seq or head[0] < report.first_seq):
            raise ChainBrokenError(
                chain_dir / HEAD_FILE,
                1,
                head[0],
                KIND_CUT,
                f"the chain ends at seq {report.last_seq}, but entries up to seq {head[0]} "
                f"were written (in {head[2]}): they were cut off",
            )
        if head is not None and chain.hashes.get(head[0], head[1]) != head[1]:
            raise ChainBrokenError(
                chain_dir / HEAD_FILE,
                1,
                head[0],
                KIND_MODIFIED,
                f"seq {head[0]} is not the entry that was written there",
            )
        reports.append(report)
    for name, (seq, _) in sorted(mirrored.items()):
        raise ChainBrokenError(
            checkpoints / f"{name}.jsonl" if checkpoints else path,
            1,
            seq,
            KIND_MISSING,
            f"chain {name!r} is gone from {path}: the mirror holds its checkpoints up to seq {seq}",
        )
    return VerifyReport(tuple(reports))


def _head(chain_dir: Path) -> tuple[int, str, str] | None:
    """(seq, hash, segment) of the chain's HEAD file, if it has one."""
    try:
        noted = json.loads((chain_dir / HEAD_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ChainBrokenError(chain_dir / HEAD_FILE, 1, None, KIND_MODIFIED, str(exc)) from exc
    seq, digest = noted.get("seq"), noted.get("hash")
    if not isinstance(seq, int) or not isinstance(digest, str):
        raise ChainBrokenError(chain_dir / HEAD_FILE, 1, None, KIND_MODIFIED, "not a head record")
    return seq, digest, str(noted.get("segment"))


def _mirrored(directory: Path, key: Verifier) -> dict[str, tuple[int, str]]:
    """Chain -> (seq, hash) of the last checkpoint the mirror holds, each signature checked."""
    if not directory.is_dir():
        raise AuditUsageError(f"{directory} (the checkpoint mirror) is not a directory")
    last: dict[str, tuple[int, str]] = {}
    for path in sorted(directory.glob("*.jsonl")):
        name = path.stem
        for item in _read(path):
            if item.entry is None:
                raise ChainBrokenError(path, item.line, None, KIND_MODIFIED, str(item.error))
            problem = _signature_problem(item.entry, key, name)
            if problem or item.entry["type"] != fmt.CHECKPOINT:
                raise ChainBrokenError(
                    path, item.line, item.seq, KIND_BAD_SIGNATURE, problem or "not a checkpoint"
                )
            last[name] = (item.entry["seq"], item.entry["hash"])
    return last


def _first_chain_name(path: Path) -> str:
    """The chain a lone segment belongs to, from its first readable entry."""
    if segment_day(path) is None:
        raise AuditUsageError(f"{path} is not a segment file (YYYY-MM-DD.jsonl)")
    for item in _read(path):
        if item.entry is not None:
            return str(item.entry["chain"])
    return path.parent.name


def _read(path: Path) -> Iterator[_Item]:
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.endswith(b"\n"):
                    yield _Item(path, number, None, "the last line is cut short")
                    return
                try:
                    yield _Item(path, number, fmt.parse_line(raw[:-1]), None)
                except fmt.EntryFormatError as exc:
                    yield _Item(path, number, None, str(exc))
    except OSError as exc:
        raise AuditVerifyError(f"cannot read {path}: {exc.strerror}") from exc


class _Lookahead:
    """The entries of a chain's segments, in order, with a look ahead."""

    def __init__(self, segments: list[Path]) -> None:
        self._items = (item for path in segments for item in _read(path))
        self._buffer: deque[_Item] = deque()

    def __iter__(self) -> Iterator[_Item]:
        return self

    def __next__(self) -> _Item:
        if self._buffer:
            return self._buffer.popleft()
        return next(self._items)

    def peek(self, count: int) -> list[_Item]:
        while len(self._buffer) < count:
            item = next(self._items, None)
            if item is None:
                break
            self._buffer.append(item)
        return list(self._buffer)[:count]


class _Chain:
    def __init__(self, name: str, segments: list[Path], key: Verifier, *, single: bool) -> None:
        self.name = name
        self.segments = segments
        self.key = key
        self.single = single
        self.starts: set[tuple[int, str]] = set()  # signed by retention statements
        self.expect: tuple[int, str] | None = None  # (seq, hash) the mirror holds
        self.wanted: set[int] = set()  # seqs whose hashes are checked afterwards
        self.hashes: dict[int, str] = {}  # their hashes

    def load_retention(self, path: Path) -> None:
        if not path.exists():
            return
        for item in _read_statements(path):
            statement, error = item.entry, item.error
            if statement is None:
                raise ChainBrokenError(path, item.line, None, KIND_MODIFIED, str(error))
            problem = _signature_problem(statement, self.key, self.name)
            if problem:
                raise ChainBrokenError(path, item.line, None, KIND_BAD_RETENTION, problem)
            start = (statement.get("start_seq"), statement.get("start_prev"))
            if isinstance(start[0], int) and isinstance(start[1], str):
                self.starts.add((start[0], start[1]))

    def run(self, allow_unsigned_tail: bool) -> ChainReport:
        lines = _Lookahead(self.segments)
        first: _Item | None = None
        last: _Item | None = None
        first_unsigned: _Item | None = None
        records = checkpoints = recoveries = 0
        for item in lines:
            if item.entry is None:
                seq = last.seq + 1 if last is not None and last.seq is not None else None
                raise ChainBrokenError(item.path, item.line, seq, KIND_MODIFIED, str(item.error))
            entry = item.entry
            if entry["chain"] != self.name:
                raise self._broken(
                    item, KIND_INSERTED, f"the entry belongs to chain {entry['chain']!r}"
                )
            if last is None:
                self._check_start(item)
                first = item
            else:
                self._check_link(last, item, lines)
            if entry["type"] == fmt.CHECKPOINT:
                problem = _signature_problem(entry, self.key, self.name)
                if problem:
                    raise self._broken(item, KIND_BAD_SIGNATURE, problem)
                checkpoints += 1
                recoveries += entry.get("reason") == fmt.REASON_RECOVER
                first_unsigned = None
            elif entry["type"] == fmt.RECORD:
                records += 1
                first_unsigned = first_unsigned or item
                loss = entry.get("record")
                if isinstance(loss, dict) and loss.get("event") == fmt.LOSS_EVENT:
                    raise self._broken(item, KIND_LOST, _loss_text(loss))
            else:
                raise self._broken(item, KIND_INSERTED, f"unknown entry type {entry['type']!r}")
            if entry["seq"] in self.wanted:
                self.hashes[entry["seq"]] = entry["hash"]
            last = item
        if first is None or last is None or last.entry is None:
            raise AuditVerifyError(f"chain {self.name} has no entries")
        if self.expect is not None:
            seq, digest = self.expect
            if seq > (last.seq or 0):
                raise self._broken(
                    last,
                    KIND_CUT,
                    f"the chain ends at seq {last.seq}, but the checkpoint mirror holds a "
                    f"checkpoint at seq {seq}: the entries after this one were cut off",
                )
            if seq >= (first.seq or 0) and self.hashes.get(seq) != digest:
                raise self._broken(
                    last, KIND_MODIFIED, f"seq {seq} is not the checkpoint the mirror holds"
                )
        if not allow_unsigned_tail:
            self._check_tail(last, first_unsigned)
        return ChainReport(
            self.name, records, checkpoints, recoveries, first.seq or 0, last.seq or 0
        )

    def _broken(self, item: _Item, kind: str, reason: str) -> ChainBrokenError:
        return ChainBrokenError(item.path, item.line, item.seq, kind, reason)

    def _check_start(self, item: _Item) -> None:
        entry = item.entry
        assert entry is not None
        if entry["seq"] == 0:
            if entry["prev"] != fmt.GENESIS:
                raise self._broken(item, KIND_MODIFIED, "the first entry does not start a chain")
        elif not self.single and (entry["seq"], entry["prev"]) not in self.starts:
            raise self._broken(
                item,
                KIND_MISSING,
                f"the chain starts at seq {entry['seq']}: entries 0 to {entry['seq'] - 1} are "
                f"missing and no signed retention statement says they were pruned",
            )

    def _check_link(self, last: _Item, item: _Item, lines: _Lookahead) -> None:
        before, entry = last.entry, item.entry
        assert before is not None and entry is not None
        expected = before["seq"] + 1
        if entry["seq"] == expected:
            if entry["prev"] == before["hash"]:
                return
            if before["type"] == fmt.CHECKPOINT:  # signed, so genuine: this one changed
                raise self._broken(
                    item, KIND_MODIFIED, "it does not link to the checkpoint before it"
                )
            raise self._broken(
                last,
                KIND_MODIFIED,
                f"the next entry ({_where(item)}) does not link to this one: "
                "it was altered and re-hashed",
            )
        if entry["seq"] > expected:
            for later in lines.peek(LOOKAHEAD):
                if later.seq == expected and later.entry and later.entry["chain"] == self.name:
                    raise self._broken(
                        item,
                        KIND_REORDERED,
                        f"seq {entry['seq']} comes before seq {expected} ({_where(later)})",
                    )
            raise ChainBrokenError(
                item.path,
                item.line,
                expected,
                KIND_MISSING,
                f"entries {expected} to {entry['seq'] - 1} are missing before this line"
                if entry["seq"] > expected + 1
                else "the entry before this line is missing",
            )
        if entry["hash"] == before["hash"]:
            raise self._broken(item, KIND_INSERTED, f"a copy of {_where(last)}")
        if entry["seq"] == before["seq"] and entry["prev"] == before["prev"]:
            # Two entries claim one position: the one the next entry links to is genuine.
            after = [later.entry for later in lines.peek(1) if later.entry is not None]
            genuine_is_this = bool(after) and after[0]["prev"] == entry["hash"]
            culprit, other = (last, item) if genuine_is_this else (item, last)
            raise self._broken(
                culprit,
                KIND_INSERTED,
                f"this entry and {_where(other)} both claim seq {entry['seq']}; "
                "the chain continues from the other one",
            )
        raise self._broken(
            item,
            KIND_INSERTED,
            f"seq {entry['seq']} appears after seq {before['seq']}: a duplicated or inserted entry",
        )

    def _check_tail(self, last: _Item, first_unsigned: _Item | None) -> None:
        if first_unsigned is not None:
            count = (last.seq or 0) - (first_unsigned.seq or 0) + 1
            raise self._broken(
                first_unsigned,
                KIND_UNSIGNED_TAIL,
                f"{count} entries from here on are covered by no checkpoint: the writer is "
                "still running or died, or the tail was cut off "
                "(--allow-unsigned-tail accepts a live log)",
            )
        reason = last.entry.get("reason") if last.entry else None
        if not self.single and reason != fmt.REASON_CLOSE:
            raise self._broken(
                last,
                KIND_UNSIGNED_TAIL,
                f"the chain ends at a {reason!r} checkpoint, not a closing one: the writer is "
                "still running or died, or entries after it were cut off "
                "(--allow-unsigned-tail accepts a live log)",
            )


def _loss_text(loss: dict[str, Any]) -> str:
    expected, found = loss.get("expected"), loss.get("found")
    if not isinstance(expected, dict) or not isinstance(found, dict):
        return "the writer recorded a loss of entries"
    return (
        f"entries {found.get('seq', -1) + 1} to {expected.get('seq')} were cut off the end of "
        f"the chain (the last written was in {expected.get('segment')}); the writer found "
        f"the chain ending at seq {found.get('seq')} when it restarted"
    )


def _where(item: _Item) -> str:
    return f"{item.path.name} line {item.line}"


def _signature_problem(entry: dict[str, Any], key: Verifier, chain: str) -> str | None:
    if entry.get("chain") != chain:
        return f"it is for chain {entry.get('chain')!r}"
    if entry.get("key") != key.key_id:
        return f"made with key {entry.get('key')}, not the given public key ({key.key_id})"
    signature = entry.get("sig")
    if not isinstance(signature, str) or not key.verify(fmt.signed_text(entry), signature):
        return "the signature does not match: forged or altered"
    return None


def _read_statements(path: Path) -> Iterator[_Item]:
    """Retention statements: canonical JSON lines, no chain fields."""
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    text = raw.rstrip(b"\n").decode("utf-8")
                    statement = json.loads(text)
                    ok = isinstance(statement, dict) and fmt.canonical_json(statement) == text
                except ValueError:
                    ok, statement = False, None
                if not ok or statement.get("type") != fmt.RETENTION:
                    yield _Item(path, number, None, "not a retention statement: it was edited")
                else:
                    yield _Item(path, number, statement, None)
    except OSError as exc:
        raise AuditVerifyError(f"cannot read {path}: {exc.strerror}") from exc
