"""100,000 spans with one poison span in the middle, on SQLite and on PostgreSQL (issue 11 (a)).

The poison is a token count no store can hold, set without validation (what could still get
past the entry checks). It arrives while the store is down, so its batch waits in the spool
among 39 others, as in the issue (a PostgreSQL 22003 batch sat at the head of the spool for
ever). When the store is back, reading the spool refuses that one line (the model's check);
it goes to `rejected/` with the reason, its 499 neighbours and every later batch are replayed:
exactly one span in `rejected/`, the other 99,999 stored once each, the spool empty (replay
was never blocked). The same poison met live is isolated by the store's own refusal
(tests/integration/test_pipeline_database.py). Spans are submitted in chunks with a flush
after each, so no span is dropped for a full queue: this is about isolation, not overload.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from src.agents.ml_foundation.observability_connector.batch_processor import BatchProcessor
from src.agents.ml_foundation.observability_connector.config import BatchingSettings
from src.agents.ml_foundation.observability_connector.db_sink import DatabaseSink
from src.repositories.postgres_repository import PostgresSpanRepository
from src.repositories.span_store import TABLE_NAME
from src.repositories.sqlite_repository import SqliteSpanRepository
from tests.load.support import (
    WAIT,
    indexed_span,
    poisoned,
    rejected_span_keys,
    span_ids,
    spooled_span_keys,
    sqlite_locked,
    sqlite_span_keys,
)

pytestmark = pytest.mark.load

SPANS = 100_000
POISON = 50_000
DOWN = range(40_000, 60_000)
CHUNK = 4_000
SETTINGS = BatchingSettings(max_batch_size=500, max_queue_size=10_000, max_batch_wait_seconds=0.5)


@dataclass
class Store:
    sink: DatabaseSink
    down: Callable[[], contextlib.AbstractContextManager[None]]
    keys: Callable[[], list[tuple[str, str]]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        db = tmp_path / "obs.db"
        sink = DatabaseSink(SqliteSpanRepository(db, busy_timeout_seconds=0.2), timeout=60)
        built = Store(sink, lambda: sqlite_locked(db), lambda: sqlite_span_keys(db))
    else:
        server, dsn = request.getfixturevalue("pg_server"), request.getfixturevalue("pg_dsn")

        @contextlib.contextmanager
        def stopped() -> Iterator[None]:
            server.stop()
            try:
                yield
            finally:
                server.start()

        def keys() -> list[tuple[str, str]]:
            with psycopg.connect(dsn) as conn:
                return [
                    tuple(r) for r in conn.execute(f"SELECT trace_id, span_id FROM {TABLE_NAME}")
                ]

        sink = DatabaseSink(PostgresSpanRepository(dsn, timeout=1.0), timeout=60)
        built = Store(sink, stopped, keys)
    sink.setup()
    yield built
    sink.close()


def _submit(processor: BatchProcessor, first: int, last: int) -> None:
    for start in range(first, last, CHUNK):
        for i in range(start, min(start + CHUNK, last)):
            span = indexed_span(i)
            processor.submit(poisoned(span) if i == POISON else span)
        assert processor.flush(WAIT)  # settled: delivered or spooled, nothing dropped


def test_pipeline__100k_spans_one_poison_in_the_middle__only_it_rejected_rest_stored_once(
    store: Store, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    processor = BatchProcessor([store.sink], SETTINGS, spool_dir)
    try:
        _submit(processor, 0, DOWN.start)
        with store.down():
            _submit(processor, DOWN.start, DOWN.stop)  # the poison's batch goes to the spool
            outage = processor.stats().sinks["database"]
        _submit(processor, DOWN.stop, SPANS)
        processor.replay_spool(WAIT)
        final = processor.stats()
    finally:
        processor.close(60)

    assert outage.spooled >= len(DOWN) - SETTINGS.max_batch_size  # the outage really hit
    database = final.sinks["database"]
    assert final.submitted == SPANS == final.accounted("database")
    assert database.dropped == 0
    assert database.rejected + database.replay_rejected == 1
    assert rejected_span_keys(spool_dir / "database") == [span_ids(POISON)]
    reasons = "".join(p.read_text() for p in (spool_dir / "database" / "rejected").glob("*.reason"))
    assert "input_tokens" in reasons and "whole number in 0..2147483647" in reasons
    assert spooled_span_keys(spool_dir / "database") == []  # replay was never blocked
    stored = Counter(store.keys())
    assert set(stored) == {span_ids(i) for i in range(SPANS) if i != POISON}
    assert set(stored.values()) == {1}
