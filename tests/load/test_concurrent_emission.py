"""10,000 concurrent `trace_agent` emissions, half from asyncio tasks and half from 8 threads,
through the real OpikConnector -> BatchProcessor -> SQLite: every span stored exactly once and
every child under its own parent (the current-span ContextVar must not leak between tasks or
threads). Synchronisation: a barrier to start together, then `flush()` and `replay_spool()`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import pytest

from src.agents.ml_foundation.observability_connector.config import BatchingSettings
from src.mlops.opik_connector import OpikConnector
from src.repositories.span_store import TABLE_NAME
from tests.load.support import WAIT, SqlitePipeline

pytestmark = pytest.mark.load

THREADS = 8
EMISSIONS = 10_000
PER_THREAD = EMISSIONS // 2 // THREADS
TASKS = EMISSIONS - THREADS * PER_THREAD


def _emit_sync(connector: OpikConnector, label: str) -> None:
    with (
        connector.trace_agent("load_agent", f"root-{label}"),
        connector.trace_agent("load_agent", f"child-{label}"),
    ):
        pass


async def _emit_async(connector: OpikConnector, label: str) -> None:
    async with connector.trace_agent("load_agent", f"root-{label}"):
        await asyncio.sleep(0)  # yield inside the span so tasks interleave
        async with connector.trace_agent("load_agent", f"child-{label}"):
            await asyncio.sleep(0)


def _rows(db: Path) -> list[tuple[str, str, str | None, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            f"SELECT trace_id, span_id, parent_span_id, operation_name FROM {TABLE_NAME}"
        ).fetchall()
    finally:
        conn.close()


def test_trace_agent__10k_emissions_from_tasks_and_8_threads__each_span_once_parents_intact(
    tmp_path: Path,
) -> None:
    pipeline = SqlitePipeline.build(tmp_path, BatchingSettings(max_batch_wait_seconds=3600.0))
    connector = OpikConnector(pipeline.processor)
    start = threading.Barrier(THREADS + 1)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        start.wait()
        try:
            for i in range(PER_THREAD):
                _emit_sync(connector, f"thread{t}-{i}")
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    async def tasks() -> None:
        start.wait()
        await asyncio.gather(*(_emit_async(connector, f"task-{i}") for i in range(TASKS)))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        asyncio.run(tasks())
        for thread in threads:
            thread.join()
        assert errors == []
        assert connector.flush(WAIT)
        pipeline.processor.replay_spool(WAIT)  # a burst may have spilled past the queue
        stats = pipeline.processor.stats()
    finally:
        pipeline.close()

    rows = _rows(pipeline.db)
    assert len(rows) == 2 * EMISSIONS
    assert max(Counter((trace, span) for trace, span, _, _ in rows).values()) == 1
    roots = {
        name.removeprefix("root-"): (trace, span)
        for trace, span, _, name in rows
        if name.startswith("root-")
    }
    children = {
        name.removeprefix("child-"): (trace, parent)
        for trace, _, parent, name in rows
        if name.startswith("child-")
    }
    assert len(roots) == len(children) == EMISSIONS
    assert children == roots  # same trace, and the child's parent is its own root span
    assert all(parent is None for _, _, parent, name in rows if name.startswith("root-"))
    assert len({trace for trace, _ in roots.values()}) == EMISSIONS
    database = stats.sinks["database"]
    assert stats.submitted == 2 * EMISSIONS == stats.accounted("database")
    assert (database.dropped, database.rejected) == (0, 0)
    assert database.emitted + database.replayed == 2 * EMISSIONS  # each delivered exactly once
