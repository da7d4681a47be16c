"""`OpikConfig`: E2I's flat view of the connector's settings, and the way back into them.

E2I's modules read `opik.config.project_name`, `.enabled`, `.sample_rate`, build
`OpikConfig.from_env()` and pass `OpikConfig(...)` to `get_opik_connector(config=...)`. The
connector itself runs on `ObservabilityConfig` (config/observability.yaml + environment). This
module converts both ways, so there is one configuration, not two:

- `OpikConfig.from_observability(config)`: the view a connector exposes as `connector.config`.
  The full configuration's sections stay readable through it (`connector.config.batching`...).
- `resolve_config(config, circuit_breaker_config)`: what a connector is built from. An
  `OpikConfig` overrides the `opik` and `sampling` sections of the file + environment (its
  `sample_rate` is the rate in every environment); `circuit_breaker_config` (our
  `CircuitBreakerSettings`, a mapping, or E2I's `CircuitBreakerConfig`-like object) replaces
  the `circuit_breaker` section field by field.

`enabled` is Opik's switch: with it off the connector still records every span in the
database (the seed's graceful degradation); only the Opik sink is left out.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from src.agents.ml_foundation.observability_connector.config import (
    ENV_OPIK_API_KEY,
    ENV_OPIK_PROJECT,
    ENV_OPIK_URL,
    ENV_OPIK_WORKSPACE,
    CircuitBreakerSettings,
    ConfigError,
    ObservabilityConfig,
    OpikSettings,
    SamplingSettings,
    load_config,
)
from src.agents.ml_foundation.observability_connector.redaction import mask_credentials
from src.agents.ml_foundation.observability_connector.sampling import Sampler

__all__ = [
    "ENV_OPIK_ALWAYS_SAMPLE_ERRORS",
    "ENV_OPIK_ENABLED",
    "ENV_OPIK_ENDPOINT",
    "ENV_OPIK_SAMPLE_RATE",
    "ENV_OPIK_USE_LOCAL",
    "OpikConfig",
    "resolve_config",
]

ENV_OPIK_ENABLED = "OPIK_ENABLED"
"""`true`/`false`: send spans to Opik (the database gets them either way)."""
ENV_OPIK_SAMPLE_RATE = "OPIK_SAMPLE_RATE"
"""Fraction of traces kept, 0..1."""
ENV_OPIK_ALWAYS_SAMPLE_ERRORS = "OPIK_ALWAYS_SAMPLE_ERRORS"
ENV_OPIK_USE_LOCAL = "OPIK_USE_LOCAL"
"""`true`: a self-hosted Opik (`opik.use_local`), at the URL given or `opik.local_endpoint`."""
ENV_OPIK_ENDPOINT = "OPIK_ENDPOINT"
"""E2I's name for the Opik URL; `OPIK_URL_OVERRIDE` (the SDK's) wins when both are set."""

_MASK = "**********"
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise ConfigError(f"{name}={raw!r} is not a boolean; accepted: {', '.join(_TRUE + _FALSE)}")


def _env_rate(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; accepted: 0.0 to 1.0") from None


@dataclass
class OpikConfig:
    """E2I's Opik settings (see the module docstring). `api_key` never shows in `repr()`, nor
    a password inside `url`."""

    api_key: SecretStr | str | None = None
    workspace: str | None = None
    project_name: str = "e2i-causal-analytics"
    url: str | None = None
    use_local: bool = False
    enabled: bool = True
    sample_rate: float = 1.0
    always_sample_errors: bool = True
    source: ObservabilityConfig | None = field(default=None, repr=False, compare=False)
    """The full configuration this view was read from, when there is one."""

    def __post_init__(self) -> None:
        if isinstance(self.api_key, str):
            self.api_key = SecretStr(self.api_key)
        if not isinstance(self.project_name, str) or not self.project_name.strip():
            raise ConfigError(
                f"OpikConfig.project_name must be a non-empty string, got {self.project_name!r}"
            )
        rate = self.sample_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
            raise ConfigError(f"OpikConfig.sample_rate must be a number in 0..1, got {rate!r}")
        for name in ("use_local", "enabled", "always_sample_errors"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"OpikConfig.{name} must be True or False, got {getattr(self, name)!r}"
                )

    def __repr__(self) -> str:
        key = None if self.api_key is None else _MASK
        url = None if self.url is None else mask_credentials(self.url)  # user:password@
        return (
            f"OpikConfig(api_key={key!r}, workspace={self.workspace!r}, "
            f"project_name={self.project_name!r}, url={url!r}, use_local={self.use_local!r}, "
            f"enabled={self.enabled!r}, sample_rate={self.sample_rate!r}, "
            f"always_sample_errors={self.always_sample_errors!r})"
        )

    def __getattr__(self, name: str) -> Any:
        """Sections of the full configuration (`batching`, `storage`...) read through the view."""
        if name.startswith("_") or name == "source":
            raise AttributeError(name)
        source = self.__dict__.get("source")
        if source is not None and name in type(source).model_fields:
            return getattr(source, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OpikConfig:
        """From `OPIK_*` environment variables (a bad value is a ConfigError naming it)."""
        env = os.environ if env is None else env
        return cls(
            api_key=env.get(ENV_OPIK_API_KEY) or None,
            workspace=env.get(ENV_OPIK_WORKSPACE) or None,
            project_name=env.get(ENV_OPIK_PROJECT) or "e2i-causal-analytics",
            url=env.get(ENV_OPIK_URL) or env.get(ENV_OPIK_ENDPOINT) or None,
            use_local=_env_bool(env, ENV_OPIK_USE_LOCAL, False),
            enabled=_env_bool(env, ENV_OPIK_ENABLED, True),
            sample_rate=_env_rate(env, ENV_OPIK_SAMPLE_RATE, 1.0),
            always_sample_errors=_env_bool(env, ENV_OPIK_ALWAYS_SAMPLE_ERRORS, True),
        )

    @classmethod
    def from_observability(cls, config: ObservabilityConfig) -> OpikConfig:
        """The view of a full configuration; `sample_rate` is the rate in force (by environment)."""
        opik = config.opik
        return cls(
            api_key=opik.api_key,
            workspace=opik.workspace,
            project_name=opik.project_name,
            url=opik.effective_url,
            use_local=opik.use_local,
            enabled=opik.enabled,
            sample_rate=Sampler(config.sampling).rate,
            always_sample_errors=config.sampling.always_sample_errors,
            source=config,
        )

    def opik_overrides(self) -> dict[str, Any]:
        """This view as `opik` section values (None fields are left to the file/environment).
        With `use_local`, `url` is the self-hosted Opik's address (`local_endpoint`)."""
        values: dict[str, Any] = {
            "enabled": self.enabled,
            "project_name": self.project_name,
            "use_local": self.use_local,
        }
        if self.url:
            values["local_endpoint" if self.use_local else "url_override"] = self.url
        if self.workspace:
            values["workspace"] = self.workspace
        if self.api_key is not None:
            values["api_key"] = self.api_key
        return values

    def sampling_overrides(self) -> dict[str, Any]:
        rate = float(self.sample_rate)
        return {
            "default_rate": rate,
            "production_rate": rate,
            "always_sample_errors": self.always_sample_errors,
        }


def _breaker_settings(base: CircuitBreakerSettings, given: Any) -> CircuitBreakerSettings:
    if isinstance(given, CircuitBreakerSettings):
        return given
    names = CircuitBreakerSettings.model_fields
    if isinstance(given, Mapping):
        values = {k: v for k, v in given.items() if k in names}
    else:
        values = {n: getattr(given, n) for n in names if getattr(given, n, None) is not None}
    return CircuitBreakerSettings.model_validate({**dict(base), **values})


def resolve_config(config: Any = None, circuit_breaker_config: Any = None) -> ObservabilityConfig:
    """The `ObservabilityConfig` a connector is built from (see the module docstring).

    `config`: None (file + environment), an `ObservabilityConfig` (as is) or an `OpikConfig`.
    """
    if config is None:
        resolved = load_config()
    elif isinstance(config, ObservabilityConfig):
        resolved = config
    elif isinstance(config, OpikConfig):
        base = config.source if config.source is not None else load_config()
        # dict(section), not model_dump(): a dump masks URL credentials (it is for showing)
        opik = OpikSettings.model_validate({**dict(base.opik), **config.opik_overrides()})
        sampling = SamplingSettings.model_validate(
            {**dict(base.sampling), **config.sampling_overrides()}
        )
        resolved = base.model_copy(update={"opik": opik, "sampling": sampling})
    else:
        raise TypeError(
            f"config must be an OpikConfig, an ObservabilityConfig or None, "
            f"got {type(config).__name__}"
        )
    if circuit_breaker_config is not None:
        breaker = _breaker_settings(resolved.circuit_breaker, circuit_breaker_config)
        resolved = resolved.model_copy(update={"circuit_breaker": breaker})
    return resolved
