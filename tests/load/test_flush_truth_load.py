"""The callback handler driven flat out for 30 s: `flush()`'s answer matches what the database
and the spool hold, span for span (issue 11 (c); item 3: `flush()` said True with spans still
in memory or dropped).

Two threads call a real langchain-core chat model (real `usage_metadata`) through
`ObservabilityCallbackHandler` -> `OpikConnector` -> `BatchProcessor` -> SQLite, as fast as they
can. For the middle third the SQLite file is locked (the store is down), and the spool has a
small cap, so batches are spilled by the worker and, once the spool is full, dropped. Every span
the handler submitted is recorded. Afterwards: every recorded span is in the database or in the
spool exactly once, or it is one of those `flush()` reported dropped; `flush()` is truthy
exactly when none was.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from src.agents.ml_foundation.observability_connector.batch_processor import BatchProcessor
from src.agents.ml_foundation.observability_connector.callback import (
    ObservabilityCallbackHandler,
)
from src.agents.ml_foundation.observability_connector.config import BatchingSettings
from src.agents.ml_foundation.observability_connector.db_sink import DatabaseSink
from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan
from src.mlops.opik_connector import OpikConnector
from src.repositories.sqlite_repository import SqliteSpanRepository
from tests.load.support import WAIT, spooled_span_keys, sqlite_locked, sqlite_span_keys

pytestmark = pytest.mark.load

RUN_SECONDS = 30.0
THREADS = 2
SETTINGS = BatchingSettings(
    max_batch_size=100,
    max_queue_size=2_000,
    max_batch_wait_seconds=0.5,
    spool_max_bytes=512 * 1024,  # some hundreds of spans: the outage outgrows it
)
AFTER_CALLS = 200
"""LLM calls after the first flush, at an easy pace: the next flush must answer True."""


class RecordingProcessor(BatchProcessor):
    """The real processor, remembering the id of every span handed to it. Spans the handler
    leaves to be built on the worker (`submit_later`) are built at once, so that the id of
    every span handed over is known, also of one dropped at a full queue."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.handed: list[tuple[str, str]] = []

    def submit(self, span: ObservabilitySpan) -> None:
        self.handed.append((span.trace_id, span.span_id))
        super().submit(span)

    def submit_later(self, build: Callable[[], ObservabilitySpan]) -> None:
        self.submit(build())


def _chat_model() -> GenericFakeChatModel:
    usage = {"input_tokens": 12, "output_tokens": 4, "total_tokens": 16}
    return GenericFakeChatModel(messages=itertools.repeat(AIMessage("ok", usage_metadata=usage)))


def _drive(handler: ObservabilityCallbackHandler, until: float) -> None:
    model = _chat_model()
    while time.monotonic() < until:
        model.invoke("q", config={"callbacks": [handler]})


def _drive_calls(handler: ObservabilityCallbackHandler, calls: int) -> None:
    model = _chat_model()
    for _ in range(calls):
        model.invoke("q", config={"callbacks": [handler]})


def test_handler__flat_out_30s_with_an_outage__flush_answer_matches_store_and_spool(
    tmp_path: Path,
) -> None:
    db, spool_dir = tmp_path / "obs.db", tmp_path / "spool"
    sink = DatabaseSink(SqliteSpanRepository(db, busy_timeout_seconds=0.2), timeout=60)
    sink.setup()
    processor = RecordingProcessor([sink], SETTINGS, spool_dir)
    connector = OpikConnector(processor)
    handler = ObservabilityCallbackHandler(agent_name="flat_out", connector=connector)
    third = RUN_SECONDS / 3
    end = time.monotonic() + RUN_SECONDS
    drivers = [threading.Thread(target=_drive, args=(handler, end)) for _ in range(THREADS)]
    try:
        for thread in drivers:
            thread.start()
        time.sleep(third)  # load shape: the store goes down for the middle third
        with sqlite_locked(db):
            time.sleep(third)
        for thread in drivers:
            thread.join()
        connector.flush(WAIT)
        result = connector.last_flush
        database = result.stats.sinks["database"]  # the counts right after flush()
        handed_before = len(processor.handed)
        _drive_calls(handler, AFTER_CALLS)  # the store is up: nothing more is lost
        after_ok = connector.flush(WAIT)
    finally:
        processor.close(60)  # stops the lanes: no replay moves spans while we count
        sink.close()

    after = set(processor.handed[handed_before:])
    handed = Counter(processor.handed[:handed_before])
    assert set(handed.values()) == {1} and len(handed) > 1_000  # unique ids
    stored, spooled = (
        Counter(sqlite_span_keys(db)),
        Counter(spooled_span_keys(spool_dir / "database")),
    )
    assert set(stored.values()) <= {1} and set(spooled.values()) <= {1}
    assert not set(stored) & set(spooled)
    assert (set(stored) | set(spooled)) <= set(handed) | after
    lost = set(handed) - set(stored) - set(spooled)
    assert result.timed_out is False
    assert result.dropped.get("database", 0) == len(lost)  # span for span
    assert bool(result) is (not lost)
    assert database.dropped == len(lost)
    # the next flush covers only what came after the last one: all stored, so True
    assert after_ok is True and len(after) >= AFTER_CALLS
    assert after <= set(stored) | set(spooled)
    print(
        f"{len(handed)} spans in {RUN_SECONDS:g} s: {len(stored)} stored, {len(spooled)} "
        f"spooled, {len(lost)} dropped (counted {database.dropped}); flush() -> {bool(result)}"
    )
