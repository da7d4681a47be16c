"""PostgreSQL stopped and restarted in the middle of a run: spool, replay, nothing lost or
duplicated. A producer thread submits spans in three phases; the test stops the real server
while the worker is still writing the first phase (no flush before the stop), lets the second
phase meet a dead server, restarts it, and lets the third phase run. Phases hand over through
Events; `flush()` and `replay_spool()` are the only waits on the pipeline.

Right after the restart the connection pool may not have a connection yet (psycopg's pool
backs off its reconnection attempts while the server is down), so a replay can still fail
("no connection within 0.5 s") and stops there, as it must; the test replays again, a bounded
number of times, until the spool is empty.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from src.agents.ml_foundation.observability_connector.batch_processor import BatchProcessor
from src.agents.ml_foundation.observability_connector.config import BatchingSettings
from src.agents.ml_foundation.observability_connector.db_sink import DatabaseSink
from src.repositories.postgres_repository import PostgresSpanRepository
from src.repositories.span_store import TABLE_NAME
from tests.fixtures.postgres import PgServer
from tests.load.support import WAIT, indexed_spans, span_ids

pytestmark = [pytest.mark.load, pytest.mark.postgres]

BEFORE, DURING, AFTER = 2000, 500, 2000
TOTAL = BEFORE + DURING + AFTER
REPLAYS = 120
"""Replays tried at most: each one that fails waits the pool's 0.5 s, so about a minute."""


def replay_until_empty(processor: BatchProcessor) -> None:
    for _ in range(REPLAYS):
        processor.replay_spool(WAIT)
        if not processor.stats().spool_bytes["database"]:
            return


def test_pipeline__postgres_stopped_and_restarted_mid_run__spooled_replayed_exactly_once(
    pg_server: PgServer, pg_dsn: str, tmp_path: Path
) -> None:
    sink = DatabaseSink(PostgresSpanRepository(pg_dsn, timeout=0.5), timeout=20)
    sink.setup()
    processor = BatchProcessor(
        [sink],
        BatchingSettings(
            max_batch_size=250,
            max_batch_wait_seconds=3600.0,
            retry_max_attempts=2,
            retry_base_delay_seconds=0.01,
        ),
        tmp_path / "spool",
    )
    before_done, stopped = threading.Event(), threading.Event()
    during_done, restarted = threading.Event(), threading.Event()

    def produce() -> None:
        for span in indexed_spans(0, BEFORE):
            processor.submit(span)
        before_done.set()
        stopped.wait()
        for span in indexed_spans(BEFORE, BEFORE + DURING):
            processor.submit(span)
        during_done.set()
        restarted.wait()
        for span in indexed_spans(BEFORE + DURING, TOTAL):
            processor.submit(span)

    producer = threading.Thread(target=produce)
    try:
        producer.start()
        before_done.wait()
        pg_server.stop()  # the worker is most likely mid-way through the first phase
        stopped.set()
        during_done.wait()
        assert processor.flush(WAIT)
        outage = processor.stats()
        pg_server.start()
        restarted.set()
        producer.join()
        assert processor.flush(WAIT)
        replay_until_empty(processor)
        final = processor.stats()
    finally:
        stopped.set()
        restarted.set()
        producer.join()
        if not pg_server.is_running():
            pg_server.start()
        processor.close(60)
        sink.close()

    assert outage.sinks["database"].spooled >= DURING  # the outage really hit the pipeline
    assert "PostgreSQL" in (outage.last_error or "")
    database = final.sinks["database"]
    assert final.submitted == TOTAL == final.accounted("database")
    assert (database.dropped, database.rejected) == (0, 0)
    assert database.replayed == database.spooled
    assert final.spool_bytes["database"] == 0
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(f"SELECT trace_id, span_id FROM {TABLE_NAME}").fetchall()
    stored = Counter(tuple(row) for row in rows)
    assert set(stored) == {span_ids(i) for i in range(TOTAL)}
    assert set(stored.values()) == {1}
