"""What a Sovereign inventory must look like: groups, version window, old names.

The group names here are the contract between inventories and the
playbooks under ``playbooks/``; ``tests/unit/test_layout.py`` checks that
every group a playbook targets is declared here and the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass

# ansible-core versions this release is tested with: [minimum, maximum).
ANSIBLE_CORE_MIN = (2, 19, 0)
ANSIBLE_CORE_MAX_EXCLUSIVE = (2, 20, 0)


@dataclass(frozen=True)
class GroupRule:
    """A group every datacenter inventory must define."""

    name: str
    purpose: str
    min_hosts: int = 1
    max_hosts: int | None = None


REQUIRED_GROUPS: tuple[GroupRule, ...] = (
    GroupRule(
        "pki_ca",
        "the one host that keeps the internal CA key (an admin host, never a service host)",
        min_hosts=1,
        max_hosts=1,
    ),
    GroupRule("gpu_nodes", "serving nodes (vLLM)"),
    GroupRule("registry", "the model registry"),
    GroupRule("search", "vector retrieval (OpenSearch) and embeddings"),
    GroupRule("gateway", "the inference gateway and SSO proxy"),
    GroupRule("observability", "Prometheus, Alertmanager and dashboards"),
)

# Groups a datacenter may define: playbooks target them, validation does not
# require them. The lab runs its own OIDC provider; a datacenter points the
# SSO proxy and the gateway at the customer's IdP instead.
OPTIONAL_GROUPS: tuple[GroupRule, ...] = (
    GroupRule(
        "identity_provider",
        "an OIDC provider run by Sovereign (the lab's; a datacenter uses its own IdP)",
        min_hosts=0,
        max_hosts=1,
    ),
)

# Groups a playbook makes while it runs (add_host), never an inventory's:
# playbooks/upgrade.yml groups the nodes it upgrades, each step's new canary
# nodes and those a promotion switches under the first prefix;
# playbooks/hardware_refresh.yml the nodes it refreshes under the second.
RUN_GROUP_PREFIXES = ("upgrade_", "refresh_")

# Roles applied to every host of these groups by the playbooks. A role's
# required options must be set for those hosts (unless the playbook
# supplies them, listed in PLAYBOOK_SUPPLIED).
ROLE_GROUPS: dict[str, tuple[str, ...]] = {
    "common": ("all",),
    "network_policy": ("all",),
    "pki": ("all",),
    "model_registry": ("registry",),
    "sovereign_package": ("gpu_nodes", "gateway", "observability", "search"),
    "model_sync": ("gpu_nodes",),
    "vllm": ("gpu_nodes",),
    "gateway": ("gateway",),
    "sso_proxy": ("gateway",),
    "identity_provider": ("identity_provider",),
    "exporters": ("all",),
    "alertmanager": ("observability",),
    "prometheus": ("observability",),
    "eval_runner": ("observability",),
    "gpu_driver": ("gpu_nodes",),
    "roce": ("gpu_nodes",),
    "opensearch": ("search",),
    "retrieval": ("search",),
}

# Roles playbooks/gpu_nodes.yml applies only to the serving nodes whose
# hardware profiles run on CUDA (the lab's CPU nodes get neither).
CUDA_ROLES = frozenset({"gpu_driver", "roce"})

# Roles playbooks/opensearch.yml applies only when the inventory's
# sovereign_retrieval_backend is "opensearch" (the default, "embedded",
# applies none).
OPENSEARCH_ROLES = frozenset({"opensearch"})

# Roles playbooks/retrieval.yml applies only where sovereign_retrieval_service
# is true (the retrieval API and its ingestion).
RETRIEVAL_ROLES = frozenset({"retrieval"})
RETRIEVAL_SERVICE = "sovereign_retrieval_service"

# Role options the playbooks compute from the inventory and pass to the role
# themselves: an inventory need not (and should not) set them.
PLAYBOOK_SUPPLIED: dict[str, frozenset[str]] = {
    "pki": frozenset({"pki_ca_host"}),
    "network_policy": frozenset({"network_policy_rules"}),
    "sovereign_package": frozenset({"sovereign_package_wheelhouse_dir"}),
    "vllm": frozenset({"vllm_wheelhouse_dir"}),
    # Derived from every serving node's manifest (playbooks/governance_plane.yml).
    "gateway": frozenset({"gateway_models"}),
    # Generated from the inventory (playbooks/observability.yml).
    "exporters": frozenset({"exporters_redis_enabled", "exporters_redis_password"}),
    "prometheus": frozenset({"prometheus_scrape_targets", "prometheus_alertmanagers"}),
    "eval_runner": frozenset({"eval_runner_runtime"}),
    # From the node's hardware profile and runtime in the release table.
    "gpu_driver": frozenset({"gpu_driver_kernel_modules", "gpu_driver_cuda_version"}),
    # The release from the table, the cluster's members and their
    # certificates' subjects from the search group (playbooks/opensearch.yml).
    "opensearch": frozenset(
        {
            "opensearch_release",
            "opensearch_seed_hosts",
            "opensearch_initial_cluster_manager_nodes",
            "opensearch_nodes_dn",
        }
    ),
}

# Variables that have been renamed: old name -> new name. A renamed variable
# still set in an inventory would silently do nothing, so it fails instead.
# Besides Sovereign's own renames, this lists the names of the community
# roles Sovereign's roles replace: a team that migrates an inventory from
# them keeps these lines, and they would do nothing here.
RENAMED_VARIABLES: dict[str, str] = {
    "ntp_servers": "common_chrony_servers",  # geerlingguy.ntp
    "ntp_manage_config": "common_chrony_servers",  # geerlingguy.ntp
}

# Variables that no longer exist: name -> what to do instead.
REMOVED_VARIABLES: dict[str, str] = {
    "sovereign_vllm_wheelhouse": (
        "the runtime release of the release table (group_vars/all/releases.yml) names "
        "its wheelhouse"
    ),
    # geerlingguy.security: Sovereign never upgrades nodes unattended.
    "security_autoupdate_enabled": (
        "Sovereign never upgrades packages unattended: versions are pinned per "
        "component and kernel/driver packages are held with common_held_packages; "
        "upgrades go through the day-2 playbooks"
    ),
}
