"""Retrieval logs: who searched, what came back; kept per data class; reads audited.

Each search is one record of a tamper-evident audit log (sovereign.audit:
hash chain per data class, signed checkpoints, retention per class with a
signed statement of what was removed). The record is filed under the most
sensitive data class among the chunks returned, so the retention of
confidential results is the confidential class's. A record holds the
reader, the SHA-256 and length of the query (its words only for classes the
site lists), the index and binding, and the ids of the chunks returned, never
their text: the logs never become a second copy of the corpus, and nothing in
them feeds any model's training (vendor questions 7 and 8 of the seed).

Reading the logs is itself recorded: ``sovereign retrieval logs read``
appends an ``access`` record (who, why, which classes and period) to the
``log-access`` chain before it prints anything. That chain lives in a
directory of its own (:func:`access_directory`), so a reader never opens a
second writer on the directory the running service writes; readers take
turns on it (a lock). Pruning (:func:`prune`) removes expired segments
without opening a writer either, as ``sovereign audit prune`` does beside
the gateway.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from sovereign.audit.errors import AuditUsageError
from sovereign.audit.layout import list_chains, list_segments
from sovereign.audit.log import AuditLog
from sovereign.audit.retention import prune as prune_directory
from sovereign.audit.signing import load_signer
from sovereign.retrieval.backend import Hit
from sovereign.retrieval.config import RetrievalLog as LogConfig

SCHEMA = "sovereign.retrieval/v1"
ACCESS_CLASS = "log-access"
UNCLASSIFIED = "unclassified"


def most_sensitive(classes: Sequence[str], order: Sequence[str]) -> str:
    """The most sensitive of ``classes`` (at least one; unknown classes rank
    above every known one)."""
    rank = {name: i for i, name in enumerate(order)}
    return max(classes, key=lambda c: (rank.get(c, len(order)), c))


def data_class_of(hits: Sequence[Hit], order: Sequence[str]) -> str:
    """The most sensitive class among ``hits``."""
    if not hits:
        return UNCLASSIFIED
    return most_sensitive([h.data_class for h in hits], order)


def search_record(
    *,
    request_id: str,
    user: str,
    groups: Sequence[str],
    query: str,
    k: int,
    mode: str,
    index: str | None,
    binding: str | None,
    hits: Sequence[Hit],
    status: int,
    outcome: str,
    config: LogConfig,
    event: str = "search",
    answer: str | None = None,
    model: str | None = None,
) -> dict[str, object]:
    data_class = data_class_of(hits, config.classes)
    record: dict[str, object] = {
        "schema": SCHEMA,
        "event": event,
        "time": time.time(),
        "request_id": request_id,
        "user": user,
        "groups": sorted(groups)[:256],
        "query_sha256": hashlib.sha256(query.encode("utf-8", "replace")).hexdigest(),
        "query_chars": len(query),
        "k": k,
        "mode": mode,
        "index": index,
        "binding": binding,
        "results": [
            {"chunk_id": h.chunk_id, "doc_id": h.doc_id, "data_class": h.data_class} for h in hits
        ],
        "status": status,
        "outcome": outcome,
        "data_class": data_class,
    }
    if event == "answer":
        # The answer's digest, as the gateway's own record of the completion has it.
        record["model"] = model
        record["answer_sha256"] = (
            None
            if answer is None
            else hashlib.sha256(answer.encode("utf-8", "replace")).hexdigest()
        )
    if data_class in config.full_text_classes:
        record["query"] = query.encode("utf-8", "replace").decode("utf-8")
    return record


async def open_log(config: LogConfig) -> AuditLog:
    return await AuditLog.open(
        config.directory,
        signing_key=config.signing_key,
        retention_days=config.retention_days,
        default_retention_days=config.default_retention_days,
    )


def access_directory(config: LogConfig) -> Path:
    """Where the reads of the logs are recorded: ``access_directory``, else
    the log directory's sibling ``<name>-access``."""
    return config.access_directory or config.directory.with_name(config.directory.name + "-access")


async def open_access_log(config: LogConfig) -> AuditLog:
    """The log of reads; hold :func:`access_lock` while it is open."""
    return await AuditLog.open(
        access_directory(config),
        signing_key=config.signing_key,
        retention_days={ACCESS_CLASS: config.access_retention_days},
        default_retention_days=config.access_retention_days,
    )


def access_lock(config: LogConfig) -> Path:
    directory = access_directory(config)
    directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    return directory / ".append.lock"


def prune(config: LogConfig) -> list[Path]:
    """Remove the segments past their class's retention, in both directories,
    each removal signed; the running service's writer is left alone."""
    if config.signing_key is None:
        raise AuditUsageError("pruning needs log.signing_key (it signs what it removes)")
    signer = load_signer(config.signing_key)
    removed = prune_directory(
        config.directory,
        signer=signer,
        retention_days=config.retention_days,
        default_retention_days=config.default_retention_days,
    )
    if access_directory(config).is_dir():
        removed += prune_directory(
            access_directory(config),
            signer=signer,
            retention_days={ACCESS_CLASS: config.access_retention_days},
            default_retention_days=config.access_retention_days,
        )
    return removed


def read_records(
    directory: Path, classes: Sequence[str], since: float
) -> Iterator[dict[str, object]]:
    """Search records of ``classes`` (every class when empty) written at or after ``since``."""
    for chain in list_chains(directory):
        if classes and chain.name not in classes:
            continue
        for segment in list_segments(chain):
            with segment.open(encoding="utf-8") as handle:
                for line in handle:
                    entry = json.loads(line)
                    if not isinstance(entry, dict) or entry.get("type") != "record":
                        continue
                    record = entry.get("record")
                    if isinstance(record, dict) and float(record.get("time", 0)) >= since:
                        yield record


def access_record(
    reader: str, reason: str, classes: Sequence[str], since: float
) -> dict[str, object]:
    return {
        "schema": SCHEMA,
        "event": "access",
        "time": time.time(),
        "reader": reader[:256],
        "reason": reason[:512],
        "classes": sorted(classes) or ["*"],
        "since": since,
        "data_class": ACCESS_CLASS,
    }
