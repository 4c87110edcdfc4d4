from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sovereign.inventory import layout
from sovereign.inventory.argspec import RoleSpec
from sovereign.inventory.validate import (
    Problem,
    check_ansible_version,
    check_groups,
    check_host_variables,
    parse_version,
    validate_inventory,
)

ROOT = Path(__file__).resolve().parents[3]
SPECS = {
    "common": RoleSpec(
        "common",
        {
            "common_chrony_servers": {"type": "list", "elements": "str"},
            "common_packages": {"type": "list", "elements": "str"},
        },
    ),
    "pki": RoleSpec(
        "pki",
        {
            "pki_ca_host": {"type": "str", "required": True},
            "pki_valid_days": {"type": "int"},
            "pki_owner": {"type": "str", "required": True},
        },
    ),
    "pki_extra": RoleSpec("pki_extra", {"pki_extra_x": {"type": "str"}}),
}

GOOD_GROUPS: dict[str, list[str]] = {
    "all": ["admin", "gpu1"],
    "pki_ca": ["admin"],
    "gpu_nodes": ["gpu1"],
    "registry": ["admin"],
    "search": ["admin"],
    "gateway": ["admin"],
    "observability": ["admin"],
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2.19.14", (2, 19, 14)), ("2.20.0rc1", (2, 20, 0)), ("2.19", (2, 19, 0)), ("x.1", (0, 1, 0))],
)
def test_parse_version(text: str, expected: tuple[int, int, int]) -> None:
    assert parse_version(text) == expected


def test_version_window() -> None:
    assert check_ansible_version("2.19.14") == []
    (too_old,) = check_ansible_version("2.18.3")
    assert "ansible-core 2.18.3 is outside the tested window >=2.19.0,<2.20.0" in str(too_old)
    assert check_ansible_version("2.20.0")


def test_a_missing_group_is_named_with_its_purpose() -> None:
    groups = {k: v for k, v in GOOD_GROUPS.items() if k != "gateway"}
    (problem,) = check_groups(groups)
    assert str(problem).startswith("group 'gateway' is missing: it holds the inference gateway")


def test_group_size_limits() -> None:
    groups = dict(GOOD_GROUPS, pki_ca=["a", "b"], gpu_nodes=[])
    messages = [str(p) for p in check_groups(groups)]
    assert messages == [
        "group 'pki_ca' has 2 hosts, allows at most 1: it holds the one host that keeps "
        "the internal CA key (an admin host, never a service host)",
        "group 'gpu_nodes' has 0 hosts, needs at least 1: it holds serving nodes (vLLM)",
    ]


def test_unknown_role_variable_suggests_the_right_name() -> None:
    problems = check_host_variables({"common_chrony_server": ["a"]}, SPECS, ROOT)
    assert problems == [
        "common_chrony_server: is not a variable of role 'common'; did you mean "
        "common_chrony_servers? (see roles/common/defaults/main.yml)"
    ]


def test_the_longest_role_prefix_wins() -> None:
    assert check_host_variables({"pki_extra_x": "ok"}, SPECS, ROOT) == []
    assert check_host_variables({"pki_extra_x": 1}, SPECS, ROOT) == [
        "pki_extra_x: expected a string, got an integer (1)"
    ]


def test_variables_of_no_role_and_internal_ones_are_ignored() -> None:
    assert (
        check_host_variables({"ansible_host": 1, "__common_x": 1, "other": []}, SPECS, ROOT) == []
    )


def test_renamed_and_removed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout, "RENAMED_VARIABLES", {"ntp_servers": "common_chrony_servers"})
    monkeypatch.setattr(layout, "REMOVED_VARIABLES", {"common_old": "use common_packages"})
    problems = check_host_variables({"ntp_servers": ["a"], "common_old": 1}, SPECS, ROOT)
    assert problems == [
        "common_old: was removed; use common_packages",
        "ntp_servers: was renamed to common_chrony_servers; rename it in the inventory "
        "(the old name is ignored by the roles)",
    ]


def hostvars(**per_host: dict[str, Any]) -> dict[str, dict[str, Any]]:
    base: dict[str, dict[str, Any]] = {
        "admin": {"pki_owner": "root", "sovereign_releases": {}},
        "gpu1": {"pki_owner": "root", "sovereign_releases": {}},
    }
    for host, variables in per_host.items():
        base[host] = dict(base[host], **variables)
    return base


def test_a_sound_inventory_has_no_problem() -> None:
    assert validate_inventory(hostvars(), GOOD_GROUPS, "2.19.14", SPECS, ROOT) == []


def test_an_inventory_run_without_the_release_table_is_refused() -> None:
    variables = hostvars()
    del variables["gpu1"]["sovereign_releases"]
    problems = validate_inventory(variables, GOOD_GROUPS, "2.19.14", SPECS, ROOT)
    assert [str(p) for p in problems] == [
        "sovereign_releases: is not loaded or not a mapping; the release table lives in the "
        "repository's group_vars/all/releases.yml: run the playbooks of the repository "
        "(site.yml or playbooks/*.yml), which load it"
    ]


def test_required_options_are_checked_but_playbook_supplied_ones_are_not() -> None:
    variables = hostvars()
    del variables["gpu1"]["pki_owner"]
    problems = validate_inventory(variables, GOOD_GROUPS, "2.19.14", SPECS, ROOT)
    assert problems == [
        Problem(
            "pki_owner: is required by role 'pki' on this host and not set; "
            "see roles/pki/defaults/main.yml",
            ("gpu1",),
        )
    ]
    assert "pki_ca_host" in layout.PLAYBOOK_SUPPLIED["pki"]


def test_the_same_problem_on_many_hosts_is_reported_once_with_its_hosts() -> None:
    bad = {"common_packages": "vim"}
    problems = validate_inventory(
        hostvars(admin=bad, gpu1=bad), GOOD_GROUPS, "2.19.14", SPECS, ROOT
    )
    assert [str(p) for p in problems] == [
        "common_packages: expected a list, got a string ('vim'); write it as a YAML list: "
        "[vim] [all hosts]"
    ]
    one = validate_inventory(hostvars(gpu1=bad), GOOD_GROUPS, "2.19.14", SPECS, ROOT)
    assert str(one[0]).endswith("[vim] [hosts: gpu1]")


def test_host_lists_are_shortened() -> None:
    problem = Problem("x", tuple(f"h{i}" for i in range(8)))
    assert str(problem) == "x [hosts: h0, h1, h2, h3, h4 and 3 more]"


def test_every_kind_of_problem_is_reported_together() -> None:
    groups = {k: v for k, v in GOOD_GROUPS.items() if k != "search"}
    problems = validate_inventory(
        hostvars(admin={"pki_valid_days": "365"}), groups, "2.17.0", SPECS, ROOT
    )
    text = [str(p) for p in problems]
    assert len(text) == 3
    assert text[0].startswith("ansible-core 2.17.0 is outside")
    assert text[1].startswith("group 'search' is missing")
    assert text[2] == "pki_valid_days: expected an integer, got a string ('365') [hosts: admin]"


def test_optional_groups_may_be_absent_but_not_too_large() -> None:
    assert check_groups(GOOD_GROUPS) == []
    assert check_groups(dict(GOOD_GROUPS, identity_provider=["idp"])) == []
    (problem,) = check_groups(dict(GOOD_GROUPS, identity_provider=["idp1", "idp2"]))
    assert str(problem).startswith("group 'identity_provider' has 2 hosts, allows at most 1")
