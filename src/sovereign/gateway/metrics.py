"""Prometheus metrics of the gateway, in a registry of their own.

Labels stay bounded: ``model`` is a configured model name or ``other``,
``team`` a team from the identity (or ``none``); users are never labels.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sovereign_gateway_requests",
            "Requests answered, by endpoint, model and HTTP status.",
            ["endpoint", "model", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "sovereign_gateway_request_duration_seconds",
            "Time from request to the last byte of the answer.",
            ["endpoint", "model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.upstream = Histogram(
            "sovereign_gateway_upstream_duration_seconds",
            "Time the model backend took (to the last byte).",
            ["model", "version"],
            buckets=_LATENCY,
            registry=r,
        )
        self.first_byte = Histogram(
            "sovereign_gateway_stream_first_byte_seconds",
            "Time from request to the first streamed byte sent to the client.",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.tokens = Counter(
            "sovereign_gateway_tokens",
            "Tokens used, from the backends' usage, by model, team and kind.",
            ["model", "team", "kind"],
            registry=r,
        )
        self.rejections = Counter(
            "sovereign_gateway_rejections",
            "Requests refused by the gateway, by reason.",
            ["reason"],
            registry=r,
        )
        self.audit_failures = Counter(
            "sovereign_gateway_audit_failures",
            "Audit records that could not be written, by phase.",
            ["phase"],
            registry=r,
        )
        self.config_reloads = Counter(
            "sovereign_gateway_config_reloads",
            "Configuration reloads, by result.",
            ["result"],
            registry=r,
        )
        self.audit_healthy = Gauge(
            "sovereign_gateway_audit_healthy", "1 while the audit log accepts records.", registry=r
        )
