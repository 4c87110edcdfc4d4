"""What Prometheus scrapes and probes, generated from the inventory.

:func:`scrape_targets` turns the inventory into Prometheus file-based
service discovery (one list of ``{targets, labels}`` per job), which the
``prometheus`` role writes under ``/etc/prometheus/targets/<job>.json``
(``playbooks/observability.yml`` passes it through the filter
``sovereign_scrape_targets``). Nothing here is typed by hand: every vLLM
replica comes from its node's serving manifest, the ports from the same
variables the roles listen on, and the flow matrix (:mod:`flows`) opens
exactly these ports to the observability hosts. Hosts are named by their
inventory name, which every host resolves (the ``common`` role's hosts
entries) and which every certificate of the internal CA carries.

The labels the recording and alert rules rely on (files/prometheus/rules/):

- ``groups`` on every node-exporter target: the host's inventory groups,
  comma-separated with a comma at each end (``,gateway,gpu_nodes,``), so a
  rule selects a group with ``groups=~".*,registry,.*"`` whatever else the
  host is;
- ``deployment``, ``tier`` and ``port`` on every vLLM target (``tier`` is the
  deployment's tiers joined by commas: a replica serves them all).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sovereign.inventory import flows, serving
from sovereign.inventory.errors import InventoryError

# The jobs, in the order the prometheus role writes them.
JOBS = (
    "node",
    "vllm",
    "gateway",
    "redis",
    "registry",
    "dcgm",
    "prometheus",
    "alertmanager",
    "blackbox_tls",
    "blackbox_e2e",
)

# Groups that are not hosts' roles (Ansible's own).
_IMPLICIT = {"all", "ungrouped"}


def _groups_label(host: str, groups: Mapping[str, Iterable[str]]) -> str:
    names = sorted(
        group for group, members in groups.items() if group not in _IMPLICIT and host in members
    )
    return "," + ",".join(names) + "," if names else ","


def _target(address: str, **labels: str) -> dict[str, Any]:
    return {"targets": [address], "labels": labels}


def _port(variables: Mapping[str, Any], name: str, default: int) -> int:
    value = variables.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise InventoryError(f"{name}: {value!r} must be a TCP port")
    return value


def _vllm(
    host: str, variables: Mapping[str, Any], table: object, root: Path
) -> list[dict[str, Any]]:
    manifest = serving.manifest_of(variables)
    found = []
    for deployment in serving.deployments(manifest, table, root):
        for port in deployment.ports():
            found.append(
                _target(
                    f"{host}:{port}",
                    instance=f"{host}:{port}",
                    host=host,
                    deployment=deployment.name,
                    tier=",".join(deployment.tiers),
                )
            )
    return found


def scrape_targets(
    hostvars: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, Iterable[str]],
    table: object,
    root: str,
) -> dict[str, list[dict[str, Any]]]:
    """Every job's file-SD target groups for the inventory (empty lists for
    jobs with nothing to scrape, so a job's file always exists)."""
    members = {group: list(hosts) for group, hosts in groups.items()}
    every = members.get("all", sorted(hostvars))
    jobs: dict[str, list[dict[str, Any]]] = {job: [] for job in JOBS}

    for host in every:
        port = flows.NODE_EXPORTER_PORT
        jobs["node"].append(
            _target(f"{host}:{port}", instance=host, groups=_groups_label(host, groups))
        )

    for host in members.get("gpu_nodes", []):
        variables = hostvars[host]
        jobs["vllm"].extend(_vllm(host, variables, table, Path(root)))
        if variables.get("dcgm_exporter_enabled", False):
            port = _port(variables, "dcgm_exporter_port", flows.DCGM_EXPORTER_PORT)
            jobs["dcgm"].append(_target(f"{host}:{port}", instance=host))

    for host in members.get("gateway", []):
        variables = hostvars[host]
        if not flows.is_loopback(variables.get("gateway_metrics_address", "127.0.0.1")):
            port = _port(variables, "gateway_metrics_port", 9464)
            jobs["gateway"].append(_target(f"{host}:{port}", instance=host))
        if variables.get("gateway_redis_server_enabled", True):
            port = _port(variables, "exporters_redis_port", flows.REDIS_EXPORTER_PORT)
            jobs["redis"].append(_target(f"{host}:{port}", instance=host))
        sso = _port(variables, "sso_proxy_port", 443)
        jobs["blackbox_tls"].append(
            _target(f"{host}:{sso}", instance=f"{host}:{sso}", service="sso_proxy")
        )
        jobs["blackbox_e2e"].append(
            _target(f"https://{host}:{sso}/v1/completions", instance=host, service="sso_proxy")
        )

    for host in members.get("registry", []):
        variables = hostvars[host]
        if not flows.is_loopback(variables.get("model_registry_debug_bind_address", "127.0.0.1")):
            port = _port(variables, "model_registry_debug_port", 5001)
            jobs["registry"].append(_target(f"{host}:{port}", instance=host))
        port = _port(variables, "model_registry_port", 5000)
        jobs["blackbox_tls"].append(
            _target(f"{host}:{port}", instance=f"{host}:{port}", service="registry")
        )

    for host in members.get("identity_provider", []):
        port = _port(hostvars[host], "identity_provider_port", 443)
        jobs["blackbox_tls"].append(
            _target(f"{host}:{port}", instance=f"{host}:{port}", service="identity_provider")
        )

    for host in members.get("observability", []):
        variables = hostvars[host]
        for job, name, default in (
            ("prometheus", "prometheus_port", flows.PROMETHEUS_PORT),
            ("alertmanager", "alertmanager_port", flows.ALERTMANAGER_PORT),
        ):
            port = _port(variables, name, default)
            jobs[job].append(_target(f"{host}:{port}", instance=host))
            jobs["blackbox_tls"].append(
                _target(f"{host}:{port}", instance=f"{host}:{port}", service=job)
            )
    return jobs
