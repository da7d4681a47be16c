"""Shared pieces of the load and fault tests: span factories, a SQLite pipeline, row readers.

Spans get ids from their index, so a test knows exactly which spans must arrive and can
check "every one, exactly once" against the database rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
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
        sleep: Callable[[float], None] | None = None,
    ) -> SqlitePipeline:
        db, spool = tmp_path / "obs.db", tmp_path / "spool"
        sink = DatabaseSink(SqliteSpanRepository(db), timeout=60)
        sink.setup()
        processor = BatchProcessor([sink], settings, spool, autostart=autostart, sleep=sleep)
        return cls(db, spool, sink, processor)

    def close(self) -> None:
        try:
            self.processor.close(timeout=60)
        finally:
            self.sink.close()
