"""PostgreSQL-specific behaviour of `PostgresSpanRepository` on the real test server:
failures become `RepositoryError` without the password, a server restart is survived,
several event loops share one repository, and concurrent `setup()` calls do not race."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest

from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan
from src.repositories.postgres_repository import PostgresSpanRepository
from src.repositories.span_store import RepositoryError
from tests.fixtures.postgres import PgServer, free_port

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SECRET = "s3cr3t-Pa55word"
T = TypeVar("T")

_ids = iter(range(1, 1 << 60))


def make_span(agent: str = "gap_analyzer") -> ObservabilitySpan:
    start = NOW - timedelta(minutes=next(_ids) % 50 + 1)
    return ObservabilitySpan(
        span_id=f"{next(_ids):016x}",
        trace_id=TRACE,
        operation_name="analyze",
        agent_name=agent,
        start_time=start,
        end_time=start + timedelta(milliseconds=5),
    )


def clock() -> datetime:
    return NOW


async def test_unreachable_server__any_call__repository_error_without_password():
    dsn = f"postgresql://app:{SECRET}@127.0.0.1:{free_port()}/e2i"
    repo = PostgresSpanRepository(dsn, timeout=1, clock=clock)
    try:
        with pytest.raises(RepositoryError) as caught:
            await repo.insert_span(make_span())
    finally:
        await repo.close()
    message = str(caught.value)
    assert "127.0.0.1" in message and "/e2i" in message and "within 1 s" in message
    assert "Connection refused" in message
    assert SECRET not in message and SECRET not in repr(repo)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_wrong_password__setup__repository_error_naming_the_failure_not_the_password(
    pg_server: PgServer, pg_dsn: str
):
    role = "e2i_pw_user"
    pg_server.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'right-one'")
    hba = pg_server.data_dir / "pg_hba.conf"
    original = hba.read_text()
    try:
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + original)
        pg_server.execute("SELECT pg_reload_conf()")
        dsn = pg_dsn.replace("postgres@", f"{role}:{SECRET}@")
        repo = PostgresSpanRepository(dsn, min_size=0, timeout=2)
        with pytest.raises(RepositoryError) as caught:
            await repo.setup()
        await repo.close()
    finally:
        hba.write_text(original)
        pg_server.execute("SELECT pg_reload_conf()")
        pg_server.execute(f"DROP ROLE {role}")
    message = str(caught.value)
    assert SECRET not in message
    assert "PostgreSQL setup" in message and "password authentication failed" in message


def test_constructor__malformed_dsn__value_error_without_the_dsn():
    dsn = f"postgresql://app:{SECRET}@host/db?nonsense_option=1"
    with pytest.raises(ValueError) as caught:
        PostgresSpanRepository(dsn)
    assert SECRET not in str(caught.value) and "postgresql://user" in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"min_size": -1}, "min_size"), ({"max_size": 0}, "max_size"), ({"timeout": 0}, "timeout")],
)
def test_constructor__bad_pool_settings__value_error_naming_the_setting(pg_dsn, kwargs, field):
    with pytest.raises(ValueError, match=field):
        PostgresSpanRepository(pg_dsn, **kwargs)


async def test_server_restart__calls_fail_then_recover__same_repository(
    pg_server: PgServer, pg_dsn: str
):
    repo = PostgresSpanRepository(pg_dsn, max_size=2, timeout=2, clock=clock)
    await repo.setup()
    try:
        assert await repo.insert_span(make_span()) is True
        pg_server.stop()
        try:
            with pytest.raises(RepositoryError):
                await repo.insert_span(make_span())
        finally:
            pg_server.start()
        recovered = make_span()
        assert await repo.insert_span(recovered) is True
        assert recovered in await repo.get_spans_by_trace(TRACE)
    finally:
        await repo.close()


async def test_connection_dropped_by_the_server__next_batch__stored_on_first_try(
    pg_server: PgServer, pg_dsn: str
):
    """Connections are not checked at checkout: one the server dropped (an idle timeout, a
    proxy, an administrator) fails at first use, and the batch runs again on a new one."""
    repo = PostgresSpanRepository(pg_dsn, max_size=2, clock=clock)
    await repo.setup()
    try:
        assert await repo.insert_spans_batch([make_span()]) == 1
        with psycopg.connect(pg_server.admin_dsn, autocommit=True) as admin:
            (dropped,) = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'e2i-observability'"
            ).fetchone()
        assert dropped >= 1
        spans = [make_span() for _ in range(3)]
        assert await repo.insert_spans_batch(spans) == 3
        stored = await repo.get_spans_by_trace(TRACE)
        assert all(span in stored for span in spans)
    finally:
        await repo.close()


class LoopThread:
    """An event loop running in its own thread, as the batch processor's worker has."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    worker = LoopThread()
    yield worker
    worker.stop()


async def test_two_event_loops__share_one_repository__both_read_and_write(
    pg_dsn: str, loop_thread: LoopThread
):
    repo = PostgresSpanRepository(pg_dsn, clock=clock)
    await repo.setup()
    main_spans = [make_span("orchestrator") for _ in range(3)]
    worker_spans = [make_span("gap_analyzer") for _ in range(4)]

    counts = await asyncio.gather(
        repo.insert_spans_batch(main_spans),
        loop_thread.run(repo.insert_spans_batch(worker_spans)),
    )
    from_worker = await loop_thread.run(repo.get_spans_by_trace(TRACE))

    assert counts == [3, 4]
    assert sorted(s.span_id for s in from_worker) == sorted(
        s.span_id for s in main_spans + worker_spans
    )
    await repo.close()
    with pytest.raises(RepositoryError, match="closed"):
        await loop_thread.run(repo.get_spans_by_trace(TRACE))
    assert open_connections(pg_dsn) == 0


def open_connections(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'e2i-observability' AND datname = current_database()"
        ).fetchone()
    return count


async def test_short_lived_loops__asyncio_run_repeatedly__each_returns_and_data_is_kept(
    pg_dsn: str,
):
    """Scripts call asyncio.run() more than once; a pool bound to an ended loop must not
    hang the next run (psycopg_pool workers swallow cancellation mid-task)."""
    repo = PostgresSpanRepository(pg_dsn, min_size=2, clock=clock)
    spans = [make_span() for _ in range(6)]

    def in_short_lived_loops() -> list[bool]:
        asyncio.run(repo.setup())
        return [asyncio.run(repo.insert_span(span)) for span in spans]

    # wait_for only guards against a hang; the assertion is on the results.
    assert await asyncio.wait_for(asyncio.to_thread(in_short_lived_loops), 120) == [True] * 6
    assert {s.span_id for s in await repo.get_spans_by_trace(TRACE)} == {s.span_id for s in spans}
    await repo.close()
    assert open_connections(pg_dsn) == 0


async def test_setup__concurrent_calls_on_a_fresh_database__all_succeed(pg_dsn: str):
    repos = [PostgresSpanRepository(pg_dsn, min_size=0) for _ in range(4)]
    try:
        await asyncio.gather(*(repo.setup() for repo in repos))
    finally:
        for repo in repos:
            await repo.close()
    with psycopg.connect(pg_dsn) as conn:
        (tables,) = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname = 'ml_observability_spans'"
        ).fetchone()
    assert tables == 1


async def test_insert_spans_batch__large_batch__copies_all_and_counts_new(pg_dsn: str):
    repo = PostgresSpanRepository(pg_dsn, clock=clock)
    await repo.setup()
    spans = [make_span(f"agent_{i % 7}") for i in range(2500)]
    try:
        assert await repo.insert_spans_batch(spans) == 2500
        assert await repo.insert_spans_batch([*spans[:1000], make_span()]) == 1
    finally:
        await repo.close()


async def test_session_time_zone_with_dst__7d_window__counts_exact_seconds(pg_dsn: str):
    """US daylight saving starts 2026-03-08: in New York that week has 167 hours. Windows are
    exact durations (as in the other backends), not calendar days of the session's zone."""
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    dsn = pg_dsn + "?options=-c%20TimeZone%3DAmerica%2FNew_York"
    repo = PostgresSpanRepository(dsn, clock=lambda: now)
    await repo.setup()
    start = now - timedelta(hours=167, minutes=30)
    span = ObservabilitySpan(
        span_id="00f067aa0ba902b7",
        trace_id=TRACE,
        operation_name="analyze",
        agent_name="gap_analyzer",
        start_time=start,
        end_time=start + timedelta(seconds=1),
    )
    try:
        await repo.insert_span(span)
        assert await repo.get_spans_by_time_window("7d") == [span]
        (stats,) = await repo.get_latency_stats("7d")
        assert stats.count == 1
        assert await repo.delete_old_spans(days=7) == 0
    finally:
        await repo.close()


def install_delete_log(dsn: str) -> None:
    """Log each DELETE statement on the spans table (its transaction id and row count), so a
    test sees how many retention batches ran and in how many transactions."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.test_delete_log (seq serial, xact xid8, rows bigint)")
        conn.execute(
            "CREATE FUNCTION public.test_log_delete() RETURNS trigger LANGUAGE plpgsql "
            "SECURITY DEFINER SET search_path = '' AS $$ BEGIN "
            "INSERT INTO public.test_delete_log (xact, rows) "
            "SELECT pg_catalog.pg_current_xact_id(), count(*) FROM old_rows; "
            "RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE TRIGGER test_delete_log AFTER DELETE ON public.ml_observability_spans "
            "REFERENCING OLD TABLE AS old_rows "
            "FOR EACH STATEMENT EXECUTE FUNCTION public.test_log_delete()"
        )


def delete_log(dsn: str) -> list[tuple[str, int]]:
    """(transaction id, rows deleted) per DELETE statement, in order."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT xact::text, rows FROM public.test_delete_log ORDER BY seq")
        return rows.fetchall()


def span_started(start: datetime, n: int) -> ObservabilitySpan:
    return ObservabilitySpan(
        span_id=f"{n:016x}",
        trace_id=TRACE,
        operation_name="analyze",
        agent_name="gap_analyzer",
        start_time=start,
        end_time=start + timedelta(milliseconds=5),
    )


async def test_delete_old_spans__5_old_rows_batch_size_2__3_calls_each_its_own_transaction(
    pg_dsn: str,
):
    """Each call of ml_delete_old_spans deletes one batch in its own short transaction; the
    clock moves a day each time it is read, so only a cutoff fixed once spares the 29-day-old
    span."""
    readings = iter(NOW + timedelta(days=day) for day in range(100))
    repo = PostgresSpanRepository(pg_dsn, clock=lambda: next(readings))
    await repo.setup()
    install_delete_log(pg_dsn)
    old = [span_started(NOW - timedelta(days=40, minutes=n), n) for n in range(1, 6)]
    kept = [span_started(NOW - timedelta(days=29), 8), span_started(NOW, 9)]
    try:
        await repo.insert_spans_batch([*old, *kept])

        deleted = await repo.delete_old_spans(days=30, batch_size=2)

        remaining = await repo.get_spans_by_trace(TRACE)
    finally:
        await repo.close()
    log = delete_log(pg_dsn)
    assert deleted == 5
    assert [rows for _, rows in log] == [2, 2, 1]
    assert len({xact for xact, _ in log}) == 3
    assert remaining == kept


async def test_ml_delete_old_spans__called_once_with_5_old_rows_batch_size_2__deletes_oldest_2(
    pg_dsn: str,
):
    repo = PostgresSpanRepository(pg_dsn, clock=clock)
    await repo.setup()
    old = [span_started(NOW - timedelta(days=40, minutes=n), n) for n in range(1, 6)]
    try:
        await repo.insert_spans_batch(old)
    finally:
        await repo.close()

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        (deleted,) = conn.execute(
            "SELECT public.ml_delete_old_spans(interval '30 days', 2, %s)", (NOW,)
        ).fetchone()
        remaining = conn.execute(
            "SELECT span_id FROM public.ml_observability_spans ORDER BY start_time"
        ).fetchall()

    assert deleted == 2
    oldest_first = sorted(old, key=lambda s: s.start_time)
    assert remaining == [(s.span_id,) for s in oldest_first[2:]]
