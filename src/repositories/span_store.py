"""The span storage protocol every backend implements (SQLite, PostgreSQL, Supabase).

All methods are coroutines. Time windows are strings such as `1h` or `24h`
(see `time_window.parse_time_window`); "now" comes from the repository's injected clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from src.agents.ml_foundation.observability_connector.cost_models import (
    CostBreakdownRow,
    CostSummary,
)
from src.agents.ml_foundation.observability_connector.models import (
    LatencyStats,
    ObservabilitySpan,
    SpanStatus,
    TraceSummary,
    WindowSummary,
)

TABLE_NAME = "ml_observability_spans"


class RepositoryError(RuntimeError):
    """A storage operation failed (connection lost, timeout, server error).

    The emission pipeline treats it as a transient sink failure (spool, try again later)
    unless `permanent` is True: the data itself was refused (SQLSTATE class 22, data
    exception, or 23, integrity violation; a value the driver cannot send), so the same batch
    would fail the same way for ever. The pipeline then splits the batch until the refused
    spans are found, sets those aside with the reason and delivers the rest.
    """

    permanent: bool = False
    """True when retrying the same data can never succeed."""


class RepositoryDataError(RepositoryError):
    """The storage refused the data itself (see `RepositoryError.permanent`)."""

    permanent = True


DATA_ERROR_SQLSTATE_CLASSES = ("22", "23")
"""SQLSTATE classes of errors caused by the values sent: data exception, integrity violation."""


def is_data_error_sqlstate(sqlstate: str | None) -> bool:
    """True for a SQLSTATE in class 22 (e.g. 22003 numeric out of range) or 23."""
    return bool(sqlstate) and sqlstate[:2] in DATA_ERROR_SQLSTATE_CLASSES  # type: ignore[index]


@runtime_checkable
class SpanRepository(Protocol):
    async def setup(self) -> None:
        """Create or migrate the schema. Explicit, idempotent, never run at import."""

    async def insert_span(self, span: ObservabilitySpan) -> bool:
        """Store one span; False when (trace_id, span_id) was already stored."""

    async def insert_spans_batch(self, spans: Sequence[ObservabilitySpan]) -> int:
        """Store many spans; return how many were new (re-sent spans are not duplicated)."""

    async def get_spans_by_time_window(
        self,
        window: str,
        agent_name: str | None = None,
        limit: int = 1000,
        *,
        status: SpanStatus | str | None = None,
        agent_tier: int | None = None,
    ) -> list[ObservabilitySpan]:
        """Spans whose start_time is inside the window, newest first; every filter given
        (agent, status, tier) applies, in the query, before `limit`."""

    async def get_spans_by_trace(self, trace_id: str) -> list[ObservabilitySpan]:
        """All spans of one trace, oldest first."""

    async def get_trace_summary(self, trace_id: str) -> TraceSummary:
        """One trace's counts, first start, last end and llm tokens, aggregated by the backend
        (zero counts for a trace with no spans)."""

    async def get_latency_stats(
        self, window: str, agent_name: str | None = None, *, exact: bool = False
    ) -> list[LatencyStats]:
        """Per-agent statistics over the window, computed by the backend, sorted by agent.
        Their cost fields stay zero: `get_cost_stats` has those (`MetricsService` merges).
        Default: from the rollups (whole minutes) and the raw spans of the window's partial
        minutes, so counts and tokens are exact and percentiles within 1% (`rollups.py`);
        `exact=True`: from the raw spans only (percentile_cont)."""

    async def get_cost_stats(self, window: str, agent_name: str | None = None) -> list[CostSummary]:
        """LLM cost per agent over the window (sorted by agent), preceded by the whole
        window's row (`agent_name` None) when the window has LLM spans."""

    async def get_cost_breakdown(
        self, window: str, by: str = "agent", agent_name: str | None = None
    ) -> list[CostBreakdownRow]:
        """Cost and token kinds of the window's LLM spans grouped `by` agent, model,
        provider or day (UTC date), sorted by key; ValueError for another `by`."""

    async def get_window_summary(
        self, window: str, agent_name: str | None = None, *, exact: bool = False
    ) -> WindowSummary:
        """Totals and latencies over every span of the window (the p95 over all of them);
        `exact` as in `get_latency_stats`."""

    async def delete_old_spans(self, days: int = 90, batch_size: int = 1000) -> int:
        """Delete spans older than `days` in batches of `batch_size`; return the count."""

    async def count_old_spans(self, days: int = 90) -> int:
        """How many spans `delete_old_spans(days)` would delete now (retention dry run)."""

    async def rebuild_rollups(self, since: datetime | None = None) -> int:
        """Recompute the rollups from the spans that started at or after the hour of `since`
        (None: every span); rollups older than that stay. Returns the spans rolled up."""

    async def delete_old_rollups(self, days: int = 400, minute_days: int | None = None) -> int:
        """Delete the rollups of slots older than `days` (their own retention, longer than the
        spans'), and the minute slots older than `minute_days` (None: `days`); return the
        number of rollup rows deleted."""

    async def close(self) -> None:
        """Release connections. Safe to call twice."""
