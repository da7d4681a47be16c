"""SQLite-specific behaviour of `SqliteSpanRepository` on real files: lazy creation, WAL,
migrations tracked by user_version, plain-SQL readability, and use from several loops."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest

from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan
from src.repositories import _sqlite_sql, _sqlite_values
from src.repositories._rows import span_to_sqlite_row
from src.repositories._sqlite_sql import MIGRATIONS
from src.repositories.span_store import RepositoryError
from src.repositories.sqlite_repository import SqliteSpanRepository

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
_ids = iter(range(1, 1 << 60))


def make_span(agent: str = "gap_analyzer", minutes_ago: float = 1) -> ObservabilitySpan:
    start = NOW - timedelta(minutes=minutes_ago)
    return ObservabilitySpan(
        span_id=f"{next(_ids):016x}",
        trace_id=TRACE,
        operation_name="analyze",
        agent_name=agent,
        start_time=start,
        end_time=start + timedelta(milliseconds=8),
        attributes={"k": "v"},
    )


def clock() -> datetime:
    return NOW


async def test_construction__nothing_on_disk__until_first_use_creates_dirs_and_file(tmp_path):
    path = tmp_path / "a" / "b" / "spans.db"
    repo = SqliteSpanRepository(path, clock=clock)
    assert not path.parent.exists()

    await repo.setup()

    assert path.is_file()
    await repo.close()


async def test_setup__fresh_file__wal_mode_and_user_version_is_the_migration_count(tmp_path):
    path = tmp_path / "spans.db"
    repo = SqliteSpanRepository(path, clock=clock)
    await repo.setup()
    await repo.setup()
    await repo.close()

    with sqlite3.connect(path) as conn:
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        indexes = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx_%'"
            )
        }
    assert mode == "wal"
    assert version == len(MIGRATIONS)
    assert indexes == {
        "idx_ml_obs_spans_trace_id",
        "idx_ml_obs_spans_start_time",
        "idx_ml_obs_spans_agent_name",
        "idx_ml_obs_spans_status",
        "idx_ml_obs_spans_agent_start",
        "idx_ml_obs_trace_costs_slot",  # trace costs go with span retention, by slot
    }


async def test_stored_spans__plain_sql__reads_the_same_columns_as_postgres(tmp_path):
    path = tmp_path / "spans.db"
    repo = SqliteSpanRepository(path, clock=clock)
    await repo.setup()
    span = make_span()
    await repo.insert_span(span)
    await repo.close()

    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT id, agent_name, status, span_kind, start_time, duration_ms, "
            "json_extract(attributes, '$.k'), created_at IS NOT NULL "
            "FROM ml_observability_spans"
        ).fetchone()
    assert row == (
        str(span.id),
        "gap_analyzer",
        "completed",
        "agent",
        "2026-03-01T11:59:00.000000+00:00",
        8.0,
        "v",
        1,
    )


async def test_before_setup__query__repository_error_saying_call_setup(tmp_path):
    repo = SqliteSpanRepository(tmp_path / "spans.db", clock=clock)
    with pytest.raises(RepositoryError, match=r"no such table.*call setup\(\) first"):
        await repo.get_spans_by_time_window("1h")
    await repo.close()


async def test_memory_database__round_trip__works_without_a_file(tmp_path):
    repo = SqliteSpanRepository(":memory:", clock=clock)
    await repo.setup()
    span = make_span()
    assert await repo.insert_spans_batch([span, span]) == 1
    assert await repo.get_spans_by_trace(TRACE) == [span]
    await repo.close()


async def test_memory_database__window_metrics__read_on_the_one_connection(tmp_path):
    """A ":memory:" database is private to its connection: the rollup read (on a file, a
    connection of its own) must use the one that holds the spans."""
    repo = SqliteSpanRepository(":memory:", clock=clock)
    await repo.setup()
    await repo.insert_spans_batch([make_span(minutes_ago=m) for m in (0.5, 2, 30)])
    stats, summary = await repo.get_window_metrics("1h")
    assert [(s.agent_name, s.count) for s in stats] == [("gap_analyzer", 3)]
    assert summary.total_spans == 3
    await repo.close()


async def test_window_read__own_insert_waiting_for_the_file_lock__read_goes_ahead(tmp_path):
    """The window read has a connection of its own: while this repository's insert waits for
    the write lock (another process holds it), a window read still answers, from the last
    commit (with one connection it would wait behind the insert, and the insert behind the
    other writer, which here commits only after the read: a deadlock the wait_for reports)."""
    path = tmp_path / "spans.db"
    repo = SqliteSpanRepository(path, clock=clock)
    await repo.setup()
    await repo.insert_spans_batch([make_span(minutes_ago=m) for m in (1.5, 3)])
    other_process = sqlite3.connect(path, isolation_level=None)
    try:
        other_process.execute("BEGIN IMMEDIATE")
        insert = asyncio.ensure_future(repo.insert_spans_batch([make_span(minutes_ago=2)]))
        while not repo._lock.locked():  # the insert holds the writer and waits for the file
            await asyncio.sleep(0.01)
        stats, summary = await asyncio.wait_for(repo.get_window_metrics("1h"), 30)
        assert summary.total_spans == 2 and stats[0].count == 2
        other_process.execute("COMMIT")
        assert await insert == 1
    finally:
        other_process.close()
    _, summary = await repo.get_window_metrics("1h")
    assert summary.total_spans == 3
    await repo.close()
    with pytest.raises(RepositoryError, match="closed"):
        await repo.get_window_metrics("1h")


async def test_several_loops_and_threads__concurrent_inserts__all_stored_once(tmp_path):
    repo = SqliteSpanRepository(tmp_path / "spans.db", clock=clock)
    await repo.setup()
    per_thread = {name: [make_span(name) for _ in range(50)] for name in ("t1", "t2", "t3")}
    results: dict[str, int] = {}

    def worker(name: str) -> None:
        async def insert_in_halves() -> int:
            spans = per_thread[name]
            return sum(
                await asyncio.gather(
                    repo.insert_spans_batch(spans[:25]), repo.insert_spans_batch(spans[25:])
                )
            )

        results[name] = asyncio.run(insert_in_halves())

    threads = [threading.Thread(target=worker, args=(name,)) for name in per_thread]
    for thread in threads:
        thread.start()
    main_spans = [make_span("main") for _ in range(10)]
    main_count = await repo.insert_spans_batch(main_spans)
    for thread in threads:
        await asyncio.to_thread(thread.join)

    assert results == {"t1": 50, "t2": 50, "t3": 50} and main_count == 10
    stats = await repo.get_latency_stats("1h")
    assert {s.agent_name: s.count for s in stats} == {"main": 10, "t1": 50, "t2": 50, "t3": 50}
    await repo.close()


async def test_two_repositories__same_file__see_each_others_writes(tmp_path):
    path = tmp_path / "shared.db"
    writer = SqliteSpanRepository(path, clock=clock)
    reader = SqliteSpanRepository(path, clock=clock)
    await asyncio.gather(writer.setup(), reader.setup())
    span = make_span()
    await writer.insert_span(span)
    assert await reader.get_spans_by_trace(TRACE) == [span]
    await writer.close()
    await reader.close()


def test_constructor__bad_busy_timeout__value_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="busy_timeout_seconds"):
        SqliteSpanRepository(tmp_path / "x.db", busy_timeout_seconds=0)


async def test_insert_batch__more_rows_than_one_statement_takes__each_stored_once_replay_adds_none(
    tmp_path,
):
    repo = SqliteSpanRepository(tmp_path / "obs.db", clock=clock)
    await repo.setup()
    spans = [make_span(minutes_ago=1 + i / 100) for i in range(1_201)]  # 3 statements of 500
    try:
        assert await repo.insert_spans_batch(spans[:700]) == 700
        # a replay overlapping the first write across a statement boundary: only new rows count
        assert await repo.insert_spans_batch(spans[600:]) == 501
        assert await repo.insert_spans_batch(spans) == 0
        stored = await repo.get_spans_by_trace(TRACE)
    finally:
        await repo.close()
    assert sorted(s.span_id for s in stored) == sorted(s.span_id for s in spans)


def test_statement_sizes__any_row_count__full_statements_then_powers_of_two_summing_to_it():
    per = _sqlite_values.ROWS_PER_STATEMENT
    lengths = set()
    for rows in range(0, 3 * per + 7):
        sizes = _sqlite_values.statement_sizes(rows, per)
        assert sum(sizes) == rows
        assert sizes == sorted(sizes, reverse=True)
        lengths.update(sizes)
    # few distinct statements, so a connection's statement cache stays small
    assert lengths == {per} | {1 << k for k in range(per.bit_length())}


async def test_insert_batches__every_batch_size__few_statement_lengths_compiled(tmp_path):
    repo = SqliteSpanRepository(tmp_path / "obs.db", clock=clock)
    await repo.setup()
    conn = sqlite3.connect(tmp_path / "obs.db")
    try:
        lengths = set()
        for size in (1, 3, 499, 500, 501, 777, 1_000, 1_234):
            rows = [span_to_sqlite_row(make_span(minutes_ago=1 + i / 1_000)) for i in range(size)]
            statements: list[str] = []
            conn.set_trace_callback(statements.append)
            with conn:
                assert _sqlite_sql.insert_spans(conn, rows) == size
            conn.set_trace_callback(None)
            lengths.update(s.count("), (") + 1 for s in statements if s.startswith("INSERT"))
    finally:
        conn.close()
        await repo.close()
    assert lengths <= {500} | {1 << k for k in range(9)}
