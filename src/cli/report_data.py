"""The numbers behind the HTML report, computed from spans and window metrics (no I/O).

Latency over time: the part of the window that has spans is cut into equal buckets and each
agent's p50/p95/p99 is computed per bucket by linear interpolation between closest ranks
(PostgreSQL's `percentile_cont`, `statistics.quantiles(method="inclusive")`), the definition
the stores use for their window percentiles, so a one-bucket report agrees with
`e2i-obs metrics`.
Per-agent error rates, token and cost totals come from the store's own window statistics
(`QualityMetrics`); tokens by model, cost over time and the slowest traces (with their spans,
for the waterfall) from the spans themselves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    QualityMetrics,
    SpanKind,
)

from .traces import TraceSummary, summarize_traces

__all__ = [
    "BucketStats",
    "CostBucket",
    "ErrorGroup",
    "ModelTokens",
    "ReportData",
    "build_report_data",
    "percentile",
]

UNKNOWN_MODEL = "(model not recorded)"
MIN_AXIS = timedelta(seconds=1)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks; `sorted_values` ascending, not empty."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within 0..1, got {fraction!r}")
    position = fraction * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    weight = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * weight


@dataclass(frozen=True, slots=True)
class BucketStats:
    """One agent in one time bucket (percentiles None when no finished span fell in it)."""

    start: datetime
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True, slots=True)
class ModelTokens:
    model: str
    llm_calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    """Error spans of one agent with one error type."""

    agent_name: str
    error_type: str
    count: int
    last_seen: datetime
    last_message: str | None


@dataclass(frozen=True, slots=True)
class CostBucket:
    """LLM cost in one time bucket, in total and per model (priced calls only)."""

    start: datetime
    cost_usd: float
    by_model: dict[str, float]


@dataclass(frozen=True, slots=True)
class ReportData:
    metrics: QualityMetrics
    bucket_starts: list[datetime]
    """Equal buckets from the window's first span start to its last span end."""
    bucket_width: timedelta
    latency: dict[str, list[BucketStats]]
    """Per agent (sorted by name), one entry per bucket, aligned with `bucket_starts`."""
    tokens_by_model: list[ModelTokens]
    """Most tokens first."""
    slowest_traces: list[TraceSummary]
    trace_spans: dict[str, list[ObservabilitySpan]]
    """The spans of each of the slowest traces (for their waterfalls)."""
    cost_series: list[CostBucket]
    """LLM cost per bucket, aligned with `bucket_starts`."""
    error_groups: list[ErrorGroup]
    """Most frequent first."""
    span_count: int
    truncated: bool
    """True when the span fetch hit its limit: time series and model tokens then cover only
    the most recent spans (per-agent totals still cover the whole window)."""
    store: str


def _bucket_index(moment: datetime, start: datetime, width: timedelta, buckets: int) -> int | None:
    if moment < start:
        return None
    return min(int((moment - start) / width), buckets - 1)


def _latency_series(
    spans: Sequence[ObservabilitySpan], starts: list[datetime], width: timedelta
) -> dict[str, list[BucketStats]]:
    durations: dict[str, list[list[float]]] = {}
    for span in spans:
        if span.duration_ms is None:
            continue
        index = _bucket_index(span.start_time, starts[0], width, len(starts))
        if index is None:
            continue
        per_bucket = durations.setdefault(span.agent_name, [[] for _ in starts])
        per_bucket[index].append(span.duration_ms)
    series: dict[str, list[BucketStats]] = {}
    for agent in sorted(durations):
        points = []
        for start, values in zip(starts, durations[agent], strict=True):
            values.sort()
            has = bool(values)
            points.append(
                BucketStats(
                    start=start,
                    count=len(values),
                    p50_ms=percentile(values, 0.50) if has else None,
                    p95_ms=percentile(values, 0.95) if has else None,
                    p99_ms=percentile(values, 0.99) if has else None,
                )
            )
        series[agent] = points
    return series


def _tokens_by_model(spans: Sequence[ObservabilitySpan]) -> list[ModelTokens]:
    totals: dict[str, list[int]] = {}
    for span in spans:
        if span.span_kind is not SpanKind.LLM:
            continue
        row = totals.setdefault(span.llm_model or UNKNOWN_MODEL, [0, 0, 0, 0])
        row[0] += 1
        row[1] += span.input_tokens or 0
        row[2] += span.output_tokens or 0
        row[3] += span.total_tokens or 0
    rows = [ModelTokens(model, *values) for model, values in totals.items()]
    return sorted(rows, key=lambda r: (-r.total_tokens, r.model))


def _cost_series(
    spans: Sequence[ObservabilitySpan], starts: list[datetime], width: timedelta
) -> list[CostBucket]:
    totals = [0.0] * len(starts)
    models: list[dict[str, float]] = [{} for _ in starts]
    for span in spans:
        if span.span_kind is not SpanKind.LLM or span.cost_usd is None:
            continue
        index = _bucket_index(span.start_time, starts[0], width, len(starts))
        if index is None:
            continue
        totals[index] += span.cost_usd
        model = span.llm_model or UNKNOWN_MODEL
        models[index][model] = models[index].get(model, 0.0) + span.cost_usd
    return [
        CostBucket(start, total, by_model)
        for start, total, by_model in zip(starts, totals, models, strict=True)
    ]


def _error_groups(spans: Sequence[ObservabilitySpan]) -> list[ErrorGroup]:
    groups: dict[tuple[str, str], list[ObservabilitySpan]] = {}
    for span in spans:
        if span.is_error:
            key = (span.agent_name, span.error_type or "(no error type)")
            groups.setdefault(key, []).append(span)
    result = []
    for (agent, error_type), members in groups.items():
        last = max(members, key=lambda s: (s.start_time, s.span_id))
        result.append(
            ErrorGroup(agent, error_type, len(members), last.start_time, last.error_message)
        )
    return sorted(result, key=lambda g: (-g.count, g.agent_name, g.error_type))


def _time_axis(
    metrics: QualityMetrics, spans: Sequence[ObservabilitySpan]
) -> tuple[datetime, datetime]:
    """The window, narrowed to where its spans are (a demo run of a few seconds in a 1 h
    window would otherwise be one bucket), and at least `MIN_AXIS` long."""
    start, end = metrics.window_start, metrics.window_end
    inside = [s for s in spans if start <= s.start_time <= end]
    if inside:
        start = min(s.start_time for s in inside)
        end = min(end, max(s.end_time or s.start_time for s in inside))
    if end - start < MIN_AXIS:
        end = start + MIN_AXIS
    return start, end


def build_report_data(
    metrics: QualityMetrics,
    spans: Sequence[ObservabilitySpan],
    *,
    buckets: int = 24,
    slowest: int = 10,
    error_groups: int = 8,
    span_limit: int | None = None,
    store: str = "",
) -> ReportData:
    """Everything the report shows for `metrics`' window, from the spans fetched for it."""
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets!r}")
    axis_start, axis_end = _time_axis(metrics, spans)
    width = (axis_end - axis_start) / buckets
    starts = [axis_start + width * i for i in range(buckets)]
    traces = [t for t in summarize_traces(spans) if t.duration_ms is not None]
    traces.sort(key=lambda t: (-(t.duration_ms or 0.0), t.trace_id))
    slowest_ids = {t.trace_id for t in traces[:slowest]}
    trace_spans: dict[str, list[ObservabilitySpan]] = {}
    for span in spans:
        if span.trace_id in slowest_ids:
            trace_spans.setdefault(span.trace_id, []).append(span)
    return ReportData(
        metrics=metrics,
        bucket_starts=starts,
        bucket_width=width,
        latency=_latency_series(spans, starts, width),
        tokens_by_model=_tokens_by_model(spans),
        slowest_traces=traces[:slowest],
        trace_spans=trace_spans,
        cost_series=_cost_series(spans, starts, width),
        error_groups=_error_groups(spans)[:error_groups],
        span_count=len(spans),
        truncated=span_limit is not None and len(spans) >= span_limit,
        store=store,
    )
