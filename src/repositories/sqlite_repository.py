"""The embedded span store: stdlib `sqlite3` in WAL mode, zero setup.

One connection, guarded by a lock, serves every thread and event loop; each coroutine runs its
blocking SQLite work in a worker thread (`asyncio.to_thread`), so the agent's event loop never
waits on disk. The rollup window read has a second connection (its own lock) on a file, so a
cold metrics call runs it beside the cost read instead of after it (SQLite works outside the
GIL; in WAL mode a reader neither waits for nor blocks the writer). The file and its parent
directory are created on first use, not at construction.
`setup()` applies the append-only migrations in `_sqlite_sql.MIGRATIONS`, tracked by
`PRAGMA user_version`. Percentiles are computed inside SQLite (see `_sqlite_sql`).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

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
from src.repositories import _sqlite_rollups as rollup_sql
from src.repositories import _sqlite_sketches as sketch_sql
from src.repositories import _sqlite_sql as sql
from src.repositories import _sqlite_trace_costs as trace_sql
from src.repositories._arguments import (
    Clock,
    Window,
    check_agent_name,
    check_agent_tier,
    check_aware,
    check_cost_by,
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
from src.repositories._rows import (
    breakdown_from_row,
    cost_from_row,
    format_utc,
    span_from_row,
    span_to_sqlite_row,
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
from src.repositories.span_store import RepositoryDataError, RepositoryError

__all__ = ["SqliteSpanRepository"]

T = TypeVar("T")
MEMORY = ":memory:"
WAL_AUTOCHECKPOINT_PAGES = 10_000
"""WAL frames (pages, ~40 MB at 4 KiB) before a commit checkpoints them into the database.
SQLite's default (1000) checkpoints every few 100-span batches (each dirties ~150-250 pages
across the indexes), and each checkpoint syncs both files: 10,000 took ingestion from 0.38 to
~0.47 of the bare floor. Durability is unchanged (WAL + synchronous=NORMAL)."""


_DATA_ERRORS = (OverflowError, sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError)
"""A value SQLite cannot bind (an int past 2**63: OverflowError; an unsupported type:
InterfaceError) or a constraint it refuses: `RepositoryDataError`, never retried."""


def _window_params(window: Window) -> dict[str, str]:
    return {"start": format_utc(window.start), "end": format_utc(window.end)}


class SqliteSpanRepository(WindowMetricsFromRollups):
    """`SpanRepository` on a SQLite file (or `":memory:"` for throwaway use).

    Example:
        repo = SqliteSpanRepository(".e2i_obs/observability.db")
        await repo.setup()
        await repo.insert_spans_batch(spans)
        stats = await repo.get_latency_stats("1h")
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        busy_timeout_seconds: float = 10.0,
    ) -> None:
        self._busy_timeout = check_seconds("busy_timeout_seconds", busy_timeout_seconds)
        self._path = str(path) if str(path) == MEMORY else Path(path).expanduser()
        self._clock = clock or utc_now
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        """The window read's connection (None until used; never for ":memory:", which is
        private to its connection)."""
        self._closed = False

    @property
    def path(self) -> Path | str:
        return self._path

    # -- plumbing -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if isinstance(self._path, Path):
            self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,  # explicit BEGIN/COMMIT below
            check_same_thread=False,  # guarded by self._lock
        )
        try:
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: survives a process crash
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            conn.execute("PRAGMA foreign_keys=ON")
            rollup_sql.ensure_math(conn)
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL (persistent, so only a new file really changes). SQLite answers
        "database is locked" at once, without the busy handler, while another connection is
        converting the same new file, so retry until the busy timeout."""
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def _call(self, operation: str, work: Callable[[sqlite3.Connection], T]) -> T:
        return self._on_connection(self._lock, "_conn", operation, work)

    def _call_reader(self, operation: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """`_call` on the reader connection (one statement: its own read transaction)."""
        if self._path == MEMORY:
            return self._call(operation, work)
        return self._on_connection(self._read_lock, "_reader", operation, work)

    def _on_connection(
        self,
        lock: threading.Lock,
        slot: str,
        operation: str,
        work: Callable[[sqlite3.Connection], T],
    ) -> T:
        """`work` on the connection in attribute `slot` (opened on first use), under `lock`."""
        with lock:
            if self._closed:
                raise RepositoryError(f"sqlite {operation}: the repository is closed")
            try:
                conn = getattr(self, slot)
                if conn is None:
                    conn = self._connect()
                    setattr(self, slot, conn)
                return work(conn)
            except _DATA_ERRORS as exc:  # the values themselves: retrying cannot help
                raise RepositoryDataError(f"sqlite {operation} on {self._path}: {exc}") from exc
            except (sqlite3.Error, OSError) as exc:  # OSError: the directory cannot be made
                hint = " (call setup() first)" if "no such table" in str(exc) else ""
                raise RepositoryError(
                    f"sqlite {operation} on {self._path} failed: {exc}{hint}"
                ) from exc

    async def _run(self, operation: str, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._call, operation, work)

    async def _read(self, operation: str, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._call_reader, operation, work)

    @staticmethod
    def _write(conn: sqlite3.Connection, work: Callable[[], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    # -- SpanRepository -------------------------------------------------------------------

    async def setup(self) -> None:
        def migrate(conn: sqlite3.Connection) -> None:
            def apply() -> None:
                (version,) = conn.execute("PRAGMA user_version").fetchone()
                for number, migration in enumerate(sql.MIGRATIONS, start=1):
                    if number > version:
                        if callable(migration):
                            migration(conn)
                        else:
                            for statement in migration:
                                conn.execute(statement)
                        conn.execute(f"PRAGMA user_version = {number}")

            self._write(conn, apply)  # BEGIN IMMEDIATE: concurrent setups take turns

        await self._run("setup", migrate)

    async def insert_span(self, span: ObservabilitySpan) -> bool:
        return await self.insert_spans_batch([span]) == 1

    async def insert_spans_batch(self, spans: Sequence[ObservabilitySpan]) -> int:
        return await asyncio.to_thread(self.insert_spans_batch_blocking, spans)

    def insert_spans_batch_blocking(self, spans: Sequence[ObservabilitySpan]) -> int:
        """`insert_spans_batch` for a caller that is already on a thread that may block (the
        batch processor's worker, through `DatabaseSink`): no event-loop or thread hop."""
        rows = [span_to_sqlite_row(span) for span in spans]
        if not rows:
            return 0

        def insert(conn: sqlite3.Connection) -> int:
            def write() -> int:
                (before,) = conn.execute(rollup_sql.MAX_ROWID).fetchone()
                inserted = sql.insert_spans(conn, rows)
                if inserted:  # rollups of the rows really inserted, same transaction
                    every_row = rows if inserted == len(rows) else None
                    rollup_sql.add_new_rows(conn, before, every_row)
                return inserted

            return self._write(conn, write)

        return self._call("insert", insert)

    async def get_spans_by_time_window(
        self,
        window: str,
        agent_name: str | None = None,
        limit: int = 1000,
        *,
        status: SpanStatus | str | None = None,
        agent_tier: int | None = None,
    ) -> list[ObservabilitySpan]:
        params = {
            **_window_params(resolve_window(window, self._clock)),
            "agent": check_agent_name(agent_name),
            "status": check_status(status),
            "tier": check_agent_tier(agent_tier),
            "limit": check_limit(limit),
        }
        rows = await self._run(
            "select", lambda conn: conn.execute(sql.SELECT_BY_WINDOW, params).fetchall()
        )
        return [span_from_row(row) for row in rows]

    async def get_spans_by_trace(self, trace_id: str) -> list[ObservabilitySpan]:
        params = (check_trace_id(trace_id),)
        rows = await self._run(
            "select", lambda conn: conn.execute(sql.SELECT_BY_TRACE, params).fetchall()
        )
        return [span_from_row(row) for row in rows]

    async def get_trace_summary(self, trace_id: str) -> TraceSummary:
        params = (check_trace_id(trace_id),)
        row = await self._run(
            "trace summary", lambda conn: conn.execute(sql.TRACE_SUMMARY, params).fetchone()
        )
        return summary_from_row(trace_id, row)

    async def _rollup_read(self, window: str, agent_name: str | None) -> tuple[list[Any], Window]:
        """The window's sketch rows and raw edge groups (`rollups.FRAGMENT_COLUMNS`): one
        statement, so one snapshot."""
        resolved = resolve_window(window, self._clock)
        params: dict[str, Any] = {
            name: format_utc(value)
            for name, value in zip(BOUND_NAMES, split_window(resolved).as_tuple(), strict=True)
        }
        params["agent"] = check_agent_name(agent_name)
        rows = await self._read(
            "rollup read", lambda conn: conn.execute(sketch_sql.ROLLUP_WINDOW, params).fetchall()
        )
        return rows, resolved

    async def get_latency_stats(
        self, window: str, agent_name: str | None = None, *, exact: bool = False
    ) -> list[LatencyStats]:
        if not exact:
            rows, resolved = await self._rollup_read(window, agent_name)
            return latency_stats_from_rollups(rows, window, resolved.minutes)
        resolved = resolve_window(window, self._clock)
        params = {
            **_window_params(resolved),
            "agent": check_agent_name(agent_name),
            "minutes": resolved.minutes,
        }
        rows = await self._run(
            "latency stats", lambda conn: conn.execute(sql.LATENCY_STATS, params).fetchall()
        )
        return [stats_from_row(row, window) for row in rows]

    async def get_window_summary(
        self, window: str, agent_name: str | None = None, *, exact: bool = False
    ) -> WindowSummary:
        if not exact:
            rows, _ = await self._rollup_read(window, agent_name)
            return window_summary_from_rollups(rows, window)
        params = {
            **_window_params(resolve_window(window, self._clock)),
            "agent": check_agent_name(agent_name),
        }
        row = await self._run(
            "window summary", lambda conn: conn.execute(sql.WINDOW_SUMMARY, params).fetchone()
        )
        return window_summary_from_row(row, window)

    async def count_old_spans(self, days: int = 90) -> int:
        cutoff = format_utc(current_time(self._clock) - check_retention(days, 1))
        (count,) = await self._run(
            "count old spans", lambda conn: conn.execute(sql.COUNT_OLD, (cutoff,)).fetchone()
        )
        return int(count)

    async def get_cost_stats(
        self, window: str, agent_name: str | None = None, *, exact: bool = False
    ) -> list[CostSummary]:
        """Cost per agent and for the window; from rollups and the trace-cost sketch
        (`cost_rollups.py`), or from the raw LLM spans with `exact`."""
        resolved = resolve_window(window, self._clock)
        if not exact:
            bounds = {
                n: format_utc(v)
                for n, v in zip(COST_BOUND_NAMES, cost_bounds(resolved), strict=True)
            }
            bounds["agent"] = check_agent_name(agent_name)
            rows = await self._run(
                "cost read",
                lambda conn: conn.execute(trace_sql.ROLLUP_COSTS, bounds).fetchall(),
            )
            return cost_stats_from_rollups(rows, agent_name)
        params = {**_window_params(resolved), "agent": check_agent_name(agent_name)}
        rows = await self._run(
            "cost stats", lambda conn: conn.execute(sql.COST_STATS, params).fetchall()
        )
        return [cost_from_row(row) for row in rows]

    async def get_cost_breakdown(
        self, window: str, by: str = "agent", agent_name: str | None = None
    ) -> list[CostBreakdownRow]:
        query = sql.cost_breakdown(check_cost_by(by))
        params = {
            **_window_params(resolve_window(window, self._clock)),
            "agent": check_agent_name(agent_name),
        }
        rows = await self._run(
            "cost breakdown", lambda conn: conn.execute(query, params).fetchall()
        )
        return [breakdown_from_row(row) for row in rows]

    async def rebuild_rollups(self, since: datetime | None = None) -> int:
        """Recompute the rollups from the spans that started at or after `since`'s hour
        (None: all spans); older rollups stay. Returns the number of spans rolled up."""
        start = None if since is None else format_utc(check_aware("since", since))

        def work(conn: sqlite3.Connection) -> int:
            def rebuild() -> int:
                trace_sql.rebuild(conn, start)
                return rollup_sql.rebuild(conn, start)

            return self._write(conn, rebuild)

        return await self._run("rebuild rollups", work)

    async def delete_old_rollups(
        self, days: int = DEFAULT_ROLLUP_RETENTION_DAYS, minute_days: int | None = None
    ) -> int:
        """Delete rollup rows of slots older than `days` (their own retention) and of minute
        slots older than `minute_days` (None: `days`); the count."""
        older_than, minutes_older_than = check_rollup_retention(days, minute_days)
        now = current_time(self._clock)
        cutoffs = (format_utc(now - older_than), format_utc(now - minutes_older_than))

        def work(conn: sqlite3.Connection) -> int:
            def delete() -> int:
                return sum(
                    conn.execute(statement, cutoffs).rowcount
                    for statement in rollup_sql.DELETE_OLD_ROLLUPS
                )

            return self._write(conn, delete)

        return await self._run("delete old rollups", work)

    async def delete_old_spans(self, days: int = 90, batch_size: int = 1000) -> int:
        cutoff = format_utc(current_time(self._clock) - check_retention(days, batch_size))

        def delete_batch(conn: sqlite3.Connection) -> int:
            def delete() -> int:
                deleted = conn.execute(sql.DELETE_OLD_BATCH, (cutoff, batch_size)).rowcount
                # running trace costs go with the spans (the cost sketch stays, a rollup)
                conn.execute(trace_sql.DELETE_OLD_TRACE_COSTS, (cutoff,))
                return deleted

            return self._write(conn, delete)

        total = 0
        while True:  # one short transaction per batch, so writers interleave with retention
            deleted = await self._run("delete old spans", delete_batch)
            total += deleted
            if deleted < batch_size:
                return total

    async def close(self) -> None:
        def close_connection() -> None:
            with self._lock:
                self._closed = True
                conn, self._conn = self._conn, None
            with self._read_lock:
                reader, self._reader = self._reader, None
            for connection in (conn, reader):
                if connection is not None:
                    connection.close()

        await asyncio.to_thread(close_connection)
