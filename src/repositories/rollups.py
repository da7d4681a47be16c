"""Per-minute to per-6-hour rollups: the window split and the statistics read back from them
(shared by the SQLite, PostgreSQL and Supabase backends).

Why: window metrics over raw spans cost O(spans in the window). Every insert also adds its new
spans (only the rows really inserted, so a replayed span never counts twice) to two rollup
tables, in the same transaction: `ml_observability_rollups` (counts, errors, tokens, cost,
duration sum/max per minute or hour slot, agent, model and provider) and
`ml_observability_rollup_sketches` (per slot and agent: the same counts and tokens and the
whole latency histogram packed in one row, see `sketch.py`). Sketch slots are whole minutes,
10 minutes, hours and 6 hours (UTC), so a 24 h window reads at most 2 x (9 + 5 + 5) + 3 slots
per agent, a few hundred rows.

A window `[start, end]` is split (`split_window`) into raw edges (`[start, minute_from)` and
`[minute_to, end]`, read from spans) and whole slots, the largest that fit; every count and
token is therefore exact, and only the percentiles are estimated, within `RELATIVE_ACCURACY`
of `percentile_cont` on the same spans.

The sketch: bucket i holds durations d with gamma^(i-1) < d <= gamma^i, i = ceil(ln d / ln
gamma), gamma = (1 + a) / (1 - a); its value 2 gamma^i / (gamma + 1) is within a of every d
in it. Histograms merge by adding counts per bucket.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from src.agents.ml_foundation.observability_connector.models import LatencyStats, WindowSummary
from src.repositories._arguments import Window
from src.repositories.sketch import (
    GAMMA,
    LOG_GAMMA,
    RELATIVE_ACCURACY,
    ZERO_BUCKET,
    Histogram,
    bucket_of,
    bucket_value,
)

__all__ = [
    "BOUND_NAMES",
    "DEFAULT_ROLLUP_RETENTION_DAYS",
    "FRAGMENT_COLUMNS",
    "GAMMA",
    "HOUR",
    "LOG_GAMMA",
    "MINUTE",
    "RELATIVE_ACCURACY",
    "SIX_HOURS",
    "SKETCH_PERIODS",
    "TEN_MINUTES",
    "TOTAL_COLUMNS",
    "ZERO_BUCKET",
    "RollupBounds",
    "WindowMetricsFromRollups",
    "bucket_of",
    "bucket_value",
    "floor_slot",
    "latency_stats_from_rollups",
    "split_window",
    "window_metrics_from_rollups",
    "window_summary_from_rollups",
]

MINUTE, TEN_MINUTES, HOUR, SIX_HOURS = 60, 600, 3600, 21600
"""Slot lengths in seconds: the `period_s` of a rollup row (the totals table has minutes and
hours; the sketch table all four, each dividing the next)."""
SKETCH_PERIODS = (MINUTE, TEN_MINUTES, HOUR, SIX_HOURS)
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
FRAGMENT_COLUMNS = (*TOTAL_COLUMNS, "zero_count", "low", "high", "packed")
"""A row of a window read: one sketch row (slot and agent), or one (agent, bucket) group of
raw edge spans (`packed` the count of its bucket `low` = `high`, packed, or as a plain integer
from SQLite, which has no function to pack it and need not call a Python one per group;
durations of 0 ms in `zero_count`, with no `low`). The per-agent window is their sum."""


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
    `[minute_to, end]`; minute slots in `[minute_from, ten_from)` and `[ten_to, minute_to)`;
    10-minute slots in `[ten_from, hour_from)` and `[hour_to, ten_to)`; hour slots in
    `[hour_from, six_from)` and `[six_to, hour_to)`; 6-hour slots in `[six_from, six_to)`.
    The bounds never decrease; empty ranges have equal ends."""

    start: datetime
    minute_from: datetime
    ten_from: datetime
    hour_from: datetime
    six_from: datetime
    six_to: datetime
    hour_to: datetime
    ten_to: datetime
    minute_to: datetime
    end: datetime

    def as_tuple(self) -> tuple[datetime, ...]:
        return (
            self.start,
            self.minute_from,
            self.ten_from,
            self.hour_from,
            self.six_from,
            self.six_to,
            self.hour_to,
            self.ten_to,
            self.minute_to,
            self.end,
        )


BOUND_NAMES = tuple(RollupBounds.__dataclass_fields__)
"""The bounds' names in `as_tuple` order (the SQL functions' parameters, prefixed `p_`)."""


def split_window(window: Window) -> RollupBounds:
    """Split `[window.start, window.end]` into raw edges and whole slots, the largest first:
    the 6-hour slots inside, then the hours either side of them, and so on down to minutes."""
    start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
    left, right = [_ceil_slot(start, MINUTE)], [floor_slot(end, MINUTE)]
    if left[0] >= right[0]:  # no whole minute inside: everything raw
        return RollupBounds(start, *[end] * 8, end)
    for period in SKETCH_PERIODS[1:]:
        inner_left, inner_right = _ceil_slot(left[-1], period), floor_slot(right[-1], period)
        if inner_left >= inner_right:  # no whole slot of this size: the smaller ones cover
            inner_left = inner_right = right[-1]
        left.append(inner_left)
        right.append(inner_right)
    return RollupBounds(start, *left, *reversed(right), end)


def _capped(value: float | None, cap: float | None) -> float | None:
    """An estimate never exceeds the exact maximum (the top bucket's value may)."""
    return value if value is None or cap is None else min(value, cap)


@dataclass
class _AgentWindow:
    """One agent's fragments added up: totals and histogram."""

    agent_tier: int | None = None
    span_count: int = 0
    error_count: int = 0
    completed_count: int = 0
    duration_count: int = 0
    duration_sum: float = 0.0
    duration_max: float | None = None
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0

    def __post_init__(self) -> None:
        self.histogram = Histogram()


def _by_agent(rows: Iterable[Sequence[Any]]) -> dict[str, _AgentWindow]:
    """The rows added up per agent. The rows are grouped first and each column summed with
    `sum` / `max` over the group (in C): a 24 h window has ~500 rows of 16 columns, and a
    Python statement per value was about half of the merge's time."""
    groups: dict[str, list[Sequence[Any]]] = {}
    for row in rows:
        group = groups.get(row[0])
        if group is None:
            groups[row[0]] = [row]
        else:
            group.append(row)
    agents: dict[str, _AgentWindow] = {}
    for agent, group in groups.items():
        (_, tiers, spans, errors, completed, durations, duration_sums, duration_maxima,
         llm_calls, input_tokens, output_tokens, total_tokens, zeros, lows, highs,
         packed) = zip(*group, strict=True)  # fmt: skip
        window = agents[agent] = _AgentWindow()
        tier = max((t for t in tiers if t is not None), default=None)
        window.agent_tier = None if tier is None else int(tier)
        window.span_count = int(sum(spans))
        window.error_count = int(sum(errors))
        window.completed_count = int(sum(completed))
        window.duration_count = int(sum(durations))
        window.duration_sum = float(sum(duration_sums, 0.0))
        duration_max = max((d for d in duration_maxima if d is not None), default=None)
        window.duration_max = None if duration_max is None else float(duration_max)
        window.llm_calls = int(sum(llm_calls))
        window.input_tokens = int(sum(input_tokens))
        window.output_tokens = int(sum(output_tokens))
        window.total_tokens = int(sum(total_tokens))
        window.histogram.add_many(int(sum(zeros)), lows, highs, packed)
    return agents


def latency_stats_from_rollups(
    rows: Iterable[Sequence[Any]], time_window: str, minutes: float
) -> list[LatencyStats]:
    """`LatencyStats` per agent (sorted by agent) from a rollup read's rows."""
    return _latency_stats(_by_agent(rows), time_window, minutes)


def window_summary_from_rollups(rows: Iterable[Sequence[Any]], time_window: str) -> WindowSummary:
    """`WindowSummary` over every agent of a rollup read (the p95 over all their durations)."""
    return _window_summary(_by_agent(rows), time_window)


def window_metrics_from_rollups(
    rows: Iterable[Sequence[Any]], time_window: str, minutes: float
) -> tuple[list[LatencyStats], WindowSummary]:
    """Both of the above from one rollup read, the rows added up once."""
    agents = _by_agent(rows)
    return _latency_stats(agents, time_window, minutes), _window_summary(agents, time_window)


def _latency_stats(
    agents: dict[str, _AgentWindow], time_window: str, minutes: float
) -> list[LatencyStats]:
    stats = []
    for agent, w in agents.items():
        if w.span_count == 0:
            continue
        cap = w.duration_max
        p50, p95, p99 = w.histogram.quantiles((0.50, 0.95, 0.99), total=w.duration_count)
        stats.append(
            LatencyStats(
                agent_name=agent,
                agent_tier=w.agent_tier,
                time_window=time_window,
                count=w.span_count,
                error_count=w.error_count,
                error_rate=w.error_count / w.span_count,
                avg_ms=w.duration_sum / w.duration_count if w.duration_count else None,
                p50_ms=_capped(p50, cap),
                p95_ms=_capped(p95, cap),
                p99_ms=_capped(p99, cap),
                max_ms=cap,
                llm_calls=w.llm_calls,
                input_tokens=w.input_tokens,
                output_tokens=w.output_tokens,
                total_tokens=w.total_tokens,
                spans_per_minute=w.span_count / minutes,
            )
        )
    return sorted(stats, key=lambda s: s.agent_name.encode("utf-8"))  # COLLATE "C" order


def _window_summary(agents: dict[str, _AgentWindow], time_window: str) -> WindowSummary:
    windows = agents.values()
    duration_count = sum(w.duration_count for w in windows)
    merged = Histogram.combine([w.histogram for w in windows])
    maxima = [w.duration_max for w in windows if w.duration_max is not None]
    (p95,) = merged.quantiles((0.95,), total=duration_count)
    return WindowSummary(
        time_window=time_window,
        total_spans=sum(w.span_count for w in windows),
        successful_spans=sum(w.completed_count for w in windows),
        failed_spans=sum(w.error_count for w in windows),
        avg_latency_ms=(
            sum(w.duration_sum for w in windows) / duration_count if duration_count else None
        ),
        p95_latency_ms=_capped(p95, max(maxima, default=None)),
    )


class WindowMetricsFromRollups:
    """Mixin of the rollup-backed repositories: both window reads `MetricsService` needs from
    one `_rollup_read` (the repository's fragment rows and its resolved window)."""

    async def _rollup_read(self, window: str, agent_name: str | None) -> tuple[list[Any], Window]:
        raise NotImplementedError

    async def get_window_metrics(
        self, window: str, agent_name: str | None = None
    ) -> tuple[list[LatencyStats], WindowSummary]:
        """`get_latency_stats` and `get_window_summary` from rollups in one read, so the same
        rows are not read (and the histograms not merged) twice."""
        rows, resolved = await self._rollup_read(window, agent_name)
        return window_metrics_from_rollups(rows, window, resolved.minutes)
