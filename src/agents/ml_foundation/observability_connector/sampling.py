"""Deterministic per-trace sampling: every agent in a distributed trace makes the same choice.

The decision depends only on the trace id, like OpenTelemetry's `TraceIdRatioBased`: the low
56 bits of the trace id (the part W3C Trace Context level 2 requires to be random; all random in
a UUIDv7 too) are compared with `rate * 2**56`. So a trace is kept or dropped as a whole, in every
process, with no coordination. Error spans are kept regardless when `always_sample_errors` is set,
because a missing error is worse than a partial trace.
"""

from __future__ import annotations

from collections.abc import Iterable

from .config import SamplingSettings
from .models import TRACE_ID_RE, ObservabilitySpan

__all__ = ["PRODUCTION_ENVIRONMENT", "Sampler"]

PRODUCTION_ENVIRONMENT = "production"
_RANDOM_BITS = 56
_RANDOM_MASK = (1 << _RANDOM_BITS) - 1


class Sampler:
    """Keeps a `rate` fraction of traces; all error spans when configured."""

    def __init__(self, settings: SamplingSettings) -> None:
        self.environment = settings.environment
        production = settings.environment.strip().lower() == PRODUCTION_ENVIRONMENT
        self.rate: float = settings.production_rate if production else settings.default_rate
        """Fraction of traces kept: production_rate in production, default_rate elsewhere."""
        self.always_sample_errors = settings.always_sample_errors
        self._bound = round(self.rate * (1 << _RANDOM_BITS))

    def __repr__(self) -> str:
        return (
            f"Sampler(environment={self.environment!r}, rate={self.rate!r}, "
            f"always_sample_errors={self.always_sample_errors!r})"
        )

    def should_keep_trace(self, trace_id: str) -> bool:
        """The ratio decision for a 32-hex trace id (ValueError for anything else)."""
        if not isinstance(trace_id, str) or not TRACE_ID_RE.fullmatch(trace_id):
            raise ValueError(f"trace_id must be 32 lowercase hex characters, got {trace_id!r}")
        return (int(trace_id, 16) & _RANDOM_MASK) < self._bound

    def should_keep(self, span: ObservabilitySpan) -> bool:
        """Keep the span? Same answer for every span of a trace, except errors (always kept)."""
        if self.always_sample_errors and span.is_error:
            return True
        return self.should_keep_trace(span.trace_id)

    def filter(self, spans: Iterable[ObservabilitySpan]) -> list[ObservabilitySpan]:
        """The spans to keep, in order."""
        return [span for span in spans if self.should_keep(span)]
