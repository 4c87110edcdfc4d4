"""Where audit entries live: ``<dir>/<data_class>/<YYYY-MM-DD>.jsonl``.

One directory per chain (data class), one segment file per UTC day, and a
``retention.jsonl`` of signed statements written when expired segments are
removed. Helpers here do the durable file operations the writer and the
pruner share.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path

DEFAULT_DATA_CLASS = "unclassified"
RETENTION_FILE = "retention.jsonl"
_DATA_CLASS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_SEGMENT = re.compile(r"(\d{4}-\d{2}-\d{2})\.jsonl")
_TAIL_CHUNK = 64 * 1024


def is_data_class(name: str) -> bool:
    """Letters, digits, ``_`` and ``-``, at most 64, not starting with a sign."""
    return _DATA_CLASS.fullmatch(name) is not None


def segment_name(day: date) -> str:
    return f"{day.isoformat()}.jsonl"


def segment_day(path: Path) -> date | None:
    """The day a segment holds, or None when the name is not a segment's."""
    match = _SEGMENT.fullmatch(path.name)
    if match is None:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


def list_segments(chain_dir: Path) -> list[Path]:
    """The segment files of a chain, oldest first."""
    found = [p for p in chain_dir.iterdir() if segment_day(p) is not None and p.is_file()]
    return sorted(found, key=lambda p: p.name)


HEAD_FILE = "HEAD"  # the last entry the writer committed (sovereign.audit.log)


def list_chains(root: Path) -> list[Path]:
    """The chain directories under an audit directory, by name (one whose
    segments are all gone but whose HEAD remains is still a chain)."""
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir()
        and is_data_class(p.name)
        and (list_segments(p) or (p / RETENTION_FILE).exists() or (p / HEAD_FILE).exists())
    )


def fsync_directory(path: Path) -> None:
    """Make a created or removed name in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_directory(path: Path) -> None:
    """Create ``path`` (and parents) durably, mode 0750; nothing if it exists."""
    if path.is_dir():
        return
    make_directory(path.parent)
    try:
        path.mkdir(mode=0o750)
    except FileExistsError:
        return
    fsync_directory(path.parent)


def open_append(path: Path) -> int:
    """Open a file for appending (created 0640, its name made durable)."""
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fsync_directory(path.parent)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_first_line(path: Path) -> bytes | None:
    """The first complete line (without its newline), or None when there is none."""
    with path.open("rb") as handle:
        line = handle.readline()
    return line[:-1] if line.endswith(b"\n") else None


def read_last_line(path: Path) -> tuple[bytes | None, int]:
    """The last complete line (without its newline) and where the complete lines end.

    The offset is smaller than the file's size when the file ends in a partial
    line: a write cut short by a crash.
    """
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        position, tail = size, b""
        while position > 0:
            step = min(_TAIL_CHUNK, position)
            position -= step
            handle.seek(position)
            tail = handle.read(step) + tail
            end = tail.rfind(b"\n")
            if end < 0:
                continue
            start = tail.rfind(b"\n", 0, end)
            if start >= 0 or position == 0:
                complete = position + end + 1
                return tail[start + 1 : end], complete
        return None, 0
