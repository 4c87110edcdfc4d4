"""The gateway's configuration: one typed object loaded from one YAML file.

``load_config(path)`` parses and validates the file the role templates. Every
problem is reported with the path of the key it concerns, e.g.
``routing.rules[2].tier: unknown tier 'gold'``; cross-references (rules name
existing tiers and models, canary weights sum to 100, proxy CIDRs parse...)
are checked after the shape, and all problems are reported at once.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sovereign.gateway.errors import ConfigError

UNCLASSIFIED = "unclassified"
# Asymmetric JWS algorithms only: "none" and the HMAC family (a shared secret,
# or an RSA public key abused as one) are never accepted.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

Name = Annotated[str, Field(pattern=_NAME)]

# Keys read at start only: a change to any of them needs a restart; every
# other key (models, routing, quotas, admission, drain...) a reload (SIGHUP),
# which keeps in-flight requests.
RESTART_KEYS = (
    "identity",
    "listen",
    "tls",
    "metrics_listen",
    "redis_url",
    "audit",
    "preauth",
    "http",
    "prefix_cache",
    "drain_file",
)

# At most this many backends drained at once, and this many bytes of drain file.
MAX_DRAINED = 4096
MAX_DRAIN_FILE_BYTES = 1 << 20
# The audit log keeps one hash chain per data class, named by it.
DataClass = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
PositiveInt = Annotated[int, Field(gt=0)]
Seconds = Annotated[float, Field(gt=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class Tls(_Model):
    """Serve HTTPS with this certificate chain and key (PEM)."""

    cert: Path
    key: Path


class Claims(_Model):
    """Where the identity lives in the token; dotted paths reach nested claims."""

    user: str = "preferred_username"
    groups: str = "groups"
    team: str | None = "team"


class Oidc(_Model):
    issuer: str
    # Defaults to ISSUER/.well-known/openid-configuration.
    discovery_url: str | None = None
    audience: str
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "PS256", "ES256"])
    claims: Claims = Claims()
    leeway_s: float = Field(default=30.0, ge=0, le=300)
    jwks_cache_ttl_s: Seconds = 300.0
    # An unknown "kid" re-fetches the JWKS at most this often, so forged
    # tokens cannot make the gateway hammer the IdP.
    jwks_min_refetch_interval_s: float = Field(default=30.0, ge=0)
    ca_bundle: Path | None = None
    timeout_s: Seconds = 5.0

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one algorithm")
        bad = [name for name in value if name not in ASYMMETRIC_ALGORITHMS]
        if bad:
            raise ValueError(
                f"not allowed: {', '.join(bad)} (asymmetric only: "
                f"{', '.join(sorted(ASYMMETRIC_ALGORITHMS))})"
            )
        return value


class TrustedHeader(_Model):
    """Take X-Sovereign-User/-Groups/-Team from the SSO proxy, and only from it."""

    enabled: bool = False
    # The SSO proxies' addresses or networks: each a real network (no host
    # bits set), never the whole address space.
    proxies: list[str] = Field(default_factory=list)
    # A file holding the secret the proxies send in X-Sovereign-Proxy-Auth
    # (at least 32 bytes): with it, proxy trust does not rest on an address.
    shared_secret_file: Path | None = None

    @field_validator("proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                network = ipaddress.ip_network(item, strict=True)
            except ValueError as exc:
                raise ValueError(
                    f"{item!r} is not an address or a network (host bits must be zero)"
                ) from exc
            if network.prefixlen == 0:
                raise ValueError(f"{item!r} trusts every address: name the proxies' networks")
        return value


class Identity(_Model):
    oidc: Oidc | None = None
    trusted_header: TrustedHeader = TrustedHeader()


class Limits(_Model):
    """A quota; ``null`` (or absent in the defaults) is unlimited."""

    requests_per_minute: PositiveInt | None = None
    tokens_per_day: PositiveInt | None = None
    tokens_per_month: PositiveInt | None = None


class Quotas(_Model):
    """Defaults, then overrides: for a user, the most generous of their groups'
    overrides, then their own; for a team, its own override. An override sets
    only the fields it names."""

    user_defaults: Limits = Limits()
    team_defaults: Limits = Limits()
    groups: dict[str, Limits] = Field(default_factory=dict)
    users: dict[str, Limits] = Field(default_factory=dict)
    teams: dict[str, Limits] = Field(default_factory=dict)
    key_prefix: str = "sovereign:quota"


class Admission(_Model):
    max_request_bytes: PositiveInt = 1_048_576
    max_tokens_cap: PositiveInt = 4096
    max_prompt_tokens: PositiveInt = 32_768
    max_tool_chain_depth: int = Field(default=8, ge=0)
    # Prompt tokens are estimated as ceil(UTF-8 bytes / bytes_per_token) plus
    # a few per message; a smaller number is more conservative. Settled later
    # from the upstream's real usage.
    bytes_per_token: float = Field(default=3.0, gt=0, le=16)
    # group -> tool names its members may offer the model ("*": any).
    allowed_tools: dict[str, list[str]] = Field(default_factory=dict)
    # A completions prompt list or an embeddings input list holds at most
    # this many items; each is reserved its prompt and n x the output cap.
    max_batch_size: PositiveInt = 32
    # Choices per prompt ("n").
    max_n: PositiveInt = 16
    # logprobs / top_logprobs: alternatives returned per generated token.
    max_logprobs: int = Field(default=5, ge=0, le=20)
    # Request fields forwarded as they are besides those the gateway knows
    # (admission.FIELDS); only fields that neither enlarge nor multiply the
    # output nor change scheduling belong here.
    forward_fields: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]] = Field(
        default_factory=list
    )


class ModelVersion(_Model):
    name: Name
    weight: int = Field(ge=0, le=100)
    # SHA-256 of the weights, from the serving manifest; goes into the audit.
    digest: str
    # tier -> base URLs of the backends serving this version in that tier.
    backends: dict[str, list[str]]

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: str) -> str:
        if not _DIGEST.match(value):
            raise ValueError("expected sha256:<64 lowercase hex digits>")
        return value

    @field_validator("backends")
    @classmethod
    def _urls(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for tier, urls in value.items():
            if not urls:
                raise ValueError(f"tier {tier!r} lists no backend URL")
            for url in urls:
                if not re.match(r"^https?://[^/\s]+(/\S*)?$", url):
                    raise ValueError(f"{url!r} is not an http(s) URL")
        return value


Endpoint = Literal["chat", "completions", "embeddings"]


_CHAT_AND_COMPLETIONS: list[Endpoint] = ["chat", "completions"]


class ModelEntry(_Model):
    endpoints: list[Endpoint] = Field(default_factory=lambda: _CHAT_AND_COMPLETIONS.copy())
    versions: list[ModelVersion] = Field(min_length=1)
    bytes_per_token: float | None = Field(default=None, gt=0, le=16)
    max_tokens_cap: PositiveInt | None = None
    max_prompt_tokens: PositiveInt | None = None
    # The model name the backends serve, when it is not the public one.
    served_name: str | None = None


class Tier(_Model):
    description: str = ""


class Rule(_Model):
    """First matching rule wins; an absent list matches anything."""

    name: Name
    action: Literal["admit", "deny"] = "admit"
    data_classes: list[str] | None = None
    groups: list[str] | None = None
    # Absent: every model served in the tier.
    models: list[str] | None = None
    tier: str | None = None
    audit_full_text: bool = False


class Routing(_Model):
    data_classes: list[DataClass] = Field(default_factory=list)
    # Members of these groups must label every request with a data class from
    # required_labels (default: every data class listed above);
    # "unclassified" never satisfies the requirement.
    restricted_groups: list[str] = Field(default_factory=list)
    required_labels: list[DataClass] | None = None
    rules: list[Rule] = Field(default_factory=list)
    # Salt of the sticky canary hash; change it to reshuffle users.
    canary_salt: str = "sovereign"
    # Members of these groups may ask for one version of a model with the
    # X-Sovereign-Model-Version header (the upgrade's evaluation measures the
    # candidate and the running version apart); nobody else may.
    version_pin_groups: list[str] = Field(default_factory=list)


class Audit(_Model):
    directory: Path
    signing_key: Path | None = None
    checkpoint_every: PositiveInt = 1000
    checkpoint_interval_s: Seconds = 60.0
    retention_days: dict[str, PositiveInt] = Field(default_factory=dict)
    default_retention_days: PositiveInt = 3650
    # Data classes whose records keep the full prompt and response text.
    full_text_data_classes: list[str] = Field(default_factory=list)
    # Another host's directory (a mount) that receives a copy of every signed
    # checkpoint: a chain deleted whole, or cut back to a clean shutdown, is
    # then found by `sovereign audit verify --checkpoints`. Needs signing_key.
    checkpoint_mirror: Path | None = None


class Upstream(_Model):
    connect_timeout_s: Seconds = 5.0  # TCP and TLS
    read_timeout_s: Seconds = 300.0  # for the status line, then between body pieces
    write_timeout_s: Seconds = 30.0
    pool_timeout_s: Seconds = 5.0  # waiting for a connection when a backend has max open
    # Per backend (scheme, host, port): connections open at most, and idle ones kept.
    max_connections: PositiveInt = 512
    max_keepalive_connections: PositiveInt = 128
    ca_bundle: Path | None = None
    # What a backend may send: a whole (non-streamed) answer complete within
    # response_deadline_s and at most max_response_bytes; a stream quiet for
    # at most stream_idle_timeout_s and at most max_stream_bytes in all.
    max_response_bytes: PositiveInt = 16 * 1024 * 1024
    response_deadline_s: Seconds = 300.0
    max_stream_bytes: PositiveInt = 64 * 1024 * 1024
    stream_idle_timeout_s: Seconds = 60.0


class PrefixCache(_Model):
    """vLLM's prefix cache is shared by every request of a replica: a user could
    time a prompt to learn whether another tenant sent it. The gateway sets each
    request's ``cache_salt`` from the tenant and drops any salt a client sent."""

    # team: users of a team share cached prefixes (a user without a team is
    # their own tenant); user: nobody shares; off: no salt (one tenant).
    isolation: Literal["team", "user", "off"] = "team"
    # A file holding the key the salts are derived from (HMAC-SHA256), the
    # same on every gateway of a site so that they share cache hits. Without
    # one, each gateway process draws a random key at start.
    salt_key_file: Path | None = None


class PreAuth(_Model):
    """Refusals before a caller is known (bad or missing credentials) are cheap
    and bounded: a source address gets ``failures_per_minute`` of them (a burst
    of ``burst``) before its next ones are answered 429; the audit log gets at
    most ``audit_records_per_interval`` individual records of them per
    ``summary_interval_s``, and the rest are counted in one summary record
    per interval."""

    failures_per_minute: PositiveInt = 30
    burst: PositiveInt = 30
    audit_records_per_interval: PositiveInt = 100
    summary_interval_s: Seconds = 60.0
    # A bearer token longer than this is refused without being parsed.
    max_token_bytes: PositiveInt = 16384


class Http(_Model):
    """Limits of the gateway's own HTTP server, before any request code runs."""

    # Request line plus headers, in bytes, and the number of header fields.
    max_header_bytes: int = Field(default=16384, ge=1024, le=1_048_576)
    max_headers: int = Field(default=64, ge=8, le=1024)
    # From a connection's first byte (or the end of the previous request) to
    # the end of the headers: a slow client is answered 408 and closed.
    header_timeout_s: Seconds = 10.0
    # For the whole request body, once the headers are in.
    body_timeout_s: Seconds = 30.0


class Logging(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # One JSON line per request on stderr (journald); no prompt text.
    access_log: bool = True


class GatewayConfig(_Model):
    listen: Listen = Listen()
    tls: Tls | None = None
    metrics_listen: Listen | None = Listen(host="127.0.0.1", port=9464)
    identity: Identity
    redis_url: str
    quotas: Quotas = Quotas()
    admission: Admission = Admission()
    models: dict[Name, ModelEntry]
    tiers: dict[Name, Tier]
    routing: Routing
    audit: Audit
    upstream: Upstream = Upstream()
    prefix_cache: PrefixCache = PrefixCache()
    preauth: PreAuth = PreAuth()
    http: Http = Http()
    # Paths answered without authentication (default: none; the health check
    # /healthz always is).
    public_paths: list[Literal["/openapi.json", "/v1/models"]] = Field(default_factory=list)
    logging: Logging = Logging()
    # The drain file: backends that take no new request (a rolling release
    # writes it before it restarts a node, then reloads the gateway). Read
    # at start and on every reload; a missing file drains nothing.
    drain_file: Path | None = None
    # The backend URLs drained now (from drain_file; tests may set it).
    drained: list[Annotated[str, Field(max_length=2048)]] = Field(
        default_factory=list, max_length=MAX_DRAINED
    )


def _loc(parts: Iterable[int | str]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _shape_problems(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        # Drop pydantic's internal steps (function-after[...], union members).
        loc = [p for p in error["loc"] if not (isinstance(p, str) and "[" in p)]
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{_loc(loc)}: {message}")
    return problems


def cross_check(config: GatewayConfig) -> list[str]:
    """Problems a per-key check cannot see: names that must refer to each other."""
    problems: list[str] = []
    identity = config.identity
    if identity.oidc is None and not identity.trusted_header.enabled:
        problems.append("identity: configure oidc, trusted_header, or both")
    if identity.trusted_header.enabled and not identity.trusted_header.proxies:
        problems.append("identity.trusted_header.proxies: list the SSO proxy addresses")
    if not re.match(r"^(redis|rediss|unix)://", config.redis_url):
        problems.append("redis_url: expected redis://, rediss:// or unix://")

    classes = set(config.routing.data_classes)
    if UNCLASSIFIED in classes:
        problems.append(
            f"routing.data_classes: {UNCLASSIFIED!r} is the label of unlabelled requests; "
            "do not list it"
        )
    known_classes = classes | {UNCLASSIFIED}

    for name, model in config.models.items():
        where = f"models.{name}"
        total = sum(version.weight for version in model.versions)
        if total != 100:
            problems.append(f"{where}.versions: weights sum to {total}, not 100")
        seen: set[str] = set()
        for index, version in enumerate(model.versions):
            if version.name in seen:
                problems.append(f"{where}.versions[{index}].name: duplicate {version.name!r}")
            seen.add(version.name)
            for tier in version.backends:
                if tier not in config.tiers:
                    problems.append(f"{where}.versions[{index}].backends: unknown tier {tier!r}")

    served = _served_models(config)
    names = set()
    for index, rule in enumerate(config.routing.rules):
        where = f"routing.rules[{index}]"
        if rule.name in names:
            problems.append(f"{where}.name: duplicate rule name {rule.name!r}")
        names.add(rule.name)
        for label in rule.data_classes or ():
            if label not in known_classes:
                problems.append(f"{where}.data_classes: unknown data class {label!r}")
        if rule.action == "deny":
            if rule.tier is not None:
                problems.append(f"{where}.tier: a deny rule names no tier")
            continue
        if rule.tier is None:
            problems.append(f"{where}.tier: an admit rule must name a tier")
            continue
        if rule.tier not in config.tiers:
            problems.append(f"{where}.tier: unknown tier {rule.tier!r}")
            continue
        for model_name in rule.models or ():
            if model_name not in config.models:
                problems.append(f"{where}.models: unknown model {model_name!r}")
            elif model_name not in served.get(rule.tier, set()):
                problems.append(
                    f"{where}.models: model {model_name!r} has no backend in tier {rule.tier!r}"
                )

    for label in config.routing.required_labels or ():
        if label not in classes:
            problems.append(
                f"routing.required_labels: {label!r} is not one of routing.data_classes"
            )
    trusted = identity.trusted_header
    if trusted.shared_secret_file is not None and not trusted.shared_secret_file.is_file():
        problems.append(
            "identity.trusted_header.shared_secret_file: no such file "
            f"{str(trusted.shared_secret_file)!r}"
        )
    for label in config.audit.full_text_data_classes:
        if label not in known_classes:
            problems.append(f"audit.full_text_data_classes: unknown data class {label!r}")
    for label in config.audit.retention_days:
        if label not in known_classes:
            problems.append(f"audit.retention_days: unknown data class {label!r}")
    if config.tls is not None:
        for key in ("cert", "key"):
            path: Path = getattr(config.tls, key)
            if not path.is_file():
                problems.append(f"tls.{key}: no such file {str(path)!r}")
    return problems


def _served_models(config: GatewayConfig) -> dict[str, set[str]]:
    served: dict[str, set[str]] = {}
    for name, model in config.models.items():
        for version in model.versions:
            for tier in version.backends:
                served.setdefault(tier, set()).add(name)
    return served


def parse_config(data: object, source: str = "configuration") -> GatewayConfig:
    """Validate already-parsed YAML; raises ConfigError naming every bad key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        problems = _shape_problems(exc)
        raise ConfigError(f"{source}: {len(problems)} problem(s)", problems) from None
    problems = cross_check(config)
    if problems:
        raise ConfigError(f"{source}: {len(problems)} problem(s)", problems)
    return config


def _read_yaml(path: Path, limit: int | None = None) -> object:
    try:
        with path.open("rb") as handle:
            raw = handle.read(limit + 1) if limit is not None else handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    if limit is not None and len(raw) > limit:
        raise ConfigError(f"{path}: larger than {limit} bytes")
    try:
        return yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML: {exc}") from exc


def load_drain(path: Path) -> list[str]:
    """The backend URLs a drain file lists (``drained: [url, ...]``); a missing
    file drains nothing."""
    if not path.exists():
        return []
    data = _read_yaml(path, MAX_DRAIN_FILE_BYTES)
    if data is None:
        return []
    drained = data.get("drained") if isinstance(data, Mapping) else None
    if not (
        isinstance(data, Mapping)
        and set(data) <= {"drained"}
        and isinstance(drained, list)
        and all(isinstance(url, str) and len(url) <= 2048 for url in drained)
    ):
        raise ConfigError(f"{path}: expected 'drained:' with a list of backend URLs")
    if len(drained) > MAX_DRAINED:
        raise ConfigError(f"{path}: more than {MAX_DRAINED} drained backends")
    return list(drained)


def load_config(path: Path) -> GatewayConfig:
    """The configuration at ``path``, with the backends its drain file drains."""
    config = parse_config(_read_yaml(path), str(path))
    if config.drain_file is not None:
        drained = load_drain(config.drain_file)
        config = config.model_copy(update={"drained": drained})
    return config


def needs_restart(old: GatewayConfig, new: GatewayConfig) -> list[str]:
    """The start-only keys that differ between two configurations."""
    return [key for key in RESTART_KEYS if getattr(old, key) != getattr(new, key)]


MAX_MODELS_FILE_BYTES = 4 << 20


def set_models(path: Path, models_path: Path) -> bool:
    """Replace the ``models`` table of the configuration file ``path`` with the
    JSON table in ``models_path``; the result is validated whole, then renamed
    over the file (same owner and mode). False when nothing changed."""
    try:
        raw = models_path.read_bytes()[: MAX_MODELS_FILE_BYTES + 1]
    except OSError as exc:
        raise ConfigError(f"cannot read {models_path}: {exc.strerror}") from exc
    if len(raw) > MAX_MODELS_FILE_BYTES:
        raise ConfigError(f"{models_path}: larger than {MAX_MODELS_FILE_BYTES} bytes")
    try:
        models = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{models_path}: not a JSON model table ({exc})") from exc
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    data["models"] = models
    parse_config(data, f"{path} with the models of {models_path}")
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    body = yaml.safe_dump(
        data, indent=2, sort_keys=True, default_flow_style=False, allow_unicode=True
    )
    if text == header + body:
        return False
    status = path.stat()
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(header + body)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(temporary, status.st_mode & 0o7777)
    if os.geteuid() == 0:
        os.chown(temporary, status.st_uid, status.st_gid)
    os.replace(temporary, path)
    return True
