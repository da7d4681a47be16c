"""Configuration: `config/observability.yaml` plus environment overrides.

Precedence (highest first): explicit arguments to `load_config`, environment variables,
the YAML file, the defaults below. An invalid file or value fails at load with a message that
names the key, the value and what is accepted. Secrets are `SecretStr`: they never appear in
`repr()`, `str()` or logs, and `ObservabilityConfig.redacted()` is what gets printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from .time_window import parse_time_window

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

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[4] / "config" / "observability.yaml"


class ConfigError(ValueError):
    """The configuration file or an environment override is invalid."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpikSettings(_Section):
    enabled: bool = True
    """Send spans to Opik; False means database-only."""
    api_key: SecretStr | None = None
    """Opik Cloud API key (sent as `Authorization`); None for self-hosted."""
    url_override: str | None = None
    """Base URL of a self-hosted Opik, e.g. http://localhost:5173/api/."""
    workspace: str | None = None
    """Opik workspace (`Comet-Workspace` header)."""
    project_name: str = "e2i-causal-analytics"
    timeout_seconds: float = Field(default=10.0, gt=0)


class SamplingSettings(_Section):
    environment: str = "development"
    """`production` uses production_rate; anything else uses default_rate."""
    default_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    production_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    always_sample_errors: bool = True


class BatchingSettings(_Section):
    max_batch_size: int = Field(default=100, ge=1, le=100_000)
    max_batch_wait_seconds: float = Field(default=5.0, gt=0)
    max_queue_size: int = Field(default=10_000, ge=1)
    retry_max_attempts: int = Field(default=3, ge=1, le=20)
    retry_deadline_seconds: float = Field(default=30.0, gt=0)
    retry_base_delay_seconds: float = Field(default=0.5, gt=0)
    spool_max_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    shutdown_timeout_seconds: float = Field(default=10.0, ge=0)


class CircuitBreakerSettings(_Section):
    failure_threshold: int = Field(default=5, ge=1)
    reset_timeout_seconds: float = Field(default=30.0, gt=0)


class RetentionSettings(_Section):
    days: int = Field(default=90, ge=1)
    batch_size: int = Field(default=1000, ge=1)


class StorageSettings(_Section):
    backend: Literal["sqlite", "postgres", "supabase"] = "sqlite"
    url: SecretStr | None = None
    """PostgreSQL DSN (postgresql://...) for backend `postgres`; may hold a password."""
    sqlite_path: Path = Path(".e2i_obs/observability.db")
    spool_dir: Path = Path(".e2i_obs/spool")
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=5, ge=1)
    supabase_url: str | None = None
    supabase_key: SecretStr | None = None
    """Supabase service-role key; never logged."""
    supabase_authenticated_read: bool = False
    """Grant the `authenticated` role read-only access (row-level security policy)."""
    timeout_seconds: float = Field(default=10.0, gt=0)


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class CacheSettings(_Section):
    backend: Literal["memory", "redis"] = "memory"
    redis_url: SecretStr | None = None
    ttl_seconds: dict[str, float] = Field(default_factory=lambda: {"1h": 60.0, "24h": 300.0})
    """TTL per time window; windows not listed use default_ttl_seconds."""
    default_ttl_seconds: float = Field(default=60.0, ge=0)
    max_entries: int = Field(default=1024, ge=1)

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


class ObservabilityConfig(_Section):
    opik: OpikSettings = OpikSettings()
    sampling: SamplingSettings = SamplingSettings()
    batching: BatchingSettings = BatchingSettings()
    circuit_breaker: CircuitBreakerSettings = CircuitBreakerSettings()
    retention: RetentionSettings = RetentionSettings()
    storage: StorageSettings = StorageSettings()
    cache: CacheSettings = CacheSettings()
    capture: CaptureSettings = CaptureSettings()
    default_agent_tier: int | None = Field(default=None, ge=0, le=5)

    def redacted(self) -> dict[str, Any]:
        """A dict safe to print or log: every secret shows as '**********'."""
        return self.model_dump(mode="json")


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def put(section: str, key: str, value: Any) -> None:
        out.setdefault(section, {})[key] = value

    if env.get(ENV_OPIK_API_KEY):
        put("opik", "api_key", env[ENV_OPIK_API_KEY])
    if env.get(ENV_OPIK_URL):
        put("opik", "url_override", env[ENV_OPIK_URL])
    if env.get(ENV_OPIK_WORKSPACE):
        put("opik", "workspace", env[ENV_OPIK_WORKSPACE])
    if env.get(ENV_OPIK_PROJECT):
        put("opik", "project_name", env[ENV_OPIK_PROJECT])
    if env.get(ENV_ENVIRONMENT):
        put("sampling", "environment", env[ENV_ENVIRONMENT])
    if env.get(ENV_REDIS_URL):
        put("cache", "backend", "redis")
        put("cache", "redis_url", env[ENV_REDIS_URL])
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
            put("storage", "sqlite_path", url.removeprefix("sqlite:///"))
        elif url.startswith(("postgresql://", "postgres://")):
            try:
                _ = urlsplit(url).port  # ValueError for a port that is not a number in range
            except ValueError:
                raise ConfigError(
                    f"{ENV_DATABASE_URL}: invalid port in {_mask_url(url)!r}; "
                    "expected postgresql://user:password@host:5432/dbname"
                ) from None
            put("storage", "backend", "postgres")
            put("storage", "url", url)
        else:
            raise ConfigError(
                f"{ENV_DATABASE_URL}: unsupported URL scheme in {_mask_url(url)!r}; "
                "accepted: sqlite:///path or postgresql://user@host/db"
            )
    return out


_URL_USERINFO = re.compile(r"://[^/@\s'\"]*@")


def _mask_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]  # last '@': a password may hold a raw '@'
    return scheme + sep + rest


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    """What went wrong and where, without the snippet of the line (it may hold a secret)."""
    parts = []
    for text_attr, mark_attr in (("context", "context_mark"), ("problem", "problem_mark")):
        text, mark = getattr(exc, text_attr, None), getattr(exc, mark_attr, None)
        if text:
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            parts.append(f"{text}{where}")
    return ": ".join(parts) or type(exc).__name__


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


def _format_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            # The value of an unknown key is never shown: it may be a misnamed secret or DSN.
            lines.append(f"  {key}: unknown key; accepted: {_accepted_keys(e['loc'])}")
            continue
        value = e.get("input")
        if any(s in key for s in ("key", "url", "password")):
            shown = "**********"
        else:  # a DSN given where a section was expected must not show its password
            shown = _URL_USERINFO.sub("://***@", repr(value))
        lines.append(f"  {key} = {shown}: {e['msg']}")
    return "\n".join(lines)


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ObservabilityConfig:
    """Load the YAML file, apply environment overrides, validate.

    `path` defaults to `$E2I_OBS_CONFIG`, then `config/observability.yaml` of this checkout;
    a missing default file means built-in defaults, a missing explicit file is an error.
    """
    env = os.environ if env is None else env
    explicit = path if path is not None else env.get(ENV_CONFIG_PATH)
    file_path = Path(explicit) if explicit else DEFAULT_CONFIG_PATH
    data: dict[str, Any] = {}
    if file_path.is_file():
        try:
            loaded = yaml.safe_load(file_path.read_text(encoding="utf-8"))
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
    data = _merge(data, _env_overrides(env))
    if overrides:
        data = _merge(data, overrides)
    try:
        return ObservabilityConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, str(file_path))) from None
