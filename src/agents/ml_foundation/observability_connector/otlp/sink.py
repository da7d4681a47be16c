"""The OTLP sink: batches -> one OTLP/HTTP protobuf request (gzip), behind a circuit breaker.

It plugs into the batch processor like the database and Opik sinks, so it gets the same
batching, spool, replay and poison isolation. Outcomes follow the OTLP/HTTP specification:
- 2xx: delivered; a `partial_success` naming rejected spans is logged and counted;
- transport error, timeout, 429, 502, 503, 504 (and other 5xx): retryable, breaker failure,
  `Retry-After` honoured;
- any other 4xx: the payload is refused (`PermanentSinkError`); the server answered, so the
  breaker counts a success. 401/403/404 mean our endpoint or headers are wrong: spooled
  (`SinkUnavailableError`) until the configuration is fixed.
Headers (API keys) are never logged; the endpoint is shown without its credentials.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from src.mlops.circuit_breaker import CircuitBreaker

from ..config_otlp import OtlpSettings
from ..models import ObservabilitySpan
from ..problems import ProblemCounter
from ..redaction import mask_credentials
from ..sinks import PermanentSinkError, RetryableSinkError, SinkUnavailableError
from .mapping import encode_request

__all__ = ["OtlpSink", "connector_version", "resource_attributes"]

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})
CONFIGURATION_STATUSES = frozenset({401, 403, 404})
MAX_RETRY_AFTER_SECONDS = 60.0
PROTOBUF = "application/x-protobuf"
DISTRIBUTION = "e2i-observability-connector"


def connector_version() -> str:
    """This package's version (service.version, the instrumentation scope's version)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # run from a plain checkout
        return "0+unknown"


def resource_attributes(settings: OtlpSettings, service_version: str) -> dict[str, Any]:
    """service.name / service.version, then `resource_attributes` (OTEL_RESOURCE_ATTRIBUTES);
    `service.name` from the settings wins, as OTEL_SERVICE_NAME does in the SDKs."""
    out: dict[str, Any] = {"service.version": service_version}
    out.update(settings.resource_attributes)
    out["service.name"] = settings.service_name
    out.setdefault("telemetry.sdk.language", "python")
    return out


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        seconds = float(headers.get("retry-after", ""))
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_SECONDS)


class OtlpSink:
    """Sink sending complete spans to an OTLP/HTTP traces endpoint; see the module doc."""

    decides_retries = True
    """Its circuit breaker decides when the endpoint is tried again (see `sink_lane`)."""

    def __init__(
        self,
        settings: OtlpSettings,
        breaker: CircuitBreaker,
        *,
        service_version: str = "",
        name: str = "otlp",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not settings.endpoint:
            raise ValueError("the OTLP sink needs otlp.endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT)")
        self.name = name
        self.breaker = breaker
        self._settings = settings
        self._endpoint = settings.endpoint
        self._shown_endpoint = mask_credentials(settings.endpoint)
        self._resource = resource_attributes(settings, service_version)
        self._scope_version = service_version
        self._headers = {**settings.header_values(), "Content-Type": PROTOBUF}
        if settings.compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"
        self._client = httpx.Client(timeout=settings.timeout_seconds, transport=transport)
        self._lock = threading.Lock()
        self._counts = {"spans_sent": 0, "spans_partially_rejected": 0, "requests": 0}
        self._partial = ProblemCounter("OTLP endpoint accepted a batch only in part", log=logger)

    def __repr__(self) -> str:
        return f"OtlpSink(name={self.name!r}, endpoint={self._shown_endpoint!r})"

    def write(self, batch: Sequence[ObservabilitySpan]) -> int:
        if not batch:
            return 0
        if not self.breaker.allow():
            raise SinkUnavailableError(f"{self.name}: circuit breaker open, batch not sent")
        request = encode_request(
            batch,
            self._resource,
            scope_version=self._scope_version,
            latest_only=self._settings.latest_semconv_only,
        )
        body = request.SerializeToString()
        if self._settings.compression == "gzip":
            body = gzip.compress(body, compresslevel=6)
        try:
            response = self._client.post(self._endpoint, content=body, headers=self._headers)
        except httpx.HTTPError as exc:  # refused, DNS, timeouts, broken responses
            self.breaker.record_failure()
            raise RetryableSinkError(
                f"{self.name}: POST {self._shown_endpoint} failed: {type(exc).__name__}: {exc}"
            ) from exc
        with self._lock:
            self._counts["requests"] += 1
        status = response.status_code
        if 200 <= status < 300:
            self.breaker.record_success()
            rejected = self._rejected_in(response)
            with self._lock:
                self._counts["spans_sent"] += len(batch) - rejected
                self._counts["spans_partially_rejected"] += rejected
            return len(batch) - rejected
        detail = response.text[:300]
        if status >= 500 or status in RETRYABLE_STATUSES:
            self.breaker.record_failure()
            error = RetryableSinkError(
                f"{self.name}: {self._shown_endpoint} answered HTTP {status}: {detail}"
            )
            error.retry_after = _retry_after(response.headers)  # type: ignore[attr-defined]
            raise error
        self.breaker.record_success()
        if status in CONFIGURATION_STATUSES:
            raise SinkUnavailableError(
                f"{self.name}: {self._shown_endpoint} answered HTTP {status}: check the endpoint "
                f"and OTEL_EXPORTER_OTLP_HEADERS; spans are spooled until it is fixed: {detail}"
            )
        raise PermanentSinkError(
            f"{self.name}: {self._shown_endpoint} refused the batch with HTTP {status}: {detail}"
        )

    def _rejected_in(self, response: httpx.Response) -> int:
        """Spans a 2xx `partial_success` names as rejected (logged, rate-limited)."""
        if not response.content or PROTOBUF not in response.headers.get("content-type", ""):
            return 0
        try:
            parsed = ExportTraceServiceResponse.FromString(response.content)
        except Exception:
            return 0
        rejected = parsed.partial_success.rejected_spans
        if rejected:
            self._partial.record(
                f"{rejected} span(s) rejected: {parsed.partial_success.error_message[:200]}"
            )
        return int(rejected)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {**self._counts, "breaker": self.breaker.stats()}

    def close(self) -> None:
        self._client.close()
