"""The `otlp:` config section and the OpenTelemetry environment variables that feed it.

Why a module of its own: OpenTelemetry's SDKs define these variables (names, formats, units),
and users expect them to behave here as they do there. Setting an endpoint variable turns the
sink on, as in the SDKs; `otlp.enabled: false` in the file turns it off whatever the
environment says. Headers usually carry an API key: they are secrets (masked everywhere).

- `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the full URL spans are POSTed to, used as given.
- `OTEL_EXPORTER_OTLP_ENDPOINT`: a base URL; `/v1/traces` is appended (the SDKs' rule).
- `OTEL_EXPORTER_OTLP_HEADERS` (and `..._TRACES_HEADERS`): `k1=v1,k2=v2`, values URL-decoded.
- `OTEL_EXPORTER_OTLP_TIMEOUT` (and `..._TRACES_TIMEOUT`): milliseconds, as in the SDKs.
- `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` (`k=v,...`): the resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator

from .config_section import Section

ENV_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENV_OTLP_HEADERS = "OTEL_EXPORTER_OTLP_HEADERS"
ENV_OTLP_TRACES_HEADERS = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
ENV_OTLP_TIMEOUT = "OTEL_EXPORTER_OTLP_TIMEOUT"
ENV_OTLP_TRACES_TIMEOUT = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"
ENV_SERVICE_NAME = "OTEL_SERVICE_NAME"
ENV_RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"
ENV_SEMCONV_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"

TRACES_PATH = "/v1/traces"
DEFAULT_SERVICE_NAME = "e2i-causal-analytics"


class OtlpSettings(Section):
    """Export spans over OTLP/HTTP (protobuf, gzip) to any OpenTelemetry backend."""

    enabled: bool | None = None
    """None: on exactly when an endpoint is configured; False: off whatever the environment."""
    endpoint: str | None = None
    """Full URL of the traces endpoint, e.g. `http://collector:4318/v1/traces`."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Sent with every request (API keys): secrets, never printed."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    compression: str = Field(default="gzip", pattern=r"^(gzip|none)$")
    service_name: str = Field(default=DEFAULT_SERVICE_NAME, min_length=1)
    resource_attributes: dict[str, str] = Field(default_factory=dict)
    """Extra resource attributes (`deployment.environment.name`, ...)."""
    join_otel_trace: bool = True
    """A new root span joins the OpenTelemetry span current at that moment, if any."""
    semconv_opt_in: str | None = None
    """As `OTEL_SEMCONV_STABILITY_OPT_IN`: `gen_ai_latest_experimental` emits only the latest
    GenAI attribute names; otherwise the older `gen_ai.system` is sent beside them."""

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be an http:// or https:// URL of the OTLP/HTTP traces endpoint, "
                "e.g. http://localhost:4318/v1/traces"
            )
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError("has an invalid port") from None
        return v

    @property
    def active(self) -> bool:
        return bool(self.endpoint) if self.enabled is None else self.enabled and bool(self.endpoint)

    def header_values(self) -> dict[str, str]:
        return {k: v.get_secret_value() for k, v in self.headers.items()}

    @property
    def latest_semconv_only(self) -> bool:
        return "gen_ai_latest_experimental" in _csv(self.semconv_opt_in or "")


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_key_values(text: str, variable: str) -> dict[str, str]:
    """`k1=v1,k2=v2` with URL-encoded values (the W3C Baggage-like format the SDKs read)."""
    out: dict[str, str] = {}
    for item in _csv(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"{variable}: {key.strip() or item!r} is not a key=value pair; "
                "accepted: key1=value1,key2=value2 (values URL-encoded)"
            )
        out[unquote(key.strip())] = unquote(value.strip())
    return out


def _timeout_seconds(text: str, variable: str) -> float:
    try:
        millis = float(text)
    except ValueError:
        millis = -1.0
    if not millis > 0:
        raise ValueError(f"{variable}: {text!r} is not a positive number of milliseconds")
    return millis / 1000.0


def otlp_env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """The `otlp` keys the OpenTelemetry variables set (ValueError naming a bad one)."""
    out: dict[str, Any] = {}
    if env.get(ENV_OTLP_TRACES_ENDPOINT):
        out["endpoint"] = env[ENV_OTLP_TRACES_ENDPOINT].strip()
    elif env.get(ENV_OTLP_ENDPOINT):
        out["endpoint"] = env[ENV_OTLP_ENDPOINT].strip().rstrip("/") + TRACES_PATH
    headers: dict[str, str] = {}
    for variable in (ENV_OTLP_HEADERS, ENV_OTLP_TRACES_HEADERS):  # the specific one wins
        if env.get(variable):
            headers.update(parse_key_values(env[variable], variable))
    if headers:
        out["headers"] = headers
    for variable in (ENV_OTLP_TRACES_TIMEOUT, ENV_OTLP_TIMEOUT):
        if env.get(variable):
            out["timeout_seconds"] = _timeout_seconds(env[variable], variable)
            break
    if env.get(ENV_SERVICE_NAME):
        out["service_name"] = env[ENV_SERVICE_NAME].strip()
    if env.get(ENV_RESOURCE_ATTRIBUTES):
        out["resource_attributes"] = parse_key_values(
            env[ENV_RESOURCE_ATTRIBUTES], ENV_RESOURCE_ATTRIBUTES
        )
    if env.get(ENV_SEMCONV_OPT_IN):
        out["semconv_opt_in"] = env[ENV_SEMCONV_OPT_IN]
    return out
