"""The plan of a canary upgrade (``playbooks/upgrade.yml``), checked before any host is touched.

An upgrade moves one deployment of one serving group from the release (and
runtime) it serves to a candidate named in the release table. The plan says,
for every weight step, which nodes of the group serve the candidate by then:
``ceil(nodes x weight / 100)``, at least one, and never every node before
promotion, so that at every step at least one node still serves the running
version and a rollback is a change of weights (seconds), not a restart.
After the last step passes, the remaining nodes are switched (promotion).

:func:`plan` raises :class:`InventoryError` naming every problem: an unknown
group or release, a candidate that is not another release of the same model,
a group too small for a canary, steps out of order, a high-risk group without
an approval reference.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sovereign.inventory import releases, serving
from sovereign.inventory.errors import InventoryError

DEFAULT_STEPS = (5, 25, 50, 100)
MAX_STEPS = 8
# Set on a serving group's hosts: "high" needs an approval reference.
RISK = "sovereign_change_risk"
RISKS = ("standard", "high")
_APPROVAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/#-]{2,63}$")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_steps(steps: object) -> list[str]:
    if not isinstance(steps, Sequence) or isinstance(steps, str) or not steps:
        return [f"sovereign_upgrade_steps: {steps!r} must be a list of percentages ending at 100"]
    if not all(_is_int(step) and 1 <= step <= 100 for step in steps):
        return [f"sovereign_upgrade_steps: {list(steps)!r} must be whole percentages 1..100"]
    problems = []
    if list(steps) != sorted(set(steps)):
        problems.append(f"sovereign_upgrade_steps: {list(steps)!r} must increase strictly")
    if steps[-1] != 100:
        problems.append(f"sovereign_upgrade_steps: {list(steps)!r} must end at 100")
    if len(steps) > MAX_STEPS:
        problems.append(f"sovereign_upgrade_steps: at most {MAX_STEPS} steps")
    return problems


def canary_counts(nodes: int, steps: Sequence[int]) -> list[int]:
    """Nodes serving the candidate at each step (at least 1, at most nodes - 1)."""
    return [min(nodes - 1, max(1, math.ceil(nodes * step / 100))) for step in steps]


def _deployment_of(found: Mapping[str, Any], table: object, release: object) -> str | None:
    """The deployment an upgrade moves when the request names none: the node's
    only one, else the only one serving the candidate release's model (the
    lab's nodes serve the tiny model and an embedding model)."""
    if len(found) == 1:
        return str(next(iter(found)))
    models = table.get("models", {}) if isinstance(table, Mapping) else {}
    item = models.get(release) if isinstance(release, str) else None
    model = item.get("model") if isinstance(item, Mapping) else None
    serving_it = [name for name, d in found.items() if d.release.model == model]
    return serving_it[0] if model is not None and len(serving_it) == 1 else None


def plan(
    hostvars: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, Iterable[str]],
    table: object,
    root: str,
    request: Mapping[str, Any],
) -> dict[str, Any]:
    """The checked plan of ``request`` (group, deployment, release, runtime,
    steps, approval); see the module docstring."""
    base = Path(root)
    problems: list[str] = []
    group = request.get("group")
    members = list(groups.get(group, [])) if isinstance(group, str) else []
    serving_nodes = set(groups.get("gpu_nodes", []))
    if not isinstance(group, str) or not group:
        problems.append("sovereign_upgrade_group: is required (the serving group to upgrade)")
    elif not members:
        problems.append(
            f"sovereign_upgrade_group: {group!r} is no group of the inventory with hosts"
        )
    elif not set(members) <= serving_nodes:
        problems.append(
            f"sovereign_upgrade_group: {group!r} has hosts that are no serving node (gpu_nodes): "
            f"{sorted(set(members) - serving_nodes)}"
        )
    elif len(members) < 2:
        problems.append(
            f"sovereign_upgrade_group: {group!r} has one node; a canary needs at least two (one "
            "keeps serving the running version so that a rollback is a change of weights)"
        )
    steps = request.get("steps") or list(DEFAULT_STEPS)
    problems.extend(check_steps(steps))
    if problems:
        raise InventoryError("; ".join(problems))

    current: dict[str, tuple[str, str]] = {}
    names: set[str] = set()
    risks: set[str] = set()
    for host in members:
        variables = hostvars[host]
        found = {
            d.name: d for d in serving.deployments(serving.manifest_of(variables), table, base)
        }
        wanted = request.get("deployment") or _deployment_of(found, table, request.get("release"))
        if wanted is None:
            problems.append(
                f"sovereign_upgrade_deployment: is required: {host} serves {sorted(found)}"
            )
            continue
        names.add(wanted)
        if wanted not in found:
            problems.append(
                f"sovereign_upgrade_deployment: {wanted!r} is not served by {host} "
                f"(it serves {sorted(found)})"
            )
            continue
        deployment = found[wanted]
        current[host] = (deployment.release.name, deployment.runtime.name)
        risk = variables.get(RISK, "standard")
        if risk not in RISKS:
            problems.append(f"{RISK}: {risk!r} on {host} must be one of {list(RISKS)}")
        risks.add(str(risk))
    if problems:
        raise InventoryError("; ".join(problems))
    if len(set(current.values())) > 1:
        raise InventoryError(
            f"sovereign_upgrade_group: the nodes of {group!r} do not serve one release yet "
            f"({dict(sorted(current.items()))}); finish the rollout first "
            "(playbooks/data_plane.yml)"
        )
    deployment_name = request.get("deployment") or next(iter(names))
    release_now, runtime_now = next(iter(current.values()))
    now = releases.model_release(table, release_now)
    candidate_name = request.get("release") or release_now
    runtime_name = request.get("runtime") or runtime_now
    problems.extend(
        releases.check_model_reference(table, candidate_name, "sovereign_upgrade_release", base)
    )
    problems.extend(
        releases.check_runtime_reference(table, runtime_name, "sovereign_upgrade_runtime", base)
    )
    if problems:
        raise InventoryError("; ".join(problems))
    candidate = releases.model_release(table, candidate_name)
    if candidate.model != now.model or candidate.served_model_name != now.served_model_name:
        problems.append(
            f"sovereign_upgrade_release: {candidate_name!r} is model {candidate.model!r} served as "
            f"{candidate.served_model_name!r}; {deployment_name!r} serves {now.model!r} as "
            f"{now.served_model_name!r} (an upgrade is another release of the same model)"
        )
    if (candidate_name, runtime_name) == (release_now, runtime_now):
        problems.append(
            f"sovereign_upgrade_release: {group!r} already serves {release_now} on {runtime_now}; "
            "name another release or runtime"
        )
    if candidate_name != release_now and candidate.digest == now.digest:
        problems.append(
            f"sovereign_upgrade_release: {candidate_name!r} has the digest of the running "
            f"{release_now!r}: the gateway could not tell them apart in the audit"
        )
    approval = request.get("approval") or ""
    high = "high" in risks
    if high and not approval:
        problems.append(
            f"sovereign_upgrade_approval: {group!r} is a high-risk group ({RISK}: high): "
            "an upgrade needs the reference of its approved change (e.g. CHG-12345)"
        )
    if approval and not (isinstance(approval, str) and _APPROVAL.match(approval)):
        problems.append(
            "sovereign_upgrade_approval: must be a change reference (3-64 letters, digits, "
            "'.', '_', ':', '/', '#', '-')"
        )
    if problems:
        raise InventoryError("; ".join(problems))

    counts = canary_counts(len(members), steps)
    # The gateway's version names while both run (serving.version_name).
    same = candidate_name == release_now
    current_version = f"{release_now}@{runtime_now}" if same else release_now
    candidate_version = f"{candidate_name}@{runtime_name}" if same else candidate_name
    waves = [members[(counts[i - 1] if i else 0) : counts[i]] for i in range(len(counts))]
    return {
        "group": group,
        "deployment": deployment_name,
        "hosts": members,
        "served_model_name": now.served_model_name,
        "model": now.model,
        "current": {
            "release": release_now,
            "runtime": runtime_now,
            "digest": now.digest,
            "version": current_version,
        },
        "candidate": {
            "release": candidate_name,
            "runtime": runtime_name,
            "digest": candidate.digest,
            "version": candidate_version,
        },
        "steps": list(steps),
        "canary_counts": counts,
        "waves": waves,
        "wave_of": {host: index for index, wave in enumerate(waves) for host in wave},
        "canary_hosts": members[: counts[-1]],
        "promotion_hosts": members[counts[-1] :],
        "risk": "high" if high else "standard",
        "approval": approval or None,
    }


def candidate_manifest(manifest: object, deployment: str, release: str, runtime: str) -> object:
    """``manifest`` with ``deployment`` moved to the candidate release (the canary
    nodes' manifest while the upgrade runs). A node has one vLLM installation:
    a new runtime moves every deployment of the node to it."""
    if not isinstance(manifest, Mapping):
        return manifest
    items = []
    for item in manifest.get("deployments", []):
        if isinstance(item, Mapping):
            item = {**item, "runtime": runtime}
            if item.get("name") == deployment:
                item["release"] = release
        items.append(item)
    return {**manifest, "deployments": items}


def pins(current: object, plan_: Mapping[str, Any], change: str, when: str) -> dict[str, Any]:
    """``sovereign_serving_pins`` after promoting ``plan_``: ``current`` with the
    group's deployment pinned to the candidate, the previous release noted."""
    existing = current if isinstance(current, Mapping) else {}
    result: dict[str, Any] = {group: dict(found) for group, found in existing.items()}
    result.setdefault(plan_["group"], {})[plan_["deployment"]] = {
        "release": plan_["candidate"]["release"],
        "runtime": plan_["candidate"]["runtime"],
        "previous_release": plan_["current"]["release"],
        "previous_runtime": plan_["current"]["runtime"],
        "change": change,
        "promoted_at": when,
    }
    return result


def _number(value: object) -> float | None:
    """A Prometheus instant-query value ("NaN", "+Inf", "0.25") or None."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def slo_verdict(figures: Mapping[str, object], thresholds: Mapping[str, Any]) -> dict[str, Any]:
    """The SLO gate of one step from Prometheus's figures over the window:
    ``candidate_ttft_p99_s``, ``current_ttft_p99_s``, ``candidate_error_ratio``,
    ``candidate_requests``, ``candidate_restarts`` (strings as Prometheus
    returns them, or None when the query had no result). Fails closed: a
    candidate that answered nothing in the window cannot pass."""
    ttft = _number(figures.get("candidate_ttft_p99_s"))
    ttft_now = _number(figures.get("current_ttft_p99_s"))
    errors = _number(figures.get("candidate_error_ratio"))
    requests = _number(figures.get("candidate_requests")) or 0.0
    restarts = _number(figures.get("candidate_restarts")) or 0.0
    failures: list[str] = []
    if requests < 1 or ttft is None:
        failures.append("the candidate answered no request in the window (nothing to judge)")
    if ttft is not None and ttft > float(thresholds["ttft_p99_s"]):
        failures.append(f"TTFT p99 {ttft:.3f} s > {float(thresholds['ttft_p99_s']):g} s")
    ratio = float(thresholds["ttft_p99_ratio"])
    # A few milliseconds apart is noise, not a ratio: the candidate fails the
    # comparison only beyond ratio x the running version's TTFT + slack.
    slack = float(thresholds.get("ttft_p99_slack_s", 0.1))
    if ttft is not None and ttft_now is not None and ttft > ratio * ttft_now + slack:
        failures.append(
            f"TTFT p99 {ttft:.3f} s > {ratio:g} x the running version's {ttft_now:.3f} s "
            f"+ {slack:g} s"
        )
    if errors is not None and errors > float(thresholds["error_ratio"]):
        failures.append(f"error ratio {errors:.4f} > {float(thresholds['error_ratio']):g}")
    if restarts > float(thresholds["restarts"]):
        failures.append(f"{restarts:g} vLLM restarts > {thresholds['restarts']}")
    return {
        "passed": not failures,
        "failures": failures,
        "candidate_ttft_p99_s": ttft,
        "current_ttft_p99_s": ttft_now,
        "candidate_error_ratio": errors or 0.0,
        "candidate_requests": requests,
        "candidate_restarts": restarts,
        "thresholds": dict(thresholds),
    }


def query_values(results: Iterable[Mapping[str, Any]]) -> dict[str, object]:
    """The registered results of the gate's Prometheus queries (a uri loop over
    ``{name: query}`` items) as ``{name: first sample's value, or None}``."""
    values: dict[str, object] = {}
    for result in results:
        name = result.get("item", {}).get("key")
        data = (result.get("json") or {}).get("data") or {}
        samples = data.get("result") or []
        value = samples[0].get("value") if samples and isinstance(samples[0], Mapping) else None
        values[str(name)] = value[1] if isinstance(value, Sequence) and len(value) == 2 else None
    return values


def eval_summary(document: Mapping[str, Any]) -> dict[str, Any]:
    """What a change record keeps of one paired evaluation result."""
    comparison = document.get("comparison") or {}
    gate = document.get("gate") or {}
    dataset = document.get("dataset") or {}
    ci = comparison.get("ci") or {}
    return {
        "dataset": dataset.get("name"),
        "dataset_sha256": dataset.get("sha256"),
        "items": comparison.get("items"),
        "running_accuracy": comparison.get("baseline_accuracy"),
        "candidate_accuracy": comparison.get("candidate_accuracy"),
        "difference": comparison.get("difference"),
        "ci": [ci.get("low"), ci.get("high")],
        "lost": list(comparison.get("lost") or [])[:50],
        "passed": gate.get("passed"),
        "run_id": document.get("run_id"),
    }
