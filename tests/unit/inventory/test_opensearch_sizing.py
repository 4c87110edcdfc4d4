"""The k-NN memory check the validation play runs before any OpenSearch install."""

from __future__ import annotations

from typing import Any

import pytest

from sovereign.inventory import opensearch_sizing as sizing

GIB = 1024**3
HOSTS = ["search-01", "search-02", "search-03"]


def inventory(memory_gb: int, vectors: int, **extra: Any) -> dict[str, dict[str, Any]]:
    return {
        host: {
            "sovereign_retrieval_backend": "opensearch",
            "opensearch_node_memory_gb": memory_gb,
            "opensearch_knn_expected_vectors": vectors,
            "opensearch_knn_dimension": 768,
            "opensearch_knn_m": 16,
            "opensearch_index_replicas": 1,
            **extra,
        }
        for host in HOSTS
    }


def test_the_estimate_is_openSearchs_formula() -> None:
    corpus = sizing.Corpus(vectors=100_000, dimension=384, m=16, replicas=0)
    # 1.1 x (4 x 384 + 8 x 16) x 100,000 = 183,040,000 bytes (docs/retrieval.md).
    assert corpus.bytes_needed() == 183_040_000
    assert sizing.Corpus(100_000, 384, 16, 2).bytes_needed() == 3 * 183_040_000


def test_heap_defaults_to_half_the_ram_capped_at_31g() -> None:
    assert sizing.heap_bytes(16 * GIB, "") == 8 * GIB
    assert sizing.heap_bytes(128 * GIB, "") == 31 * GIB
    assert sizing.heap_bytes(128 * GIB, "16g") == 16 * GIB
    assert sizing.parse_size("512m") == 512 * 1024**2
    with pytest.raises(sizing.SizingError, match="'16 GB'"):
        sizing.parse_size("16 GB")


def test_the_breaker_is_a_share_of_the_ram_left_after_the_heap() -> None:
    assert sizing.breaker_share("50%", 8 * GIB) == 4 * GIB
    assert sizing.breaker_share("12.5%", 8 * GIB) == 1 * GIB
    assert sizing.breaker_share("2g", 8 * GIB) == 2 * GIB


def test_a_cluster_big_enough_passes() -> None:
    # 10M x 768-dim, m=16, 1 replica: 1.1 x 3200 x 10M x 2 = 65.6 GiB; three
    # 64 GiB nodes with a 31 GiB heap grant 3 x 16.5 = 49.5 GiB: too small,
    # three 128 GiB nodes (3 x 48.5 = 145.5 GiB) are enough.
    hostvars = inventory(128, 10_000_000)
    assert sizing.check_inventory(hostvars, {"search": HOSTS}) == []


def test_a_cluster_too_small_fails_with_the_numbers() -> None:
    hostvars = inventory(64, 10_000_000)
    problems = sizing.check_inventory(hostvars, {"search": HOSTS})
    assert len(problems) == 1
    message = problems[0]
    assert message.startswith("opensearch_knn_expected_vectors: 10,000,000 vectors")
    assert "need about 65.6 GiB" in message
    assert "grants 49.5 GiB" in message
    assert "search-01: 16.5 GiB of (64.0 GiB RAM - 31.0 GiB heap)" in message


def test_only_data_nodes_count() -> None:
    hostvars = inventory(128, 10_000_000)
    hostvars["search-03"]["opensearch_node_roles"] = ["cluster_manager"]
    hostvars["search-02"]["opensearch_node_roles"] = ["cluster_manager"]
    problems = sizing.check_inventory(hostvars, {"search": HOSTS})
    assert "the 1 data node(s) grants 48.5 GiB" in problems[0]


def test_a_smaller_heap_and_a_larger_breaker_make_room() -> None:
    hostvars = inventory(
        64, 10_000_000, opensearch_heap_size="8g", opensearch_knn_circuit_breaker_limit="75%"
    )
    assert sizing.check_inventory(hostvars, {"search": HOSTS}) == []


def test_nothing_is_checked_for_the_embedded_backend_or_no_expectation() -> None:
    hostvars = inventory(1, 10_000_000)
    for variables in hostvars.values():
        variables["sovereign_retrieval_backend"] = "embedded"
    assert sizing.check_inventory(hostvars, {"search": HOSTS}) == []
    assert sizing.check_inventory(inventory(1, 0), {"search": HOSTS}) == []


def test_a_data_node_without_its_ram_is_named() -> None:
    hostvars = inventory(128, 1_000)
    del hostvars["search-02"]["opensearch_node_memory_gb"]
    problems = sizing.check_inventory(hostvars, {"search": HOSTS})
    assert problems == [
        "opensearch_node_memory_gb: search-02 is a data node and opensearch_knn_expected_vectors "
        "is set: give its RAM in GiB (the hardware's), so the k-NN memory can be checked "
        "before install"
    ]
