"""Configuration: `config/observability.yaml` plus environment overrides.

The file may be ours, the seed's (under a root `observability:` key) or E2I's (other names,
nested sections): `config_formats.normalize` reads it into the names below first, and says
which keys are not used by the connector (one warning) or misspelt (an error with the nearest
name). Environment variables that hold secrets may be renamed in the file (`opik.api_key_env`,
`opik.endpoint_env`, `cache.redis.url_env`).

Precedence (highest first): explicit arguments to `load_config`, environment variables,
the YAML file, the defaults below. An invalid file or value fails at load with a message that
names the key, the value and what is accepted. Secrets are `SecretStr`: they never appear in
`repr()`, `str()` or logs, and `ObservabilityConfig.redacted()` is what gets printed.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .config_formats import nearest, normalize
from .config_otlp import OtlpSettings, otlp_env_overrides
from .config_section import Section as _Section
from .redaction import mask_credentials
from .resources import config_file
from .time_window import parse_time_window

logger = logging.getLogger(__name__)

# Environment variables, one named constant each.
ENV_CONFIG_PATH = "E2I_OBS_CONFIG"
ENV_OPIK_API_KEY = "OPIK_API_KEY"
ENV_OPIK_URL = "OPIK_URL_OVERRIDE"
ENV_OPIK_WORKSPACE = "OPIK_WORKSPACE"
ENV_OPIK_PROJECT = "OPIK_PROJECT_NAME"
ENV_DATABASE_URL = "E2I_OBS_DATABASE_URL"
ENV_SUPABASE_URL = "SUPABASE_URL"
ENV_SUPABASE_KEY = "SUPABASE_KEY"
ENV_REDIS_URL = "REDIS_URL"
ENV_ENVIRONMENT = "E2I_OBS_ENVIRONMENT"


class ConfigError(ValueError):
    """The configuration file or an environment override is invalid."""


_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
LOCAL_OPIK_ENDPOINT = "http://localhost:5173"


class OpikSettings(_Section):
    enabled: bool = True
    """Send spans to Opik; False means database-only."""
    api_key: SecretStr | None = None
    """Opik Cloud API key (sent as `Authorization`); None for self-hosted. Read from the
    environment variable named by `api_key_env`, never from the file."""
    api_key_env: str = Field(default=ENV_OPIK_API_KEY, pattern=_ENV_NAME)
    """Name of the environment variable that holds the API key."""
    url_override: str | None = None
    """Base URL of a self-hosted Opik, e.g. http://localhost:5173/api/."""
    endpoint_env: str = Field(default=ENV_OPIK_URL, pattern=_ENV_NAME)
    """Name of the environment variable that holds `url_override`."""
    use_local: bool = False
    """Send to the self-hosted Opik at `local_endpoint` (then `url_override` is not used)."""
    local_endpoint: str = LOCAL_OPIK_ENDPOINT
    """Address of the self-hosted Opik (its REST API is under `/api` unless a path is given)."""
    local_port: int | None = Field(default=None, ge=1, le=65535)
    """Port of the self-hosted Opik when `local_endpoint` names none."""
    workspace: str | None = None
    """Opik workspace (`Comet-Workspace` header)."""
    project_name: str = "e2i-causal-analytics"
    timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("local_endpoint")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL such as http://localhost:5173")
        return v

    @property
    def effective_url(self) -> str | None:
        """The REST base URL to use: the local Opik's when `use_local`, else `url_override`
        (None means Opik Cloud)."""
        if not self.use_local:
            return self.url_override
        parts = urlsplit(self.local_endpoint)
        netloc = parts.netloc
        if parts.port is None and self.local_port is not None:
            netloc = f"{netloc}:{self.local_port}"
        path = parts.path.rstrip("/") or "/api"
        return f"{parts.scheme}://{netloc}{path}"


ENVIRONMENTS: dict[str, tuple[str, ...]] = {
    "production": ("production", "prod"),
    "staging": ("staging", "stage"),
    "development": ("development", "dev", "local"),
    "test": ("test", "testing"),
}
"""Accepted `sampling.environment` values (any case), each mapped to its canonical name."""
_ENVIRONMENT_ALIASES = {alias: name for name, aliases in ENVIRONMENTS.items() for alias in aliases}


class SamplingSettings(_Section):
    environment: str = "development"
    """`production` (or `prod`, any case) uses production_rate; the other accepted values
    (ENVIRONMENTS) use default_rate. Stored as the canonical name."""
    default_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    production_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    always_sample_errors: bool = True
    environment_aware: bool = True
    """False: `default_rate` everywhere, whatever the environment."""
    always_sample_agents: list[str] = Field(default_factory=list)
    """Agents whose spans are always kept (rate 1.0)."""
    agent_overrides: dict[str, float] = Field(default_factory=dict)
    """Agent name -> its own rate (0.0-1.0), instead of the environment's rate."""

    @field_validator("agent_overrides")
    @classmethod
    def _rates(cls, v: dict[str, float]) -> dict[str, float]:
        for agent, rate in v.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"rate for agent {agent!r} must be within 0.0-1.0, got {rate!r}")
        return v

    @field_validator("environment", mode="before")
    @classmethod
    def _canonical_environment(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v  # pydantic's own type error
        name = _ENVIRONMENT_ALIASES.get(v.strip().lower())
        if name is None:
            accepted = ", ".join(alias for aliases in ENVIRONMENTS.values() for alias in aliases)
            raise ValueError(f"unknown environment {v!r}; accepted (any case): {accepted}")
        return name


class BatchingSettings(_Section):
    enabled: bool = True
    """False: every span is sent on its own as soon as the worker sees it."""
    max_batch_size: int = Field(default=100, ge=1, le=100_000)
    max_batch_wait_seconds: float = Field(default=5.0, gt=0)
    max_queue_size: int = Field(default=10_000, ge=1)
    max_backlog_batch_size: int = Field(default=5_000, ge=1, le=100_000)
    """Cap on one write while a backlog exists (two or more full batches queued): the worker
    then takes up to this many spans per write (one transaction) so a busy agent cannot outrun
    it; at light load it writes `max_batch_size`. A value <= `max_batch_size` turns it off."""
    retry_max_attempts: int = Field(default=3, ge=1, le=20)
    retry_deadline_seconds: float = Field(default=30.0, gt=0)
    retry_base_delay_seconds: float = Field(default=0.5, gt=0)
    retry_exponential_backoff: bool = True
    """False: every retry waits `retry_base_delay_seconds` (no doubling)."""
    retry_max_delay_seconds: float | None = Field(default=None, gt=0)
    """Cap on a single wait between attempts (None: only the deadline bounds it)."""
    spool_max_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    shutdown_timeout_seconds: float = Field(default=10.0, ge=0)
    flush_on_shutdown: bool = True
    """False: at interpreter exit queued spans go straight to the spool (replayed next start)
    instead of being sent for up to `shutdown_timeout_seconds`."""


class CircuitBreakerSettings(_Section):
    enabled: bool = True
    """False: no breaker; every batch tries Opik."""
    failure_threshold: int = Field(default=5, ge=1)
    reset_timeout_seconds: float = Field(default=30.0, gt=0)
    half_open_max_calls: int = Field(default=1, ge=1)
    """Trial calls let through at once while half-open."""
    success_threshold: int = Field(default=1, ge=1)
    """Successful trial calls needed to close the breaker again."""
    fallback_log_to_database: Literal[True] = True
    """Spans always reach the database sink, Opik up or down (only `true` is accepted)."""
    fallback_log_to_file: bool = False
    """Also append spans that could not reach Opik when first sent to `fallback_log_path`
    (JSON lines); they still wait in the spool and are replayed to Opik."""
    fallback_log_path: Path = Path(".e2i_obs/opik_fallback.jsonl")


class RetentionSettings(_Section):
    days: int = Field(default=90, ge=1)
    batch_size: int = Field(default=1000, ge=1)
    dry_run: bool = False
    """Cleanup counts the spans it would delete and deletes none."""
    rollup_days: int = Field(default=400, ge=1)
    """Age past which `db cleanup` deletes per-minute/hour rollups; at least `days`, so
    window metrics and trends outlive the spans they were computed from."""
    rollup_minute_days: int | None = Field(default=None, ge=1)
    """Age past which `db cleanup` deletes the per-minute slots (None: `days`, the spans'):
    they only give the edges of recent windows to the minute; hour slots keep the trends
    for `rollup_days` (minute slots are ~60x the rows). Between `days` and `rollup_days`."""

    @model_validator(mode="after")
    def _rollups_outlive_spans(self) -> RetentionSettings:
        if self.rollup_days < self.days:
            raise ValueError(
                f"retention.rollup_days must be >= retention.days ({self.days}) so rollups "
                f"outlive the spans they summarise, got {self.rollup_days}"
            )
        minute_days = self.rollup_minute_days
        if minute_days is not None and not self.days <= minute_days <= self.rollup_days:
            raise ValueError(
                f"retention.rollup_minute_days must be between retention.days ({self.days}) "
                f"and retention.rollup_days ({self.rollup_days}), got {minute_days}"
            )
        return self


class StorageSettings(_Section):
    backend: Literal["sqlite", "postgres", "supabase"] = "sqlite"
    url: SecretStr | None = None
    """PostgreSQL DSN (postgresql://...) for backend `postgres`; may hold a password."""
    sqlite_path: Path = Path(".e2i_obs/observability.db")
    spool_dir: Path = Path(".e2i_obs/spool")
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=5, ge=1)
    pool_timeout_seconds: float = Field(default=10.0, gt=0)
    """How long a PostgreSQL call waits for a pool connection (and to connect)."""
    insert_batch_size: int | None = Field(default=None, ge=1)
    """Spans per INSERT statement; None: a whole batch at once."""
    spans_table: Literal["ml_observability_spans"] = "ml_observability_spans"
    """Fixed by `database/ml/mlops_tables.sql`; E2I's file names it, we check it."""
    latency_summary_view: Literal["v_agent_latency_summary"] = "v_agent_latency_summary"
    supabase_url: str | None = None
    supabase_key: SecretStr | None = None
    """Supabase service-role key; never logged."""
    supabase_authenticated_read: bool = False
    """Grant the `authenticated` role read-only access (row-level security policy)."""
    timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """Checked at load, not at the first connection: a URL the postgres backend would not
        use, or cannot use, is an error here (a bad port used to cost a 10 s wait)."""
        if v is None:
            return v
        backend = info.data.get("backend", "postgres")
        if backend != "postgres":
            raise ValueError(
                f"storage.url is only used by storage.backend 'postgres', but the backend is "
                f"{backend!r}; set storage.backend: postgres, or remove storage.url"
            )
        problem = postgres_url_problem(v.get_secret_value())
        if problem:
            raise ValueError(problem)
        return v


def postgres_url_problem(url: str) -> str | None:
    """Why `url` is not a usable PostgreSQL URL (password masked), or None. A libpq key=value
    string (`host=... dbname=...`) is left to the driver."""
    if "://" not in url:
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        return (
            f"unsupported URL scheme in {mask_credentials(url)!r}; "
            "accepted: postgresql://user:password@host:5432/dbname"
        )
    try:
        _ = urlsplit(url).port  # ValueError for a port that is not a number in range
    except ValueError:
        return (
            f"invalid port in {mask_credentials(url)!r}; "
            "expected postgresql://user:password@host:5432/dbname"
        )
    return None


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class CacheSettings(_Section):
    backend: Literal["memory", "redis"] = "memory"
    redis_url: SecretStr | None = None
    ttl_seconds: dict[str, float] = Field(default_factory=lambda: {"1h": 60.0, "24h": 300.0})
    """TTL per time window; windows not listed use default_ttl_seconds."""
    default_ttl_seconds: float = Field(default=60.0, ge=0)
    max_entries: int = Field(default=1024, ge=1)
    cleanup_interval_seconds: float = Field(default=60.0, gt=0)
    """How often the in-memory cache drops expired entries."""
    fallback_to_memory: bool = True
    """Serve from process memory while Redis is unreachable; False: compute every time."""
    key_prefix: str = Field(default="e2i:obs:metrics", min_length=1)
    """Prefix of every Redis key."""
    redis_url_env: str = Field(default=ENV_REDIS_URL, pattern=_ENV_NAME)
    """Name of the environment variable that holds `redis_url`."""
    redis_db: int | None = Field(default=None, ge=0)
    """Redis database number; replaces the one in the URL."""
    redis_connect_timeout_seconds: float = Field(default=0.25, gt=0)
    redis_socket_timeout_seconds: float = Field(default=0.25, gt=0)

    @field_validator("ttl_seconds")
    @classmethod
    def _windows(cls, v: dict[str, float]) -> dict[str, float]:
        for window, ttl in v.items():
            parse_time_window(window)
            if ttl < 0:
                raise ValueError(f"ttl for window {window!r} must be >= 0, got {ttl!r}")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith(REDIS_SCHEMES):
            raise ValueError(
                "unsupported Redis URL scheme; accepted: redis://host:6379/0, rediss://... "
                "or unix:///path/to/redis.sock"
            )
        return v

    def ttl_for(self, window: str) -> float:
        return self.ttl_seconds.get(window, self.default_ttl_seconds)


class CaptureSettings(_Section):
    prompts: bool = False
    """Record prompt and response text on LLM spans (off by default: may hold personal data)."""
    max_chars: int = Field(default=2000, ge=0)
    """Longer text is truncated to this many characters."""


DEFAULT_REDACT_PATTERNS = ("password", "api_key", "secret", "token", "authorization")


class SpansSettings(_Section):
    """What a span may carry into any sink (applied once, see `span_policy.py`)."""

    include_input: bool = True
    """False: the span's input (`input`, `llm.prompt` attributes) is not recorded."""
    include_output: bool = True
    max_input_size_bytes: int = Field(default=65_536, ge=0)
    """Input larger than this (as JSON, UTF-8) is truncated or dropped."""
    max_output_size_bytes: int = Field(default=65_536, ge=0)
    max_metadata_size_bytes: int = Field(default=65_536, ge=0)
    """The other attributes together; their largest values are cut first."""
    truncate_on_overflow: bool = True
    """True: cut an oversized value to the limit; False: drop it (a marker says so)."""
    redact_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_REDACT_PATTERNS))
    """Key names whose values are masked in attributes, input and output (see span_policy)."""

    @field_validator("redact_patterns")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        for pattern in v:
            if not pattern.strip():
                raise ValueError("a redact pattern must not be empty")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a valid regex: {exc}") from None
        return v


class ModelRates(_Section):
    """One model's price, USD per million tokens by kind (as `genai-prices` defines them:
    cache reads and writes are parts of the input, reasoning a part of the output; a kind
    without its own rate is charged at the input or output rate)."""

    input_mtok: float = Field(ge=0, allow_inf_nan=False)
    output_mtok: float = Field(ge=0, allow_inf_nan=False)
    cache_read_mtok: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    cache_write_mtok: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    reasoning_mtok: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class PricingSettings(_Section):
    """`pricing:` USD cost of LLM spans (see pricing.py)."""

    enabled: bool = True
    """Compute `cost_usd` for LLM spans (on the batch worker)."""
    models: dict[str, ModelRates] = Field(default_factory=dict)
    """Model name (as spans record it, case-insensitive) -> its rates. Adds models the price
    database lacks (private or fine-tuned deployments) and overrides the ones it has."""


class ObservabilityConfig(_Section):
    opik: OpikSettings = OpikSettings()
    sampling: SamplingSettings = SamplingSettings()
    batching: BatchingSettings = BatchingSettings()
    circuit_breaker: CircuitBreakerSettings = CircuitBreakerSettings()
    retention: RetentionSettings = RetentionSettings()
    storage: StorageSettings = StorageSettings()
    cache: CacheSettings = CacheSettings()
    capture: CaptureSettings = CaptureSettings()
    spans: SpansSettings = SpansSettings()
    otlp: OtlpSettings = OtlpSettings()
    pricing: PricingSettings = PricingSettings()
    default_agent_tier: int | None = Field(default=None, ge=0, le=5)

    def redacted(self) -> dict[str, Any]:
        """A dict safe to print or log: every secret shows as '**********'."""
        return self.model_dump(mode="json")


def _env_names(data: Mapping[str, Any]) -> dict[str, str]:
    """Which environment variables hold the Opik key, the Opik URL and the Redis URL: the
    file may rename them (`opik.api_key_env`, `opik.endpoint_env`, `cache.redis.url_env`)."""
    names = {"api_key": ENV_OPIK_API_KEY, "url": ENV_OPIK_URL, "redis": ENV_REDIS_URL}
    for name, (section, key) in {
        "api_key": ("opik", "api_key_env"),
        "url": ("opik", "endpoint_env"),
        "redis": ("cache", "redis_url_env"),
    }.items():
        part = data.get(section)
        value = part.get(key) if isinstance(part, Mapping) else None
        if isinstance(value, str) and re.fullmatch(_ENV_NAME, value):
            names[name] = value  # an invalid name is reported by validation
    return names


def _env_overrides(
    env: Mapping[str, str], names: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    names = names or _env_names({})
    env_api_key, env_url, env_redis = names["api_key"], names["url"], names["redis"]

    def put(section: str, key: str, value: Any) -> None:
        out.setdefault(section, {})[key] = value

    if env.get(env_api_key):
        put("opik", "api_key", env[env_api_key])
    if env.get(env_url):
        put("opik", "url_override", env[env_url])
    if env.get(ENV_OPIK_WORKSPACE):
        put("opik", "workspace", env[ENV_OPIK_WORKSPACE])
    if env.get(ENV_OPIK_PROJECT):
        put("opik", "project_name", env[ENV_OPIK_PROJECT])
    if env.get(ENV_ENVIRONMENT):
        put("sampling", "environment", env[ENV_ENVIRONMENT])
    try:
        otlp = otlp_env_overrides(env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for key, value in otlp.items():
        put("otlp", key, value)
    if env.get(env_redis):
        put("cache", "backend", "redis")
        put("cache", "redis_url", env[env_redis])
    if bool(env.get(ENV_SUPABASE_URL)) != bool(env.get(ENV_SUPABASE_KEY)):
        present, missing = (
            (ENV_SUPABASE_URL, ENV_SUPABASE_KEY)
            if env.get(ENV_SUPABASE_URL)
            else (ENV_SUPABASE_KEY, ENV_SUPABASE_URL)
        )
        raise ConfigError(
            f"{present} is set but {missing} is not: the Supabase backend needs both "
            "(the project URL and its service-role key); set both or neither"
        )
    if env.get(ENV_SUPABASE_URL) and env.get(ENV_SUPABASE_KEY):
        put("storage", "backend", "supabase")
        put("storage", "url", None)  # the environment chose the store: the file's DSN is moot
        put("storage", "supabase_url", env[ENV_SUPABASE_URL])
        put("storage", "supabase_key", env[ENV_SUPABASE_KEY])
    url = env.get(ENV_DATABASE_URL)
    if url:
        if url == "sqlite:///":
            raise ConfigError(
                f"{ENV_DATABASE_URL}: {url!r} has no file path; accepted: "
                "sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        if url.startswith("sqlite:///"):
            put("storage", "backend", "sqlite")
            put("storage", "url", None)
            put("storage", "sqlite_path", url.removeprefix("sqlite:///"))
        elif url.startswith(("postgresql://", "postgres://")):
            if problem := postgres_url_problem(url):
                raise ConfigError(f"{ENV_DATABASE_URL}: {problem}")
            put("storage", "backend", "postgres")
            put("storage", "url", url)
        else:
            raise ConfigError(
                f"{ENV_DATABASE_URL}: unsupported URL scheme in {mask_credentials(url)!r}; "
                "accepted: sqlite:///path or postgresql://user@host/db"
            )
    return out


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    """What went wrong and where, without the snippet of the line (it may hold a secret)."""
    parts = []
    for text_attr, mark_attr in (("context", "context_mark"), ("problem", "problem_mark")):
        text, mark = getattr(exc, text_attr, None), getattr(exc, mark_attr, None)
        if text:
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            parts.append(f"{text}{where}")
    return ": ".join(parts) or type(exc).__name__


def _read_text(path: Path) -> str:
    """The file as UTF-8 text, or a ConfigError saying why not (no traceback)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _accepted_keys(loc: tuple[Any, ...]) -> str:
    """The keys accepted next to the unknown key at `loc`."""
    model: type[BaseModel] = ObservabilityConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return "see config/observability.yaml"
        model = annotation
    return ", ".join(model.model_fields)


def _as_written(key: str, origins: Mapping[str, str]) -> str:
    """`key` (ours, dotted) as the file spelt it: E2I's or the seed's name where it used one."""
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        written = origins.get(".".join(parts[:n]))
        if written is not None:
            return ".".join([written, *parts[n:]])
    return key


def _format_error(
    err: ValidationError, source: str, origins: Mapping[str, str] | None = None
) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = _as_written(".".join(str(p) for p in e["loc"]), origins or {}) or "<root>"
        if e["type"] == "extra_forbidden":
            # The value of an unknown key is never shown: it may be a misnamed secret or DSN.
            accepted = _accepted_keys(e["loc"])
            guess = nearest(str(e["loc"][-1]), accepted.split(", "))
            hint = f" (did you mean {guess!r}?)" if guess else ""
            lines.append(f"  {key}: unknown key{hint}; accepted: {accepted}")
            continue
        value = e.get("input")
        if any(s in key for s in ("key", "url", "password")):
            shown = "**********"
        else:  # a DSN given where a section was expected must not show its password
            shown = mask_credentials(repr(value))
        lines.append(f"  {key} = {shown}: {e['msg']}")
    return "\n".join(lines)


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ObservabilityConfig:
    """Load the YAML file, apply environment overrides, validate.

    `path` defaults to `$E2I_OBS_CONFIG`, then `config/observability.yaml` of this checkout
    or, installed from a wheel, the copy shipped in the package (`resources.config_file`);
    a missing default file means built-in defaults, a missing explicit file is an error.
    """
    env = os.environ if env is None else env
    explicit = path if path is not None else env.get(ENV_CONFIG_PATH)
    file_path = Path(explicit) if explicit else config_file()
    data: dict[str, Any] = {}
    if file_path.is_dir():
        raise ConfigError(f"configuration file {file_path} is a directory; give a YAML file")
    if file_path.is_file():
        try:
            loaded = yaml.safe_load(_read_text(file_path))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file_path}: not valid YAML: {_describe_yaml_error(exc)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{file_path}: top level must be a mapping of sections, got {type(loaded).__name__}"
            )
        data = loaded
    elif explicit:
        raise ConfigError(f"configuration file {file_path} does not exist")
    normalized = normalize(data, _section_fields())
    if normalized.errors:
        lines = "\n".join(f"  {line}" for line in normalized.errors)
        raise ConfigError(f"invalid configuration in {file_path}:\n{lines}")
    if normalized.unused:
        logger.warning(
            "%s: keys not used by the observability connector (other parts of E2I): %s",
            file_path,
            ", ".join(normalized.unused),
        )
    data = normalized.data
    names = _env_names(_merge(data, overrides) if overrides else data)
    data = _merge(data, _env_overrides(env, names))
    if overrides:
        data = _merge(data, overrides)
    try:
        return ObservabilityConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, str(file_path), normalized.origins)) from None


def _section_fields() -> dict[str, list[str] | None]:
    """Our top-level keys -> field names of their section (None: a plain value)."""
    out: dict[str, list[str] | None] = {}
    for name, info in ObservabilityConfig.model_fields.items():
        annotation = info.annotation
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        out[name] = list(annotation.model_fields) if is_section else None  # type: ignore[union-attr]
    return out
