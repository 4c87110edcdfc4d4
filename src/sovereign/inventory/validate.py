"""Validate a whole inventory: version window, groups, every role variable."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sovereign.gpu import driver, roce
from sovereign.gpu.check import check_expect
from sovereign.inventory import layout, opensearch_sizing, releases, serving
from sovereign.inventory.argspec import PLAY_ROLE, PLAY_SPEC, RoleSpec
from sovereign.inventory.errors import InventoryError
from sovereign.inventory.typecheck import check_value


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the inventory, and the hosts it concerns."""

    message: str
    hosts: tuple[str, ...] = field(default=())
    every_host: bool = False

    def __str__(self) -> str:
        if self.every_host:
            return f"{self.message} [all hosts]"
        if not self.hosts:
            return self.message
        shown = ", ".join(self.hosts[:5])
        if len(self.hosts) > 5:
            shown += f" and {len(self.hosts) - 5} more"
        return f"{self.message} [hosts: {shown}]"


def parse_version(text: str) -> tuple[int, int, int]:
    """Parse the numeric part of an ansible-core version string."""
    parts: list[int] = []
    for piece in text.split(".")[:3]:
        digits = ""
        for char in piece:
            if not char.isdigit():
                break
            digits += char
        parts.append(int(digits) if digits else 0)
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def _dotted(version: tuple[int, int, int]) -> str:
    return ".".join(str(part) for part in version)


def check_ansible_version(version: str) -> list[Problem]:
    found = parse_version(version)
    low, high = layout.ANSIBLE_CORE_MIN, layout.ANSIBLE_CORE_MAX_EXCLUSIVE
    if low <= found < high:
        return []
    return [
        Problem(
            f"ansible-core {version} is outside the tested window "
            f">={_dotted(low)},<{_dotted(high)}; run from the project's virtualenv "
            "(make venv, then . .venv/bin/activate) or install the pinned version "
            "from requirements-dev.txt"
        )
    ]


def check_groups(groups: Mapping[str, Iterable[str]]) -> list[Problem]:
    problems: list[Problem] = []
    for rule in layout.REQUIRED_GROUPS:
        if rule.name not in groups:
            problems.append(
                Problem(
                    f"group {rule.name!r} is missing: it holds {rule.purpose}; "
                    f"add it to the inventory's hosts.yml with at least {rule.min_hosts} host"
                )
            )
            continue
        count = len(list(groups[rule.name]))
        if count < rule.min_hosts:
            problems.append(
                Problem(
                    f"group {rule.name!r} has {count} hosts, needs at least {rule.min_hosts}: "
                    f"it holds {rule.purpose}"
                )
            )
        if rule.max_hosts is not None and count > rule.max_hosts:
            problems.append(
                Problem(
                    f"group {rule.name!r} has {count} hosts, allows at most {rule.max_hosts}: "
                    f"it holds {rule.purpose}"
                )
            )
    for name in sorted(groups):
        if name.startswith(layout.RUN_GROUP_PREFIXES):
            problems.append(
                Problem(
                    f"group {name!r}: names starting {' or '.join(layout.RUN_GROUP_PREFIXES)} are "
                    "made by playbooks/upgrade.yml and playbooks/hardware_refresh.yml while they "
                    "run; rename the inventory's group"
                )
            )
    for rule in layout.OPTIONAL_GROUPS:
        count = len(list(groups.get(rule.name, [])))
        if rule.max_hosts is not None and count > rule.max_hosts:
            problems.append(
                Problem(
                    f"group {rule.name!r} has {count} hosts, allows at most {rule.max_hosts}: "
                    f"it holds {rule.purpose}"
                )
            )
    return problems


def _role_for(name: str, specs: Mapping[str, RoleSpec]) -> RoleSpec | None:
    """The role whose prefix ``name`` carries (the longest prefix wins)."""
    best: RoleSpec | None = None
    for spec in specs.values():
        if name.startswith(spec.prefix) and (best is None or len(spec.prefix) > len(best.prefix)):
            best = spec
    return best


CATALOG = "sovereign_model_catalog"
# What playbooks/validate_gpu.yml holds GPUs to: its keys are checked here too.
GPU_EXPECT = "sovereign_gpu_expect"
# The OpenSearch release of the release table the search hosts run.
OPENSEARCH_RELEASE = "sovereign_opensearch_release"


def check_host_variables(
    variables: Mapping[str, Any], specs: Mapping[str, RoleSpec], root: Path
) -> list[str]:
    """Problems of one host's variables, each message naming the variable.

    ``root`` is the repository's root on the controller: relative paths of
    the release table are resolved against it.
    """
    table = variables.get(releases.VARIABLE)
    problems: list[str] = [] if table is None else releases.check_table(table)
    for name in sorted(variables):
        if name in layout.RENAMED_VARIABLES:
            problems.append(
                f"{name}: was renamed to {layout.RENAMED_VARIABLES[name]}; "
                "rename it in the inventory (the old name is ignored by the roles)"
            )
            continue
        if name in layout.REMOVED_VARIABLES:
            problems.append(f"{name}: was removed; {layout.REMOVED_VARIABLES[name]}")
            continue
        if name.startswith("__"):
            continue
        if name == releases.VARIABLE:
            continue
        if name == serving.VARIABLE:
            problems.extend(serving.check_manifest(variables[name], table, root))
            continue
        if name == serving.PINS:
            problems.extend(serving.check_pins(variables[name], table, root))
            continue
        if name == serving.TUNING:
            problems.extend(serving.check_tuning(variables[name], table))
            continue
        if name == GPU_EXPECT:
            problems.extend(check_expect(variables[name]))
        if name == serving.CANDIDATE:
            problems.append(
                f"{name}: is set by playbooks/upgrade.yml on canary nodes (and by "
                "playbooks/hardware_refresh.yml on the node it refreshes) while they run; "
                "an inventory never sets it"
            )
            continue
        if name == CATALOG:
            problems.extend(releases.check_catalog(variables[name], table, root))
            continue
        if name == OPENSEARCH_RELEASE:
            problems.extend(releases.check_opensearch_reference(table, variables[name], name))
            continue
        spec = _role_for(name, specs)
        if spec is None:
            continue
        option = spec.options.get(name)
        if option is None:
            close = difflib.get_close_matches(name, list(spec.options), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            if spec.role == PLAY_ROLE:
                problems.append(
                    f"{name}: is not a variable of Sovereign's playbooks{hint} (see {PLAY_SPEC})"
                )
            else:
                problems.append(
                    f"{name}: is not a variable of role {spec.role!r}{hint} "
                    f"(see roles/{spec.role}/defaults/main.yml)"
                )
            continue
        problems.extend(check_value(name, variables[name], option))
    # In depth once the types are right (a wrong type is said once, above).
    if not any(problem.startswith(("roce_", "gpu_driver_")) for problem in problems):
        problems.extend(check_gpu_node(variables))
    return problems


def cuda_profiles(variables: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The CUDA hardware profiles of the host's manifest's deployments."""
    manifest = variables.get(serving.VARIABLE)
    table = variables.get(releases.VARIABLE)
    if not isinstance(manifest, Mapping) or not isinstance(table, Mapping):
        return []
    profiles = table.get("hardware_profiles")
    deployments = manifest.get("deployments")
    if not isinstance(profiles, Mapping) or not isinstance(deployments, list):
        return []
    found = [
        profiles.get(deployment.get("hardware_profile"))
        for deployment in deployments
        if isinstance(deployment, Mapping)
    ]
    return [
        profile
        for profile in found
        if isinstance(profile, Mapping) and profile.get("device") == "cuda"
    ]


def runs_on_cuda(variables: Mapping[str, Any]) -> bool:
    """Whether any deployment of the host's manifest has a CUDA hardware profile."""
    return bool(cuda_profiles(variables))


def check_gpu_node(variables: Mapping[str, Any]) -> list[str]:
    """The GPU-node roles' inputs checked in depth (src/sovereign/gpu/): the
    RoCE NICs, and on CUDA nodes the driver pins against the platform and
    the hardware profile's kernel modules."""
    problems: list[str] = []
    interfaces = variables.get("roce_interfaces", [])
    defaults = variables.get("roce_defaults") or {}
    if isinstance(defaults, Mapping):
        try:
            roce.plan(interfaces, defaults)
        except roce.RoceSettingsError as exc:
            problems.append(str(exc))
    profiles = cuda_profiles(variables)
    if profiles and "gpu_driver_version" in variables and "gpu_driver_branch" in variables:
        node = profiles[0].get("node")
        modules = node.get("kernel_modules", "open") if isinstance(node, Mapping) else "open"
        problems.extend(driver.check_inventory(variables, str(modules)))
    return problems


def check_required(
    host: str,
    variables: Mapping[str, Any],
    host_groups: Iterable[str],
    specs: Mapping[str, RoleSpec],
) -> list[str]:
    member_of = set(host_groups) | {"all"}
    problems: list[str] = []
    for role, groups in layout.ROLE_GROUPS.items():
        spec = specs.get(role)
        if spec is None or not member_of.intersection(groups):
            continue
        if role in layout.CUDA_ROLES and not runs_on_cuda(variables):
            continue
        backend = variables.get(opensearch_sizing.BACKEND, opensearch_sizing.BACKEND_DEFAULT)
        if role in layout.OPENSEARCH_ROLES and backend != "opensearch":
            continue
        if role in layout.RETRIEVAL_ROLES and variables.get(layout.RETRIEVAL_SERVICE) is not True:
            continue
        supplied = layout.PLAYBOOK_SUPPLIED.get(role, frozenset())
        for name in spec.required_options():
            if name not in supplied and name not in variables:
                problems.append(
                    f"{name}: is required by role {role!r} on this host and not set; "
                    f"see roles/{role}/defaults/main.yml"
                )
    return problems


def _check_pinned(
    host: str,
    variables: Mapping[str, Any],
    host_groups: Iterable[str],
    root: Path,
    found: list[str],
) -> list[str]:
    """The manifest as the pins and the host's tuning make it must be sound
    too (a pin naming no deployment of the host, a release the host cannot
    serve)."""
    layers = (serving.PINS, serving.TUNING)
    if not any(name in variables for name in layers) or any(m.startswith(layers) for m in found):
        return []
    manifest = variables.get(serving.VARIABLE, {"deployments": []})
    try:
        pinned = serving.apply_pins(manifest, variables.get(serving.PINS, {}), host_groups)
    except InventoryError as exc:
        return [str(exc)]
    served = serving.apply_tuning(pinned, variables.get(serving.TUNING, {}), host)
    if served is manifest:
        return []
    return [
        f"{message} (with {serving.PINS} and {serving.TUNING} applied)"
        for message in serving.check_manifest(served, variables.get(releases.VARIABLE), root)
    ]


def validate_inventory(
    hostvars: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, Iterable[str]],
    ansible_version: str,
    specs: Mapping[str, RoleSpec],
    root: Path,
) -> list[Problem]:
    """Every problem of the inventory; an empty list means it may be applied."""
    problems = check_ansible_version(ansible_version) + check_groups(groups)
    if any(releases.VARIABLE not in variables for variables in hostvars.values()):
        problems.extend(Problem(message) for message in releases.check_table(None))
    membership: dict[str, list[str]] = {}
    for group, members in groups.items():
        for member in members:
            membership.setdefault(member, []).append(group)
    by_message: dict[str, list[str]] = {}
    for host in sorted(hostvars):
        variables = hostvars[host]
        messages = check_host_variables(variables, specs, root)
        messages += check_required(host, variables, membership.get(host, []), specs)
        messages += _check_pinned(host, variables, membership.get(host, []), root, messages)
        for message in messages:
            by_message.setdefault(message, []).append(host)
    problems.extend(
        Problem(message, tuple(hosts), every_host=len(hosts) > 1 and len(hosts) == len(hostvars))
        for message, hosts in by_message.items()
    )
    # Once the variables are sound: will the k-NN graphs fit in the cluster?
    if not any(message.startswith("opensearch_") for message in by_message):
        problems.extend(
            Problem(message) for message in opensearch_sizing.check_inventory(hostvars, groups)
        )
    return problems
