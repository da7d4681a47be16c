"""Benchmark 3: `get_latency_stats("24h")` over N spans spread across 7 days and 18 agents.

Seeding takes the fastest path (rows straight from `data.seed_rows`: one `COPY` into
PostgreSQL, one `executemany` into SQLite, then `VACUUM ANALYZE` / `ANALYZE`); it is not
measured. Then, alternating so drift hits both alike:

- cold: `MetricsService.get_latency_stats("24h")` with its cache invalidated before each call
  (the database's own buffers are warm, as in production); the baseline is the bare query:
  `percentile_cont` p50/p95/p99 per agent over the same window through a plain psycopg
  connection on PostgreSQL; on SQLite (no `percentile_cont`) a bare `SELECT` of the window's
  durations with the percentiles computed by `statistics.quantiles` in Python;
- cached: the same call answered by the in-memory metrics cache.

Both paths must agree on every agent's p50 (checked, so a fast wrong answer cannot pass).
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import psycopg

from src.agents.ml_foundation.observability_connector.cache import InMemoryMetricsCache
from src.agents.ml_foundation.observability_connector.config import CacheSettings
from src.agents.ml_foundation.observability_connector.nodes.metrics_aggregator import (
    MetricsService,
)
from src.repositories import _sqlite_sql
from src.repositories._rows import SPAN_COLUMNS, format_utc
from src.repositories.postgres_repository import PostgresSpanRepository
from src.repositories.span_store import TABLE_NAME, SpanRepository
from src.repositories.sqlite_repository import SqliteSpanRepository

from .data import NOW, seed_rows
from .report import BenchResult, Target, percentile
from .servers import PgServer, apply_schema, fresh_database

__all__ = ["run_query_benchmarks"]

WINDOW = "24h"
START = NOW - timedelta(hours=24)
COLD_TARGET = Target("ours/bare", "<=", 1.2, "cold <= 1.2x bare percentile_cont")
CACHED_TARGET = Target("ours", "<", 1.0, "cached < 1 ms")
_BARE_PG = f"""
SELECT agent_name,
       percentile_cont(0.50) WITHIN GROUP (ORDER BY duration_ms),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms)
FROM public.{TABLE_NAME}
WHERE start_time >= %s AND start_time <= %s
GROUP BY agent_name
"""
_BARE_SQLITE = (
    f"SELECT agent_name, duration_ms FROM {TABLE_NAME} "
    "WHERE start_time >= ? AND start_time <= ? AND duration_ms IS NOT NULL"
)


def _seed_postgres(dsn: str, n: int) -> float:
    started = time.perf_counter()
    apply_schema(PostgresSpanRepository(dsn))
    statement = f"COPY public.{TABLE_NAME} ({', '.join(SPAN_COLUMNS)}) FROM STDIN"
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in seed_rows(n):
                copy.write_row(row)
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE public.{TABLE_NAME}")
    return time.perf_counter() - started


def _seed_sqlite(path: Path, n: int) -> float:
    started = time.perf_counter()
    apply_schema(SqliteSpanRepository(path))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_sqlite_sql.INSERT_SPAN, seed_rows(n, text_times=True))
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return time.perf_counter() - started


def _bare_postgres(dsn: str) -> Callable[[], dict[str, float]]:
    conn = psycopg.connect(dsn, autocommit=True)

    def query() -> dict[str, float]:
        rows = conn.execute(_BARE_PG, (START, NOW)).fetchall()
        return {agent: p50 for agent, p50, _, _ in rows}

    query.close = conn.close  # type: ignore[attr-defined]
    return query


def _bare_sqlite(path: Path) -> Callable[[], dict[str, float]]:
    conn = sqlite3.connect(path, check_same_thread=False)

    def query() -> dict[str, float]:
        durations: dict[str, list[float]] = {}
        for agent, duration in conn.execute(_BARE_SQLITE, (format_utc(START), format_utc(NOW))):
            durations.setdefault(agent, []).append(duration)
        return {
            agent: statistics.quantiles(values, n=100, method="inclusive")[49]
            for agent, values in durations.items()
        }

    query.close = conn.close  # type: ignore[attr-defined]
    return query


async def _timed(call: Callable[[], Awaitable[object]] | Callable[[], object]) -> float:
    start = time.perf_counter()
    result = call()
    if asyncio.iscoroutine(result):
        await result
    return (time.perf_counter() - start) * 1000.0


async def _measure(
    repository: SpanRepository, bare: Callable[[], dict[str, float]], reps: int, cached_reps: int
) -> tuple[list[float], list[float], list[float]]:
    cache = InMemoryMetricsCache(CacheSettings())
    service = MetricsService(repository, cache, clock=lambda: NOW)
    try:
        ours_stats = await service.get_latency_stats(WINDOW)  # warm: pool, plans, pages
        _check_agree({s.agent_name: s.p50_ms for s in ours_stats}, bare())
        cold, baseline = [], []
        for _ in range(reps):
            baseline.append(await _timed(bare))
            cache.invalidate_all()
            cold.append(await _timed(lambda: service.get_latency_stats(WINDOW)))
        cached = [
            await _timed(lambda: service.get_latency_stats(WINDOW)) for _ in range(cached_reps)
        ]
    finally:
        await repository.close()
        bare.close()  # type: ignore[attr-defined]
    return cold, baseline, cached


def _check_agree(ours: dict[str, float | None], bare: dict[str, float]) -> None:
    if set(ours) != set(bare) or any(
        ours[a] is None or not math.isclose(ours[a], bare[a], rel_tol=1e-9) for a in bare
    ):
        raise RuntimeError(f"our p50 per agent disagrees with the bare query: {ours} vs {bare}")


def run_query_benchmarks(
    *, n: int, reps: int, cached_reps: int, work_dir: Path, pg: PgServer
) -> list[BenchResult]:
    results = []
    dsn = fresh_database(pg, "query")
    sqlite_path = work_dir / "query.db"
    setups = {
        "postgres": (
            lambda: _seed_postgres(dsn, n),
            lambda: PostgresSpanRepository(dsn, clock=lambda: NOW),
            lambda: _bare_postgres(dsn),
            "bare percentile_cont query (psycopg)",
        ),
        "sqlite": (
            lambda: _seed_sqlite(sqlite_path, n),
            lambda: SqliteSpanRepository(sqlite_path, clock=lambda: NOW),
            lambda: _bare_sqlite(sqlite_path),
            "bare SELECT of durations + statistics.quantiles",
        ),
    }
    for backend, (seed, repository, bare, bare_label) in setups.items():
        seconds = seed()
        cold, baseline, cached = asyncio.run(_measure(repository(), bare(), reps, cached_reps))
        cold_ms, bare_ms, cached_ms = (percentile(v, 50) for v in (cold, baseline, cached))
        window_note = f"~{n // 7:,} spans in the 24h window; seeded in {seconds:.0f} s"
        results.append(
            BenchResult(
                name="metrics query 24h: cold (cache invalidated)",
                backend=backend,
                n=n,
                unit="ms",
                baseline_label=bare_label,
                baseline=bare_ms,
                ours=cold_ms,
                ratios={"ours/bare": cold_ms / bare_ms},
                targets=[COLD_TARGET] if backend == "postgres" else [],
                notes=f"median of {reps}; {window_note}",
            )
        )
        results.append(
            BenchResult(
                name="metrics query 24h: cached",
                backend=backend,
                n=n,
                unit="ms",
                baseline_label="our cold query",
                baseline=cold_ms,
                ours=cached_ms,
                ratios={"ours/cold": cached_ms / cold_ms},
                targets=[CACHED_TARGET],
                notes=f"median of {cached_reps}; p99 {percentile(cached, 99):.3f} ms; "
                f"cut vs cold {100 * (1 - cached_ms / cold_ms):.2f}% (want > 99%)",
            )
        )
        print(f"  query/{backend}: bare {bare_ms:.1f} ms, cold {cold_ms:.1f} ms", flush=True)
    return results
