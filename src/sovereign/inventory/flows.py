"""The network flow matrix: who may open a connection to whom, on which port.

One table (:data:`FLOWS`) says which group talks to which group, and why;
:func:`matrix` turns it into concrete flows for an inventory (the ports come
from the inventory: each serving node's vLLM replica ports, the registry's
port, the SSO proxy's...). The ``network_policy`` role enforces, on every
host, inbound default deny except the flows whose destination is that host
(:func:`host_rules`, through the filter ``sovereign_flow_rules``), and
docs/network.md prints the matrix of the example inventory
(:func:`markdown`). Sources are resolved to addresses: a host whose address
is unknown fails the run instead of being left out of a rule.

Each flow names its source and destination, so the air-gap overlay can add
outbound default deny from the same table (a host's outbound allow list is
the flows whose source it is).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sovereign.inventory import layout, opensearch_sizing, serving
from sovereign.inventory.errors import InventoryError

# Sources that are not inventory groups.
ANYONE = "users"  # any address: the platform's front doors
CONTROLLER = "controller"  # where Ansible runs (sovereign_controller_networks)
OPERATORS = "operators"  # the platform team's desks (sovereign_operator_networks)


@dataclass(frozen=True)
class Rule:
    """A flow of the table: ``source`` may reach ``destination`` on the ports
    ``ports`` computes for each destination host."""

    source: str
    destination: str
    service: str
    purpose: str
    # A host variable that must be true on a source host for it to be one
    # (a flow of an optional service: the retrieval API's hosts only).
    source_flag: str | None = None


# The flag of the retrieval API (the variable validation also reads).
RETRIEVAL = layout.RETRIEVAL_SERVICE

FLOWS: tuple[Rule, ...] = (
    Rule(ANYONE, "gateway", "sso_proxy", "users reach the SSO proxy (OIDC login, then the API)"),
    Rule(ANYONE, "identity_provider", "identity_provider", "users log in at the lab's IdP"),
    Rule("gateway", "identity_provider", "identity_provider", "SSO proxy and gateway fetch keys"),
    Rule("gateway", "gpu_nodes", "vllm", "the gateway sends admitted requests to vLLM"),
    Rule("gateway", "gateway", "redis", "gateways share the quota store"),
    Rule(
        "gateway", "search", "retrieval", "the SSO proxy sends /v1/retrieval/ to the retrieval API"
    ),
    Rule(
        "search",
        "gateway",
        "sso_proxy",
        "retrieval embeds and answers through the front door",
        RETRIEVAL,
    ),
    Rule(
        "search",
        "identity_provider",
        "identity_provider",
        "retrieval fetches keys and tokens",
        RETRIEVAL,
    ),
    Rule("search", "search", "opensearch_transport", "OpenSearch nodes form one cluster (TLS)"),
    Rule(
        "search",
        "search",
        "opensearch_http",
        "the retrieval API and its ingestion reach OpenSearch (TLS)",
        RETRIEVAL,
    ),
    Rule("observability", "gpu_nodes", "vllm", "Prometheus scrapes vLLM's /metrics"),
    Rule("observability", "all", "node_exporter", "Prometheus scrapes every host's exporter"),
    Rule("observability", "gateway", "gateway_metrics", "Prometheus scrapes the gateway's metrics"),
    Rule("observability", "gateway", "redis_exporter", "Prometheus scrapes the quota store"),
    Rule("observability", "registry", "registry_debug", "Prometheus scrapes the registry"),
    Rule("observability", "registry", "registry", "the blackbox exporter checks its certificate"),
    Rule("observability", "gpu_nodes", "dcgm_exporter", "Prometheus scrapes GPU health (DCGM)"),
    Rule("observability", "observability", "prometheus", "Prometheus servers scrape each other"),
    Rule("observability", "observability", "alertmanager", "Prometheus sends alerts"),
    Rule(CONTROLLER, "observability", "prometheus", "the controller reads the release gates"),
    Rule(OPERATORS, "observability", "prometheus", "operators read dashboards and alerts"),
    Rule(OPERATORS, "observability", "alertmanager", "operators read and silence alerts"),
    Rule("gpu_nodes", "registry", "registry", "serving nodes pull signed models"),
    Rule(CONTROLLER, "registry", "registry", "the catalog publishes from the controller"),
    Rule(CONTROLLER, "all", "ssh", "Ansible reaches every host"),
)

NODE_EXPORTER_PORT = 9100
# The defaults of the roles that listen on them (a test holds them equal).
REDIS_EXPORTER_PORT = 9121
DCGM_EXPORTER_PORT = 9400
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
RETRIEVAL_PORT = 8090
OPENSEARCH_HTTP_PORT = 9200
OPENSEARCH_TRANSPORT_PORT = 9300


@dataclass(frozen=True)
class Flow:
    """One concrete flow: sources (addresses) to one host's ports."""

    source: str
    destination: str
    destination_host: str
    ports: tuple[int, ...]
    service: str
    purpose: str
    # The source hosts when the rule names them by a flag (else the group's).
    source_hosts: tuple[str, ...] | None = None


def _int(variables: Mapping[str, Any], name: str, default: int) -> int:
    value = variables.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InventoryError(f"{name}: {value!r} must be a TCP port")
    return value


def _vllm_ports(host: str, variables: Mapping[str, Any]) -> tuple[int, ...]:
    """Every replica port of the host's serving manifest (the validation play
    checked the manifest; this reads only the ports)."""
    manifest = variables.get(serving.VARIABLE, {"deployments": []})
    items = manifest.get("deployments", []) if isinstance(manifest, Mapping) else None
    if not isinstance(items, list):
        raise InventoryError(f"{serving.VARIABLE} of {host}: deployments must be a list")
    ports: set[int] = set()
    for item in items:
        port = item.get("port") if isinstance(item, Mapping) else None
        replicas = item.get("replicas", 1) if isinstance(item, Mapping) else None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (port, replicas)):
            raise InventoryError(f"{serving.VARIABLE} of {host}: a deployment without a port")
        assert isinstance(port, int) and isinstance(replicas, int)
        ports.update(range(port, port + replicas))
    return tuple(sorted(ports))


def is_loopback(address: object) -> bool:
    """Whether a listen address (an IP or ``localhost``) is reachable from this host only."""
    text = str(address)
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def _ports(service: str, host: str, variables: Mapping[str, Any]) -> tuple[int, ...]:
    if service == "vllm":
        return _vllm_ports(host, variables)
    if service == "gateway_metrics":
        if is_loopback(variables.get("gateway_metrics_address", "127.0.0.1")):
            return ()
        return (_int(variables, "gateway_metrics_port", 9464),)
    if service == "redis_exporter":
        if not variables.get("gateway_redis_server_enabled", True):
            return ()
        return (_int(variables, "exporters_redis_port", REDIS_EXPORTER_PORT),)
    if service == "registry_debug":
        if is_loopback(variables.get("model_registry_debug_bind_address", "127.0.0.1")):
            return ()
        return (_int(variables, "model_registry_debug_port", 5001),)
    if service == "dcgm_exporter":
        if not variables.get("dcgm_exporter_enabled", False):
            return ()
        return (_int(variables, "dcgm_exporter_port", DCGM_EXPORTER_PORT),)
    if service == "prometheus":
        return (_int(variables, "prometheus_port", PROMETHEUS_PORT),)
    if service == "alertmanager":
        return (_int(variables, "alertmanager_port", ALERTMANAGER_PORT),)
    if service == "retrieval":
        if variables.get(RETRIEVAL) is not True:
            return ()
        return (_int(variables, "retrieval_port", RETRIEVAL_PORT),)
    if service in ("opensearch_http", "opensearch_transport"):
        backend = opensearch_sizing.BACKEND
        if variables.get(backend, opensearch_sizing.BACKEND_DEFAULT) != "opensearch":
            return ()
        if service == "opensearch_http":
            return (_int(variables, "opensearch_http_port", OPENSEARCH_HTTP_PORT),)
        return (_int(variables, "opensearch_transport_port", OPENSEARCH_TRANSPORT_PORT),)
    if service == "sso_proxy":
        return (_int(variables, "sso_proxy_port", 443),)
    if service == "identity_provider":
        return (_int(variables, "identity_provider_port", 443),)
    if service == "registry":
        return (_int(variables, "model_registry_port", 5000),)
    if service == "redis":
        enabled = variables.get("gateway_redis_server_enabled", True)
        bind = variables.get("gateway_redis_bind", "127.0.0.1")
        if not enabled or str(bind).startswith("127."):
            return ()
        return (_int(variables, "gateway_redis_port", 6379),)
    if service == "node_exporter":
        return (NODE_EXPORTER_PORT,)
    if service == "ssh":
        if variables.get("ansible_connection", "ssh") not in ("ssh", "paramiko"):
            return ()
        return (_int(variables, "ansible_port", 22),)
    raise InventoryError(f"unknown service {service!r} in the flow table")


def matrix(
    hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Iterable[str]]
) -> list[Flow]:
    """Every flow of the inventory, by destination host (hosts with no port
    for a rule's service have no flow for it)."""
    flows: list[Flow] = []
    for rule in FLOWS:
        sources: tuple[str, ...] | None = None
        if rule.source_flag is not None:
            sources = tuple(
                member
                for member in groups.get(rule.source, ())
                if hostvars[member].get(rule.source_flag) is True
            )
            if not sources:
                continue
        for host in groups.get(rule.destination, ()):
            ports = _ports(rule.service, host, hostvars[host])
            if ports:
                flows.append(
                    Flow(
                        rule.source, rule.destination, host, ports, rule.service, rule.purpose,
                        sources,
                    )
                )  # fmt: skip
    return flows


def address(host: str, variables: Mapping[str, Any]) -> str:
    """The address a host's connections come from: its default IPv4 (a fact),
    else ``ansible_host`` when it is an IP address."""
    facts = variables.get("ansible_default_ipv4")
    if isinstance(facts, Mapping) and facts.get("address"):
        return str(ipaddress.ip_address(str(facts["address"])))
    candidate = variables.get("ansible_host")
    if isinstance(candidate, str):
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            pass
    raise InventoryError(
        f"the address of {host} is unknown: gather its facts in this run (do not --limit "
        "it out of the play that enforces the flow policy) or set ansible_host to its IP"
    )


def _networks(value: object, name: str) -> list[str]:
    if not isinstance(value, list):
        raise InventoryError(f"{name}: must be a list of CIDRs")
    networks = []
    for item in value:
        try:
            networks.append(str(ipaddress.ip_network(str(item), strict=True)))
        except ValueError as exc:
            raise InventoryError(f"{name}: {item!r} is not a network ({exc})") from exc
    return networks


def host_rules(
    host: str,
    hostvars: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, Iterable[str]],
) -> list[dict[str, Any]]:
    """The inbound allow list of ``host``: ``{comment, sources, ports}`` per flow
    (``sources`` empty: from anywhere), in the table's order."""
    variables = hostvars[host]
    controller = _networks(
        variables.get("sovereign_controller_networks", []), "sovereign_controller_networks"
    )
    operators = _networks(
        variables.get("sovereign_operator_networks", []), "sovereign_operator_networks"
    )
    rules: list[dict[str, Any]] = []
    for flow in matrix(hostvars, groups):
        if flow.destination_host != host:
            continue
        if flow.source == ANYONE:
            sources: list[str] = []
        elif flow.source in (CONTROLLER, OPERATORS):
            sources = controller if flow.source == CONTROLLER else operators
            if not sources:
                continue
        else:
            members = (
                flow.source_hosts if flow.source_hosts is not None else groups.get(flow.source, ())
            )
            sources = sorted({address(member, hostvars[member]) for member in members})
            if not sources:
                continue
        rules.append(
            {
                "comment": f"{flow.source} -> {flow.service}: {flow.purpose}",
                "sources": sources,
                "ports": list(flow.ports),
            }
        )
    return rules


def markdown(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Iterable[str]]) -> str:
    """The matrix as a Markdown table, one row per rule and destination ports."""
    rows: dict[tuple[str, str, str, str], set[int]] = {}
    for flow in matrix(hostvars, groups):
        key = (flow.source, flow.destination, flow.service, flow.purpose)
        rows.setdefault(key, set()).update(flow.ports)
    lines = [
        "| from | to | service | TCP ports | why |",
        "|---|---|---|---|---|",
    ]
    for (source, destination, service, purpose), ports in rows.items():
        shown = ", ".join(str(port) for port in sorted(ports))
        lines.append(f"| {source} | {destination} | {service} | {shown} | {purpose} |")
    return "\n".join(lines) + "\n"


def probes(
    hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Iterable[str]]
) -> dict[str, list[dict[str, Any]]]:
    """For every host, the connections to try from it to every other host on
    every port the matrix opens there, and whether the policy allows each
    (the controller's and operators' flows are not probed: they are no hosts)."""
    every: dict[str, set[int]] = {}
    allowed: set[tuple[str, str, int]] = set()
    members = {group: set(hosts) for group, hosts in groups.items()}
    hosts = sorted(members.get("all", set(hostvars)))
    for flow in matrix(hostvars, groups):
        every.setdefault(flow.destination_host, set()).update(flow.ports)
        if flow.source in (CONTROLLER, OPERATORS):
            continue
        sources = hosts if flow.source == ANYONE else sorted(members.get(flow.source, ()))
        for source in sources:
            for port in flow.ports:
                allowed.add((source, flow.destination_host, port))
    plan: dict[str, list[dict[str, Any]]] = {}
    for source in hosts:
        plan[source] = [
            {
                "host": destination,
                "address": address(destination, hostvars[destination]),
                "port": port,
                "allowed": (source, destination, port) in allowed,
            }
            for destination in hosts
            if destination != source
            for port in sorted(every.get(destination, ()))
        ]
    return plan
