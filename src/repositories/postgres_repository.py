"""Span storage on any PostgreSQL 15+ (including a Supabase project's direct connection).

psycopg 3 with an `AsyncConnectionPool` on a private event loop, so any caller loop may await
it (see `_postgres_pools`). The schema, the percentile statistics and the retention delete
(one batch per call; the repository loops) live in `database/ml/mlops_tables.sql`, so this
module and the Supabase backend (which calls the same SQL functions over `rpc`) agree by
construction. Batches are `COPY`'d straight into the table, with an idempotent fallback for
replays (`_postgres_batch`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

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
from src.agents.ml_foundation.observability_connector.resources import schema_file
from src.repositories._arguments import (
    Clock,
    Window,
    check_agent_name,
    check_agent_tier,
    check_aware,
    check_cost_by,
    check_int,
    check_limit,
    check_retention,
    check_rollup_retention,
    check_seconds,
    check_status,
    check_trace_id,
    current_time,
    resolve_window,
    utc_now,
)
from src.repositories._postgres_batch import write_batch
from src.repositories._postgres_pools import PoolRunner
from src.repositories._rows import (
    SPAN_COLUMNS,
    breakdown_from_row,
    cost_from_row,
    span_from_row,
    span_to_postgres_row,
    stats_from_row,
    summary_from_row,
    window_summary_from_row,
)
from src.repositories.cost_rollups import (
    COST_BOUND_NAMES,
    cost_bounds,
    cost_stats_from_rollups,
)
from src.repositories.rollups import (
    BOUND_NAMES,
    DEFAULT_ROLLUP_RETENTION_DAYS,
    WindowMetricsFromRollups,
    latency_stats_from_rollups,
    split_window,
    window_summary_from_rollups,
)
from src.repositories.span_store import TABLE_NAME

__all__ = ["SETUP_LOCK_KEY", "PostgresSpanRepository"]

Connection = AsyncConnection[Any]

SETUP_LOCK_KEY = 0x0E21_0B5E_5C4E_3A01
"""pg_advisory_xact_lock key serialising concurrent `setup()` calls (any constant bigint)."""

_TABLE = f"public.{TABLE_NAME}"
_COLUMNS = ", ".join(SPAN_COLUMNS)
_PLACEHOLDERS = ", ".join(
    "%s::jsonb" if column in ("attributes", "events") else "%s" for column in SPAN_COLUMNS
)
_INSERT_ONE = f"INSERT INTO {_TABLE} ({_COLUMNS}) VALUES ({_PLACEHOLDERS}) ON CONFLICT DO NOTHING"
_SELECT_WINDOW = (
    f"SELECT {_COLUMNS} FROM {_TABLE} WHERE start_time >= %(start)s AND start_time <= %(end)s "
    "AND (%(agent)s::text IS NULL OR agent_name = %(agent)s::text) "
    "AND (%(status)s::text IS NULL OR status = %(status)s::text) "
    "AND (%(tier)s::smallint IS NULL OR agent_tier = %(tier)s::smallint) "
    'ORDER BY start_time DESC, trace_id COLLATE "C" DESC, span_id COLLATE "C" DESC '
    "LIMIT %(limit)s"
)
_SELECT_TRACE = (
    f'SELECT {_COLUMNS} FROM {_TABLE} WHERE trace_id = %s ORDER BY start_time, span_id COLLATE "C"'
)
_TRACE_SUMMARY = "SELECT * FROM public.ml_trace_summary(%s::text)"
_WINDOW_SUMMARY = "SELECT * FROM public.ml_window_summary(%s::interval, %s::text, %s::timestamptz)"
_COUNT_OLD = "SELECT public.ml_count_old_spans(%s::interval, %s::timestamptz)"
_LATENCY_STATS = (
    "SELECT * FROM public.ml_agent_latency_stats(%s::interval, %s::text, %s::timestamptz)"
)
_COST_STATS = "SELECT * FROM public.ml_agent_cost_stats(%s::interval, %s::text, %s::timestamptz)"
_COST_BREAKDOWN = (
    "SELECT * FROM public.ml_cost_breakdown(%s::interval, %s::text, %s::text, %s::timestamptz)"
)
_GRANT_AUTHENTICATED_READ = """
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'authenticated') THEN
        GRANT SELECT ON TABLE public.ml_observability_spans TO authenticated;
        GRANT SELECT ON TABLE public.v_agent_latency_summary TO authenticated;
    END IF;
END $$"""
_BOUNDS = "%s::timestamptz, " * len(BOUND_NAMES) + "%s::text"
_ROLLUP_WINDOW = f"SELECT * FROM public.ml_rollup_window({_BOUNDS})"
_COST_BOUNDS = "%s::timestamptz, " * len(COST_BOUND_NAMES) + "%s::text"
_ROLLUP_COSTS = f"SELECT * FROM public.ml_rollup_costs({_COST_BOUNDS})"
# A new pool connection's first call of each read function compiles it (~20-25 ms at 1M spans);
# `PoolRunner` runs this once per connection, over an empty window (index probes, no rows).
_WARM_READS = (
    "SELECT (SELECT count(*) FROM public.ml_rollup_window("
    + ", ".join(["now()"] * len(BOUND_NAMES))
    + ", NULL)), (SELECT count(*) FROM public.ml_rollup_costs("
    + ", ".join(["now()"] * len(COST_BOUND_NAMES))
    + ", NULL))"
)
_REBUILD_ROLLUPS = "SELECT public.ml_rebuild_rollups(%s::timestamptz)"
_DELETE_OLD_ROLLUPS = (
    "SELECT public.ml_delete_old_rollups(%s::interval, %s::timestamptz, %s::interval)"
)
_DELETE_OLD = "SELECT public.ml_delete_old_spans(%s::interval, %s::integer, %s::timestamptz)"


class PostgresSpanRepository(WindowMetricsFromRollups):
    """`SpanRepository` on PostgreSQL through psycopg 3.

    Example:
        repo = PostgresSpanRepository("postgresql://app@db.example/e2i")
        await repo.setup()                 # applies database/ml/mlops_tables.sql
        new = await repo.insert_spans_batch(spans)
        stats = await repo.get_latency_stats("24h")
        await repo.close()
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 5,
        clock: Clock | None = None,
        timeout: float = 10.0,
        authenticated_read: bool = False,
    ) -> None:
        """`authenticated_read`: on a Supabase database, `setup()` grants the `authenticated`
        role SELECT (its read-only row-level-security policy then applies); the schema file
        itself grants it nothing."""
        if not isinstance(dsn, str) or not dsn:
            raise ValueError("dsn must be a non-empty PostgreSQL connection string")
        check_int("min_size", min_size, 0)
        if check_int("max_size", max_size, 1) < min_size:
            raise ValueError(f"max_size ({max_size}) must be >= min_size ({min_size})")
        self._pools = PoolRunner(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=check_seconds("timeout", timeout),
            name="e2i-obs-spans",
            warm=_warm_reads,
        )
        self._clock = clock or utc_now
        self._authenticated_read = authenticated_read

    def __repr__(self) -> str:
        return f"PostgresSpanRepository(target={self._pools.target!r})"

    async def setup(self) -> None:
        """Apply `database/ml/mlops_tables.sql` in one transaction under an advisory lock."""
        schema = schema_file().read_text(encoding="utf-8")

        async def apply(conn: Connection) -> None:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK_KEY,))
                await conn.execute(schema)
                if self._authenticated_read:
                    await conn.execute(_GRANT_AUTHENTICATED_READ)

        await self._pools.run("setup", apply)

    async def insert_span(self, span: ObservabilitySpan) -> bool:
        row = span_to_postgres_row(span)

        async def insert(conn: Connection) -> bool:
            async with conn.transaction():
                cursor = await conn.execute(_INSERT_ONE, row)
                return cursor.rowcount == 1

        return await self._pools.run("insert span", insert)

    async def insert_spans_batch(self, spans: Sequence[ObservabilitySpan]) -> int:
        if not spans:
            return 0
        # converted inside the COPY, row by row (see `_postgres_batch`)
        return await self._pools.run("insert batch", lambda conn: write_batch(conn, spans))

    async def get_spans_by_time_window(
        self,
        window: str,
        agent_name: str | None = None,
        limit: int = 1000,
        *,
        status: SpanStatus | str | None = None,
        agent_tier: int | None = None,
    ) -> list[ObservabilitySpan]:
        resolved = resolve_window(window, self._clock)
        params = {
            "start": resolved.start,
            "end": resolved.end,
            "agent": check_agent_name(agent_name),
            "status": check_status(status),
            "tier": check_agent_tier(agent_tier),
            "limit": check_limit(limit),
        }
        rows = await self._pools.run("select spans by window", _fetch(_SELECT_WINDOW, params))
        return [span_from_row(row) for row in rows]

    async def get_spans_by_trace(self, trace_id: str) -> list[ObservabilitySpan]:
        params = (check_trace_id(trace_id),)
        rows = await self._pools.run("select spans by trace", _fetch(_SELECT_TRACE, params))
        return [span_from_row(row) for row in rows]

    async def get_trace_summary(self, trace_id: str) -> TraceSummary:
        params = (check_trace_id(trace_id),)
        (row,) = await self._pools.run("trace summary", _fetch(_TRACE_SUMMARY, params))
        return summary_from_row(trace_id, row)

    async def _rollup_read(self, window: str, agent_name: str | None) -> tuple[list[Any], Window]:
        """The window's sketch rows and raw edge groups (`rollups.FRAGMENT_COLUMNS`): one
        statement, so one snapshot. Binary results: the packed sketches arrive as bytes."""
        resolved = resolve_window(window, self._clock)
        params = (*split_window(resolved).as_tuple(), check_agent_name(agent_name))

        async def read(conn: Connection) -> list[Any]:
            cursor = conn.cursor(binary=True)
            return await (await cursor.execute(_ROLLUP_WINDOW, params)).fetchall()

        rows = await self._pools.run("rollup read", read)
        return rows, resolved

    async def get_latency_stats(
        self, window: str, agent_name: str | None = None, *, exact: bool = False
    ) -> list[LatencyStats]:
        if not exact:
            rows, resolved = await self._rollup_read(window, agent_name)
            return latency_stats_from_rollups(rows, window, resolved.minutes)
        resolved = resolve_window(window, self._clock)
        params = (_seconds(resolved.length), check_agent_name(agent_name), resolved.end)
        rows = await self._pools.run("latency stats", _fetch(_LATENCY_STATS, params))
        return [stats_from_row(row, window) for row in rows]

    async def get_window_summary(
        self, window: str, agent_name: str | None = None, *, exact: bool = False
    ) -> WindowSummary:
        if not exact:
            rows, _ = await self._rollup_read(window, agent_name)
            return window_summary_from_rollups(rows, window)
        resolved = resolve_window(window, self._clock)
        params = (_seconds(resolved.length), check_agent_name(agent_name), resolved.end)
        rows = await self._pools.run("window summary", _fetch(_WINDOW_SUMMARY, params))
        return window_summary_from_row(rows[0], window)

    async def count_old_spans(self, days: int = 90) -> int:
        older_than = check_retention(days, 1)
        params = (_seconds(older_than), current_time(self._clock))
        rows = await self._pools.run("count old spans", _fetch(_COUNT_OLD, params))
        return int(rows[0][0])

    async def get_cost_stats(
        self, window: str, agent_name: str | None = None, *, exact: bool = False
    ) -> list[CostSummary]:
        """Cost per agent and for the window; from rollups and the trace-cost sketch
        (`cost_rollups.py`), or from the raw LLM spans with `exact`."""
        resolved = resolve_window(window, self._clock)
        if not exact:
            bounds = (*cost_bounds(resolved), check_agent_name(agent_name))
            rows = await self._pools.run("cost read", _fetch(_ROLLUP_COSTS, bounds))
            return cost_stats_from_rollups(rows, agent_name)
        params = (_seconds(resolved.length), check_agent_name(agent_name), resolved.end)
        rows = await self._pools.run("cost stats", _fetch(_COST_STATS, params))
        return [cost_from_row(row) for row in rows]

    async def get_cost_breakdown(
        self, window: str, by: str = "agent", agent_name: str | None = None
    ) -> list[CostBreakdownRow]:
        resolved = resolve_window(window, self._clock)
        params = (
            _seconds(resolved.length),
            check_cost_by(by),
            check_agent_name(agent_name),
            resolved.end,
        )
        rows = await self._pools.run("cost breakdown", _fetch(_COST_BREAKDOWN, params))
        return [breakdown_from_row(row) for row in rows]

    async def rebuild_rollups(self, since: datetime | None = None) -> int:
        """Recompute the rollups from the spans that started at or after `since`'s hour
        (None: all spans); older rollups stay. Returns the number of spans rolled up."""
        start = None if since is None else check_aware("since", since)
        rows = await self._pools.run("rebuild rollups", _fetch(_REBUILD_ROLLUPS, (start,)))
        return int(rows[0][0])

    async def delete_old_rollups(
        self, days: int = DEFAULT_ROLLUP_RETENTION_DAYS, minute_days: int | None = None
    ) -> int:
        """Delete rollup rows of slots older than `days` (their own retention) and of minute
        slots older than `minute_days` (None: `days`); the count."""
        older_than, minutes_older_than = check_rollup_retention(days, minute_days)
        params = (_seconds(older_than), current_time(self._clock), _seconds(minutes_older_than))
        rows = await self._pools.run("delete old rollups", _fetch(_DELETE_OLD_ROLLUPS, params))
        return int(rows[0][0])

    async def delete_old_spans(self, days: int = 90, batch_size: int = 1000) -> int:
        """One `ml_delete_old_spans` call (one batch, its own transaction) at a time until a
        batch comes back short; the cutoff is fixed first, so new spans cannot prolong it.
        Batches already committed stay deleted if a later one fails."""
        older_than = check_retention(days, batch_size)
        delete_batch = _fetch(
            _DELETE_OLD, (_seconds(older_than), batch_size, current_time(self._clock))
        )
        total = 0
        while True:
            rows = await self._pools.run("delete old spans", delete_batch)
            deleted = int(rows[0][0]) if rows else 0
            total += deleted
            if deleted < batch_size:
                return total

    async def close(self) -> None:
        await self._pools.close()


def _seconds(length: timedelta) -> str:
    """An interval in plain seconds: `interval '7 days'` would follow the session time zone's
    daylight-saving shifts, while the other backends (and the clock) count exact seconds."""
    return f"{int(length.total_seconds())} seconds"


async def _warm_reads(conn: Connection) -> None:
    await conn.execute(_WARM_READS)


def _fetch(query: str, params: Any) -> Callable[[Connection], Awaitable[list[Any]]]:
    """Run one statement and return all its rows: the pool's connections are in autocommit
    mode, so the statement is its own transaction (one round trip, no BEGIN / COMMIT)."""

    async def fetch(conn: Connection) -> list[Any]:
        return await (await conn.execute(query, params)).fetchall()

    return fetch
