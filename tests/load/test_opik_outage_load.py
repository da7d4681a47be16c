"""An Opik outage for the middle third of a run, under concurrent load.

Real pipeline: OpikConnector -> BatchProcessor -> SQLite sink + Opik sink (the real `opik` REST
client over HTTP to the loopback server, which validates every body against Opik's schema).
Thirds: healthy; 503 then refused connections; recovered. The breaker must open, the database
must get every span, and once the breaker's (injected) clock passes the reset timeout Opik must
receive every span exactly once. Synchronisation by `flush()` and `replay_spool()` only.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from pydantic import SecretStr

from src.agents.ml_foundation.observability_connector.batch_processor import BatchProcessor
from src.agents.ml_foundation.observability_connector.config import (
    BatchingSettings,
    OpikSettings,
)
from src.agents.ml_foundation.observability_connector.db_sink import DatabaseSink
from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    opik_span_uuid_for,
    opik_trace_uuid,
)
from src.mlops.circuit_breaker import CircuitBreaker
from src.mlops.opik_connector import OpikConnector
from src.mlops.opik_sink import OpikSink, build_opik_client
from src.repositories.span_store import TABLE_NAME
from src.repositories.sqlite_repository import SqliteSpanRepository
from tests.fixtures.opik_server import OpikTestServer
from tests.load.support import WAIT

pytestmark = pytest.mark.load

PROJECT = "e2i-load-outage"
PER_THIRD = 300  # emissions (2 spans each) per third: 6 batches of 100
HALF = PER_THIRD // 2
RESET_SECONDS = 30.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _emit(connector: OpikConnector, phase: str, count: int) -> None:
    """`count` concurrent emissions (a request span with one step span inside), then flush."""

    async def emission(i: int) -> None:
        async with connector.trace_agent("orchestrator", f"request-{phase}-{i}"):
            await asyncio.sleep(0)  # interleave the tasks inside their spans
            async with connector.trace_agent("gap_analyzer", f"step-{phase}-{i}"):
                await asyncio.sleep(0)

    async def all_of_them() -> None:
        await asyncio.gather(*(emission(i) for i in range(count)))

    asyncio.run(all_of_them())
    assert connector.flush(WAIT)


def test_opik_outage__middle_third_503_then_refused__db_complete_opik_exactly_once(
    tmp_path: Path, opik_server: OpikTestServer
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(5, RESET_SECONDS, clock=clock)
    settings = OpikSettings(
        api_key=SecretStr("load-key"), url_override=opik_server.base_url, project_name=PROJECT
    )
    opik_sink = OpikSink(build_opik_client(settings), PROJECT, breaker)
    db_sink = DatabaseSink(SqliteSpanRepository(tmp_path / "obs.db"), timeout=60)
    db_sink.setup()
    processor = BatchProcessor(
        [db_sink, opik_sink],
        BatchingSettings(
            max_batch_size=100,
            max_backlog_batch_size=1,  # batches of exactly 100: the breaker counts batches
            max_batch_wait_seconds=3600.0,
            retry_max_attempts=1,
        ),
        tmp_path / "spool",
        sleep=lambda seconds: None,
    )
    connector = OpikConnector(processor, opik_sink=opik_sink)
    try:
        _emit(connector, "healthy", PER_THIRD)
        healthy = processor.stats().sinks["opik"]

        opik_server.fail_with(503)
        _emit(connector, "503", HALF)  # 3 batches fail: 3 breaker failures
        opik_server.refuse_connections()
        _emit(connector, "refused", HALF)  # 2 more failures open it; the 6th is not tried
        assert breaker.state == "open"
        outage = processor.stats()

        opik_server.recover()
        clock.now += RESET_SECONDS  # the breaker may probe again
        _emit(connector, "recovered", PER_THIRD)
        processor.replay_spool(WAIT)
        final = processor.stats()
    finally:
        connector.close(60)
        opik_sink.close()
        db_sink.close()

    total = 3 * PER_THIRD * 2
    assert (healthy.emitted, healthy.spooled) == (2 * PER_THIRD, 0)
    assert breaker.opens >= 1 and breaker.state == "closed"
    assert outage.sinks["opik"].spooled == 2 * PER_THIRD  # every outage span waited
    assert outage.sinks["database"].emitted == 2 * 2 * PER_THIRD  # the DB never noticed
    assert opik_sink.stats()["unavailable"] >= 1  # the open breaker skipped calls
    opik = final.sinks["opik"]
    assert (opik.dropped, final.sinks["database"].dropped) == (0, 0)
    assert opik.emitted + opik.replayed == total

    conn = sqlite3.connect(tmp_path / "obs.db")
    try:
        rows = conn.execute(f"SELECT trace_id, span_id FROM {TABLE_NAME}").fetchall()
    finally:
        conn.close()
    assert len(rows) == len(set(rows)) == total
    received = Counter(span["id"] for span in opik_server.received_spans())
    assert set(received) == {opik_span_uuid_for(trace, span) for trace, span in rows}
    assert set(received.values()) == {1}
    assert {t["id"] for t in opik_server.received_traces()} == {
        opik_trace_uuid(trace) for trace, _ in rows
    }
