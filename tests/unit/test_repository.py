"""The repository keeps its own rules: role anatomy, specs matching defaults,
playbooks and inventories agreeing with the inventory layout."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sovereign.inventory import layout

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(path for path in (ROOT / "roles").iterdir() if path.is_dir())
PLATFORM_GROUPS = {rule.name for rule in layout.REQUIRED_GROUPS}
OPTIONAL_GROUPS = {rule.name for rule in layout.OPTIONAL_GROUPS}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("role", ROLES, ids=[role.name for role in ROLES])
def test_role_anatomy(role: Path) -> None:
    for part in (
        "README.md",
        "defaults/main.yml",
        "meta/main.yml",
        "meta/argument_specs.yml",
        "tasks/main.yml",
        "molecule/default/molecule.yml",
        "molecule/default/converge.yml",
        "molecule/default/verify.yml",
    ):
        assert (role / part).is_file(), f"{role.name}: {part} is missing"
    assert load(role / "meta/main.yml")["dependencies"] == []


@pytest.mark.parametrize("role", ROLES, ids=[role.name for role in ROLES])
def test_argument_spec_matches_defaults(role: Path) -> None:
    specs = load(role / "meta/argument_specs.yml")["argument_specs"]
    options = specs["main"]["options"]
    # Other entry points (tasks_from) document their own inputs, defaulted here too.
    others = {name for entry in specs.values() for name in entry.get("options", {})}
    defaults_text = (role / "defaults/main.yml").read_text(encoding="utf-8")
    defaults = load(role / "defaults/main.yml") or {}
    required = {name for name, spec in options.items() if spec.get("required")}
    assert set(defaults) == (set(options) | others) - required
    for name in required:
        # An input without a safe default is shown commented out in defaults.
        assert re.search(rf"^# {name}:", defaults_text, re.MULTILINE), f"{name} not documented"
    assert all(name.startswith(f"{role.name}_") for name in options)


def playbook_groups() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "playbooks").glob("*.yml"):
        for play in load(path) or []:
            hosts = play.get("hosts")
            if isinstance(hosts, str):
                found.update(part.strip() for part in hosts.split(":") if part.strip())
    return found


def test_playbooks_target_only_declared_groups() -> None:
    made = {name for name in playbook_groups() if name.startswith(layout.RUN_GROUP_PREFIXES)}
    assert {name.split("_")[0] for name in made} == {"upgrade", "refresh"}, made
    assert playbook_groups() - {"all", "localhost"} - made <= PLATFORM_GROUPS | OPTIONAL_GROUPS


@pytest.mark.parametrize("inventory", ["lab", "example"])
def test_inventories_define_every_required_group(inventory: Path) -> None:
    hosts = load(ROOT / "inventories" / inventory / "hosts.yml")
    defined: set[str] = set()

    def walk(children: dict[str, Any]) -> None:
        for name, body in (children or {}).items():
            defined.add(name)
            walk((body or {}).get("children") or {})

    walk(hosts["all"]["children"])
    assert PLATFORM_GROUPS <= defined


def test_role_groups_name_known_roles() -> None:
    names = {role.name for role in ROLES}
    assert set(layout.ROLE_GROUPS) <= names
    assert set(layout.PLAYBOOK_SUPPLIED) <= names


SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|PASSPHRASE|CREDENTIAL", re.IGNORECASE)


def _tasks(node: Any) -> list[dict[str, Any]]:
    """Every task (and play) mapping in a playbook or task file, blocks included."""
    found: list[dict[str, Any]] = []
    if isinstance(node, list):
        for item in node:
            found.extend(_tasks(item))
    elif isinstance(node, dict):
        found.append(node)
        for key in ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always"):
            found.extend(_tasks(node.get(key)))
    return found


def _ansible_files() -> list[Path]:
    return sorted(
        [*(ROOT / "playbooks").rglob("*.yml"), *(ROOT / "roles").glob("*/tasks/*.yml")]
        + list((ROOT / "roles").glob("*/handlers/*.yml"))
        + list((ROOT / "molecule").rglob("*.yml"))
        + list((ROOT / "roles").glob("*/molecule/*/*.yml"))
    )


@pytest.mark.parametrize(
    "path", _ansible_files(), ids=lambda path: path.relative_to(ROOT).as_posix()
)
def test_no_secret_goes_through_the_environment_of_a_task(path: Path) -> None:
    """STYLE: Ansible writes `environment:` into the module's command line, where
    any local user can read it: secrets go on stdin or in a 0600 file."""
    for task in _tasks(load(path)):
        environment = task.get("environment")
        if isinstance(environment, dict):
            leaked = [name for name in environment if SECRET_NAME.search(str(name))]
            assert not leaked, f"{task.get('name')!r} passes {leaked} in its environment"


def _playbooks() -> list[Path]:
    """The playbooks under playbooks/ (not their vars files or the release table)."""
    return [
        path
        for path in sorted((ROOT / "playbooks").rglob("*.yml"))
        if not {"vars", "group_vars"} & set(path.relative_to(ROOT / "playbooks").parts)
    ]


def _role_entries() -> list[tuple[Path, dict[str, Any]]]:
    entries = []
    for path in _playbooks():
        for play in load(path) or []:
            for entry in play.get("roles") or []:
                entries.append((path, entry if isinstance(entry, dict) else {"role": entry}))
            for task in _tasks(play):
                included = task.get("ansible.builtin.include_role")
                # A whole role included (not one entry point of it) is tagged too.
                if isinstance(included, dict) and "tasks_from" not in included:
                    tags = (included.get("apply") or {}).get("tags")
                    entries.append((path, {"role": included["name"], "tags": tags}))
    return entries


def test_every_role_a_playbook_applies_is_tagged_with_its_name() -> None:
    """`--tags role::gateway` runs one component, in every playbook."""
    entries = _role_entries()
    assert entries
    for path, entry in entries:
        assert entry.get("tags") == f"role::{entry['role']}", f"{path.name}: {entry['role']}"


def test_datacenter_runs_check_ssh_host_keys() -> None:
    config = (ROOT / "ansible.cfg").read_text(encoding="utf-8")
    assert re.search(r"^host_key_checking\s*=\s*true$", config, re.MULTILINE)


def test_no_code_edits_sys_path() -> None:
    """Plugins import the installed package; they do not patch the import path."""
    for path in sorted((ROOT / "src").rglob("*.py")):
        assert "sys.path" not in path.read_text(encoding="utf-8"), path


def test_every_sovereign_variable_the_playbooks_read_has_a_spec() -> None:
    """Play-level variables are validated like role variables: each one the
    playbooks read is in playbooks/vars/argument_specs.yml (or is the release
    table, a serving manifest, the catalog, a filter or a role's own)."""
    spec = load(ROOT / "playbooks/vars/argument_specs.yml")["argument_specs"]["main"]["options"]
    special = {"sovereign_releases", "sovereign_serving", "sovereign_model_catalog"}
    filters: set[str] = set()
    for path in (ROOT / "src/sovereign/ansible/filter").glob("*.py"):
        filters.update(re.findall(r'"(sovereign_[a-z0-9_]+)":', path.read_text(encoding="utf-8")))
    texts = [path.read_text(encoding="utf-8") for path in _playbooks()]
    texts.append((ROOT / "playbooks/vars/serving.yml").read_text(encoding="utf-8"))
    read = {
        name for text in texts for name in re.findall(r"\bsovereign_[a-z0-9_]+\b(?!\.py)", text)
    }
    roles = {path.name for path in (ROOT / "roles").iterdir()}
    unknown = sorted(
        name
        for name in read - set(spec) - special - filters - roles
        # (the gateway's metric names, in the upgrade's PromQL)
        if not name.startswith(("sovereign_package_", "sovereign_gateway_"))
    )
    assert unknown == []


def test_one_restart_path_per_change_in_the_data_plane() -> None:
    """A model switch and a unit change restart a vLLM instance once, in the
    vllm role's restart task (after every unit is written): model_sync is
    handed no units to restart, and the vllm role has no restart handler."""
    plays = load(ROOT / "playbooks/data_plane.yml")
    text = (ROOT / "playbooks/data_plane.yml").read_text(encoding="utf-8")
    assert "model_sync_restart_units" not in text
    handlers = load(ROOT / "roles/vllm/handlers/main.yml")
    assert all("state" not in str(handler) for handler in handlers)
    restarts = [
        task
        for task in _tasks(load(ROOT / "roles/vllm/tasks/instances.yml"))
        if (task.get("ansible.builtin.systemd_service") or {}).get("state") == "restarted"
    ]
    assert len(restarts) == 1
    assert plays


def test_the_active_model_is_not_rehashed_by_the_data_plane() -> None:
    """The cached copy is verified again only when model_sync runs on its own
    (phase "all"); the data plane stages and activates without re-hashing it,
    and the unit verifies before every start."""
    verify = next(
        task
        for task in _tasks(load(ROOT / "roles/model_sync/tasks/model.yml"))
        if str(task.get("name", "")).startswith("model | Verify the cached copy")
    )
    assert "model_sync_phase == 'all'" in verify["when"]
    assert "not __model_sync_is_active" in verify["when"]
    unit = (ROOT / "roles/vllm/templates/vllm.service.j2").read_text(encoding="utf-8")
    assert "ExecStartPre={{ __vllm_helper_dir }}/vllm-verify-model" in unit
