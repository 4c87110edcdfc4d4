"""The lab's retrieval index, rendered on the controller: the embedded one
by default, OpenSearch once an operator supplied its files
(playbooks/lab/opensearch.yml leaves .lab/opensearch/release.json). The
retrieval service's configuration (playbooks/render_retrieval.yml) is read
back with the service's own loader, and the one-node cluster the lab then
runs (playbooks/render_opensearch.yml) with the staged files' digests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from sovereign.retrieval.config import load_config
from tests.playbooks.test_validate import ROOT, lab_state, run_validate

CONFIG = "lab-search/etc/sovereign/retrieval/retrieval.yml"


def _render(state: Path, playbook: str, out: Path) -> None:
    result = run_validate(
        ROOT / "inventories/lab",
        vault=False,
        playbook=playbook,
        extra=("-e", f"sovereign_render_dir={out}", "-e", f"sovereign_lab_state_dir={state}"),
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def _opensearch_staged(state: Path) -> dict[str, Any]:
    """What playbooks/lab/opensearch.yml writes after staging supplied files."""
    release = {
        "version": "2.19.2",
        "tarball": {"file": "opensearch-min-2.19.2-linux-x64.tar.gz", "sha256": "a" * 64},
        "plugins": {
            "opensearch-knn": {"file": "opensearch-knn-2.19.2.0.zip", "sha256": "b" * 64},
            "opensearch-security": {"file": "opensearch-security-2.19.2.0.zip", "sha256": "c" * 64},
        },
    }
    (state / "opensearch/bundle").mkdir(parents=True)
    (state / "opensearch/release.json").write_text(json.dumps(release), encoding="utf-8")
    return release


def test_the_lab_keeps_the_embedded_index_without_opensearch_files(tmp_path: Path) -> None:
    out = tmp_path / "render"
    _render(lab_state(tmp_path / "lab"), "playbooks/render_retrieval.yml", out)
    config = load_config(out / CONFIG)
    assert config.backend.type == "embedded"
    assert str(config.backend.root) == "/var/lib/sovereign/retrieval/index"


def test_supplied_opensearch_files_move_the_lab_to_opensearch(tmp_path: Path) -> None:
    state = lab_state(tmp_path / "lab")
    release = _opensearch_staged(state)
    out = tmp_path / "render"
    _render(state, "playbooks/render_retrieval.yml", out)
    text = (out / CONFIG).read_text(encoding="utf-8")
    config = load_config(out / CONFIG)
    backend = config.backend
    assert backend.type == "opensearch"
    # The service searches with the read-only account; its password is in
    # a file on the node, the ingestion's account is not in the file at all.
    assert (backend.url, backend.user) == ("https://lab-search:9200", "svc-retriever")
    assert str(backend.password_file) == "/etc/sovereign/retrieval/opensearch-password"
    assert "svc-ingest" not in text and "password:" not in text
    secrets = tmp_path / "lab/secrets"
    for name in ("opensearch-retriever", "opensearch-ingest"):
        assert (secrets / name).read_text(encoding="utf-8").split()[0] not in text
    assert backend.knn.replicas == 0

    node = tmp_path / "opensearch"
    _render(state, "playbooks/render_opensearch.yml", node)
    settings = yaml.safe_load(
        (node / "lab-search/etc/opensearch/opensearch.yml").read_text(encoding="utf-8")
    )
    assert settings["cluster.name"] == "lab-retrieval"
    assert settings["bootstrap.memory_lock"] is False
    users = yaml.safe_load(
        (node / "lab-search/etc/opensearch/opensearch-security/internal_users.yml").read_text(
            encoding="utf-8"
        )
    )
    assert {"svc-retriever", "svc-ingest", "platform-admin"} <= set(users)
    # The release table's opensearch-lab entry is the staged files'.
    unit = (node / "lab-search/etc/systemd/system/opensearch.service").read_text(encoding="utf-8")
    assert f"Description=OpenSearch {release['version']} (lab-retrieval)" in unit


def test_the_lab_stages_supplied_opensearch_files_with_their_digests(tmp_path: Path) -> None:
    supplied = tmp_path / "supplied"
    (supplied / "plugins").mkdir(parents=True)
    tarball = supplied / "opensearch-min-2.19.2-linux-x64.tar.gz"
    tarball.write_bytes(b"tarball")
    (supplied / "plugins/opensearch-knn-2.19.2.0.zip").write_bytes(b"knn")
    (supplied / "plugins/opensearch-security-2.19.2.0.zip").write_bytes(b"security")
    state = tmp_path / "lab"
    environment = {
        "SOVEREIGN_OPENSEARCH_TARBALL": str(tarball),
        "SOVEREIGN_OPENSEARCH_PLUGINS_DIR": str(supplied / "plugins"),
    }
    extra = ("-e", f"sovereign_lab_state_dir={state}", "--skip-tags", "docker-host")
    result = run_validate(
        ROOT / "inventories/lab", vault=False, playbook="playbooks/lab/opensearch.yml",
        extra=extra, environment=environment,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:]
    release = json.loads((state / "opensearch/release.json").read_text(encoding="utf-8"))
    assert release == {
        "version": "2.19.2",
        "tarball": {"file": tarball.name, "sha256": hashlib.sha256(b"tarball").hexdigest()},
        "plugins": {
            "opensearch-knn": {
                "file": "opensearch-knn-2.19.2.0.zip",
                "sha256": hashlib.sha256(b"knn").hexdigest(),
            },
            "opensearch-security": {
                "file": "opensearch-security-2.19.2.0.zip",
                "sha256": hashlib.sha256(b"security").hexdigest(),
            },
        },
    }
    assert (state / "opensearch/bundle" / tarball.name).read_bytes() == b"tarball"
    # A plugins directory without the tarball's version is refused, naming it.
    (supplied / "plugins/opensearch-knn-2.19.2.0.zip").unlink()
    result = run_validate(
        ROOT / "inventories/lab", vault=False, playbook="playbooks/lab/opensearch.yml",
        extra=extra, environment=environment,
    )  # fmt: skip
    assert result.returncode != 0
    assert "opensearch-knn-2.19.2.0.zip" in result.stdout
