"""The rendered check of the example inventory's OpenSearch cluster:
playbooks/render_opensearch.yml run for real on the controller, and what the
opensearch role would write on the three search nodes read back:
opensearch.yml, the heap, the security plugin's files, the unit, and every
REST body the role sends, each validated against OpenSearch's API
specification (tests/support/opensearch_spec.py, strict keys)."""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.playbooks.test_validate import ROOT, lab_state, render_example, run_validate
from tests.support.opensearch_spec import validate_request

NODES = [f"fra1-search0{index}.dc.example.internal" for index in (1, 2, 3)]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_example("playbooks/render_opensearch.yml", tmp_path_factory.mktemp("render"))


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_every_search_node_is_rendered(rendered: Path) -> None:
    assert sorted(path.name for path in rendered.iterdir()) == NODES


def test_opensearch_yml_forms_one_tls_cluster(rendered: Path) -> None:
    config = load(rendered / NODES[1] / "etc/opensearch/opensearch.yml")
    assert config["cluster.name"] == "fra1-retrieval"
    assert config["node.name"] == NODES[1]
    assert config["discovery.seed_hosts"] == NODES
    assert config["cluster.initial_cluster_manager_nodes"] == NODES
    assert config["path.data"] == "/srv/opensearch/data"
    assert config["path.repo"] == ["/mnt/opensearch-snapshots"]
    assert config["knn.memory.circuit_breaker.limit"] == "50%"
    assert config["plugins.security.ssl.http.enabled"] is True
    assert config["plugins.security.ssl.transport.enforce_hostname_verification"] is True
    for layer in ("transport", "http"):
        # Relative paths: the plugin reads certificates only under the config directory.
        assert config[f"plugins.security.ssl.{layer}.pemkey_filepath"] == "tls/node.key"
        assert config[f"plugins.security.ssl.{layer}.pemtrustedcas_filepath"] == "tls/ca.crt"
    assert config["plugins.security.nodes_dn"] == [f"CN={node}" for node in NODES]
    assert config["plugins.security.authcz.admin_dn"] == ["CN=opensearch-admin"]
    assert config["plugins.security.allow_unsafe_democertificates"] is False
    assert config["plugins.security.audit.type"] == "log4j"


def test_heap_is_half_the_ram_capped_at_31g(rendered: Path) -> None:
    options = (
        rendered / NODES[0] / "etc/opensearch/jvm.options.d/50-sovereign-heap.options"
    ).read_text(encoding="utf-8")
    # 64 GiB nodes: half is 32 GiB, capped at 31 GiB (31744 MiB); -Xms = -Xmx.
    assert [line for line in options.splitlines() if line.startswith("-X")] == [
        "-Xms31744m",
        "-Xmx31744m",
    ]


def test_the_unit_is_hardened_with_its_limits(rendered: Path) -> None:
    unit = (rendered / NODES[0] / "etc/systemd/system/opensearch.service").read_text(
        encoding="utf-8"
    )
    for line in (
        "User=opensearch",
        "LimitNOFILE=65536",
        "LimitMEMLOCK=infinity",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "Environment=OPENSEARCH_PATH_CONF=/etc/opensearch",
        "Environment=OPENSEARCH_JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64",
        "ExecStart=/opt/opensearch/current/bin/opensearch"
        " -p /run/opensearch/opensearch.pid --quiet",
    ):
        assert line in unit.splitlines(), line
    sysctl = (rendered / NODES[0] / "etc/sysctl.d/91-sovereign-opensearch.conf").read_text(
        encoding="utf-8"
    )
    assert "vm.max_map_count = 262144" in sysctl


def test_users_roles_and_mapping(rendered: Path) -> None:
    security = rendered / NODES[0] / "etc/opensearch/opensearch-security"
    users = load(security / "internal_users.yml")
    assert users["_meta"] == {"type": "internalusers", "config_version": 2}
    assert sorted(set(users) - {"_meta"}) == ["platform-admin", "svc-ingest", "svc-retriever"]
    # The password never reaches a file: only the node's bcrypt hash does.
    assert "change-me" not in (security / "internal_users.yml").read_text(encoding="utf-8")
    roles = load(security / "roles.yml")
    reader = roles["sovereign_retriever"]["index_permissions"]
    assert [item["index_patterns"] for item in reader] == [["chunks*"]]
    writer = roles["sovereign_retrieval_ingest"]["index_permissions"][0]
    assert writer["index_patterns"] == ["chunks*"]
    mapping = load(security / "roles_mapping.yml")
    assert mapping["sovereign_retriever"]["users"] == ["svc-retriever"]
    assert mapping["sovereign_retrieval_ingest"]["users"] == ["svc-ingest"]
    assert mapping["all_access"]["users"] == ["platform-admin"]
    config = load(security / "config.yml")
    domain = config["config"]["dynamic"]["authc"]["basic_internal_auth_domain"]
    assert domain["authentication_backend"]["type"] == "intern"
    assert config["config"]["dynamic"]["http"]["anonymous_auth_enabled"] is False
    assert load(security / "audit.yml")["config"]["enabled"] is True


# The security plugin's static action groups the roles use
# (opensearch-project/security, static_config/static_action_groups.yml).
ACTION_GROUPS = {
    "read": [
        "indices:data/read*",
        "indices:admin/mappings/fields/get*",
        "indices:admin/resolve/index",
    ],
    "write": ["indices:data/write*", "indices:admin/mapping/put"],
    "crud": ["read", "write"],
    "create_index": ["indices:admin/create", "indices:admin/mapping/put"],
    "manage_aliases": ["indices:admin/aliases*"],
}

# Every request of src/sovereign/retrieval/opensearch.py (one per _call; the
# test helper drop_everything_with_prefix excepted) as the transport action
# the security plugin authorizes, and who sends it: the service reads, the
# ingestion writes (it also reads).
BACKEND_ACTIONS = {
    "HEAD /<index> (create_index)": ("indices:admin/get", "ingest"),
    "HEAD /<index> (switch_alias)": ("indices:admin/get", "ingest"),
    "PUT /<index>": ("indices:admin/create", "ingest"),
    "GET /<index>/_mapping (binding)": ("indices:admin/mappings/get", "read"),
    "GET /<alias>-*/_settings/index.creation_date": ("indices:monitor/settings/get", "ingest"),
    "GET /<index>/_alias (drop_index)": ("indices:admin/aliases/get", "ingest"),
    "DELETE /<index>": ("indices:admin/delete", "ingest"),
    "GET /_alias/<alias>": ("indices:admin/aliases/get", "read"),
    "POST /_aliases": ("indices:admin/aliases", "ingest"),
    "POST /_bulk": ("indices:data/write/bulk[s]", "ingest"),
    "POST /<index>/_delete_by_query (write)": ("indices:data/write/delete/byquery", "ingest"),
    "POST /<index>/_count (delete_documents)": ("indices:data/read/search", "ingest"),
    "POST /<index>/_delete_by_query (delete_documents)": (
        "indices:data/write/delete/byquery",
        "ingest",
    ),
    "POST /<index>/_search (document_digests)": ("indices:data/read/search", "ingest"),
    "POST /<index>/_count (count)": ("indices:data/read/search", "read"),
    "POST /<index>/_search (knn, lexical)": ("indices:data/read/search", "read"),
}


def _grants(allowed: list[str], action: str) -> bool:
    for item in allowed:
        if item in ACTION_GROUPS:
            if _grants(ACTION_GROUPS[item], action):
                return True
        elif fnmatch.fnmatchcase(action, item):
            return True
    return False


def test_each_account_may_do_what_the_backend_asks_of_it_and_no_more(rendered: Path) -> None:
    source = (ROOT / "src/sovereign/retrieval/opensearch.py").read_text(encoding="utf-8")
    # A new request in the backend must be added to the table (and granted).
    assert source.count("self._call(") - 2 == len(BACKEND_ACTIONS)
    roles = load(rendered / NODES[0] / "etc/opensearch/opensearch-security/roles.yml")
    reader = roles["sovereign_retriever"]["index_permissions"][0]["allowed_actions"]
    writer = roles["sovereign_retrieval_ingest"]["index_permissions"][0]["allowed_actions"]
    for call, (action, who) in BACKEND_ACTIONS.items():
        assert _grants(writer, action), f"the ingestion may not {call} ({action})"
        if who == "read":
            assert _grants(reader, action), f"the service may not {call} ({action})"
    for action in ("indices:admin/create", "indices:admin/delete", "indices:admin/aliases",
                   "indices:data/write/bulk[s]", "indices:data/write/delete/byquery"):  # fmt: skip
        assert not _grants(reader, action), f"the read-only account may {action}"


def test_every_rest_body_the_role_sends_is_valid_against_the_api_spec(rendered: Path) -> None:
    rest = rendered / NODES[0] / "rest"
    operations = json.loads((rest / "operations.json").read_text(encoding="utf-8"))
    assert set(operations.values()) == {
        "snapshot.create_repository",
        "indices.put_index_template",
        "cluster.put_settings",
    }
    for name, operation in operations.items():
        validate_request(operation, json.loads((rest / f"{name}.json").read_text("utf-8")))
    template = json.loads((rest / "index_template.json").read_text(encoding="utf-8"))
    embedding = template["template"]["mappings"]["properties"]["embedding"]
    assert embedding["dimension"] == 384
    assert embedding["method"] == {
        "name": "hnsw",
        "engine": "faiss",
        "space_type": "cosinesimil",
        "parameters": {"m": 16, "ef_construction": 128},
    }
    assert template["template"]["settings"]["index"]["knn.algo_param.ef_search"] == 100
    repository = json.loads((rest / "snapshot_repository.json").read_text(encoding="utf-8"))
    assert repository["settings"]["location"] == "/mnt/opensearch-snapshots"


def test_a_cluster_too_small_for_its_vectors_fails_validation(tmp_path: Path) -> None:
    inventory = tmp_path / "dc"
    shutil.copytree(ROOT / "inventories/example", inventory)
    settings = inventory / "group_vars/search/opensearch.yml"
    text = settings.read_text(encoding="utf-8")
    settings.write_text(text.replace("vectors: 5000000", "vectors: 50000000"), encoding="utf-8")
    result = run_validate(inventory)
    assert result.returncode != 0
    assert "opensearch_knn_expected_vectors: 50,000,000 vectors of dimension 384" in result.stdout
    assert "grants 49.5 GiB" in result.stdout


def test_the_lab_renders_no_opensearch_node(tmp_path: Path) -> None:
    out = tmp_path / "render"
    result = run_validate(
        ROOT / "inventories/lab",
        vault=False,
        playbook="playbooks/render_opensearch.yml",
        extra=(
            "-e",
            f"sovereign_render_dir={out}",
            "-e",
            f"sovereign_lab_state_dir={lab_state(tmp_path / 'lab')}",
        ),
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert not out.exists()
