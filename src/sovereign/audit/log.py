"""The audit log writer: one record per request, durable before ``append`` returns.

Records are grouped by their ``data_class`` (missing: ``unclassified``) into one
hash chain each, written to daily segment files (see :mod:`sovereign.audit.layout`
and :mod:`sovereign.audit.record` for the format). Concurrent ``append`` calls
are group-committed: one writer task takes every record waiting, chains them in
order, and writes and fsyncs them in a worker thread; each caller gets its
receipt once its batch is on disk, or :class:`AuditWriteError` if it is not.
A failed batch is cut back off the files, so the chain stays whole and the
caller can refuse the request knowing it was not logged.

With a signing key the writer adds a signed checkpoint every
``checkpoint_every`` records of a chain, ``checkpoint_interval_s`` after the
first unsigned one, at the end of each day's segment, after an unclean
shutdown (``recover``) and on :meth:`AuditLog.close` (``close``).

A cancelled ``append`` still writes its record (it may already be on disk).

The tail: after every commit the writer notes each chain's last entry
(sequence, hash, segment) in the chain's ``HEAD`` file (:data:`HEAD_FILE`,
replaced atomically). When the writer starts and a chain's files end before
the entry ``HEAD`` names (entries cut from the end, at a line boundary or
mid-line, or a whole last segment deleted), it appends an ``audit_loss``
record saying what it expected against what it found, before anything
else, and signs it with the recovery checkpoint; ``sovereign audit verify``
reports that record, and a ``HEAD`` its chain falls short of, as a loss.
With ``mirror``, every signed checkpoint is also appended to
``<mirror>/<chain>.jsonl`` (fsync'd): another host's directory, so that
deleting a whole chain, or cutting it back to an earlier clean shutdown, is
found by ``sovereign audit verify --checkpoints <mirror>``. A mirror that
cannot be written is logged and counted (``mirror_failures``); the log goes
on serving (the local chain is whole), see docs/audit.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from sovereign.audit import record as fmt
from sovereign.audit.errors import AuditError, AuditUsageError, AuditWriteError
from sovereign.audit.layout import (
    DEFAULT_DATA_CLASS,
    HEAD_FILE,
    is_data_class,
    list_chains,
    list_segments,
    make_directory,
    open_append,
    read_last_line,
    segment_day,
    segment_name,
    write_all,
)
from sovereign.audit.retention import check_retention, prune
from sovereign.audit.signing import Signer, load_signer

_log = logging.getLogger(__name__)

HEAD_SIZE = 256  # bytes of the HEAD record, padded: overwritten in place


@dataclass(frozen=True)
class AuditReceipt:
    sequence: int  # position in its chain
    hash: str  # hex sha256 of the record as chained


_Head = tuple[int, str, date | None, int, float | None, str | None]


@dataclass
class _Chain:
    """A chain's head, as the writer thread sees it."""

    name: str
    directory: Path
    seq: int = 0  # the next entry's
    head: str = fmt.GENESIS
    day: date | None = None  # the segment being written
    unsigned: int = 0  # entries since the last checkpoint
    unsigned_since: float | None = None  # monotonic time of the first of them
    last_reason: str | None = None  # when the last entry is a checkpoint
    fd: int | None = None
    fd_day: date | None = None
    head_fd: int | None = None  # the HEAD file, kept open

    def snapshot(self) -> _Head:
        return (
            self.seq,
            self.head,
            self.day,
            self.unsigned,
            self.unsigned_since,
            self.last_reason,
        )

    def restore(self, saved: _Head) -> None:
        (
            self.seq,
            self.head,
            self.day,
            self.unsigned,
            self.unsigned_since,
            self.last_reason,
        ) = saved


@dataclass
class _Batch:
    """Lines to append, per segment file, in order."""

    files: dict[Path, list[str]] = field(default_factory=dict)
    chains: dict[str, _Chain] = field(default_factory=dict)
    saved: dict[str, _Head] = field(default_factory=dict)  # heads before the batch
    checkpoints: list[tuple[str, str]] = field(default_factory=list)  # (chain, line)

    def remember(self, chain: _Chain) -> None:
        """Note a chain's head before the batch changes it (first call wins)."""
        self.saved.setdefault(chain.name, chain.snapshot())
        self.chains[chain.name] = chain

    def add(self, chain: _Chain, line: str) -> None:
        assert chain.day is not None
        self.remember(chain)
        self.files.setdefault(chain.directory / segment_name(chain.day), []).append(line)


class _Writer:
    """Chains and writes entries. Used by one thread at a time."""

    def __init__(
        self,
        root: Path,
        signer: Signer | None,
        checkpoint_every: int,
        checkpoint_interval_s: float,
        clock: Callable[[], float],
        mirror: Path | None = None,
    ) -> None:
        self.root = root
        self.mirror = mirror
        self.mirror_failures = 0
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_s = checkpoint_interval_s
        self.clock = clock
        self.chains: dict[str, _Chain] = {}

    # -- start and stop -------------------------------------------------------

    def start(self) -> None:
        """Load every chain's head; sign the tail a writer left unsigned when it died."""
        try:
            make_directory(self.root)
            names = [p.name for p in list_chains(self.root)]
        except OSError as exc:
            raise AuditWriteError(f"cannot open audit directory {self.root}: {exc}") from exc
        losses = []
        for name in names:
            chain = self._chain(name)
            loss = self._loss(chain)
            if loss is not None:
                losses.append((name, fmt.canonical_json(loss)))
        if losses:
            # Recorded before anything else, and signed by the recovery checkpoint.
            self.write(losses)
        self.checkpoint_all(fmt.REASON_RECOVER)

    def _loss(self, chain: _Chain) -> dict[str, object] | None:
        """What the chain's HEAD file says was written and its files no longer hold."""
        try:
            noted = json.loads((chain.directory / HEAD_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise AuditWriteError(
                f"cannot read {chain.directory / HEAD_FILE}: {exc}; it names the last entry "
                "written: check the chain with sovereign audit verify before removing it"
            ) from exc
        expected_seq, expected_hash = noted.get("seq"), noted.get("hash")
        if not isinstance(expected_seq, int) or not isinstance(expected_hash, str):
            raise AuditWriteError(f"{chain.directory / HEAD_FILE} is not a head record")
        found_seq = chain.seq - 1
        if found_seq > expected_seq:
            return None  # the files are ahead of a HEAD not yet on disk at a crash
        if found_seq == expected_seq and chain.head == expected_hash:
            return None
        _log.error(
            "audit chain %s ends at seq %d but entries up to seq %d were written: "
            "they were cut off; recording the loss",
            chain.name,
            found_seq,
            expected_seq,
        )
        return {
            "schema": "sovereign.audit/v1",
            "event": fmt.LOSS_EVENT,
            "data_class": chain.name,
            "expected": {
                "seq": expected_seq,
                "hash": expected_hash,
                "segment": noted.get("segment"),
            },
            "found": {"seq": found_seq, "hash": chain.head},
        }

    def close(self) -> None:
        try:
            self.checkpoint_all(fmt.REASON_CLOSE)
        finally:
            for chain in self.chains.values():
                self._close_fd(chain)
            self.chains.clear()

    def checkpoint_all(self, reason: str) -> None:
        """Sign every chain that does not end in a closing checkpoint."""
        if self.signer is None:
            return
        batch = _Batch()
        now = self.clock()
        for chain in self.chains.values():
            if chain.seq > 0 and chain.last_reason != fmt.REASON_CLOSE:
                self._checkpoint(chain, batch, reason, now)
        self._commit(batch)

    # -- writing -------------------------------------------------------------

    def write(self, records: list[tuple[str, str]]) -> list[AuditReceipt]:
        """Chain ``(data_class, record_json)`` pairs; durable when it returns."""
        batch = _Batch()
        now = self.clock()
        stamp = fmt.format_time(now)
        today = datetime.fromtimestamp(now, UTC).date()
        receipts = []
        try:
            for name, record_json in records:
                chain = self._chain(name)
                batch.remember(chain)
                self._roll(chain, today, batch, now)
                digest, line = fmt.record_line(name, chain.seq, chain.head, stamp, record_json)
                receipts.append(AuditReceipt(chain.seq, digest))
                self._advance(chain, batch, line, digest, None)
                if self.signer is not None and chain.unsigned >= self.checkpoint_every:
                    self._checkpoint(chain, batch, fmt.REASON_COUNT, now)
            for chain in self.chains.values():
                if self.checkpoint_due(chain):
                    self._checkpoint(chain, batch, fmt.REASON_INTERVAL, now)
        except AuditWriteError:
            self._forget(batch)
            raise
        self._commit(batch)
        return receipts

    def checkpoint_due(self, chain: _Chain) -> bool:
        return (
            self.signer is not None
            and chain.unsigned_since is not None
            and time.monotonic() - chain.unsigned_since >= self.checkpoint_interval_s
        )

    def any_checkpoint_due(self) -> bool:
        return any(self.checkpoint_due(chain) for chain in self.chains.values())

    def next_checkpoint_in(self) -> float | None:
        """Seconds until an interval checkpoint is due, or None when none will be."""
        pending = [c.unsigned_since for c in self.chains.values() if c.unsigned_since is not None]
        if self.signer is None or not pending:
            return None
        return max(0.0, min(pending) + self.checkpoint_interval_s - time.monotonic())

    def _roll(self, chain: _Chain, today: date, batch: _Batch, now: float) -> None:
        """Move a chain to today's segment (never back: clocks step backwards)."""
        if chain.day is None:
            chain.day = today
        elif today > chain.day:
            if self.signer is not None and chain.seq > 0 and chain.last_reason is None:
                self._checkpoint(chain, batch, fmt.REASON_ROLLOVER, now)
            chain.day = today

    def _checkpoint(self, chain: _Chain, batch: _Batch, reason: str, now: float) -> None:
        assert self.signer is not None
        batch.remember(chain)
        if chain.day is None:
            chain.day = datetime.fromtimestamp(now, UTC).date()
        entry: dict[str, object] = {
            "chain": chain.name,
            "key": self.signer.key_id,
            "prev": chain.head,
            "reason": reason,
            "seq": chain.seq,
            "time": fmt.format_time(now),
            "type": fmt.CHECKPOINT,
            "v": fmt.FORMAT_VERSION,
        }
        entry["sig"] = self.signer.sign(fmt.signed_text(entry))
        digest, line = fmt.seal(entry)
        self._advance(chain, batch, line, digest, reason)
        batch.checkpoints.append((chain.name, line))

    def _advance(
        self, chain: _Chain, batch: _Batch, line: str, digest: str, reason: str | None
    ) -> None:
        batch.add(chain, line)
        chain.seq += 1
        chain.head = digest
        chain.last_reason = reason
        if reason is None:
            chain.unsigned += 1
            if chain.unsigned_since is None:
                chain.unsigned_since = time.monotonic()
        else:
            chain.unsigned = 0
            chain.unsigned_since = None

    def _commit(self, batch: _Batch) -> None:
        """Append and fsync every file of the batch; on failure cut them back."""
        written: list[tuple[Path, int]] = []
        path = self.root
        try:
            for path, lines in batch.files.items():
                chain = batch.chains[path.parent.name]
                fd = self._fd(chain, path)
                written.append((path, os.fstat(fd).st_size))
                write_all(fd, ("\n".join(lines) + "\n").encode("utf-8"))
                os.fsync(fd)
        except OSError as exc:
            self._undo(batch, written)
            reason = exc.strerror or str(exc)
            raise AuditWriteError(f"cannot write audit log {path}: {reason}") from exc
        for chain in batch.chains.values():
            self._note_head(chain, durable=bool(batch.checkpoints))
        if batch.checkpoints and self.mirror is not None:
            self._mirror(batch.checkpoints)

    def _note_head(self, chain: _Chain, durable: bool) -> None:
        """Overwrite the chain's HEAD file in place with its last entry: one
        ``pwrite`` of a fixed-size record (no open, rename or fsync per batch,
        which cost 10 % of the gateway's CPU per request); fsync'd at checkpoints."""
        assert chain.day is not None
        head = json.dumps(
            {
                "chain": chain.name,
                "seq": chain.seq - 1,
                "hash": chain.head,
                "segment": segment_name(chain.day),
            },
            sort_keys=True,
        ).encode("ascii")
        try:
            if chain.head_fd is None:
                chain.head_fd = os.open(chain.directory / HEAD_FILE, os.O_RDWR | os.O_CREAT, 0o640)
            os.pwrite(chain.head_fd, head.ljust(HEAD_SIZE - 1) + b"\n", 0)
            if durable:
                os.fdatasync(chain.head_fd)
        except OSError as exc:  # the entries are on disk; only the tail check is weaker
            _log.error("cannot note the head of audit chain %s: %s", chain.name, exc)

    def _mirror(self, checkpoints: list[tuple[str, str]]) -> None:
        """Append the batch's signed checkpoints to the mirror directory, fsync'd."""
        assert self.mirror is not None
        lines: dict[str, list[str]] = {}
        for name, line in checkpoints:
            lines.setdefault(name, []).append(line)
        for name, chain_lines in lines.items():
            path = self.mirror / f"{name}.jsonl"
            try:
                fd = open_append(path)
                try:
                    write_all(fd, ("\n".join(chain_lines) + "\n").encode("utf-8"))
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                self.mirror_failures += 1
                _log.error("cannot copy audit checkpoints of %s to %s: %s", name, path, exc)

    def _undo(self, batch: _Batch, written: list[tuple[Path, int]]) -> None:
        """Cut a failed batch off its files and forget it; reload what cannot be cut."""
        for path, size in written:
            try:
                os.truncate(path, size)
            except OSError as exc:
                # The file may hold entries the chain head does not know of:
                # drop the head so the next write reloads it from the file.
                _log.error("cannot cut failed audit batch off %s: %s", path, exc)
                chain = batch.chains[path.parent.name]
                self._close_fd(chain)
                self.chains.pop(chain.name, None)
        self._forget(batch)

    def _forget(self, batch: _Batch) -> None:
        for name, saved in batch.saved.items():
            chain = self.chains.get(name)
            if chain is not None:
                chain.restore(saved)

    def _fd(self, chain: _Chain, path: Path) -> int:
        day = segment_day(path)
        if chain.fd is None or chain.fd_day != day:
            self._close_fd(chain)
            make_directory(chain.directory)
            chain.fd = open_append(path)
            chain.fd_day = day
        return chain.fd

    @staticmethod
    def _close_fd(chain: _Chain) -> None:
        if chain.fd is not None:
            with contextlib.suppress(OSError):
                os.close(chain.fd)
            chain.fd = None
            chain.fd_day = None
        if chain.head_fd is not None:
            with contextlib.suppress(OSError):
                os.close(chain.head_fd)
            chain.head_fd = None

    def _chain(self, name: str) -> _Chain:
        """The chain of a data class, its head loaded from its last segment."""
        chain = self.chains.get(name)
        if chain is not None:
            return chain
        chain = _Chain(name, self.root / name)
        try:
            segments = list_segments(chain.directory) if chain.directory.is_dir() else []
            for segment in reversed(segments):
                line, complete = read_last_line(segment)
                if complete < segment.stat().st_size:
                    # A write cut short by a crash: never acknowledged, so drop it.
                    _log.warning("dropping a partial last line of %s", segment)
                    os.truncate(segment, complete)
                if line is None:
                    continue
                try:
                    last = fmt.parse_line(line)
                except fmt.EntryFormatError as exc:
                    raise AuditWriteError(
                        f"cannot continue audit chain {name}: the last entry of {segment} is "
                        f"unreadable ({exc}); run: sovereign audit verify {chain.directory}"
                    ) from exc
                chain.seq = last["seq"] + 1
                chain.head = last["hash"]
                chain.day = segment_day(segment)
                if last["type"] == fmt.CHECKPOINT:
                    chain.last_reason = str(last.get("reason"))
                else:
                    chain.unsigned = 1
                    chain.unsigned_since = time.monotonic()
                break
        except OSError as exc:
            raise AuditWriteError(f"cannot read audit chain {chain.directory}: {exc}") from exc
        self.chains[name] = chain
        return chain


_Pending = tuple[str, str, "asyncio.Future[AuditReceipt]"]


class AuditLog:
    """An open audit directory; see the module docstring. Make one with :meth:`open`."""

    def __init__(
        self,
        writer: _Writer,
        retention_days: Mapping[str, int],
        default_retention_days: int,
    ) -> None:
        self._writer = writer
        self._retention_days = dict(retention_days)
        self._default_retention_days = default_retention_days
        self._pending: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._healthy = True
        self._closing = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        # Called with the seconds each written batch took, from the hand-off
        # to the writer thread to its fsync (what a caller of append waits).
        self.on_batch: Callable[[float], None] | None = None

    @classmethod
    async def open(
        cls,
        directory: Path,
        *,
        signing_key: Path | None,
        checkpoint_every: int = 1000,
        checkpoint_interval_s: float = 60.0,
        retention_days: Mapping[str, int] | None = None,
        default_retention_days: int = 3650,
        clock: Callable[[], float] = time.time,
        mirror: Path | None = None,
    ) -> AuditLog:
        """Open (or create) an audit directory and start its writer.

        ``signing_key`` is a PEM P-256 private key; without one no checkpoint is
        written and the log only proves its own consistency. ``retention_days``
        maps data classes to days kept (:meth:`prune`); ``clock`` gives the UNIX
        time that stamps entries and picks segments (tests move it); ``mirror`` a
        directory (another host's) that receives a copy of every signed checkpoint.
        Raises AuditUsageError for bad settings or key, AuditWriteError when the
        directory cannot be used.
        """
        if checkpoint_every < 1:
            raise AuditUsageError("checkpoint_every must be at least 1")
        if not checkpoint_interval_s > 0:
            raise AuditUsageError("checkpoint_interval_s must be positive")
        days = dict(retention_days or {})
        check_retention(days, default_retention_days)
        signer = load_signer(signing_key) if signing_key is not None else None
        if mirror is not None and signer is None:
            raise AuditUsageError("a checkpoint mirror needs a signing key (it copies checkpoints)")
        if mirror is not None:
            try:
                make_directory(mirror)
            except OSError as exc:
                raise AuditWriteError(f"cannot open checkpoint mirror {mirror}: {exc}") from exc
        writer = _Writer(
            directory, signer, checkpoint_every, checkpoint_interval_s, clock, mirror=mirror
        )
        await asyncio.to_thread(writer.start)
        log = cls(writer, days, default_retention_days)
        log._task = asyncio.create_task(log._run(), name=f"audit writer {directory}")
        return log

    @property
    def mirror_failures(self) -> int:
        """Checkpoint copies to the mirror that failed since the log opened."""
        return self._writer.mirror_failures

    @property
    def healthy(self) -> bool:
        """False after a failed write, until a write succeeds again."""
        return self._healthy

    async def append(self, record: Mapping[str, object]) -> AuditReceipt:
        """Chain one record; returns once it is fsync'd. Raises AuditWriteError."""
        if self._closing or self._task is None or self._task.done():
            raise AuditWriteError("the audit log is closed")
        data_class = record.get("data_class", DEFAULT_DATA_CLASS)
        if not isinstance(data_class, str) or not is_data_class(data_class):
            raise AuditWriteError(
                f"data_class {data_class!r} is not a valid name "
                "(letters, digits, '_' and '-', at most 64)"
            )
        try:
            record_json = fmt.canonical_json(dict(record))
        except (TypeError, ValueError) as exc:
            raise AuditWriteError(f"the record cannot be written as JSON: {exc}") from exc
        future: asyncio.Future[AuditReceipt] = asyncio.get_running_loop().create_future()
        self._pending.append((data_class, record_json, future))
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        """Write what is pending, then a final signed checkpoint on every chain."""
        if self._closed:
            return
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._closed = True
        try:
            await asyncio.to_thread(self._writer.close)
        except AuditWriteError:
            self._healthy = False
            raise

    async def prune(self, now: datetime | None = None) -> list[Path]:
        """Remove segments past their data class's retention; see :func:`retention.prune`."""
        if self._writer.signer is None:
            raise AuditUsageError("pruning needs a signing key (it signs what it removes)")
        return await asyncio.to_thread(
            prune,
            self._writer.root,
            signer=self._writer.signer,
            retention_days=self._retention_days,
            default_retention_days=self._default_retention_days,
            now=now,
        )

    async def _run(self) -> None:
        """The writer task: group-commit whatever is waiting, one batch at a time."""
        while True:
            if not self._pending:
                if self._closing:
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._writer.next_checkpoint_in()):
                        await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if not batch and not self._writer.any_checkpoint_due():
                continue
            started = time.perf_counter()
            try:
                receipts = await asyncio.to_thread(
                    self._writer.write, [(name, text) for name, text, _ in batch]
                )
            except Exception as exc:  # every caller must hear of it, whatever it is
                self._healthy = False
                if not isinstance(exc, AuditError):
                    _log.exception("audit writer failed")
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(AuditWriteError(str(exc)))
                continue
            self._healthy = True
            if self.on_batch is not None and batch:
                self.on_batch(time.perf_counter() - started)
            for (_, _, future), receipt in zip(batch, receipts, strict=True):
                if not future.done():
                    future.set_result(receipt)
