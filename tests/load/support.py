"""Shared pieces of the load and fault tests: span factories, a SQLite pipeline, row readers.

Spans get ids from their index, so a test knows exactly which spans must arrive and can
check "every one, exactly once" against the database rows.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from src.agents.ml_foundation.observability_connector.batch_processor import BatchProcessor
from src.agents.ml_foundation.observability_connector.config import BatchingSettings
from src.agents.ml_foundation.observability_connector.db_sink import DatabaseSink
from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanKind,
)
from src.agents.ml_foundation.observability_connector.spool import REJECTED_DIR, Spool
from src.repositories.span_store import TABLE_NAME
from src.repositories.sqlite_repository import SqliteSpanRepository

WAIT = 300.0
"""Upper bound for flush/replay waits on real servers; never reached when the code is right."""
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

_TEMPLATE = ObservabilitySpan(
    span_id="0000000000000001",
    trace_id="00000000000000000000000000000001",
    operation_name="load",
    agent_name="load_agent",
    span_kind=SpanKind.LLM,
    start_time=START,
    end_time=START + timedelta(milliseconds=12),
    attributes={"route": "default"},
    llm_model="gpt-4o-mini",
    input_tokens=40,
    output_tokens=8,
)


def span_ids(i: int) -> tuple[str, str]:
    """(trace_id, span_id) of span number `i`: four spans per trace."""
    return f"{i // 4 + 1:032x}", f"{i + 1:016x}"


def indexed_span(i: int) -> ObservabilitySpan:
    """Span number `i` (a validated template, copied with its own ids: cheap at 100k)."""
    trace_id, span_id = span_ids(i)
    return _TEMPLATE.model_copy(
        update={
            "id": UUID(int=i + 1),
            "span_id": span_id,
            "trace_id": trace_id,
            "start_time": START + timedelta(microseconds=i),
            "end_time": START + timedelta(microseconds=i, milliseconds=12),
        }
    )


def indexed_spans(first: int, last: int) -> Iterator[ObservabilitySpan]:
    return (indexed_span(i) for i in range(first, last))


@contextlib.contextmanager
def sqlite_locked(db: Path) -> Iterator[None]:
    """Hold an exclusive write lock on the SQLite file: the store is "down" for writers (each
    insert waits its busy timeout, then fails) until the block ends."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def spooled_span_keys(spool_dir: Path) -> list[tuple[str, str]]:
    """(trace_id, span_id) of every span waiting in a spool directory (duplicates kept)."""
    spool = Spool(spool_dir, 2**62)
    return [(s.trace_id, s.span_id) for batch in spool.pending_batches() for s in batch.spans]


def rejected_span_keys(spool_dir: Path) -> list[tuple[str, str]]:
    """(trace_id, span_id) of every span kept in a spool directory's rejected/."""
    keys = []
    for path in sorted((spool_dir / REJECTED_DIR).glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            span = json.loads(line)  # not validated: a span the model refuses is kept too
            keys.append((span["trace_id"], span["span_id"]))
    return keys


def poisoned(span: ObservabilitySpan) -> ObservabilitySpan:
    """`span` with a token count no store can hold, set without validation: what could still
    get through entry checks (e.g. a span built with model_construct) and must cost no other
    span. SQLite cannot bind 10**30 (OverflowError), PostgreSQL refuses it (SQLSTATE 22003)."""
    return span.model_copy(update={"input_tokens": 10**30, "total_tokens": 10**30})


def sqlite_span_keys(db: Path) -> list[tuple[str, str]]:
    """Every stored (trace_id, span_id), duplicates kept (there must be none)."""
    conn = sqlite3.connect(db)
    try:
        return [tuple(row) for row in conn.execute(f"SELECT trace_id, span_id FROM {TABLE_NAME}")]
    finally:
        conn.close()


@dataclass
class SqlitePipeline:
    """A real BatchProcessor writing to SQLite through the DatabaseSink, spooling to disk."""

    db: Path
    spool: Path
    sink: DatabaseSink
    processor: BatchProcessor

    @classmethod
    def build(
        cls,
        tmp_path: Path,
        settings: BatchingSettings,
        *,
        autostart: bool = True,
        busy_timeout_seconds: float = 10.0,
    ) -> SqlitePipeline:
        db, spool = tmp_path / "obs.db", tmp_path / "spool"
        repository = SqliteSpanRepository(db, busy_timeout_seconds=busy_timeout_seconds)
        sink = DatabaseSink(repository, timeout=60)
        sink.setup()
        processor = BatchProcessor([sink], settings, spool, autostart=autostart)
        return cls(db, spool, sink, processor)

    def close(self) -> None:
        try:
            self.processor.close(timeout=60)
        finally:
            self.sink.close()
