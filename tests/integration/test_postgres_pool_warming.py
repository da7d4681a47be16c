"""Warming a new pool connection (`PoolRunner(warm=...)`): it runs once per connection before
the connection is handed out, a failing warm-up (the schema not applied yet) leaves the
connection in use, and the repository's own warm-up statement matches its schema."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan
from src.repositories._postgres_pools import PoolRunner
from src.repositories.postgres_repository import PostgresSpanRepository, _warm_reads

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def runner(dsn: str, warm: Any, max_size: int = 3) -> PoolRunner:
    return PoolRunner(dsn, min_size=1, max_size=max_size, timeout=10.0, name="warm-test", warm=warm)


async def backend_pid(conn: psycopg.AsyncConnection[Any]) -> int:
    await conn.execute("SELECT pg_sleep(0.5)")  # held long enough for the pool to grow
    return conn.info.backend_pid


async def test_new_connections__three_concurrent_calls__each_connection_warmed_once_first(
    pg_dsn: str,
):
    warmed: list[int] = []

    async def warm(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute("SELECT 1")
        warmed.append(conn.info.backend_pid)

    pools = runner(pg_dsn, warm)
    try:
        used = await asyncio.gather(*(pools.run("read", backend_pid) for _ in range(3)))
        used.append(await pools.run("read", backend_pid))
    finally:
        await pools.close()

    assert set(used) <= set(warmed)
    assert sorted(warmed) == sorted(set(warmed))  # once per connection
    assert len(set(used)) > 1  # the pool did open more than one connection


async def test_warm_up_fails__undefined_function__connection_kept_and_operations_run(
    pg_dsn: str,
):
    async def warm(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute("SELECT public.no_such_function()")

    pools = runner(pg_dsn, warm, max_size=1)  # one connection: a replaced one shows
    try:
        first = await pools.run("read", lambda conn: _status_and_pid(conn))
        second = await pools.run("read", lambda conn: _status_and_pid(conn))
    finally:
        await pools.close()

    assert first == second  # the same idle connection, not discarded and replaced
    assert first[0] == psycopg.pq.TransactionStatus.IDLE


async def _status_and_pid(conn: psycopg.AsyncConnection[Any]) -> tuple[int, int]:
    await conn.execute("SELECT 1")
    return conn.pgconn.transaction_status, conn.info.backend_pid


async def test_repository_warm_up__after_setup__runs_and_reads_still_see_the_spans(
    pg_dsn: str,
):
    """The repository's warm-up names both read functions with their current signatures (a
    mismatch would only be logged at debug level, so it is checked here)."""
    repo = PostgresSpanRepository(pg_dsn, clock=lambda: NOW)
    try:
        await repo.setup()  # the first connection's warm-up ran before the schema existed
        start = NOW - timedelta(minutes=5)
        span = ObservabilitySpan(
            span_id="00000000000000a1",
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            operation_name="analyze",
            agent_name="gap_analyzer",
            start_time=start,
            end_time=start + timedelta(milliseconds=40),
        )
        assert await repo.insert_spans_batch([span]) == 1
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            await _warm_reads(conn)  # raises if a function or its signature changed
            assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        (stats,) = await repo.get_latency_stats("1h")
    finally:
        await repo.close()
    assert (stats.agent_name, stats.count) == ("gap_analyzer", 1)
