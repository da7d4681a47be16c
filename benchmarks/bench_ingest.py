"""Benchmark 2: ingestion throughput, `submit()` -> durable in the database.

Ours: every span handed to `BatchProcessor.submit()` from one thread, the clock stopped when
`flush()` returns (every span committed by the `DatabaseSink`), with the default span policy
(redaction and size limits, as `build_opik_connector` wires it); default batching settings (so
adaptive batches: up to 5,000 spans per write while a backlog exists) except a queue that holds
the whole run (a spill to the spool would measure the spool, not ingestion).
The floor: the same rows, already converted, written by the bare driver in one transaction:
`executemany` for SQLite (same pragmas, same INSERT), one `COPY` for PostgreSQL. Each figure is
the best of `reps` runs into a fresh database.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from src.agents.ml_foundation.observability_connector.batch_processor import BatchProcessor
from src.agents.ml_foundation.observability_connector.config import (
    BatchingSettings,
    SpansSettings,
)
from src.agents.ml_foundation.observability_connector.config_otlp import OtlpSettings
from src.agents.ml_foundation.observability_connector.db_sink import DatabaseSink
from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan
from src.agents.ml_foundation.observability_connector.otlp.sink import OtlpSink
from src.agents.ml_foundation.observability_connector.sinks import Sink
from src.agents.ml_foundation.observability_connector.span_policy import SpanPolicy
from src.mlops.circuit_breaker import CircuitBreaker
from src.repositories import _sqlite_sql
from src.repositories._rows import SPAN_COLUMNS, span_to_postgres_row, span_to_sqlite_row
from src.repositories.postgres_repository import PostgresSpanRepository
from src.repositories.span_store import TABLE_NAME, SpanRepository
from src.repositories.sqlite_repository import SqliteSpanRepository

from .data import make_spans
from .loopback import LoopbackServer
from .report import BenchResult, Target
from .servers import PgServer, apply_schema, fresh_database

__all__ = ["database_results", "run_ingest_benchmarks"]

FLOOR_TARGET = Target("ours/floor", ">=", 0.8, "ours >= 80% of raw floor")
WAIT_SECONDS = 900.0


def _through_pipeline(
    make_repository: Callable[[], SpanRepository],
    spans: list[ObservabilitySpan],
    batch: int,
    otlp_endpoint: str | None = None,
    *,
    adaptive: bool = True,
) -> float:
    """Spans per second from the first submit to a flush that found every span committed
    (and, with `otlp_endpoint`, exported over OTLP/HTTP too)."""
    sink = DatabaseSink(make_repository(), timeout=120)
    sink.setup()
    sinks: list[Sink] = [sink]
    if otlp_endpoint:
        settings_otlp = OtlpSettings(endpoint=otlp_endpoint)
        sinks.append(OtlpSink(settings_otlp, CircuitBreaker(failure_threshold=1000)))
    settings = BatchingSettings(
        max_batch_size=batch,
        max_queue_size=2 * len(spans) + 2,  # under half full: no spill, the straight path
        # adaptive off: every write is `batch` spans, as before issue 15
        **({} if adaptive else {"max_backlog_batch_size": 1}),
    )
    with tempfile.TemporaryDirectory(prefix="e2i-bench-spool-") as spool:
        # the default connector path applies the span policy (redaction, size limits) too
        processor = BatchProcessor(
            sinks, settings, Path(spool), span_policy=SpanPolicy(SpansSettings())
        )
        try:
            start = time.perf_counter()
            for span in spans:
                processor.submit(span)
            if not processor.flush(WAIT_SECONDS):
                raise RuntimeError("the batch processor did not flush in time")
            elapsed = time.perf_counter() - start
            stats = processor.stats()
        finally:
            processor.close(60)
            for each in sinks:
                each.close()
    if (
        any(stats.emitted.get(s.name) != len(spans) for s in sinks)
        or stats.spooled
        or stats.dropped
    ):
        raise RuntimeError(f"pipeline did not deliver every span straight away: {stats}")
    return len(spans) / elapsed


def _sqlite_floor(path: Path, spans: list[ObservabilitySpan]) -> float:
    apply_schema(SqliteSpanRepository(path))
    rows = [span_to_sqlite_row(span) for span in spans]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_sqlite_sql.INSERT_SPAN, rows)
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        (count,) = conn.execute(f"SELECT count(*) FROM {TABLE_NAME}").fetchone()
    finally:
        conn.close()
    if count != len(spans):
        raise RuntimeError(f"sqlite floor stored {count} of {len(spans)} rows")
    return len(spans) / elapsed


def _postgres_floor(dsn: str, spans: list[ObservabilitySpan]) -> float:
    apply_schema(PostgresSpanRepository(dsn))
    rows = [span_to_postgres_row(span) for span in spans]
    statement = f"COPY public.{TABLE_NAME} ({', '.join(SPAN_COLUMNS)}) FROM STDIN"
    with psycopg.connect(dsn) as conn:
        start = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - start
        row = conn.execute(f"SELECT count(*) FROM public.{TABLE_NAME}").fetchone()
    if not row or row[0] != len(spans):
        raise RuntimeError(f"postgres floor stored {row} of {len(spans)} rows")
    return len(spans) / elapsed


def _best(reps: int, measure: Callable[[int], float]) -> float:
    return max(measure(rep) for rep in range(reps))


def _ingest_result(
    backend: str,
    spans: list[ObservabilitySpan],
    reps: int,
    floor_for: Callable[[int], float],
    repository_for: Callable[[int], SpanRepository],
) -> BenchResult:
    floor = _best(reps, floor_for)
    ours = _best(reps, lambda rep: _through_pipeline(lambda: repository_for(rep), spans, 100))
    fixed = _through_pipeline(lambda: repository_for(reps), spans, 100, adaptive=False)
    bare = "executemany, one transaction" if backend == "sqlite" else "one COPY"
    print(f"  ingest/{backend}: floor {floor:,.0f}/s, ours {ours:,.0f}/s", flush=True)
    return BenchResult(
        name="ingest: submit -> durable in the database",
        backend=backend,
        n=len(spans),
        unit="spans_per_s",
        baseline_label=f"raw floor: bare {bare}",
        baseline=floor,
        ours=ours,
        ratios={"ours/floor": ours / floor},
        targets=[FLOOR_TARGET],
        notes=f"default batching (100 / 5 s, up to 5,000 per write while a backlog exists); "
        f"adaptive batches off (always 100 per write): {fixed:,.0f} spans/s "
        f"({fixed / floor:.2f} of floor)",
    )


def _otlp_result(spans: list[ObservabilitySpan], reps: int, work_dir: Path) -> BenchResult:
    """SQLite with and without the OTLP sink (to a loopback receiver in another process),
    alternating, best of `reps` each: what exporting over OTLP costs the pipeline."""
    db_only: list[float] = []
    with_otlp: list[float] = []
    with LoopbackServer() as server:
        endpoint = server.base_url + "/v1/traces"
        for rep in range(reps):
            db_only.append(
                _through_pipeline(
                    lambda rep=rep: SqliteSpanRepository(work_dir / f"otlp-off-{rep}.db"),
                    spans,
                    100,
                )
            )
            with_otlp.append(
                _through_pipeline(
                    lambda rep=rep: SqliteSpanRepository(work_dir / f"otlp-on-{rep}.db"),
                    spans,
                    100,
                    endpoint,
                )
            )
        requests = server.stats().get("requests", 0)
    base, ours = max(db_only), max(with_otlp)
    print(f"  ingest/otlp: database only {base:,.0f}/s, + OTLP {ours:,.0f}/s", flush=True)
    return BenchResult(
        name="ingest with the OTLP sink on (SQLite + OTLP/HTTP to a loopback receiver)",
        backend="sqlite+otlp",
        n=len(spans),
        unit="spans_per_s",
        baseline_label="database only (same run)",
        baseline=base,
        ours=ours,
        ratios={"with_otlp/database_only": ours / base},
        targets=[],
        notes=f"{requests} OTLP requests received (protobuf, gzip), default batch size 100",
    )


def run_ingest_benchmarks(*, n: int, reps: int, work_dir: Path, pg: PgServer) -> list[BenchResult]:
    spans = make_spans(n)
    return [_otlp_result(spans, reps, work_dir), *database_results(spans, reps, work_dir, pg)]


def database_results(
    spans: list[ObservabilitySpan], reps: int, work_dir: Path, pg: PgServer
) -> list[BenchResult]:
    """The SQLite and PostgreSQL rows: floor and ours, side by side, best of `reps`."""
    return [
        _ingest_result(
            "sqlite",
            spans,
            reps,
            lambda rep: _sqlite_floor(work_dir / f"ingest-floor-{rep}.db", spans),
            lambda rep: SqliteSpanRepository(work_dir / f"ingest-ours-{rep}.db"),
        ),
        _ingest_result(
            "postgres",
            spans,
            reps,
            lambda rep: _postgres_floor(fresh_database(pg, "ingest_floor"), spans),
            lambda rep: PostgresSpanRepository(fresh_database(pg, "ingest_ours")),
        ),
    ]
