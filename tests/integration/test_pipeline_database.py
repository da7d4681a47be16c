"""The emission pipeline end to end: BatchProcessor + DatabaseSink over the real SQLite and
PostgreSQL repositories, including a real PostgreSQL outage (server stopped and restarted).

Synchronisation is by `flush()`, `replay_spool()` and an on_batch_written Condition; no sleeps.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from src.agents.ml_foundation.observability_connector.batch_processor import BatchProcessor
from src.agents.ml_foundation.observability_connector.config import BatchingSettings
from src.agents.ml_foundation.observability_connector.db_sink import DatabaseSink
from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanKind,
    SpanStatus,
)
from src.agents.ml_foundation.observability_connector.sinks import (
    RetryableSinkError,
    SinkUnavailableError,
)
from src.agents.ml_foundation.observability_connector.spool import Spool
from src.repositories.postgres_repository import PostgresSpanRepository
from src.repositories.span_store import TABLE_NAME
from src.repositories.sqlite_repository import SqliteSpanRepository

WAIT = 120.0  # upper bound for waits on real servers; never reached when the code is right
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_span(i: int) -> ObservabilitySpan:
    start = START + timedelta(seconds=i)
    llm = i % 3 == 0
    return ObservabilitySpan(
        id=UUID(int=i + 1),
        span_id=f"{i + 1:016x}",
        trace_id=f"{i // 4 + 1:032x}",
        operation_name=f"op-{i}",
        agent_name=("gap_analyzer", "orchestrator")[i % 2],
        span_kind=SpanKind.LLM if llm else SpanKind.AGENT,
        start_time=start,
        end_time=start + timedelta(milliseconds=10 + i),
        status=SpanStatus.ERROR if i % 7 == 0 else SpanStatus.COMPLETED,
        error_type="TimeoutError" if i % 7 == 0 else None,
        llm_model="gpt-4o-mini" if llm else None,
        input_tokens=10 + i if llm else None,
        output_tokens=5 if llm else None,
    )


def settings(**overrides: object) -> BatchingSettings:
    values: dict[str, object] = {
        "max_batch_size": 20,
        "max_batch_wait_seconds": 3600.0,
        "retry_max_attempts": 2,
        "retry_base_delay_seconds": 0.01,
    }
    values.update(overrides)
    return BatchingSettings(**values)


class Written:
    """on_batch_written recorder a test can wait on."""

    def __init__(self) -> None:
        self.total = 0
        self._cond = threading.Condition()

    def __call__(self, sink: str, n: int) -> None:
        with self._cond:
            self.total += n
            self._cond.notify_all()

    def wait_total(self, total: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.total >= total, WAIT)


def sqlite_counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f"SELECT span_id, count(*) FROM {TABLE_NAME} GROUP BY span_id")
        return dict(rows.fetchall())


def postgres_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT span_id, count(*) FROM {TABLE_NAME} GROUP BY span_id")
        return dict(rows.fetchall())


async def read_trace(db: Path, trace_id: str) -> list[ObservabilitySpan]:
    reader = SqliteSpanRepository(db)
    try:
        return await reader.get_spans_by_trace(trace_id)
    finally:
        await reader.close()


def once_each(spans: list[ObservabilitySpan]) -> dict[str, int]:
    return {span.span_id: 1 for span in spans}


def test_pipeline__sqlite__every_span_stored_once_even_when_resent(tmp_path: Path) -> None:
    db = tmp_path / "spans.db"
    sink = DatabaseSink(SqliteSpanRepository(db), timeout=30)
    sink.setup()
    processor = BatchProcessor([sink], settings(), tmp_path / "spool")
    spans = [make_span(i) for i in range(95)]
    try:
        for span in spans:
            processor.submit(span)
        for span in spans[:10]:  # at-least-once delivery re-sends; the table must not care
            processor.submit(span)
        assert processor.flush(timeout=WAIT)
        stats = processor.stats()
    finally:
        processor.close(timeout=10)
        sink.close()

    assert stats.emitted == {"database": 105}
    assert stats.spooled == stats.dropped == 0
    assert sqlite_counts(db) == once_each(spans)


def test_pipeline__sqlite__stored_spans_read_back_equal(tmp_path: Path) -> None:
    db = tmp_path / "spans.db"
    sink = DatabaseSink(SqliteSpanRepository(db), timeout=30)
    sink.setup()
    processor = BatchProcessor([sink], settings(max_batch_size=7), None)
    spans = [make_span(i) for i in range(8)]  # trace 1: spans 0-3, trace 2: spans 4-7
    try:
        for span in spans:
            processor.submit(span)
        assert processor.flush(timeout=WAIT)
        stored = asyncio.run(read_trace(db, f"{1:032x}"))
    finally:
        processor.close(timeout=10)
        sink.close()

    assert [s.model_dump(exclude={"id"}) for s in stored] == [
        s.model_dump(exclude={"id"}) for s in spans[:4]
    ]


def test_pipeline__database_sink_closed_repository__retryable_error_chained(
    tmp_path: Path,
) -> None:
    repository = SqliteSpanRepository(tmp_path / "spans.db")
    sink = DatabaseSink(repository)
    sink.setup()
    asyncio.run(repository.close())  # the repository goes away under the sink

    with pytest.raises(RetryableSinkError) as caught:
        sink.write([make_span(0)])

    assert caught.value.__cause__ is not None
    assert "database" in str(caught.value)
    sink.close()


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "30", True])
def test_database_sink__bad_timeout__value_error_naming_it(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="timeout"):
        DatabaseSink(SqliteSpanRepository(tmp_path / "x.db"), timeout=bad)  # type: ignore[arg-type]


@pytest.mark.postgres
def test_pipeline__postgres__every_span_stored_once(pg_dsn: str, tmp_path: Path) -> None:
    sink = DatabaseSink(PostgresSpanRepository(pg_dsn), timeout=30)
    sink.setup()
    processor = BatchProcessor([sink], settings(), tmp_path / "spool")
    spans = [make_span(i) for i in range(130)]
    try:
        for span in [*spans, *spans[:15]]:
            processor.submit(span)
        assert processor.flush(timeout=WAIT)
        stats = processor.stats()
    finally:
        processor.close(timeout=10)
        sink.close()

    assert stats.emitted == {"database": 145}
    assert stats.spooled == stats.dropped == 0
    assert postgres_counts(pg_dsn) == once_each(spans)


@pytest.mark.postgres
def test_pipeline__postgres_outage__spooled_then_replayed_exactly_once(
    pg_server, pg_dsn: str, tmp_path: Path
) -> None:
    written = Written()
    sink = DatabaseSink(PostgresSpanRepository(pg_dsn, timeout=1.0), timeout=20)
    sink.setup()
    processor = BatchProcessor(
        [sink],
        settings(max_batch_wait_seconds=0.2),  # also the pace of the replay probe
        tmp_path / "spool",
        on_batch_written=written,
    )
    before, during = [make_span(i) for i in range(40)], [make_span(i) for i in range(40, 90)]
    spool = Spool(tmp_path / "spool" / "database", 10**9)
    try:
        for span in before:
            processor.submit(span)
        assert processor.flush(timeout=WAIT)
        assert postgres_counts(pg_dsn) == once_each(before)

        pg_server.stop()  # the database goes away mid-run
        for span in [*during, *before[:5]]:  # five re-sent spans ride along
            processor.submit(span)
        assert processor.flush(timeout=WAIT)
        outage = processor.stats()
        assert outage.sinks["database"].spooled == 55
        assert outage.dropped == 0
        assert spool.count() >= 1
        assert "PostgreSQL" in (outage.last_error or "")

        pg_server.start()
        assert written.wait_total(40 + 55)  # the worker's replay probe finds the server back
        processor.replay_spool(timeout=WAIT)
        after = processor.stats()
    finally:
        if not pg_server.is_running():
            pg_server.start()
        processor.close(timeout=10)
        sink.close()

    assert after.sinks["database"].replayed == 55
    assert spool.count() == 0
    assert after.submitted == after.accounted("database")
    assert postgres_counts(pg_dsn) == once_each([*before, *during])


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_pipeline__poison_span_met_live__store_refusal_isolated_rest_stored(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Issue 11 item 1: one token count a store cannot hold cost its whole batch (SQLite:
    OverflowError, the batch spooled and later moved to rejected/ whole; PostgreSQL: 22003
    retried for ever). Met live, the store's refusal is now permanent and the batch is split
    until the poison is alone: 1 span in rejected/ with the store's reason, 1,999 stored."""
    if backend == "sqlite":
        repository = SqliteSpanRepository(tmp_path / "spans.db")
        refusal = "Python int too large"
    else:
        repository = PostgresSpanRepository(request.getfixturevalue("pg_dsn"))
        refusal = "22003"
    sink = DatabaseSink(repository, timeout=60)
    processor = BatchProcessor([sink], settings(max_batch_size=500), tmp_path / "spool")
    spans = [make_span(i) for i in range(2000)]
    poison = spans[1000].model_copy(update={"input_tokens": 10**30})  # past entry checks
    try:
        for span in [*spans[:1000], poison, *spans[1001:]]:
            processor.submit(span)
        result = processor.flush(timeout=WAIT)
    finally:
        processor.close(timeout=10)
        sink.close()

    assert result.ok and result.dropped == {}
    database = result.stats.sinks["database"]
    assert (database.emitted, database.rejected, database.spooled) == (1999, 1, 0)
    rejected = tmp_path / "spool" / "database" / "rejected"
    (kept,) = [line for p in rejected.glob("*.jsonl") for line in p.read_bytes().splitlines()]
    assert ObservabilitySpan.model_construct(**json.loads(kept)).span_id == poison.span_id
    reasons = "".join(p.read_text() for p in rejected.glob("*.reason"))
    assert refusal in reasons and poison.span_id in reasons
    if backend == "sqlite":
        stored = sqlite_counts(tmp_path / "spans.db")
    else:
        stored = postgres_counts(request.getfixturevalue("pg_dsn"))
    assert stored == once_each(spans[:1000] + spans[1001:])


def test_database_sink__not_set_up_yet__sets_up_before_its_first_write(tmp_path: Path) -> None:
    """Issue 11 item 2: setup() runs on the batch processor's thread (prepare / first write),
    never in the constructor of the connector."""
    sink = DatabaseSink(SqliteSpanRepository(tmp_path / "fresh.db"))
    try:
        assert not sink.setup_attempted.is_set()
        assert sink.write([make_span(0)]) == 1
        assert sink.setup_attempted.is_set()
    finally:
        sink.close()
    assert sqlite_counts(tmp_path / "fresh.db") == once_each([make_span(0)])


def test_database_sink__closed__unavailable_not_a_bug(tmp_path: Path) -> None:
    sink = DatabaseSink(SqliteSpanRepository(tmp_path / "spans.db"))
    sink.close()
    with pytest.raises(SinkUnavailableError, match="closed"):
        sink.write([make_span(0)])


def test_pipeline__sqlite_and_spool_unwritable__flush_false_every_span_counted_dropped(
    tmp_path: Path,
) -> None:
    """Issue 11 item 3: with the SQLite file and the spool on a disk that cannot be written,
    flush() returned True with 200 spans dropped. Here both paths lie under a regular file
    (every write fails with an OSError, as on a read-only or full disk, even for root)."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's and the spool's directories should be")
    sink = DatabaseSink(SqliteSpanRepository(blocker / "spans.db"), timeout=10)
    processor = BatchProcessor([sink], settings(max_batch_size=50), blocker / "spool")
    try:
        for i in range(200):
            processor.submit(make_span(i))
        result = processor.flush(timeout=WAIT)
        database = result.stats.sinks["database"]
    finally:
        processor.close(timeout=10)
        sink.close()

    assert bool(result) is False and result.timed_out is False
    assert result.dropped == {"database": 200}
    assert (database.emitted, database.spooled, database.dropped) == (0, 0, 200)
    assert "spool write failed" in (result.stats.last_error or "")
