"""Deterministic per-trace sampling: every agent in a distributed trace makes the same choice.

The decision depends only on the trace id, like OpenTelemetry's `TraceIdRatioBased`: the low
56 bits of the trace id (the part W3C Trace Context level 2 requires to be random; all random in
a UUIDv7 too) are compared with `rate * 2**56`. So a trace is kept or dropped as a whole, in every
process, with no coordination. Error spans are kept regardless when `always_sample_errors` is set,
because a missing error is worse than a partial trace.

Per-agent rates (E2I's `always_sample_agents`, kept at 1.0, and `agent_overrides`) replace the
environment's rate for that agent's spans, with the same trace-id test: a trace is kept for an
agent whose rate is r exactly when it would be kept at rate r anywhere, so every process agrees,
and a trace kept for a low-rate agent is kept for every higher-rate agent too. A trace crossing
agents of different rates may thus be stored partially (the higher-rate agents' spans).
`environment_aware: false` uses `default_rate` in every environment.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .config import SamplingSettings
from .models import TRACE_ID_RE, ObservabilitySpan

__all__ = ["PRODUCTION_ENVIRONMENT", "Sampler", "check_sample_rate", "ratio_bound", "trace_sampled"]

PRODUCTION_ENVIRONMENT = "production"
_RANDOM_BITS = 56
_RANDOM_MASK = (1 << _RANDOM_BITS) - 1


def check_sample_rate(rate: float, field: str = "sample_rate") -> float:
    """`rate` as a float in 0.0-1.0; anything else (a bool, NaN, 1.5, "0.1") is a ValueError."""
    number = isinstance(rate, int | float) and not isinstance(rate, bool)
    if not number or not math.isfinite(rate) or not 0.0 <= rate <= 1.0:
        raise ValueError(f"{field} must be a number from 0.0 to 1.0, got {rate!r}")
    return float(rate)


def ratio_bound(rate: float) -> int:
    """The threshold a trace id's low 56 bits are compared with to keep a `rate` of traces."""
    return round(rate * (1 << _RANDOM_BITS))


def _below(trace_id: str, bound: int) -> bool:
    if not isinstance(trace_id, str) or not TRACE_ID_RE.fullmatch(trace_id):
        raise ValueError(f"trace_id must be 32 lowercase hex characters, got {trace_id!r}")
    return (int(trace_id, 16) & _RANDOM_MASK) < bound


def trace_sampled(trace_id: str, rate: float) -> bool:
    """The same keep/drop decision `Sampler` makes for this trace at this rate, so a context
    created with `sample_rate` agrees with every process sampling that trace at that rate."""
    return _below(trace_id, ratio_bound(check_sample_rate(rate)))


class Sampler:
    """Keeps a `rate` fraction of traces; all error spans when configured."""

    def __init__(self, settings: SamplingSettings) -> None:
        self.environment = settings.environment
        production = settings.environment.strip().lower() == PRODUCTION_ENVIRONMENT
        if not settings.environment_aware:
            production = False
        self.rate: float = settings.production_rate if production else settings.default_rate
        """Fraction of traces kept: production_rate in production, default_rate elsewhere."""
        self.always_sample_errors = settings.always_sample_errors
        self.agent_rates: dict[str, float] = dict(settings.agent_overrides)
        """Agents with a rate of their own (always_sample_agents at 1.0 win over overrides)."""
        self.agent_rates.update(dict.fromkeys(settings.always_sample_agents, 1.0))
        self._bound = ratio_bound(self.rate)
        self._agent_bounds = {agent: ratio_bound(r) for agent, r in self.agent_rates.items()}

    def __repr__(self) -> str:
        return (
            f"Sampler(environment={self.environment!r}, rate={self.rate!r}, "
            f"always_sample_errors={self.always_sample_errors!r}, "
            f"agent_rates={self.agent_rates!r})"
        )

    def rate_for(self, agent_name: str) -> float:
        """The fraction of traces kept for this agent's spans."""
        return self.agent_rates.get(agent_name, self.rate)

    def should_keep_trace(self, trace_id: str, agent_name: str | None = None) -> bool:
        """The ratio decision for a 32-hex trace id (ValueError for anything else), at the
        rate of `agent_name` when given."""
        if agent_name is None:
            return _below(trace_id, self._bound)
        return _below(trace_id, self._agent_bounds.get(agent_name, self._bound))

    def should_keep(self, span: ObservabilitySpan) -> bool:
        """Keep the span? Same answer for every span of a trace and agent, except errors."""
        if self.always_sample_errors and span.is_error:
            return True
        return self.should_keep_trace(span.trace_id, getattr(span, "agent_name", None))

    def filter(self, spans: Iterable[ObservabilitySpan]) -> list[ObservabilitySpan]:
        """The spans to keep, in order."""
        return [span for span in spans if self.should_keep(span)]
