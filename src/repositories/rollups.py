"""Per-minute and per-hour rollups: the latency sketch, the window split, and the statistics
read back from them (shared by the SQLite, PostgreSQL and Supabase backends).

Why: window metrics over raw spans cost O(spans in the window). Every insert also adds its new
spans (only the rows really inserted, so a replayed span never counts twice) to two rollup
tables, in the same transaction: `ml_observability_rollups` (counts, errors, tokens, cost,
duration sum/max per slot, agent, model and provider) and `ml_observability_rollup_buckets`
(a DDSketch-style latency histogram per slot and agent). Slots are whole minutes and whole
hours (UTC), so a 24 h window reads at most ~2 x 59 minute slots and 23 hour slots per agent.

A window `[start, end]` is split (`split_window`) into raw edges (`[start, minute_from)` and
`[minute_to, end]`, read from spans), whole minutes and whole hours (read from rollups); every
count, token and cost is therefore exact, and only the percentiles are estimated, within
`RELATIVE_ACCURACY` of `percentile_cont` on the same spans.

The sketch: bucket i holds durations d with gamma^(i-1) < d <= gamma^i, i = ceil(ln d / ln
gamma), gamma = (1 + a) / (1 - a); its value 2 gamma^i / (gamma + 1) is within a of every d
in it. Histograms merge by adding counts per bucket: plain `SUM(count) GROUP BY bucket` in SQL.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from src.agents.ml_foundation.observability_connector.models import LatencyStats, WindowSummary
from src.repositories._arguments import Window

__all__ = [
    "BUCKET_COLUMNS",
    "DEFAULT_ROLLUP_RETENTION_DAYS",
    "GAMMA",
    "HOUR",
    "LOG_GAMMA",
    "MINUTE",
    "RELATIVE_ACCURACY",
    "TOTAL_COLUMNS",
    "ZERO_BUCKET",
    "RollupBounds",
    "WindowMetricsFromRollups",
    "bucket_of",
    "bucket_value",
    "floor_slot",
    "latency_stats_from_rollups",
    "quantile",
    "split_window",
    "window_metrics_from_rollups",
    "window_summary_from_rollups",
]

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
LOG_GAMMA = math.log(GAMMA)
ZERO_BUCKET = -100_000
"""The bucket of a zero duration (ln 0 is undefined); its value is 0."""
MINUTE, HOUR = 60, 3600
"""Slot lengths in seconds: the `period_s` of a rollup row."""
DEFAULT_ROLLUP_RETENTION_DAYS = 400

TOTAL_COLUMNS = (
    "agent_name",
    "agent_tier",
    "span_count",
    "error_count",
    "completed_count",
    "duration_count",
    "duration_sum",
    "duration_max",
    "llm_calls",
    "input_tokens",
    "output_tokens",
    "total_tokens",
)
"""One row per agent of a rollup window read (raw edges and slots added up)."""
BUCKET_COLUMNS = ("agent_name", "bucket", "count")


def bucket_of(duration_ms: float) -> int:
    """The sketch bucket of a duration (the SQL of every backend computes the same)."""
    return math.ceil(math.log(duration_ms) / LOG_GAMMA) if duration_ms > 0 else ZERO_BUCKET


def bucket_value(bucket: int) -> float:
    """The value reported for a bucket: within RELATIVE_ACCURACY of each duration in it."""
    return 0.0 if bucket == ZERO_BUCKET else 2.0 * GAMMA**bucket / (GAMMA + 1.0)


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def floor_slot(moment: datetime, seconds: int) -> datetime:
    """The start of the `seconds`-long UTC slot holding `moment` (PostgreSQL's `date_bin`)."""
    offset = (moment - _EPOCH) // timedelta(seconds=seconds)
    return _EPOCH + offset * timedelta(seconds=seconds)


def _ceil_slot(moment: datetime, seconds: int) -> datetime:
    floor = floor_slot(moment, seconds)
    return floor if floor == moment else floor + timedelta(seconds=seconds)


@dataclass(frozen=True)
class RollupBounds:
    """A window split for a rollup read: raw spans in `[start, minute_from)` and
    `[minute_to, end]`, minute slots in `[minute_from, hour_from)` and `[hour_to, minute_to)`,
    hour slots in `[hour_from, hour_to)`. Empty ranges have equal ends."""

    start: datetime
    minute_from: datetime
    hour_from: datetime
    hour_to: datetime
    minute_to: datetime
    end: datetime

    def as_tuple(self) -> tuple[datetime, ...]:
        return (
            self.start,
            self.minute_from,
            self.hour_from,
            self.hour_to,
            self.minute_to,
            self.end,
        )


def split_window(window: Window) -> RollupBounds:
    """Split `[window.start, window.end]` into raw edges, whole minutes and whole hours."""
    start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
    minute_from, minute_to = _ceil_slot(start, MINUTE), floor_slot(end, MINUTE)
    if minute_from >= minute_to:  # no whole minute inside: everything raw
        return RollupBounds(start, end, end, end, end, end)
    hour_from, hour_to = _ceil_slot(minute_from, HOUR), floor_slot(minute_to, HOUR)
    if hour_from >= hour_to:  # no whole hour inside: minutes only
        hour_from = hour_to = minute_to
    return RollupBounds(start, minute_from, hour_from, hour_to, minute_to, end)


def quantile(histogram: Sequence[tuple[int, int]], fraction: float) -> float | None:
    """`percentile_cont(fraction)` estimated from (bucket, count) pairs sorted by bucket:
    the same interpolation between ranks j and j + 1 (h = fraction * (n - 1)), each rank's
    value taken from its bucket, so the result is within RELATIVE_ACCURACY of the exact one."""
    total = sum(count for _, count in histogram)
    if total == 0:
        return None
    position = fraction * (total - 1)
    lower = math.floor(position)
    weight = position - lower
    low_value = high_value = None
    seen = 0
    for bucket, count in histogram:
        seen += count
        if low_value is None and lower < seen:
            low_value = bucket_value(bucket)
        if lower + 1 < seen or seen == total:
            high_value = bucket_value(bucket)
            break
    assert low_value is not None and high_value is not None
    return low_value + weight * (high_value - low_value)


def _histograms(bucket_rows: Iterable[Sequence[Any]]) -> dict[str, dict[int, int]]:
    merged: dict[str, dict[int, int]] = {}
    for agent, bucket, count in bucket_rows:
        per_agent = merged.setdefault(agent, {})
        per_agent[int(bucket)] = per_agent.get(int(bucket), 0) + int(count)
    return merged


def _capped(value: float | None, cap: float | None) -> float | None:
    """An estimate never exceeds the exact maximum (the top bucket's value may)."""
    return value if value is None or cap is None else min(value, cap)


def latency_stats_from_rollups(
    total_rows: Iterable[Sequence[Any]],
    bucket_rows: Iterable[Sequence[Any]],
    time_window: str,
    minutes: float,
) -> list[LatencyStats]:
    """`LatencyStats` per agent (sorted by agent) from a rollup read's rows."""
    return _latency_stats(total_rows, _histograms(bucket_rows), time_window, minutes)


def window_metrics_from_rollups(
    total_rows: Iterable[Sequence[Any]],
    bucket_rows: Iterable[Sequence[Any]],
    time_window: str,
    minutes: float,
) -> tuple[list[LatencyStats], WindowSummary]:
    """Both of the above from one rollup read, the histograms merged once."""
    totals, histograms = list(total_rows), _histograms(bucket_rows)
    return (
        _latency_stats(totals, histograms, time_window, minutes),
        _window_summary(totals, histograms, time_window),
    )


def _latency_stats(
    total_rows: Iterable[Sequence[Any]],
    histograms: dict[str, dict[int, int]],
    time_window: str,
    minutes: float,
) -> list[LatencyStats]:
    stats = []
    for row in total_rows:
        values = dict(zip(TOTAL_COLUMNS, row, strict=True))
        agent, count = values["agent_name"], int(values["span_count"])
        if count == 0:
            continue
        histogram = sorted(histograms.get(agent, {}).items())
        duration_count = int(values["duration_count"])
        cap = None if values["duration_max"] is None else float(values["duration_max"])
        stats.append(
            LatencyStats(
                agent_name=agent,
                agent_tier=values["agent_tier"],
                time_window=time_window,
                count=count,
                error_count=int(values["error_count"]),
                error_rate=int(values["error_count"]) / count,
                avg_ms=float(values["duration_sum"]) / duration_count if duration_count else None,
                p50_ms=_capped(quantile(histogram, 0.50), cap),
                p95_ms=_capped(quantile(histogram, 0.95), cap),
                p99_ms=_capped(quantile(histogram, 0.99), cap),
                max_ms=cap,
                llm_calls=int(values["llm_calls"]),
                input_tokens=int(values["input_tokens"]),
                output_tokens=int(values["output_tokens"]),
                total_tokens=int(values["total_tokens"]),
                spans_per_minute=count / minutes,
            )
        )
    return sorted(stats, key=lambda s: s.agent_name.encode("utf-8"))  # COLLATE "C" order


def window_summary_from_rollups(
    total_rows: Iterable[Sequence[Any]],
    bucket_rows: Iterable[Sequence[Any]],
    time_window: str,
) -> WindowSummary:
    """`WindowSummary` over every agent of a rollup read (the p95 over all their durations)."""
    return _window_summary(total_rows, _histograms(bucket_rows), time_window)


def _window_summary(
    total_rows: Iterable[Sequence[Any]], histograms: dict[str, dict[int, int]], time_window: str
) -> WindowSummary:
    totals = [dict(zip(TOTAL_COLUMNS, row, strict=True)) for row in total_rows]
    merged: dict[int, int] = {}
    for histogram in histograms.values():
        for bucket, count in histogram.items():
            merged[bucket] = merged.get(bucket, 0) + count
    duration_count = sum(int(t["duration_count"]) for t in totals)
    maxima = [float(t["duration_max"]) for t in totals if t["duration_max"] is not None]
    return WindowSummary(
        time_window=time_window,
        total_spans=sum(int(t["span_count"]) for t in totals),
        successful_spans=sum(int(t["completed_count"]) for t in totals),
        failed_spans=sum(int(t["error_count"]) for t in totals),
        avg_latency_ms=(
            sum(float(t["duration_sum"]) for t in totals) / duration_count
            if duration_count
            else None
        ),
        p95_latency_ms=_capped(quantile(sorted(merged.items()), 0.95), max(maxima, default=None)),
    )


class WindowMetricsFromRollups:
    """Mixin of the rollup-backed repositories: both window reads `MetricsService` needs from
    one `_rollup_read` (the repository's totals and bucket rows and its resolved window)."""

    async def _rollup_read(
        self, window: str, agent_name: str | None
    ) -> tuple[list[Any], list[Any], Window]:
        raise NotImplementedError

    async def get_window_metrics(
        self, window: str, agent_name: str | None = None
    ) -> tuple[list[LatencyStats], WindowSummary]:
        """`get_latency_stats` and `get_window_summary` from rollups in one read, so the same
        rows are not read (and the histograms not merged) twice."""
        totals, buckets, resolved = await self._rollup_read(window, agent_name)
        return window_metrics_from_rollups(totals, buckets, window, resolved.minutes)
