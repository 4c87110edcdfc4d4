"""Will the k-NN graphs fit? OpenSearch's native memory, checked before install.

Native (faiss) HNSW graphs live outside the JVM heap, in the RAM the k-NN
circuit breaker grants: ``knn.memory.circuit_breaker.limit`` (default 50 %)
of what is left after the heap, on every data node. A graph needs about
``1.1 * (4 * dimension + 8 * m)`` bytes per vector (OpenSearch's k-NN
memory estimate), and every replica holds a copy. When the breaker trips,
the cluster stops loading graphs and k-NN searches fail or crawl; the
validation play runs :func:`check_inventory` so a cluster too small for its
expected corpus fails before the first task, with the numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The inventory switch: the OpenSearch play (and this check) run only when
# it is "opensearch".
BACKEND = "sovereign_retrieval_backend"
BACKEND_DEFAULT = "embedded"
GROUP = "search"

GIB = 1024**3
# Largest heap that keeps compressed object pointers (OpenSearch's advice).
HEAP_CAP = 31 * GIB
# Overhead factor of OpenSearch's HNSW memory estimate.
OVERHEAD = 1.1

_SIZE = re.compile(r"^([0-9]+)([kmgt]?)b?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_PERCENT = re.compile(r"^([0-9]+(?:\.[0-9]+)?)%$")


class SizingError(ValueError):
    """A sizing input that cannot be read."""


@dataclass(frozen=True)
class Corpus:
    """What the k-NN index is expected to hold."""

    vectors: int
    dimension: int
    m: int
    replicas: int

    def bytes_needed(self) -> int:
        """Native memory of every copy of the HNSW graphs."""
        per_vector = OVERHEAD * (4 * self.dimension + 8 * self.m)
        return math.ceil(per_vector * self.vectors * (self.replicas + 1))


@dataclass(frozen=True)
class DataNode:
    """A node that holds shards: its RAM, heap and k-NN breaker share."""

    host: str
    memory_bytes: int
    heap_bytes: int
    breaker_bytes: int


def parse_size(text: str) -> int:
    """Bytes of a JVM/OpenSearch size: ``31g``, ``512m``, ``8gb``, ``1024``."""
    found = _SIZE.match(text.strip())
    if not found:
        raise SizingError(f"{text!r} is not a size like '16g' or '512m'")
    return int(found[1]) * _UNITS[found[2].lower()]


def default_heap(memory_bytes: int) -> int:
    """Half the node's RAM, capped at 31 GiB (what the role sets by default)."""
    return min(memory_bytes // 2, HEAP_CAP)


def heap_bytes(memory_bytes: int, setting: str) -> int:
    """The heap the role gives a node: ``setting`` or the default."""
    return parse_size(setting) if setting else default_heap(memory_bytes)


def breaker_share(limit: str, off_heap_bytes: int) -> int:
    """What ``knn.memory.circuit_breaker.limit`` grants: a percentage of the
    RAM left after the heap, or an absolute size."""
    found = _PERCENT.match(limit.strip())
    if found:
        return int(off_heap_bytes * float(found[1]) / 100)
    return parse_size(limit)


def _gib(value: int) -> str:
    return f"{value / GIB:.1f} GiB"


def check_capacity(corpus: Corpus, nodes: Iterable[DataNode]) -> list[str]:
    """A problem when the data nodes' k-NN breaker shares cannot hold the graphs."""
    nodes = list(nodes)
    needed = corpus.bytes_needed()
    available = sum(node.breaker_bytes for node in nodes)
    if needed <= available:
        return []
    shares = ", ".join(
        f"{node.host}: {_gib(node.breaker_bytes)} of ({_gib(node.memory_bytes)} RAM - "
        f"{_gib(node.heap_bytes)} heap)"
        for node in nodes
    )
    return [
        f"opensearch_knn_expected_vectors: {corpus.vectors:,} vectors of dimension "
        f"{corpus.dimension} with m={corpus.m} and {corpus.replicas} replica(s) need about "
        f"{_gib(needed)} of native memory (1.1 x (4 x {corpus.dimension} + 8 x {corpus.m}) bytes "
        f"x {corpus.vectors:,} x {corpus.replicas + 1} copies), but the k-NN circuit breaker of "
        f"the {len(nodes)} data node(s) grants {_gib(available)} ({shares or 'no data node'}); "
        "add data nodes or RAM, lower opensearch_heap_size, raise "
        "opensearch_knn_circuit_breaker_limit, or use fewer replicas"
    ]


def _int(variables: Mapping[str, Any], name: str, default: int) -> int | None:
    value = variables.get(name, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_inventory(
    hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Iterable[str]]
) -> list[str]:
    """The sizing problem of the inventory's OpenSearch cluster, if any.

    Runs when the search hosts have ``sovereign_retrieval_backend:
    opensearch`` and ``opensearch_knn_expected_vectors`` above 0. Wrong types
    are the argument spec's to report: such a host is left out here."""
    hosts = [host for host in groups.get(GROUP, []) if host in hostvars]
    hosts = [host for host in hosts if hostvars[host].get(BACKEND, BACKEND_DEFAULT) == "opensearch"]
    if not hosts:
        return []
    first = hostvars[hosts[0]]
    values = {
        name: _int(first, name, default)
        for name, default in (
            ("opensearch_knn_expected_vectors", 0),
            ("opensearch_knn_dimension", 384),
            ("opensearch_knn_m", 16),
            ("opensearch_index_replicas", 1),
        )
    }
    if (
        any(value is None for value in values.values())
        or not values["opensearch_knn_expected_vectors"]
    ):
        return []
    corpus = Corpus(
        vectors=values["opensearch_knn_expected_vectors"] or 0,
        dimension=values["opensearch_knn_dimension"] or 0,
        m=values["opensearch_knn_m"] or 0,
        replicas=values["opensearch_index_replicas"] or 0,
    )
    problems: list[str] = []
    nodes: list[DataNode] = []
    for host in hosts:
        variables = hostvars[host]
        roles = variables.get("opensearch_node_roles", ["cluster_manager", "data", "ingest"])
        if not isinstance(roles, list) or "data" not in roles:
            continue
        memory_gb = _int(variables, "opensearch_node_memory_gb", 0)
        if not memory_gb:
            problems.append(
                f"opensearch_node_memory_gb: {host} is a data node and "
                "opensearch_knn_expected_vectors is set: give its RAM in GiB (the "
                "hardware's), so the k-NN memory can be checked before install"
            )
            continue
        memory = memory_gb * GIB
        try:
            heap = heap_bytes(memory, str(variables.get("opensearch_heap_size", "")))
            share = breaker_share(
                str(variables.get("opensearch_knn_circuit_breaker_limit", "50%")),
                max(memory - heap, 0),
            )
        except SizingError as exc:
            problems.append(f"opensearch sizing on {host}: {exc}")
            continue
        nodes.append(DataNode(host, memory, heap, share))
    if problems:
        return problems
    return check_capacity(corpus, nodes)
