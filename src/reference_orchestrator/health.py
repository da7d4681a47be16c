"""The orchestrator's health policy: which agents are too slow or fail too often.

The orchestrator asks the observability graph for window metrics after every request; this
module turns them into alerts. An agent "crosses" a threshold when its value is strictly above
it, so a threshold of 0 flags any agent with a non-zero value.
"""

from __future__ import annotations

from dataclasses import dataclass

from src.agents.ml_foundation.observability_connector.models import QualityMetrics
from src.agents.ml_foundation.observability_connector.time_window import parse_time_window

__all__ = ["AgentAlert", "OrchestratorSettings", "check_health"]


def _number(value: object, name: str, low: float, high: float | None = None) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or value != value or value < low or (high is not None and value > high):
        accepted = f"a number >= {low}" if high is None else f"a number in [{low}, {high}]"
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestratorSettings:
    """What the orchestrator's health_check step considers unhealthy."""

    p95_threshold_ms: float = 2000.0
    """Flag an agent whose p95 span duration over the window is above this (milliseconds)."""
    error_rate_threshold: float = 0.1
    """Flag an agent whose share of error spans over the window is above this (0..1)."""
    metrics_window: str = "1h"
    """Window the metrics are queried over: `<n>m`, `<n>h` or `<n>d`."""

    def __post_init__(self) -> None:
        _number(self.p95_threshold_ms, "p95_threshold_ms", 0.0)
        _number(self.error_rate_threshold, "error_rate_threshold", 0.0, 1.0)
        try:
            parse_time_window(self.metrics_window)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"metrics_window: {exc}") from None


@dataclass(frozen=True, slots=True)
class AgentAlert:
    """One agent over a threshold, with the values that put it there."""

    agent_name: str
    reasons: tuple[str, ...]
    """Human-readable, e.g. 'p95 2350.0 ms > 2000.0 ms', 'error rate 12.5% > 10.0%'."""
    p95_ms: float | None
    error_rate: float
    count: int


def check_health(
    metrics: QualityMetrics | None, settings: OrchestratorSettings
) -> list[AgentAlert]:
    """Alerts for every agent in `metrics` crossing a threshold, sorted by agent name."""
    if metrics is None:
        return []
    alerts: list[AgentAlert] = []
    for name in sorted(metrics.agents):
        stats = metrics.agents[name]
        reasons: list[str] = []
        if stats.p95_ms is not None and stats.p95_ms > settings.p95_threshold_ms:
            reasons.append(f"p95 {stats.p95_ms:.1f} ms > {settings.p95_threshold_ms:.1f} ms")
        if stats.error_rate > settings.error_rate_threshold:
            reasons.append(
                f"error rate {stats.error_rate:.1%} > {settings.error_rate_threshold:.1%}"
            )
        if reasons:
            alerts.append(
                AgentAlert(name, tuple(reasons), stats.p95_ms, stats.error_rate, stats.count)
            )
    return alerts
