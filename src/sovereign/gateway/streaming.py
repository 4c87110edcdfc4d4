"""Server-sent events relayed as they arrive, with the usage chunk read on the way.

The gateway asks the backend for ``stream_options.include_usage`` so the
final chunk carries the real token counts the quota is settled with. The
relay forwards every complete event as soon as it has it (nothing is held
back beyond the end of the current event), and drops the usage-only chunk
when the client did not ask for it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

_SEPARATORS = (b"\n\n", b"\r\n\r\n")
_MAX_PENDING = 4 * 1024 * 1024


def _split(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete events (each with its separator) and the incomplete rest."""
    events: list[bytes] = []
    start = 0
    while True:
        ends = [(i, len(s)) for s in _SEPARATORS if (i := buffer.find(s, start)) >= 0]
        if not ends:
            return events, buffer[start:]
        index, size = min(ends)
        events.append(buffer[start : index + size])
        start = index + size


def _data(event: bytes) -> bytes | None:
    payload = b"".join(
        line[5:].lstrip(b" ") for line in event.splitlines() if line.startswith(b"data:")
    )
    return payload or None


class SseRelay:
    """Feed it the backend's bytes; it returns what to send the client now."""

    def __init__(self, *, forward_usage: bool, collect_text: bool = False) -> None:
        self.forward_usage = forward_usage
        self.collect_text = collect_text
        self.usage: dict[str, Any] | None = None
        self.content_chunks = 0  # events with choices: about one token each
        self.text: list[str] = []
        self.sha256 = hashlib.sha256()
        self.sent_bytes = 0
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        buffer = self._pending + chunk if self._pending else chunk
        events, self._pending = _split(buffer)
        if len(self._pending) > _MAX_PENDING:
            # A backend that never ends an event: pass it through rather than hoard it.
            events.append(self._pending)
            self._pending = b""
        out = b"".join(event for event in events if self._keep(event))
        if out:
            self.sha256.update(out)
            self.sent_bytes += len(out)
        return out

    def finish(self) -> bytes:
        rest, self._pending = self._pending, b""
        if rest and self._keep(rest):
            self.sha256.update(rest)
            self.sent_bytes += len(rest)
            return rest
        return b""

    def _keep(self, event: bytes) -> bool:
        if b'"usage"' not in event and not self.collect_text:
            self.content_chunks += 1
            return True
        data = _data(event)
        if data is None or data == b"[DONE]":
            return True
        try:
            parsed = json.loads(data)
        except ValueError:
            return True
        if not isinstance(parsed, dict):
            return True
        choices = parsed.get("choices")
        if isinstance(choices, list) and choices:
            self.content_chunks += 1
            if self.collect_text:
                self._collect(choices)
        usage = parsed.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
            if not self.forward_usage and not choices:
                return False
        return True

    def _collect(self, choices: list[Any]) -> None:
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if isinstance(text, str):
                self.text.append(text)
