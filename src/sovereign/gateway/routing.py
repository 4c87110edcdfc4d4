"""Where a request may go: data class x groups x model -> tier, default deny.

The rules are evaluated in order and the first one that matches decides; a
rule's absent list matches anything, and an absent ``models`` list means every
model the rule's tier serves. No matching rule is a refusal naming what was
asked. Members of the restricted groups must label every request with a data
class. Within the tier the user's canary bucket picks the model version, and
the version's backends take turns. Drained backends (a node a rolling release
is about to restart) take no new request; when every backend of the chosen
version in the tier is drained, or the version has none there (mid-rollout,
one hardware class is ahead of another), the first listed version that has a
live backend in the tier answers, and the audit records that version.

A member of ``routing.version_pin_groups`` may name the version with the
``X-Sovereign-Model-Version`` header (an evaluation of a canary against the
running version): that version answers or the request is refused, never
another one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from sovereign.gateway.canary import CanarySplit, bucket
from sovereign.gateway.config import UNCLASSIFIED, GatewayConfig
from sovereign.gateway.errors import (
    BadRequestError,
    PermissionDeniedError,
    ServiceUnavailableError,
    bounded,
)
from sovereign.gateway.identity import Principal

DATA_CLASS_HEADER = "x-sovereign-data-class"
VERSION_HEADER = "x-sovereign-model-version"


@dataclass(frozen=True, slots=True)
class Decision:
    rule: str
    tier: str
    full_text: bool


@dataclass(frozen=True, slots=True)
class Target:
    version: str
    digest: str
    url: str


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    admit: bool
    data_classes: frozenset[str] | None
    groups: frozenset[str] | None
    models: frozenset[str]
    tier: str
    full_text: bool


class Router:
    """The routing policy of one configuration, precomputed."""

    def __init__(self, config: GatewayConfig) -> None:
        self.data_classes = frozenset(config.routing.data_classes)
        self.restricted_groups = frozenset(config.routing.restricted_groups)
        required = config.routing.required_labels
        self.required_labels = frozenset(self.data_classes if required is None else required)
        self._salt = config.routing.canary_salt
        self._pin_groups = frozenset(config.routing.version_pin_groups)
        self._versions = {
            name: frozenset(v.name for v in model.versions) for name, model in config.models.items()
        }
        self._full_text_classes = frozenset(config.audit.full_text_data_classes)
        served: dict[str, set[str]] = {}
        for name, model in config.models.items():
            for version in model.versions:
                for tier in version.backends:
                    served.setdefault(tier, set()).add(name)
        all_models = frozenset(config.models)
        self._rules = tuple(
            _Rule(
                name=rule.name,
                admit=rule.action == "admit",
                data_classes=None if rule.data_classes is None else frozenset(rule.data_classes),
                groups=None if rule.groups is None else frozenset(rule.groups),
                models=frozenset(
                    rule.models
                    if rule.models is not None
                    else (served.get(rule.tier, set()) if rule.tier else all_models)
                ),
                tier=rule.tier or "",
                full_text=rule.audit_full_text,
            )
            for rule in config.routing.rules
        )
        self._splits = {
            name: CanarySplit([(v.name, v.weight) for v in model.versions])
            for name, model in config.models.items()
        }
        drained = frozenset(config.drained)
        live: dict[tuple[str, str, str], Iterator[str]] = {}
        tiers: dict[str, set[str]] = {}
        for name, model in config.models.items():
            for v in model.versions:
                for tier, urls in v.backends.items():
                    tiers.setdefault(name, set()).add(tier)
                    serving = [url for url in urls if url not in drained]
                    if serving:
                        live[name, v.name, tier] = itertools.cycle(serving)
        # (model, version the split chose, tier) -> (version that answers,
        # its digest, its live backends in turn); None: nothing live there.
        self._routes: dict[tuple[str, str, str], tuple[str, str, Iterator[str]] | None] = {}
        self._pinned: dict[tuple[str, str, str], tuple[str, str, Iterator[str]]] = {}
        for name, model in config.models.items():
            for tier in sorted(tiers.get(name, ())):
                fallback = next((v for v in model.versions if (name, v.name, tier) in live), None)
                for v in model.versions:
                    if (name, v.name, tier) in live:
                        self._pinned[name, v.name, tier] = (
                            v.name,
                            v.digest,
                            live[name, v.name, tier],
                        )
                    answering = v if (name, v.name, tier) in live else fallback
                    self._routes[name, v.name, tier] = (
                        None
                        if answering is None
                        else (answering.name, answering.digest, live[name, answering.name, tier])
                    )

    def data_class(self, labels: list[str], principal: Principal) -> str:
        """The request's data class, from every copy of the header sent. Refuses
        a label sent twice, an unknown label, and a member of a restricted group
        whose request carries no real label (``unclassified`` is none)."""
        if len(labels) > 1:
            raise BadRequestError(
                f"{DATA_CLASS_HEADER} was sent {len(labels)} times: label a request once",
                code="duplicate_data_class",
                param="X-Sovereign-Data-Class",
            )
        label = labels[0].strip() if labels else ""
        if label and label not in self.data_classes and label != UNCLASSIFIED:
            known = ", ".join(sorted(self.data_classes)) or "none configured"
            raise BadRequestError(
                f"unknown data class {bounded(label)} (known: {known})",
                code="unknown_data_class",
                param="X-Sovereign-Data-Class",
            )
        restricted = principal.groups & self.restricted_groups
        if restricted and label not in self.required_labels:
            allowed = ", ".join(sorted(self.required_labels)) or "none configured"
            raise PermissionDeniedError(
                f"members of {', '.join(sorted(restricted))} must label every request "
                f"with the X-Sovereign-Data-Class header, one of: {allowed}",
                code="data_class_required",
                param="X-Sovereign-Data-Class",
            )
        return label or UNCLASSIFIED

    def decide(self, principal: Principal, model: str, data_class: str) -> Decision:
        for rule in self._rules:
            if rule.data_classes is not None and data_class not in rule.data_classes:
                continue
            if rule.groups is not None and rule.groups.isdisjoint(principal.groups):
                continue
            if model not in rule.models:
                continue
            if not rule.admit:
                raise PermissionDeniedError(
                    f"routing rule {rule.name!r} denies data class {data_class!r} "
                    f"on model {model!r}",
                    code="routing_denied",
                )
            return Decision(
                rule.name, rule.tier, rule.full_text or data_class in self._full_text_classes
            )
        groups = ", ".join(sorted(principal.groups)) or "(none)"
        raise PermissionDeniedError(
            f"no routing rule admits data class {data_class!r} for groups [{groups}] "
            f"on model {model!r}",
            code="routing_denied",
        )

    def allowed_models(self, principal: Principal, models: list[str]) -> list[str]:
        """Models some rule admits this user to, for some data class."""
        classes = [*self.data_classes, UNCLASSIFIED]
        allowed = []
        for model in models:
            for label in classes:
                try:
                    self.decide(principal, model, label)
                except PermissionDeniedError:
                    continue
                allowed.append(model)
                break
        return allowed

    def pinned_version(self, values: list[str], principal: Principal, model: str) -> str | None:
        """The version the request names (X-Sovereign-Model-Version), or None.
        Refuses a header sent twice, a caller outside ``version_pin_groups``
        and a version the model does not have."""
        if not values:
            return None
        if len(values) > 1:
            raise BadRequestError(
                f"{VERSION_HEADER} was sent {len(values)} times: name one version",
                code="duplicate_model_version",
                param="X-Sovereign-Model-Version",
            )
        if principal.groups.isdisjoint(self._pin_groups):
            raise PermissionDeniedError(
                "only members of routing.version_pin_groups may choose a model version",
                code="version_pin_denied",
                param="X-Sovereign-Model-Version",
            )
        version = values[0].strip()
        if version not in self._versions.get(model, frozenset()):
            known = ", ".join(sorted(self._versions.get(model, frozenset())))
            raise BadRequestError(
                f"model {model!r} has no version {bounded(version)} (it has: {known})",
                code="unknown_model_version",
                param="X-Sovereign-Model-Version",
            )
        return version

    def target(self, model: str, tier: str, user: str, pinned: str | None = None) -> Target:
        if pinned is not None:
            found = self._pinned.get((model, pinned, tier))
            if found is None:
                raise ServiceUnavailableError(
                    f"version {pinned!r} of model {model!r} has no live backend in tier "
                    f"{tier!r} now; retry shortly",
                    code="no_backend",
                )
            return Target(found[0], found[1], next(found[2]))
        version = self._splits[model].choose(bucket(self._salt, model, user))
        route = self._routes.get((model, version, tier))
        if route is None:
            raise ServiceUnavailableError(
                f"no backend of model {model!r} is serving in tier {tier!r} now "
                "(all drained); retry shortly",
                code="no_backend",
            )
        answering, digest, backends = route
        return Target(answering, digest, next(backends))
