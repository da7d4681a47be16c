"""Errors from a span store that never answers, as the operator reads them (issue 11, item 8).

A "black hole" is a TCP port that accepts connections and never says a word (what a firewall
that drops packets, or a hung server, looks like to a client): the wait ends on our timeout,
whose exception has no message of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from src.agents.ml_foundation.observability_connector.config import (
    ObservabilityConfig,
    OpikSettings,
    StorageSettings,
)
from src.agents.ml_foundation.observability_connector.db_sink import DatabaseSink
from src.agents.ml_foundation.observability_connector.sinks import (
    RetryableSinkError,
    SinkUnavailableError,
)
from src.agents.ml_foundation.observability_connector.store_probe import StoreProbe
from src.mlops.opik_default import build_opik_connector
from src.repositories.postgres_repository import PostgresSpanRepository
from tests.load.support import indexed_span


@pytest.fixture
def black_hole() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)  # the kernel completes handshakes; nobody ever reads or writes
        yield server.getsockname()[1]


def test_database_sink__setup_times_out__error_says_no_answer_within(black_hole: int):
    """Issue 11 (8): a setup timeout was logged as `TimeoutError: ` (an empty message)."""
    dsn = f"postgresql://obs:hunter2@127.0.0.1:{black_hole}/e2i"
    sink = DatabaseSink(PostgresSpanRepository(dsn, timeout=30), timeout=0.5)
    try:
        with pytest.raises((RetryableSinkError, SinkUnavailableError)) as caught:
            sink.setup()
    finally:
        with contextlib.suppress(RetryableSinkError):  # closing may time out the same way
            sink.close()
    message = str(caught.value)
    assert "TimeoutError: no answer within 0.5 s" in message
    assert not message.rstrip().endswith(":") and "hunter2" not in message


def test_store_probe__black_hole__unreachable_with_the_last_connection_error(black_hole: int):
    repository = PostgresSpanRepository(
        f"postgresql://obs:hunter2@127.0.0.1:{black_hole}/e2i", timeout=1
    )
    probe = StoreProbe(repository, timeout=1)
    try:
        result = probe()
    finally:
        probe.close()
        asyncio.run(repository.close())
    assert result.state == "unreachable" and not result.reachable
    assert result.error.startswith("RepositoryError: PostgreSQL select spans by window")
    assert "hunter2" not in result.error


def test_build_connector__store_never_answers__returns_before_setup_spans_spooled(
    black_hole: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """Issue 11 (2, 8): building the connector ran the database's setup() on the caller's
    thread (the agent waited 10.2 s with PostgreSQL down), and a setup timeout was logged as
    `TimeoutError: `. Setup now runs on the database sink's own thread: the constructor
    returns before setup has had an answer (nothing about it is logged yet), the spans
    submitted meanwhile are spooled once it fails, and the failure is logged with its reason."""
    storage = StorageSettings(
        backend="postgres",
        url=SecretStr(f"postgresql://obs:hunter2@127.0.0.1:{black_hole}/e2i"),
        spool_dir=tmp_path / "spool",
        timeout_seconds=5.0,  # the sink's wait: it ends first, with a bare TimeoutError
        pool_timeout_seconds=30.0,
    )
    config = ObservabilityConfig(storage=storage, opik=OpikSettings(enabled=False))
    caplog.set_level(logging.WARNING)

    connector = build_opik_connector(config)
    try:
        before = [r.getMessage() for r in caplog.records if "setup" in r.getMessage()]
        for i in range(3):
            connector.submit(indexed_span(i))
        assert connector.processor.flush(timeout=60.0)  # spooled once setup has failed
        stats = connector.processor.stats()
    finally:
        with contextlib.suppress(RetryableSinkError):  # closing may time out the same way
            connector.close(10.0)

    assert before == []  # the constructor did not wait for setup's answer
    assert stats.sinks["database"].spooled == 3
    (message,) = [
        r.getMessage() for r in caplog.records if "could not be prepared" in r.getMessage()
    ]
    assert "TimeoutError: no answer within 5 s" in message
    assert "hunter2" not in caplog.text
