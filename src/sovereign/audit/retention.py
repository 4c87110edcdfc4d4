"""Retention: remove a data class's segments once they are older than its limit.

A segment for day D is expired when every record it can hold is older than
the class's retention, i.e. when ``D + days < today`` (UTC). The newest segment
of a chain is never removed (the writer may be appending to it).

Before removing anything the pruner appends a signed statement to the chain's
``retention.jsonl``: which segments go, and the ``seq`` and ``prev`` of the
first entry that stays. The verifier accepts a chain that starts after seq 0
only when such a statement names that exact start, so pruning does not make
it cry wolf, while deleting segments without the signing key still does.
Statement fields: ``v``, ``type`` ("retention"), ``chain``, ``start_seq``,
``start_prev``, ``start_segment``, ``removed`` (file names), ``retention_days``,
``time``, ``key`` and ``sig`` (over the canonical JSON of the rest).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sovereign.audit import record as fmt
from sovereign.audit.errors import AuditPruneError, AuditUsageError
from sovereign.audit.layout import (
    RETENTION_FILE,
    fsync_directory,
    is_data_class,
    list_chains,
    list_segments,
    open_append,
    read_first_line,
    segment_day,
    write_all,
)
from sovereign.audit.signing import Signer


def check_retention(retention_days: Mapping[str, int], default_retention_days: int) -> None:
    """Raise AuditUsageError naming the first bad class or number of days."""
    if isinstance(default_retention_days, bool) or default_retention_days < 1:
        raise AuditUsageError(f"default retention must be at least 1 day: {default_retention_days}")
    for name, days in retention_days.items():
        if not is_data_class(name):
            raise AuditUsageError(f"retention names an invalid data class: {name!r}")
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise AuditUsageError(f"retention of {name} must be at least 1 day: {days!r}")


def prune(
    directory: Path,
    *,
    signer: Signer,
    retention_days: Mapping[str, int],
    default_retention_days: int,
    now: datetime | None = None,
) -> list[Path]:
    """Remove expired segments of every chain under ``directory``; returns them.

    Raises AuditPruneError when a chain cannot be pruned safely (then nothing
    of that chain is removed), AuditUsageError for bad retention settings.
    """
    check_retention(retention_days, default_retention_days)
    moment = now or datetime.now(UTC)
    today = moment.astimezone(UTC).date()
    stamp = fmt.format_time(moment.timestamp())
    removed: list[Path] = []
    try:
        chains = list_chains(directory)
    except OSError as exc:
        raise AuditPruneError(f"cannot read audit directory {directory}: {exc}") from exc
    for chain_dir in chains:
        days = retention_days.get(chain_dir.name, default_retention_days)
        cutoff = today - timedelta(days=days)
        removed += _prune_chain(chain_dir, days, cutoff, signer, stamp)
    return removed


def _prune_chain(
    chain_dir: Path, days: int, cutoff: date, signer: Signer, stamp: str
) -> list[Path]:
    try:
        lock = os.open(chain_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise AuditPruneError(f"cannot open {chain_dir}: {exc.strerror}") from exc
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one pruner per chain at a time
        segments = list_segments(chain_dir)
        # list_segments only lists names segment_day reads.
        expired = [p for p in segments[:-1] if (segment_day(p) or cutoff) < cutoff]
        if not expired:
            return []
        start = _first_entry(segments[len(expired) :])
        statement: dict[str, object] = {
            "chain": chain_dir.name,
            "key": signer.key_id,
            "removed": [p.name for p in expired],
            "retention_days": days,
            "start_prev": start[1]["prev"],
            "start_segment": start[0].name,
            "start_seq": start[1]["seq"],
            "time": stamp,
            "type": fmt.RETENTION,
            "v": fmt.FORMAT_VERSION,
        }
        statement["sig"] = signer.sign(fmt.signed_text(statement))
        line = (fmt.canonical_json(statement) + "\n").encode("utf-8")
        fd = open_append(chain_dir / RETENTION_FILE)
        try:
            write_all(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        for path in expired:
            path.unlink()
        fsync_directory(chain_dir)
        return expired
    except OSError as exc:
        raise AuditPruneError(f"cannot prune {chain_dir}: {exc}") from exc
    finally:
        os.close(lock)


def _first_entry(segments: list[Path]) -> tuple[Path, dict[str, object]]:
    """The first entry that stays: where the pruned chain will start."""
    for path in segments:
        line = read_first_line(path)
        if line is None:
            continue
        try:
            return path, fmt.parse_line(line)
        except fmt.EntryFormatError as exc:
            raise AuditPruneError(
                f"cannot prune {path.parent}: the first entry of {path} is unreadable ({exc}); "
                f"run: sovereign audit verify {path.parent}"
            ) from exc
    raise AuditPruneError(f"cannot prune {segments[0].parent}: its newest segments are empty")
