"""The whole path: OpikConnector -> BatchProcessor -> SQLite + Opik (loopback server).

An Opik outage must cost nothing: every span still lands in the database, Opik batches wait in
the spool, and after recovery Opik holds every span exactly once.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from pydantic import SecretStr

from src.agents.ml_foundation.observability_connector.batch_processor import BatchProcessor
from src.agents.ml_foundation.observability_connector.config import (
    BatchingSettings,
    ObservabilityConfig,
    OpikSettings,
    SamplingSettings,
    StorageSettings,
)
from src.agents.ml_foundation.observability_connector.db_sink import DatabaseSink
from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan
from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    opik_span_uuid_for,
    opik_trace_uuid,
)
from src.agents.ml_foundation.observability_connector.sampling import Sampler
from src.mlops.circuit_breaker import CircuitBreaker
from src.mlops.opik_connector import OpikConnector, get_opik_connector, reset_opik_connector
from src.mlops.opik_sink import OpikSink, build_opik_client
from src.repositories.sqlite_repository import SqliteSpanRepository
from tests.fixtures.opik_server import OpikTestServer

PROJECT = "e2i-outage"


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _opik_settings(server: OpikTestServer) -> OpikSettings:
    return OpikSettings(
        api_key=SecretStr("outage-key"),
        url_override=server.base_url,
        workspace="e2i",
        project_name=PROJECT,
        timeout_seconds=5.0,
    )


class Pipeline:
    """Real processor, SQLite sink and Opik sink, wired like `get_opik_connector` does."""

    def __init__(self, tmp_path: Path, server: OpikTestServer, breaker_clock: FakeClock) -> None:
        self.breaker_clock = breaker_clock
        self.db_path = tmp_path / "obs.db"
        self.db_sink = DatabaseSink(SqliteSpanRepository(self.db_path))
        self.db_sink.setup()
        breaker = CircuitBreaker(5, 30.0, clock=breaker_clock)
        self.opik_sink = OpikSink(build_opik_client(_opik_settings(server)), PROJECT, breaker)
        settings = BatchingSettings(max_batch_wait_seconds=60.0, retry_max_attempts=1)
        self.processor = BatchProcessor(
            [self.db_sink, self.opik_sink],
            settings,
            tmp_path / "spool",
            sampler=Sampler(SamplingSettings()),
        )
        self.connector = OpikConnector(
            self.processor, opik_sink=self.opik_sink, on_close=self._release
        )

    def _release(self) -> None:
        self.opik_sink.close()
        self.db_sink.close()

    async def run_trace(self, n: int) -> None:
        model = GenericFakeChatModel(
            messages=iter(
                [
                    AIMessage(
                        content=f"answer {n}",
                        usage_metadata={"input_tokens": 9, "output_tokens": 3, "total_tokens": 12},
                    )
                ]
            )
        )
        async with self.connector.trace_agent("orchestrator", f"request_{n}"):
            await self.connector.trace_llm_call("fake-model", "q", lambda: model.ainvoke("q"))
        assert self.connector.flush(10.0)

    def stored_spans(self) -> list[ObservabilitySpan]:
        async def read() -> list[ObservabilitySpan]:
            repository = SqliteSpanRepository(self.db_path)
            try:
                return await repository.get_spans_by_time_window("7d", limit=10_000)
            finally:
                await repository.close()

        return asyncio.run(read())


@pytest.fixture
def pipeline(tmp_path: Path, opik_server: OpikTestServer) -> Iterator[Pipeline]:
    built = Pipeline(tmp_path, opik_server, FakeClock())
    yield built
    built.connector.close(10.0)


def _opik_ids(spans: list[ObservabilitySpan]) -> set[str]:
    return {opik_span_uuid_for(s.trace_id, s.span_id) for s in spans}


def test_outage__503_then_refused__breaker_opens_db_keeps_all_then_replay_once(
    pipeline: Pipeline, opik_server: OpikTestServer
) -> None:
    breaker = pipeline.opik_sink.breaker
    asyncio.run(pipeline.run_trace(0))  # healthy
    opik_server.fail_with(503)
    for n in (1, 2):
        asyncio.run(pipeline.run_trace(n))
    opik_server.refuse_connections()
    for n in (3, 4):
        asyncio.run(pipeline.run_trace(n))
        assert breaker.state == "closed"
    asyncio.run(pipeline.run_trace(5))
    assert breaker.state == "open"
    asyncio.run(pipeline.run_trace(6))  # breaker open: spooled without a connection attempt

    assert breaker.opens == 1
    assert pipeline.opik_sink.stats()["unavailable"] == 1
    stored = pipeline.stored_spans()
    assert len(stored) == 14
    assert {s.operation_name for s in stored} >= {f"request_{n}" for n in range(7)}
    opik_counts = pipeline.processor.stats().sinks["opik"]
    assert (opik_counts.emitted, opik_counts.spooled) == (2, 12)
    assert pipeline.processor.stats().sinks["database"].emitted == 14

    opik_server.recover()
    pipeline.breaker_clock.now += 30.0
    assert breaker.state == "half_open"
    replayed = pipeline.processor.replay_spool(timeout=10.0)

    assert replayed == 12
    assert breaker.state == "closed"
    received = Counter(s["id"] for s in opik_server.received_spans())
    assert set(received) == _opik_ids(stored)
    assert set(received.values()) == {1}
    traces = {t["id"] for t in opik_server.received_traces()}
    assert traces == {opik_trace_uuid(s.trace_id) for s in stored}


def test_pipeline__log_metric__feedback_score_after_spans(
    pipeline: Pipeline, opik_server: OpikTestServer
) -> None:
    connector = pipeline.connector
    with connector.trace_agent("orchestrator", "route") as span:
        connector.log_metric("routing_confidence", 0.75, metadata={"reason": "two intents"})
    assert connector.flush(10.0)

    [score] = opik_server.received_trace_scores()
    assert score["id"] == opik_trace_uuid(span.trace_id)
    assert (score["name"], score["value"], score["reason"]) == (
        "routing_confidence",
        0.75,
        "two intents",
    )
    [stored] = pipeline.stored_spans()
    assert [e.name for e in stored.events] == ["metric.routing_confidence"]
    assert connector.circuit_state == "closed"


def test_get_opik_connector__from_config__sqlite_and_opik_wired(
    tmp_path: Path, opik_server: OpikTestServer
) -> None:
    config = ObservabilityConfig(
        opik=_opik_settings(opik_server),
        storage=StorageSettings(sqlite_path=tmp_path / "default.db", spool_dir=tmp_path / "spool"),
    )
    reset_opik_connector()
    try:
        connector = get_opik_connector(config)
        assert get_opik_connector() is connector
        with connector.trace_agent("orchestrator", "plan"):
            pass
        assert connector.flush(10.0)
    finally:
        reset_opik_connector(10.0)

    [sent] = opik_server.received_spans()
    assert sent["name"] == "plan"
    assert sent["metadata"]["agent_tier"] == 1  # from config/agent_config.yaml

    async def read() -> list[ObservabilitySpan]:
        repository = SqliteSpanRepository(tmp_path / "default.db")
        try:
            return await repository.get_spans_by_time_window("7d")
        finally:
            await repository.close()

    [stored] = asyncio.run(read())
    assert (stored.operation_name, stored.agent_tier) == ("plan", 1)


def test_get_opik_connector__concurrent_first_calls__one_connector(tmp_path: Path) -> None:
    config = ObservabilityConfig(
        opik=OpikSettings(enabled=False),
        storage=StorageSettings(sqlite_path=tmp_path / "once.db", spool_dir=tmp_path / "spool"),
    )
    reset_opik_connector()
    barrier = threading.Barrier(8)
    built: list[OpikConnector] = []

    def first_call() -> None:
        barrier.wait()
        built.append(get_opik_connector(config))

    threads = [threading.Thread(target=first_call) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(built) == 8
        assert all(c is built[0] for c in built)
        assert built[0].opik_sink is None
        assert built[0].circuit_state == "disabled"
    finally:
        reset_opik_connector(10.0)
