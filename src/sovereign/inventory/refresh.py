"""The plan of a hardware-refresh rollout (``playbooks/hardware_refresh.yml``) and its tuning.

A refresh takes the nodes of one serving group one at a time: drain,
reprovision (the GPU-node roles, the serving runtime with the new hardware
profile), retune (a short sweep of ``max_num_seqs`` x ``max_num_batched_tokens``
under load, choosing the best throughput that meets the TTFT SLO), validate
(evaluation, and latency against the node's previous record), rejoin. What
the sweep chose is recorded per host in ``sovereign_serving_tuning`` and
applied over the serving manifest from then on (:func:`serving.apply_tuning`).

:func:`plan` raises :class:`InventoryError` naming every problem before any
host is touched: an unknown group, an absent host outside it, a group whose
refresh would leave a model with no serving node, a sweep too large.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sovereign.inventory import releases, serving
from sovereign.inventory.errors import InventoryError

TUNED_KEYS = serving.TUNED_KEYS
# The sweep and the evaluation load a deployment with completions (vLLM's
# benchmark, the Q&A set): only deployments that generate are swept.
GENERATING = frozenset({"chat", "completions"})
# Each point restarts the deployment's vLLM: a sweep is short by design.
MAX_POINTS = 6
# What the validation compares with the node's previous record (defaults
# of sovereign_refresh_limits): the new TTFT p99 may be at most ratio x the
# previous one plus the slack, the new throughput at least the floor x it.
LIMITS = {"ttft_p99_ratio": 1.5, "ttft_p99_slack_s": 0.1, "throughput_floor": 0.8}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def sweep_points(
    profile: Mapping[str, Any], sweep: Mapping[str, Any] | None
) -> list[dict[str, int]]:
    """The sweep's (max_num_seqs, max_num_batched_tokens) points: the site's
    lists, or half, the profile's and twice the profile's ``max_num_seqs`` at
    the profile's ``max_num_batched_tokens`` (vLLM's engine chunks prefills,
    so a batch budget under ``max_model_len`` is valid)."""
    seqs = int(profile["max_num_seqs"])
    batched = int(profile["max_num_batched_tokens"])
    wanted = dict(sweep or {})
    seq_values = wanted.get("max_num_seqs") or sorted({max(1, seqs // 2), seqs, seqs * 2})
    batch_values = wanted.get("max_num_batched_tokens") or [batched]
    problems = [
        f"sovereign_refresh_sweep.{key}: {values!r} must be a list of whole numbers >= 1"
        for key, values in (("max_num_seqs", seq_values), ("max_num_batched_tokens", batch_values))
        if not (
            isinstance(values, Sequence)
            and not isinstance(values, str)
            and values
            and all(_is_int(v) and v >= 1 for v in values)
        )
    ]
    if problems:
        raise InventoryError("; ".join(problems))
    points = [
        {"max_num_seqs": s, "max_num_batched_tokens": b}
        for s, b in itertools.product(sorted(set(seq_values)), sorted(set(batch_values)))
    ]
    if len(points) > MAX_POINTS:
        raise InventoryError(
            f"sovereign_refresh_sweep: {len(points)} points; at most {MAX_POINTS} (each restarts "
            "the node's vLLM)"
        )
    return points


def _settled(variables: Mapping[str, Any]) -> object:
    """The host's manifest as the inventory serves it (pins and tuning
    applied), ignoring a sweep point or canary a run left as a fact. Reads
    only the keys it needs (hostvars template a variable when it is read)."""
    keys = (serving.VARIABLE, serving.PINS, serving.TUNING, "group_names", "inventory_hostname")
    return serving.manifest_of({key: variables[key] for key in keys if key in variables})


def manifest_for(
    manifest: object, host: str, profile: object, settings: Mapping[str, Any] | None
) -> object:
    """The manifest a refreshed node serves: ``manifest`` (the node's own,
    pins and previous tuning applied) on the new hardware profile (when one
    is given) with ``settings`` ({deployment: {max_num_seqs,
    max_num_batched_tokens}}) as overrides."""
    record: dict[str, Any] = {"deployments": dict(settings or {})}
    if profile:
        record["hardware_profile"] = profile
    return serving.apply_tuning(manifest, {host: record}, host)


def plan(
    hostvars: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, Iterable[str]],
    table: object,
    root: str,
    request: Mapping[str, Any],
) -> dict[str, Any]:
    """The checked plan of ``request`` (group, absent, profile, sweep,
    ttft_p99_slo_s, limits); see the module docstring. Per host: ``runs``,
    one per sweep point of each generating deployment ({deployment, model,
    port, cache_name, digest, point}), in order; ``current``, each such
    deployment's settings now (in the same shape); ``previous``, the figures
    its last refresh measured ({} when none). Embedding deployments move to
    the new profile with the node and keep their settings."""
    base = Path(root)
    group = request.get("group")
    members = list(groups.get(group, [])) if isinstance(group, str) else []
    serving_nodes = list(groups.get("gpu_nodes", []))
    absent = request.get("absent") or []
    problems: list[str] = []
    if not isinstance(absent, Sequence) or isinstance(absent, str):
        problems.append(f"sovereign_refresh_absent: {absent!r} must be a list of host names")
        absent = []
    absent = [str(host) for host in absent]
    if not isinstance(group, str) or not group:
        problems.append("sovereign_refresh_group: is required (the serving group to refresh)")
    elif not members:
        problems.append(
            f"sovereign_refresh_group: {group!r} is no group of the inventory with hosts"
        )
    elif not set(members) <= set(serving_nodes):
        problems.append(
            f"sovereign_refresh_group: {group!r} has hosts that are no serving node (gpu_nodes): "
            f"{sorted(set(members) - set(serving_nodes))}"
        )
    stray = sorted(set(absent) - set(members))
    if members and stray:
        problems.append(
            f"sovereign_refresh_absent: {stray} are not in {group!r}; list only its hosts "
            "awaiting repair"
        )
    profile_name = request.get("profile") or None
    if profile_name is not None:
        problems.extend(
            releases.check_profile_reference(table, profile_name, "sovereign_refresh_profile")
        )
    slo = request.get("ttft_p99_slo_s", 2.0)
    if not isinstance(slo, int | float) or isinstance(slo, bool) or not 0 < slo < math.inf:
        problems.append(
            f"sovereign_refresh_ttft_p99_slo_s: {slo!r} must be a number of seconds > 0"
        )
    limits = {**LIMITS, **dict(request.get("limits") or {})}
    bad_limits = sorted(
        key
        for key, value in limits.items()
        if key not in LIMITS
        or not isinstance(value, int | float)
        or isinstance(value, bool)
        or value < 0
    )
    if bad_limits:
        problems.append(
            f"sovereign_refresh_limits: {bad_limits} must be numbers >= 0 among {sorted(LIMITS)}"
        )
    if problems:
        raise InventoryError("; ".join(problems))
    hosts = [host for host in members if host not in absent]
    if not hosts:
        raise InventoryError(f"sovereign_refresh_absent: every host of {group!r} is absent")

    # Every model a refreshed node serves must keep a serving node outside it.
    serving_models: dict[str, set[str]] = {}
    for host in serving_nodes:
        if host in absent:
            continue
        for deployment in serving.deployments(_settled(hostvars[host]), table, base):
            serving_models.setdefault(deployment.release.served_model_name, set()).add(host)
    for host in hosts:
        for model, where in sorted(serving_models.items()):
            if where == {host}:
                problems.append(
                    f"sovereign_refresh_group: {host} is the only node serving {model!r}: "
                    "draining it would stop the model (add a node, or return an absent one, first)"
                )
    if problems:
        raise InventoryError("; ".join(problems))

    profiles = table.get("hardware_profiles", {}) if isinstance(table, Mapping) else {}
    runs: dict[str, list[dict[str, Any]]] = {}
    current: dict[str, dict[str, dict[str, Any]]] = {}
    previous: dict[str, dict[str, Any]] = {}
    for host in hosts:
        runs[host] = []
        current[host] = {}
        recorded = hostvars[host].get(serving.TUNING, {})
        recorded = recorded.get(host) if isinstance(recorded, Mapping) else None
        measured = recorded.get("measured") if isinstance(recorded, Mapping) else None
        previous[host] = dict(measured) if isinstance(measured, Mapping) else {}
        for deployment in serving.deployments(_settled(hostvars[host]), table, base):
            if not set(deployment.release.endpoints) & GENERATING:
                # An embedding model: reprovisioned and restarted with the
                # node, not swept or evaluated (both measure generation).
                continue
            now = {**profiles.get(deployment.hardware_profile, {}), **deployment.overrides}
            current[host][deployment.name] = {
                "deployment": deployment.name,
                "model": deployment.release.served_model_name,
                "cache_name": deployment.release.model,
                "digest": deployment.release.digest,
                "port": deployment.port,
                "point": {key: now.get(key) for key in TUNED_KEYS},
            }
            name = profile_name or deployment.hardware_profile
            # The new generation's profile, not the old node's overrides.
            profile = {**profiles.get(name, {})}
            if profile_name is None:
                profile.update(deployment.overrides)
            if not all(_is_int(profile.get(key)) for key in TUNED_KEYS):
                raise InventoryError(
                    f"hardware profile {name!r} has no {list(TUNED_KEYS)} to sweep around"
                )
            runs[host].extend(
                {
                    "deployment": deployment.name,
                    "model": deployment.release.served_model_name,
                    "cache_name": deployment.release.model,
                    "digest": deployment.release.digest,
                    "port": deployment.port,
                    "point": point,
                }
                for point in sweep_points(profile, request.get("sweep"))
            )
    return {
        "group": group,
        "hosts": hosts,
        "absent": absent,
        "profile": profile_name,
        "runs": runs,
        "current": current,
        "previous": previous,
        "ttft_p99_slo_s": float(slo),
        "limits": limits,
    }


def choose(results: Sequence[Mapping[str, Any]], ttft_p99_slo_s: float) -> dict[str, Any]:
    """The sweep's best point: the highest output throughput whose TTFT p99 meets
    the SLO and that failed no request (ties: the fewer sequences). ``results``
    hold each point's ``max_num_seqs``, ``max_num_batched_tokens``,
    ``output_tokens_per_s``, ``ttft_p99_s`` and ``failed``. Raises
    InventoryError naming every point when none meets it."""
    meeting = [
        r
        for r in results
        if isinstance(r.get("ttft_p99_s"), int | float)
        and math.isfinite(r["ttft_p99_s"])
        and r["ttft_p99_s"] <= ttft_p99_slo_s
        and isinstance(r.get("output_tokens_per_s"), int | float)
        and r["output_tokens_per_s"] > 0
        and not r.get("failed")
    ]
    if not meeting:
        tried = ", ".join(
            f"{r.get('max_num_seqs')}x{r.get('max_num_batched_tokens')}: "
            f"TTFT p99 {r.get('ttft_p99_s')} s, {r.get('failed', '?')} failed"
            for r in results
        )
        raise InventoryError(
            f"no sweep point meets the TTFT p99 SLO of {ttft_p99_slo_s:g} s ({tried or 'none ran'})"
        )
    best = max(meeting, key=lambda r: (r["output_tokens_per_s"], -r["max_num_seqs"]))
    return dict(best)


def choose_all(
    results: Sequence[Mapping[str, Any]], ttft_p99_slo_s: float
) -> dict[str, dict[str, Any]]:
    """:func:`choose` for each deployment of ``results`` (each carries its
    ``deployment``)."""
    by_deployment: dict[str, list[Mapping[str, Any]]] = {}
    for result in results:
        by_deployment.setdefault(str(result.get("deployment")), []).append(result)
    chosen: dict[str, dict[str, Any]] = {}
    problems = []
    for name, found in sorted(by_deployment.items()):
        try:
            chosen[name] = choose(found, ttft_p99_slo_s)
        except InventoryError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise InventoryError("; ".join(problems))
    return chosen


def settings_of(chosen: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """The tuned settings of :func:`choose_all`'s answer, per deployment."""
    return {name: {key: int(r[key]) for key in TUNED_KEYS} for name, r in chosen.items()}


def latency_verdict(
    chosen: Mapping[str, Mapping[str, Any]],
    previous: Mapping[str, Any],
    limits: Mapping[str, float],
) -> dict[str, Any]:
    """The validation's latency gate: each deployment's chosen point against
    the node's previous record of it ({deployment: {output_tokens_per_s,
    ttft_p99_s}}). A deployment with no previous figures cannot be judged
    and fails the gate."""
    reasons: list[str] = []
    for name, now in sorted(chosen.items()):
        before = previous.get(name) if isinstance(previous, Mapping) else None
        if not isinstance(before, Mapping) or not all(
            isinstance(before.get(k), int | float) for k in ("output_tokens_per_s", "ttft_p99_s")
        ):
            reasons.append(f"{name}: no previous record to compare with")
            continue
        ttft_limit = before["ttft_p99_s"] * limits["ttft_p99_ratio"] + limits["ttft_p99_slack_s"]
        if now["ttft_p99_s"] > ttft_limit:
            reasons.append(
                f"{name}: TTFT p99 {now['ttft_p99_s']:.3f} s > {ttft_limit:.3f} s "
                f"({limits['ttft_p99_ratio']:g} x the previous {before['ttft_p99_s']:.3f} s "
                f"+ {limits['ttft_p99_slack_s']:g} s)"
            )
        floor = before["output_tokens_per_s"] * limits["throughput_floor"]
        if now["output_tokens_per_s"] < floor:
            reasons.append(
                f"{name}: output {now['output_tokens_per_s']:.1f} tokens/s < {floor:.1f} "
                f"({limits['throughput_floor']:g} x the previous "
                f"{before['output_tokens_per_s']:.1f})"
            )
    return {"passed": not reasons, "reasons": reasons}


def record(
    chosen: Mapping[str, Mapping[str, Any]],
    profile: object,
    change: str,
    when: str,
) -> dict[str, Any]:
    """A node's ``sovereign_serving_tuning`` entry: the settings the manifest
    takes, the profile, and the measured figures the next refresh of the
    node compares with."""
    entry: dict[str, Any] = {
        "deployments": settings_of(chosen),
        "measured": {
            name: {
                key: r[key]
                for key in ("output_tokens_per_s", "ttft_p99_s", "completed", "failed")
                if key in r
            }
            for name, r in chosen.items()
        },
        "change": change,
        "refreshed_at": when,
    }
    if profile:
        entry["hardware_profile"] = profile
    return entry
