"""Benchmark 3: 24 h window metrics over N spans spread across 7 days and 18 agents.

Seeding takes the fastest path (rows straight from `data.seed_rows`: one `COPY` into
PostgreSQL, whose rollup trigger fills the rollups in the same statement; one `executemany`
into SQLite, then `rebuild_rollups()`, timed apart), then `VACUUM ANALYZE` / `ANALYZE`. The
window's end is mid-minute (`END`), so both edges are partial minutes read from raw spans.
Then, alternating so drift hits all alike:

- bare: `percentile_cont` p50/p95/p99 per agent over the window through a plain psycopg
  connection (PostgreSQL); on SQLite a bare `SELECT` of the durations + `statistics.quantiles`;
- exact: `MetricsService.get_quality_metrics(exact=True)`, everything from the raw spans;
- cold: the same call from rollups, with the metrics cache invalidated before each call (the
  database's own buffers are warm, as in production); and the rollup-backed repository reads
  alone (`get_latency_stats` + `get_window_summary`), and `get_cost_stats` alone (totals from
  rollups, cost per trace from the cost sketch: checked within 1% of the exact one);
- cached: the same call answered by the in-memory metrics cache.

Exact p50 must equal the bare query's, and the rollups' p50/p95/p99 must be within 1% of it
(checked, so a fast wrong answer cannot pass); the worst relative error is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import psycopg

from src.agents.ml_foundation.observability_connector.cache import InMemoryMetricsCache
from src.agents.ml_foundation.observability_connector.config import CacheSettings
from src.agents.ml_foundation.observability_connector.cost_models import CostSummary
from src.agents.ml_foundation.observability_connector.models import LatencyStats
from src.agents.ml_foundation.observability_connector.nodes.metrics_aggregator import (
    MetricsService,
)
from src.repositories import _sqlite_sql
from src.repositories._rows import SPAN_COLUMNS, format_utc
from src.repositories.postgres_repository import PostgresSpanRepository
from src.repositories.span_store import TABLE_NAME, SpanRepository
from src.repositories.sqlite_repository import SqliteSpanRepository

from .data import NOW, SEED_SQL, seed_rows, seed_sql_params
from .report import BenchResult, Target, percentile
from .servers import PgServer, apply_schema, fresh_database, postgres_server

__all__ = ["run_query_benchmarks"]

WINDOW = "24h"
END = NOW - timedelta(seconds=17.3)
"""The window's end: mid-minute, so its edges come from raw spans."""
START = END - timedelta(hours=24)
COLD_TARGET = Target("ours", "<", 10.0, "cold from rollups < 10 ms")
EXACT_TARGET = Target("ours/bare", "<=", 1.2, "exact <= 1.2x bare percentile_cont")
CACHED_TARGET = Target("ours", "<", 1.0, "cached < 1 ms")
ACCURACY = 0.01
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


SERVER_SEED_CHUNK = 1_000_000
"""Rows per `INSERT ... SELECT` of a server-side seed (one transaction and trigger call each)."""


def _seed_postgres(dsn: str, n: int, *, server_side: bool = False) -> tuple[float, float]:
    started = time.perf_counter()
    apply_schema(PostgresSpanRepository(dsn))
    if server_side:
        return _seed_postgres_server_side(dsn, n, started)
    else:
        statement = f"COPY public.{TABLE_NAME} ({', '.join(SPAN_COLUMNS)}) FROM STDIN"
        with psycopg.connect(dsn) as conn:
            with conn.cursor() as cursor, cursor.copy(statement) as copy:
                for row in seed_rows(n):
                    copy.write_row(row)
            conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started, 0.0  # the trigger rolled up during the COPY


_PLAIN_INDEXES = """
SELECT i.relname, pg_get_indexdef(i.oid)
FROM pg_index AS x JOIN pg_class AS i ON i.oid = x.indexrelid
WHERE x.indrelid = %s::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = x.indexrelid)
"""
"""The span table's indexes that back no constraint (dropped during a bulk seed)."""


def _seed_postgres_server_side(dsn: str, n: int, started: float) -> tuple[float, float]:
    """Bulk load as for a migration: the secondary indexes dropped and the rollup trigger off
    while `generate_series` fills the table in chunks, then the indexes built once and the
    rollups recomputed by `ml_rebuild_rollups` (timed apart, as SQLite's rebuild)."""
    table = f"public.{TABLE_NAME}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET synchronous_commit = off")
        indexes = conn.execute(_PLAIN_INDEXES, (table,)).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX public.{name}")
        conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER ml_observability_spans_rollup")
        for low in range(0, n, SERVER_SEED_CHUNK):
            conn.execute(SEED_SQL, seed_sql_params(n, low, min(n, low + SERVER_SEED_CHUNK)))
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER ml_observability_spans_rollup")
        rebuild = time.perf_counter()
        conn.execute("SELECT public.ml_rebuild_rollups(NULL)")
        rebuild = time.perf_counter() - rebuild
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started, rebuild


def _seed_sqlite(path: Path, n: int) -> tuple[float, float]:
    started = time.perf_counter()
    apply_schema(SqliteSpanRepository(path))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_sqlite_sql.INSERT_SPAN, seed_rows(n, text_times=True))
        conn.execute("COMMIT")
    finally:
        conn.close()
    rebuild = time.perf_counter()
    asyncio.run(_rebuild(SqliteSpanRepository(path)))
    rebuild = time.perf_counter() - rebuild
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return time.perf_counter() - started, rebuild


async def _rebuild(repository: SpanRepository) -> None:
    try:
        await repository.rebuild_rollups()
    finally:
        await repository.close()


Percentiles = dict[str, tuple[float, float, float]]
"""Per agent: p50, p95, p99."""


def _bare_postgres(dsn: str) -> Callable[[], Percentiles]:
    conn = psycopg.connect(dsn, autocommit=True)

    def query() -> Percentiles:
        rows = conn.execute(_BARE_PG, (START, END)).fetchall()
        return {agent: (p50, p95, p99) for agent, p50, p95, p99 in rows}

    query.close = conn.close  # type: ignore[attr-defined]
    return query


def _bare_sqlite(path: Path) -> Callable[[], Percentiles]:
    conn = sqlite3.connect(path, check_same_thread=False)

    def query() -> Percentiles:
        durations: dict[str, list[float]] = {}
        for agent, duration in conn.execute(_BARE_SQLITE, (format_utc(START), format_utc(END))):
            durations.setdefault(agent, []).append(duration)
        result = {}
        for agent, values in durations.items():
            cuts = statistics.quantiles(values, n=100, method="inclusive")
            result[agent] = (cuts[49], cuts[94], cuts[98])
        return result

    query.close = conn.close  # type: ignore[attr-defined]
    return query


async def _timed(call: Callable[[], Awaitable[object]] | Callable[[], object]) -> float:
    start = time.perf_counter()
    result = call()
    if asyncio.iscoroutine(result):
        await result
    return (time.perf_counter() - start) * 1000.0


@dataclass
class Timings:
    bare: list[float] = field(default_factory=list)
    exact: list[float] = field(default_factory=list)
    cold: list[float] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)
    one_read: list[float] = field(default_factory=list)
    """`get_window_metrics`: both of `reads` from one rollup read (what MetricsService asks)."""
    cost: list[float] = field(default_factory=list)
    """`get_cost_stats` alone (rollups + cost sketch), which the cold call runs beside it."""
    cached: list[float] = field(default_factory=list)
    worst_cost_error: float = 0.0
    """Largest relative error of a sketch cost-per-trace p50/p95 against the exact one."""
    worst_error: float = 0.0
    """Largest relative error of a rollup p50/p95/p99 against percentile_cont."""


async def _measure(
    repository: SpanRepository, bare: Callable[[], Percentiles], reps: int, cached_reps: int
) -> Timings:
    cache = InMemoryMetricsCache(CacheSettings())
    service = MetricsService(repository, cache, clock=lambda: END)
    timings = Timings()

    async def rollup_reads() -> None:
        await asyncio.gather(
            repository.get_latency_stats(WINDOW), repository.get_window_summary(WINDOW)
        )

    try:
        truth = bare()  # warm: pool, plans, pages
        exact = await service.get_latency_stats(WINDOW, exact=True)
        _check_exact({s.agent_name: s.p50_ms for s in exact}, truth)
        rolled = await service.get_latency_stats(WINDOW)
        timings.worst_error = _check_rollups(rolled, truth)
        timings.worst_cost_error = _check_costs(
            await repository.get_cost_stats(WINDOW),
            await repository.get_cost_stats(WINDOW, exact=True),
        )
        for _ in range(reps):
            timings.bare.append(await _timed(bare))
            timings.exact.append(
                await _timed(lambda: service.get_quality_metrics(WINDOW, exact=True))
            )
            cache.invalidate_all()
            timings.cold.append(await _timed(lambda: service.get_quality_metrics(WINDOW)))
            timings.reads.append(await _timed(rollup_reads))
            timings.one_read.append(await _timed(lambda: repository.get_window_metrics(WINDOW)))
            timings.cost.append(await _timed(lambda: repository.get_cost_stats(WINDOW)))
        timings.cached = [
            await _timed(lambda: service.get_quality_metrics(WINDOW)) for _ in range(cached_reps)
        ]
    finally:
        await repository.close()
        bare.close()  # type: ignore[attr-defined]
    return timings


def _check_exact(ours: dict[str, float | None], bare: Percentiles) -> None:
    if set(ours) != set(bare) or any(
        ours[a] is None or not math.isclose(ours[a], bare[a][0], rel_tol=1e-9) for a in bare
    ):
        raise RuntimeError(f"our exact p50 per agent disagrees with the bare query: {ours}")


def _check_rollups(rolled: list[LatencyStats], bare: Percentiles) -> float:
    """The worst relative error of the rollups' percentiles; RuntimeError past ACCURACY."""
    if {s.agent_name for s in rolled} != set(bare):
        raise RuntimeError(f"rollups see other agents than the bare query: {sorted(bare)}")
    worst = 0.0
    for stats in rolled:
        ours_all = (stats.p50_ms, stats.p95_ms, stats.p99_ms)
        for ours, truth in zip(ours_all, bare[stats.agent_name], strict=True):
            if ours is None:
                raise RuntimeError(f"no rollup percentile for {stats.agent_name}")
            worst = max(worst, abs(ours - truth) / truth)
    if worst > ACCURACY:
        raise RuntimeError(f"rollup percentiles off by {worst:.3%} (> {ACCURACY:.0%})")
    return worst


def _check_costs(rolled: list[CostSummary], exact: list[CostSummary]) -> float:
    """The worst relative error of the sketch's cost per trace p50/p95 (RuntimeError past
    ACCURACY, or if the totals differ): a trace straddling the window's start may count
    differently, a handful among tens of thousands, so the percentiles barely move."""
    if [c.agent_name for c in rolled] != [c.agent_name for c in exact]:
        raise RuntimeError("rollup cost rows name other agents than the exact ones")
    worst = 0.0
    for ours, truth in zip(rolled, exact, strict=True):
        if ours.priced_llm_calls != truth.priced_llm_calls or not math.isclose(
            ours.cost_usd, truth.cost_usd, rel_tol=1e-9
        ):
            raise RuntimeError(f"rollup cost totals differ for {ours.agent_name}")
        for got, want in (
            (ours.cost_per_trace_p50, truth.cost_per_trace_p50),
            (ours.cost_per_trace_p95, truth.cost_per_trace_p95),
        ):
            if got is None or want is None:
                raise RuntimeError(f"no cost per trace for {ours.agent_name}")
            worst = max(worst, abs(got - want) / want)
    if worst > ACCURACY:
        raise RuntimeError(f"cost per trace percentiles off by {worst:.3%} (> {ACCURACY:.0%})")
    return worst


def run_query_benchmarks(
    *,
    n: int,
    reps: int,
    cached_reps: int,
    work_dir: Path,
    pg: PgServer,
    backends: tuple[str, ...] = ("postgres", "sqlite"),
    server_seed: bool = False,
) -> list[BenchResult]:
    """`server_seed`: PostgreSQL seeds itself (`data.SEED_SQL`), for 10M spans and more."""
    results: list[BenchResult] = []
    dsn = fresh_database(pg, "query")
    sqlite_path = work_dir / "query.db"
    setups = {
        "postgres": (
            lambda: _seed_postgres(dsn, n, server_side=server_seed),
            lambda: PostgresSpanRepository(dsn, clock=lambda: END),
            lambda: _bare_postgres(dsn),
            "bare percentile_cont query (psycopg)",
        ),
        "sqlite": (
            lambda: _seed_sqlite(sqlite_path, n),
            lambda: SqliteSpanRepository(sqlite_path, clock=lambda: END),
            lambda: _bare_sqlite(sqlite_path),
            "bare SELECT of durations + statistics.quantiles",
        ),
    }
    for backend, (seed, repository, bare, bare_label) in setups.items():
        if backend not in backends:
            continue
        seconds, rebuild = seed()
        t = asyncio.run(_measure(repository(), bare(), reps, cached_reps))
        bare_ms, exact_ms, cold_ms, reads_ms, one_read_ms, cost_ms, cached_ms = (
            percentile(v, 50)
            for v in (t.bare, t.exact, t.cold, t.reads, t.one_read, t.cost, t.cached)
        )
        window_note = f"~{n // 7:,} spans in the 24h window; seeded in {seconds:.0f} s" + (
            f" + rollup rebuild {rebuild:.1f} s" if rebuild else " (rollups by the trigger)"
        )
        results += [
            BenchResult(
                name="metrics query 24h: cold (cache invalidated)",
                backend=backend,
                n=n,
                unit="ms",
                baseline_label="exact metrics from raw spans (exact=True)",
                baseline=exact_ms,
                ours=cold_ms,
                ratios={"ours/exact": cold_ms / exact_ms, "ours/bare": cold_ms / bare_ms},
                targets=[COLD_TARGET],
                notes=f"median of {reps}; from rollups + raw edges; p50/p95/p99 worst error "
                f"{t.worst_error:.3%} vs percentile_cont; rollup reads alone (latency stats + "
                f"window summary) {reads_ms:.2f} ms, as one read (get_window_metrics, what the "
                f"cold call does) {one_read_ms:.2f} ms; get_cost_stats (rollups + cost sketch, "
                f"beside it) {cost_ms:.2f} ms, cost per trace p50/p95 worst error "
                f"{t.worst_cost_error:.3%}; {window_note}",
            ),
            BenchResult(
                name="metrics query 24h: exact (raw spans)",
                backend=backend,
                n=n,
                unit="ms",
                baseline_label=bare_label,
                baseline=bare_ms,
                ours=exact_ms,
                ratios={"ours/bare": exact_ms / bare_ms},
                targets=[EXACT_TARGET] if backend == "postgres" else [],
                notes=f"median of {reps}; {window_note}",
            ),
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
                notes=f"median of {cached_reps}; p99 {percentile(t.cached, 99):.3f} ms; "
                f"cut vs cold {100 * (1 - cached_ms / cold_ms):.2f}% (want > 99%)",
            ),
        ]
        print(
            f"  query/{backend}: bare {bare_ms:.1f} ms, exact {exact_ms:.1f} ms, cold (rollups) "
            f"{cold_ms:.1f} ms, rollup reads {reads_ms:.2f} ms (one read {one_read_ms:.2f} ms), "
            f"cost stats {cost_ms:.2f} ms (p50/p95 worst error {t.worst_cost_error:.3%}), "
            f"cached {cached_ms:.3f} ms, "
            f"worst percentile error {t.worst_error:.3%}",
            flush=True,
        )
    return results


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.bench_query --spans 1000000 [--backend postgres] [--server-seed]`:
    this benchmark alone, printed, not recorded (10M spans on PostgreSQL: `--spans 10000000
    --backend postgres --server-seed`)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_query")
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--cached-reps", type=int, default=5000)
    parser.add_argument("--backend", action="append", choices=["postgres", "sqlite"])
    parser.add_argument(
        "--server-seed",
        action="store_true",
        help="PostgreSQL generates the spans itself (generate_series): minutes for 10M spans",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work, postgres_server() as pg:
        for result in run_query_benchmarks(
            n=args.spans,
            reps=args.reps,
            cached_reps=args.cached_reps,
            work_dir=Path(work),
            pg=pg,
            backends=tuple(args.backend or ("postgres", "sqlite")),
            server_seed=args.server_seed,
        ):
            print(f"- {result.ratio_line()}  [{result.notes}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
