"""The orchestrator's health policy: settings validation and which agents get flagged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from src.agents.ml_foundation.observability_connector.models import LatencyStats, QualityMetrics
from src.reference_orchestrator.health import AgentAlert, OrchestratorSettings, check_health

END = datetime(2026, 1, 1, tzinfo=UTC)


def metrics(*stats: LatencyStats) -> QualityMetrics:
    return QualityMetrics.from_agent_stats("1h", END - timedelta(hours=1), END, list(stats))


def stats(name: str, p95: float | None, errors: int, count: int = 10) -> LatencyStats:
    return LatencyStats(
        agent_name=name,
        count=count,
        error_count=errors,
        error_rate=errors / count if count else 0.0,
        p95_ms=p95,
    )


def test_check_health__values_at_and_above_thresholds__only_strictly_above_flagged() -> None:
    settings = OrchestratorSettings(p95_threshold_ms=100.0, error_rate_threshold=0.2)
    window = metrics(
        stats("at_limits", 100.0, 2),
        stats("slow", 100.5, 0),
        stats("failing", 50.0, 3),
        stats("both", 250.0, 5),
        stats("no_latency", None, 0, count=0),
    )

    assert check_health(window, settings) == [
        AgentAlert("both", ("p95 250.0 ms > 100.0 ms", "error rate 50.0% > 20.0%"), 250.0, 0.5, 10),
        AgentAlert("failing", ("error rate 30.0% > 20.0%",), 50.0, 0.3, 10),
        AgentAlert("slow", ("p95 100.5 ms > 100.0 ms",), 100.5, 0.0, 10),
    ]


def test_check_health__no_metrics__no_alerts() -> None:
    assert check_health(None, OrchestratorSettings()) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"p95_threshold_ms": -1}, "p95_threshold_ms must be a number >= 0.0, got -1"),
        ({"p95_threshold_ms": float("nan")}, "p95_threshold_ms must be a number >= 0.0"),
        ({"error_rate_threshold": 1.5}, r"error_rate_threshold must be a number in \[0.0, 1.0\]"),
        ({"error_rate_threshold": True}, "error_rate_threshold must be a number"),
        ({"metrics_window": "yesterday"}, "metrics_window: invalid time window 'yesterday'"),
    ],
)
def test_orchestrator_settings__bad_value__value_error_naming_it(
    arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        OrchestratorSettings(**arguments)  # type: ignore[arg-type]
