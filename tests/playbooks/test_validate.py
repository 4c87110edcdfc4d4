"""playbooks/validate.yml run for real by ansible-playbook against inventories.

The play runs on the controller only, so these tests need no container: a
good inventory passes, and each kind of mistake fails with a message that
names it, before any host is contacted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


# What a site keeps in ansible-vault files: the example inventory's
# vault.yml.example files, passed as extra vars the way vault.yml would
# supply them.
VAULT_EXAMPLES = sorted((ROOT / "inventories/example/group_vars").glob("*/vault.yml.example"))
VAULT = [
    argument
    for path in VAULT_EXAMPLES
    for name, value in yaml.safe_load(path.read_text(encoding="utf-8")).items()
    for argument in ("-e", f"{name}={value}")
]


def offline_bundle(directory: Path) -> Path:
    """What the example inventory names in its offline bundle
    (group_vars/all/bundle.yml): the signed model the catalog publishes and
    the CUDA runtime release's wheel table."""
    (directory / "models/llama-3.3-70b-instruct").mkdir(parents=True)
    (directory / "runtimes").mkdir()
    (directory / "runtimes/vllm-0.32.0-cu128.txt").write_text("vllm==0.32.0 --hash=sha256:00\n")
    return directory


def run_validate(
    inventory: Path,
    vault: bool = True,
    extra: tuple[str, ...] = (),
    playbook: str = "playbooks/validate.yml",
    bundle: Path | None = None,
    environment: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), NO_COLOR="1")
    env.update(environment or {})
    env.pop("ANSIBLE_ROLES_PATH", None)
    env.pop("SOVEREIGN_LAB_STATE_DIR", None)
    secrets = VAULT if vault else []
    if bundle is None:
        bundle = offline_bundle(Path(tempfile.mkdtemp(prefix="bundle-")))
    where = ("-e", f"sovereign_bundle_root={bundle}")
    return subprocess.run(
        ["ansible-playbook", "-i", str(inventory), *secrets, *where, *extra, str(ROOT / playbook)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def render_example(playbook: str, out: Path) -> Path:
    """Run a render entry point on the example datacenter into ``out``; ``out``."""
    result = run_validate(
        ROOT / "inventories/example", playbook=playbook, extra=("-e", f"sovereign_render_dir={out}")
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return out


def run_local(
    hosts: str,
    playbook: str,
    bin_dir: Path,
    environment: dict[str, str],
    variables: dict[str, object] | None = None,
) -> subprocess.CompletedProcess[str]:
    """A playbook run against example-inventory hosts on this machine (local
    connection, no become), with the stand-ins in ``bin_dir`` first on PATH."""
    facts = {"ansible_become": False, "ansible_python_interpreter": sys.executable}
    return run_validate(
        ROOT / "inventories/example",
        extra=(
            "--limit",
            f"localhost,{hosts}",
            "-e",
            "ansible_connection=local",
            "-e",
            json.dumps({**facts, **(variables or {})}),
        ),
        playbook=playbook,
        environment={**environment, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
    )


@pytest.fixture
def example(tmp_path: Path) -> Path:
    inventory = tmp_path / "dc"
    shutil.copytree(ROOT / "inventories/example", inventory)
    return inventory


def edit_hosts(inventory: Path, change: object) -> None:
    path = inventory / "hosts.yml"
    hosts = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(hosts)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(hosts), encoding="utf-8")


def write_group_vars(inventory: Path, name: str, variables: dict[str, object]) -> None:
    path = inventory / "group_vars/all" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(variables), encoding="utf-8")


def lab_state(directory: Path) -> Path:
    """What playbooks/lab/model.yml leaves on the controller: the signed
    model, its key and the digests of the lab's releases."""
    (directory / "models/tiny").mkdir(parents=True)
    (directory / "models/tiny-worse").mkdir(parents=True)
    (directory / "models/tiny-good.digest").write_text("sha256:" + "0" * 64 + "\n")
    (directory / "models/tiny-good2.digest").write_text("sha256:" + "1" * 64 + "\n")
    (directory / "models/tiny-worse.digest").write_text("sha256:" + "2" * 64 + "\n")
    (directory / "models/all-minilm-l6-v2").mkdir(parents=True)
    (directory / "models/minilm-l6-v2.digest").write_text("sha256:" + "3" * 64 + "\n")
    shutil.copy(ROOT / "files/keys/example-custodians.pub", directory / "model-signing.pub")
    return directory


def test_every_vault_variable_the_example_names_has_an_example() -> None:
    named: set[str] = set()
    for path in (ROOT / "inventories/example").rglob("*.yml"):
        named.update(re.findall(r"\bvault_[a-z0-9_]+", path.read_text(encoding="utf-8")))
    examples = {name for path in VAULT_EXAMPLES for name in yaml.safe_load(path.read_text())}
    assert named == examples


def test_the_example_inventory_passes() -> None:
    result = run_validate(ROOT / "inventories/example")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_lab_inventory_passes_once_its_model_is_prepared(tmp_path: Path) -> None:
    state = lab_state(tmp_path / "lab")
    result = run_validate(
        ROOT / "inventories/lab", extra=("-e", f"sovereign_lab_state_dir={state}")
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_lab_inventory_without_its_model_says_what_to_run(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    result = run_validate(
        ROOT / "inventories/lab", extra=("-e", f"sovereign_lab_state_dir={empty}")
    )
    assert result.returncode != 0
    assert "sovereign_releases.models.tiny-good.digest: 'missing: run playbooks/lab/model.yml" in (
        result.stdout
    )


def test_an_unknown_release_in_the_serving_manifest_fails_naming_the_key(example: Path) -> None:
    path = example / "group_vars/gpu_h100/serving.yml"
    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    manifest["sovereign_serving"]["deployments"][0]["release"] = "llama-latest"
    path.write_text(yaml.safe_dump(manifest), encoding="utf-8")
    result = run_validate(example)
    assert result.returncode != 0
    assert "sovereign_serving.deployments[0].release: 'llama-latest' is not a model release" in (
        result.stdout
    )


def test_a_tag_in_the_release_table_fails_naming_the_release(tmp_path: Path) -> None:
    text = (ROOT / "group_vars/all/releases.yml").read_text(encoding="utf-8")
    table = yaml.safe_load(text)
    table["sovereign_releases"]["models"]["llama-3.3-70b-instruct-2026-10"]["digest"] = "latest"
    changed = tmp_path / "releases.json"
    changed.write_text(json.dumps(table), encoding="utf-8")
    result = run_validate(ROOT / "inventories/example", extra=("-e", f"@{changed}"))
    assert result.returncode != 0
    assert (
        "sovereign_releases.models.llama-3.3-70b-instruct-2026-10.digest: 'latest' is not a "
        "manifest digest" in result.stdout
    )


def test_files_the_inventory_names_must_exist_on_the_controller(tmp_path: Path) -> None:
    result = run_validate(ROOT / "inventories/example", bundle=tmp_path / "no-bundle")
    assert result.returncode != 0
    assert (
        f"sovereign_releases.runtimes.vllm-0.32.0-cu128.requirements: {tmp_path}/no-bundle/"
        "runtimes/vllm-0.32.0-cu128.txt does not exist on the controller" in result.stdout
    )
    assert (
        f"sovereign_model_catalog[0].path: {tmp_path}/no-bundle/models/llama-3.3-70b-instruct "
        "is not a directory on the controller" in result.stdout
    )


def test_a_missing_group_fails_naming_it(example: Path) -> None:
    edit_hosts(example, lambda hosts: hosts["all"]["children"].pop("search"))
    result = run_validate(example)
    assert result.returncode != 0
    assert "group 'search' is missing" in result.stdout


def test_two_ca_hosts_fail(example: Path) -> None:
    def second_ca(hosts: dict) -> None:  # type: ignore[type-arg]
        hosts["all"]["children"]["pki_ca"]["hosts"]["fra1-admin02.dc.example.internal"] = None

    edit_hosts(example, second_ca)
    result = run_validate(example)
    assert result.returncode != 0
    assert "group 'pki_ca' has 2 hosts, allows at most 1" in result.stdout


def test_a_string_where_a_list_is_expected_fails_naming_the_variable(example: Path) -> None:
    write_group_vars(example, "common.yml", {"common_chrony_servers": "ntp1.example.internal"})
    result = run_validate(example)
    assert result.returncode != 0
    assert (
        "common_chrony_servers: expected a list, got a string ('ntp1.example.internal')"
        in result.stdout
    )


def test_a_removed_variable_fails_with_what_to_do(example: Path) -> None:
    write_group_vars(example, "legacy.yml", {"security_autoupdate_enabled": True})
    result = run_validate(example)
    assert result.returncode != 0
    assert "security_autoupdate_enabled: was removed; Sovereign never upgrades" in result.stdout


def test_a_renamed_variable_fails_naming_the_new_name(example: Path) -> None:
    write_group_vars(example, "legacy.yml", {"ntp_servers": ["ntp1.example.internal"]})
    result = run_validate(example)
    assert result.returncode != 0
    assert "ntp_servers: was renamed to common_chrony_servers" in result.stdout


def test_a_misspelt_role_variable_fails_with_a_suggestion(example: Path) -> None:
    write_group_vars(example, "pki.yml", {"pki_renew_before_day": 10})
    result = run_validate(example)
    assert result.returncode != 0
    assert (
        "pki_renew_before_day: is not a variable of role 'pki'; did you mean pki_renew_before_days?"
        in result.stdout
    )


def test_a_missing_required_variable_fails_naming_it(example: Path) -> None:
    (example / "group_vars/registry/model_registry.yml").unlink()
    result = run_validate(example)
    assert result.returncode != 0
    assert (
        "model_registry_users: is required by role 'model_registry' on this host and not set"
        in result.stdout
    )


def test_gpu_node_inputs_are_checked_in_depth_before_any_host(example: Path) -> None:
    driver = example / "group_vars/gpu_nodes/gpu_driver.yml"
    driver.write_text(
        driver.read_text(encoding="utf-8").replace(
            'gpu_driver_version: "590.48.01"', 'gpu_driver_version: "580.95.05"'
        ),
        encoding="utf-8",
    )
    hosts = example / "hosts.yml"
    hosts.write_text(
        hosts.read_text(encoding="utf-8").replace(
            "{name: ens1f0np0, rdma_device: mlx5_0, address: 10.40.1.15/24}",
            "{name: ens1f0np0, rdma_device: mlx5_0, address: 10.40.1.15/24, mtu: 65000}",
        ),
        encoding="utf-8",
    )
    result = run_validate(example)
    assert result.returncode != 0
    said = " ".join(result.stdout.split())
    assert "gpu_driver_version 580.95.05 is not on branch 590 (gpu_driver_branch)" in said
    assert "roce_interfaces[0] (ens1f0np0).mtu must be from 1500 to 9216, not 65000" in said
    assert "[hosts: fra1-gpu05.dc.example.internal]" in said


def test_a_missing_vault_secret_fails_naming_it(example: Path) -> None:
    result = run_validate(example, vault=False)
    assert result.returncode != 0
    assert "model_registry_users: cannot be templated on fra1-reg01" in result.stdout
    assert "vault_model_registry_publisher_password" in result.stdout


def test_the_play_contacts_no_host(example: Path) -> None:
    # Every example host is unreachable from here: passing proves that the
    # validation ran on the controller alone.
    result = run_validate(example)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "UNREACHABLE" not in result.stdout


ENTRY_PLAYBOOKS = [
    "site.yml",
    "playbooks/foundation.yml",
    "playbooks/control_plane.yml",
    "playbooks/data_plane.yml",
    "playbooks/governance_plane.yml",
    "playbooks/gpu_nodes.yml",
    "playbooks/validate_fabric.yml",
]


@pytest.mark.parametrize("playbook", ENTRY_PLAYBOOKS)
@pytest.mark.parametrize(
    "narrowed",
    [(), ("--limit", "fra1-gpu01.dc.example.internal"), ("--tags", "role::vllm")],
    ids=["whole", "limit", "tags"],
)
def test_every_entry_playbook_validates_first_whatever_it_is_narrowed_to(
    example: Path, playbook: str, narrowed: tuple[str, ...]
) -> None:
    write_group_vars(example, "pki.yml", {"pki_renew_before_day": 10})
    result = run_validate(example, extra=narrowed, playbook=playbook)
    assert result.returncode != 0
    assert "pki_renew_before_day: is not a variable of role 'pki'" in result.stdout
    # Nothing after the validation ran: every example host is unreachable.
    assert "UNREACHABLE" not in result.stdout and "Gathering Facts" not in result.stdout


def test_a_misspelt_playbook_variable_fails_with_a_suggestion(example: Path) -> None:
    write_group_vars(example, "rollout.yml", {"sovereign_rollout_batchs": 2})
    result = run_validate(example)
    assert result.returncode != 0
    assert (
        "sovereign_rollout_batchs: is not a variable of Sovereign's playbooks; did you mean "
        "sovereign_rollout_batch? (see playbooks/vars/argument_specs.yml)" in result.stdout
    )


def test_a_playbook_variable_of_the_wrong_type_fails_naming_it(example: Path) -> None:
    write_group_vars(example, "network.yml", {"sovereign_controller_networks": "10.0.0.0/8"})
    result = run_validate(example)
    assert result.returncode != 0
    assert "sovereign_controller_networks: expected a list, got a string" in result.stdout


def test_the_example_inventory_renders_for_every_host(tmp_path: Path) -> None:
    """What site.yml would install, derived for every host of the example
    datacenter without contacting one (playbooks/preview.yml)."""
    from sovereign.gateway.config import ModelEntry

    out = tmp_path / "preview"
    result = run_validate(
        ROOT / "inventories/example",
        playbook="playbooks/preview.yml",
        extra=("-e", f"sovereign_preview_dir={out}"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    gpu = [f"fra1-gpu0{n}.dc.example.internal" for n in range(1, 7)]
    for host in gpu:
        serving = json.loads((out / host / "serving.json").read_text(encoding="utf-8"))
        assert serving["release_runtime"]["cuda_version"] == "12.8"
        assert serving["models"][0]["digest"].startswith("sha256:")
    h200 = json.loads((out / gpu[5] / "serving.json").read_text(encoding="utf-8"))
    assert [i["port"] for i in h200["instances"]] == [8000, 8001, 8002, 8003]
    for gateway in ("fra1-gw01.dc.example.internal", "fra1-gw02.dc.example.internal"):
        table = json.loads((out / gateway / "gateway-models.json").read_text(encoding="utf-8"))
        entry = ModelEntry.model_validate(table["llama-3.3-70b-instruct"])
        backends = entry.versions[0].backends
        # Every replica of every serving node: 4 H100 nodes x 2, 2 H200 nodes x 4.
        assert len(backends["general"]) == 8 and len(backends["restricted"]) == 8
    catalog = json.loads(
        (out / "fra1-reg01.dc.example.internal/catalog.json").read_text(encoding="utf-8")
    )
    assert catalog[0]["release"] == "llama-3.3-70b-instruct-2026-10"
