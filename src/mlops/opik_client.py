"""The Opik REST client and how its failures map onto sink errors and the circuit breaker.

Why the low-level `opik.rest_api.OpikApi` and not `opik.Opik()`: the high-level client queues in
the background, never raises, drops batches after three 5xx and parks data in a temporary file
deleted at exit. `OpikApi` sends one request and raises at once (`ApiError` with a status, or an
`httpx` error), which is what the breaker, the batch processor's retries and the spool need.

`call_opik` classifies (see `sinks.py`):
- breaker open -> `SinkUnavailableError` (spool at once, no request made);
- transport error / timeout / 408 / 429 / 5xx -> breaker failure + `RetryableSinkError`
  (with `retry_after` from a numeric `Retry-After` header);
- any other 4xx -> `OpikRejectedError` (a `PermanentSinkError` carrying status and body); the
  server answered, so for the breaker it is a success.

The SDK must never phone home: `import_rest_api` defaults `OPIK_SENTRY_ENABLE=false` and
`OPIK_ANALYTICS_ENABLE=false` (an explicit environment value wins) before `opik` is imported.
The API key is sent as `Authorization: <key>` (no `Bearer`) and never logged.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from src.agents.ml_foundation.observability_connector.config import OpikSettings
from src.agents.ml_foundation.observability_connector.sinks import (
    PermanentSinkError,
    RetryableSinkError,
    SinkUnavailableError,
)

from .circuit_breaker import CircuitBreaker

if TYPE_CHECKING:
    from opik.rest_api import OpikApi

__all__ = [
    "OPIK_CLOUD_URL",
    "OpikRejectedError",
    "build_opik_client",
    "call_opik",
    "import_rest_api",
]

logger = logging.getLogger(__name__)

OPIK_CLOUD_URL = "https://www.comet.com/opik/api"
ENV_OPIK_SENTRY_ENABLE = "OPIK_SENTRY_ENABLE"
ENV_OPIK_ANALYTICS_ENABLE = "OPIK_ANALYTICS_ENABLE"
RETRYABLE_STATUSES = frozenset({408, 429})
MAX_RETRY_AFTER_SECONDS = 60.0


def import_rest_api() -> Any:
    """Import `opik.rest_api` with the SDK's error reporting and analytics switched off."""
    os.environ.setdefault(ENV_OPIK_SENTRY_ENABLE, "false")
    os.environ.setdefault(ENV_OPIK_ANALYTICS_ENABLE, "false")
    import opik.rest_api

    return opik.rest_api


def build_opik_client(settings: OpikSettings) -> OpikApi:
    """A synchronous `OpikApi` for `settings`: base URL, auth and workspace headers, timeout.

    Base URL: the local Opik's when `use_local`, else `url_override` (e.g.
    http://localhost:5173/api), else Opik Cloud (`OpikSettings.effective_url`).
    """
    rest_api = import_rest_api()
    url = settings.effective_url
    base_url = (url or OPIK_CLOUD_URL).rstrip("/")
    api_key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    if url is None and not api_key:
        logger.warning(
            "Opik Cloud (%s) is configured without an API key: it will refuse every batch; "
            "set OPIK_API_KEY, or opik.url_override for a self-hosted Opik",
            OPIK_CLOUD_URL,
        )
    http = httpx.Client(timeout=settings.timeout_seconds, follow_redirects=True)
    return rest_api.OpikApi(
        base_url=base_url,
        api_key=api_key or None,
        workspace_name=settings.workspace or None,
        timeout=settings.timeout_seconds,
        httpx_client=http,
    )


def close_opik_client(client: Any) -> None:
    """Close the client's HTTP connection pool (OpikApi has no close of its own)."""
    wrapper = getattr(getattr(client, "_client_wrapper", None), "httpx_client", None)
    inner = getattr(wrapper, "httpx_client", None)
    if isinstance(inner, httpx.Client):
        inner.close()


CONFIGURATION_STATUSES = frozenset({401, 403, 404})
"""Answers that mean our key, workspace or URL is wrong, not the payload: the batch is spooled
(not rejected) so fixing the configuration loses nothing."""


class OpikRejectedError(PermanentSinkError):
    """Opik refused the payload (a 4xx other than 408/429); `body` is the server's answer."""

    def __init__(self, message: str, status_code: int, body: Any) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


def _body_text(body: Any, limit: int = 2000) -> str:
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    return text[:limit]


def _retry_after(headers: Any) -> float | None:
    """Seconds from a numeric `Retry-After` header (capped at 60), else None."""
    if not isinstance(headers, dict):
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_SECONDS)


def call_opik(
    breaker: CircuitBreaker, sink_name: str, what: str, fn: Callable[..., Any], **kwargs: Any
) -> None:
    """One REST call through the breaker, its failure turned into the right sink error."""
    if not breaker.allow():
        raise SinkUnavailableError(f"{sink_name}: circuit breaker open, {what} not sent")
    api_error = import_rest_api().core.ApiError
    try:
        fn(**kwargs)
    except httpx.RequestError as exc:  # connect refused, DNS, timeouts, broken responses
        breaker.record_failure()
        raise RetryableSinkError(
            f"{sink_name}: {what} failed: {type(exc).__name__}: {exc}"
        ) from exc
    except api_error as exc:
        status, body = getattr(exc, "status_code", None), getattr(exc, "body", None)
        if status is None or status >= 500 or status in RETRYABLE_STATUSES:
            breaker.record_failure()
            error = RetryableSinkError(
                f"{sink_name}: Opik answered HTTP {status} to the {what}: {_body_text(body)}"
            )
            error.retry_after = _retry_after(getattr(exc, "headers", None))  # type: ignore[attr-defined]
            raise error from exc
        breaker.record_success()  # reachable; the payload or our configuration was refused
        if status in CONFIGURATION_STATUSES:
            raise SinkUnavailableError(
                f"{sink_name}: Opik answered HTTP {status} to the {what}: check OPIK_API_KEY, "
                f"OPIK_WORKSPACE and OPIK_URL_OVERRIDE; spans are spooled until it is fixed: "
                f"{_body_text(body)}"
            ) from exc
        raise OpikRejectedError(
            f"{sink_name}: Opik rejected the {what} with HTTP {status}: {_body_text(body)}",
            status,
            body,
        ) from exc
    breaker.record_success()
