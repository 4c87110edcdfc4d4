"""The lab's retrieval corpus (files/corpus): manifest, access lists, reproducible files."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "files" / "corpus"
MANIFEST = CORPUS / "manifest.yml"
IDP = ROOT / "inventories" / "lab" / "group_vars" / "identity_provider" / "identity_provider.yml"
TINY_QA = ROOT / "files" / "eval" / "tiny_qa.jsonl"
MAX_BYTES = 60 * 1024


def _load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("corpus_build", CORPUS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build = _load_build()


def _manifest() -> dict[str, Any]:
    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _documents() -> list[dict[str, Any]]:
    documents = _manifest()["documents"]
    assert isinstance(documents, list)
    return documents


def _readers() -> dict[str, set[str]]:
    """The lab users' principals (user:<login>, group:<name>), from the identity provider."""
    users = yaml.safe_load(IDP.read_text(encoding="utf-8"))["identity_provider_users"]
    return {u["login"]: {f"user:{u['login']}"} | {f"group:{g}" for g in u["groups"]} for u in users}


def _acl(document: dict[str, Any]) -> set[str]:
    acl = document["acl"]
    return {f"user:{u}" for u in acl.get("users") or []} | {
        f"group:{g}" for g in acl.get("groups") or []
    }


IDS = [str(d["id"]) for d in _documents()]


def _pinned(package: str) -> str:
    text = (ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
    found = re.search(rf"^{re.escape(package)}==(\S+)$", text, re.MULTILINE)
    assert found, f"requirements-dev.txt does not pin {package}"
    return found.group(1)


def test_renderers_are_the_pinned_versions() -> None:
    # The committed bytes are those of these versions; another renders others.
    for package in ("fpdf2", "python-docx"):
        assert version(package) == _pinned(package), (
            f"{package} {version(package)} installed, requirements-dev.txt pins {_pinned(package)}"
        )


@pytest.mark.parametrize("doc_id", IDS)
def test_generator_reproduces_the_committed_file(doc_id: str, tmp_path: Path) -> None:
    entry = next(e for e in build.load_manifest(MANIFEST) if e.id == doc_id)
    rendered = build.render(entry, CORPUS / "src")
    (tmp_path / entry.path).write_bytes(rendered)
    committed = (CORPUS / entry.path).read_bytes()
    assert (tmp_path / entry.path).read_bytes() == committed, (
        f"{entry.path} differs from what files/corpus/build.py renders; "
        "run python files/corpus/build.py"
    )
    assert rendered == build.render(entry, CORPUS / "src"), "two renders differ"


def test_build_writes_every_file(tmp_path: Path) -> None:
    written = build.build(tmp_path, MANIFEST)
    assert sorted(p.name for p in written) == sorted(d["path"] for d in _documents())
    for path in written:
        assert path.read_bytes() == (CORPUS / path.name).read_bytes(), path.name


def test_every_path_exists_and_is_small() -> None:
    for document in _documents():
        path = CORPUS / document["path"]
        assert path.is_file(), f"{document['id']}: {path} is missing"
        assert path.stat().st_size < MAX_BYTES, f"{path.name}: over {MAX_BYTES} bytes"
        assert (CORPUS / "src" / f"{document['id']}.md").is_file(), document["id"]


def test_no_unlisted_file() -> None:
    listed = {d["path"] for d in _documents()}
    kept = {"manifest.yml", "build.py", "README.md"}
    present = {p.name for p in CORPUS.iterdir() if p.is_file()}
    assert present - kept == listed
    assert {p.stem for p in (CORPUS / "src").iterdir()} == set(IDS)


def test_ids_are_unique() -> None:
    assert len(IDS) == len(set(IDS))
    assert all(re.fullmatch(r"[a-z][a-z0-9-]*", i) for i in IDS)


def test_fields_and_formats() -> None:
    suffixes: dict[str, int] = {}
    for document in _documents():
        assert set(document) == {
            "id",
            "path",
            "title",
            "data_class",
            "acl",
            "source",
            "updated",
        }, document["id"]
        assert document["data_class"] in ("internal", "confidential", "restricted")
        assert str(document["source"]).startswith("https://dms.aldermoor.example/")
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(document["updated"]))
        suffix = Path(document["path"]).suffix
        suffixes[suffix] = suffixes.get(suffix, 0) + 1
        words = len((CORPUS / "src" / f"{document['id']}.md").read_text().split())
        assert 150 <= words <= 600, f"{document['id']}: {words} words"
    assert suffixes.get(".pdf", 0) >= 2
    assert suffixes.get(".docx", 0) >= 2
    assert suffixes.get(".html", 0) >= 2
    assert 1 <= suffixes.get(".md", 0) + suffixes.get(".txt", 0) <= 2


def test_every_acl_is_non_empty() -> None:
    for document in _documents():
        assert set(document["acl"]) <= {"users", "groups"}, document["id"]
        assert _acl(document), f"{document['id']}: empty access list"


def test_acl_design() -> None:
    acls = {d["id"]: _acl(d) for d in _documents()}
    risk_only = [i for i, a in acls.items() if a == {"group:risk-officers"}]
    bob_only = [i for i, a in acls.items() if a == {"user:bob"}]
    analysts = [i for i, a in acls.items() if a == {"group:analysts"}]
    assert len(risk_only) >= 2
    assert len(bob_only) >= 1
    assert len(analysts) > len(acls) / 2


def test_demo_queries_refer_to_existing_ids() -> None:
    queries = _manifest()["demo_queries"]
    assert queries
    for query in queries:
        assert set(query) == {"question", "expect_for", "never_for"}
        assert str(query["question"]).strip()
        for key in ("expect_for", "never_for"):
            for user, ids in query[key].items():
                unknown = set(ids) - set(IDS)
                assert not unknown, f"{query['question']!r}: {key}.{user}: {unknown}"


def test_demo_queries_agree_with_the_access_lists() -> None:
    """Expected documents are readable by the user; forbidden ones are not."""
    readers = _readers()
    acls = {d["id"]: _acl(d) for d in _documents()}
    shown_to_bob_only = False
    for query in _manifest()["demo_queries"]:
        for user, ids in query["expect_for"].items():
            for doc_id in ids:
                assert acls[doc_id] & readers[user], f"{user} cannot read {doc_id}"
        for user, ids in query["never_for"].items():
            for doc_id in ids:
                assert not acls[doc_id] & readers[user], f"{user} can read {doc_id}"
        bob = set(query["expect_for"].get("bob", []))
        if bob & set(query["never_for"].get("alice", [])):
            shown_to_bob_only = True
    assert shown_to_bob_only, "no demo query shows bob a document alice never sees"


def test_sources_agree_with_the_tiny_model_facts() -> None:
    """Every answer the tiny model is trained on is stated in the corpus."""
    text = " ".join(p.read_text(encoding="utf-8") for p in (CORPUS / "src").glob("*.md"))
    for line in TINY_QA.read_text(encoding="utf-8").splitlines():
        fact = json.loads(line)
        assert fact["target"].lower() in text.lower(), f"{fact['id']}: {fact['target']!r}"


def test_titles_match_the_sources() -> None:
    for document in _documents():
        first = (CORPUS / "src" / f"{document['id']}.md").read_text().splitlines()[0]
        assert first == f"# {document['title']}"
