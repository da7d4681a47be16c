"""The SQL half of the Supabase backend on the real PostgreSQL server: the migration's grants,
row-level security and SQL functions, exercised per Supabase role with `SET ROLE`.

`anon` (the public key) gets nothing (42501 everywhere); `service_role` (the backend's key)
reads, writes and calls the functions through its policy (not BYPASSRLS); `authenticated`
may only read, and only once SELECT is granted (storage.supabase_authenticated_read).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors, sql

from src.agents.ml_foundation.observability_connector.models import SpanKind, SpanStatus
from src.repositories._rows import SPAN_COLUMNS, span_to_postgres_row, stats_from_row
from src.repositories.postgres_repository import PostgresSpanRepository
from src.repositories.span_store import TABLE_NAME
from tests.fixtures.postgrest_double import apply_schema
from tests.integration.test_repository_conformance import random_spans
from tests.integration.test_supabase_repository import NOW, TRACE, make_span

pytestmark = pytest.mark.postgres

INSERT = sql.SQL("INSERT INTO {t} ({c}) VALUES ({v}) ON CONFLICT (trace_id, span_id) DO NOTHING")
INSERT = INSERT.format(
    t=sql.Identifier("public", TABLE_NAME),
    c=sql.SQL(", ").join(map(sql.Identifier, SPAN_COLUMNS)),
    v=sql.SQL(", ").join(sql.Placeholder() * len(SPAN_COLUMNS)),
)
STATS = "SELECT * FROM public.ml_agent_latency_stats(interval '1 hour', NULL, %s)"
RETENTION = "SELECT public.ml_delete_old_spans(interval '30 days', 2, %s)"


@pytest.fixture
def db(pg_dsn: str, supabase_roles) -> Iterator[psycopg.Connection]:
    """The migrated test database; each statement below runs in its own transaction."""
    apply_schema(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


def as_role(conn: psycopg.Connection, role: str, query, params=()) -> list[tuple]:
    """Run one statement as `role` (SET LOCAL ROLE inside a rolled-back-on-error transaction)."""
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def insert_as(conn: psycopg.Connection, role: str, span) -> None:
    as_role(conn, role, INSERT, span_to_postgres_row(span))


@pytest.mark.parametrize(
    ("query", "params"),
    [
        (f"SELECT count(*) FROM public.{TABLE_NAME}", ()),
        ("SELECT * FROM public.v_agent_latency_summary", ()),
        (STATS, (NOW,)),
        (RETENTION, (NOW,)),
        ("SELECT * FROM public.ml_window_summary('1 hour', NULL, %s)", (NOW,)),
        ("SELECT public.ml_count_old_spans('30 days', %s)", (NOW,)),
    ],
    ids=[
        "select",
        "view",
        "stats_function",
        "retention_function",
        "summary_function",
        "count_old_function",
    ],
)
def test_anon__reads_or_calls_functions__permission_denied_42501(db, query, params):
    with pytest.raises(errors.InsufficientPrivilege) as caught:
        as_role(db, "anon", query, params)
    assert caught.value.sqlstate == "42501"


def test_anon__inserts__permission_denied_42501(db):
    with pytest.raises(errors.InsufficientPrivilege):
        insert_as(db, "anon", make_span(1))


def test_service_role__inserts_reads_and_deletes__through_its_policy(db):
    spans = [make_span(1), make_span(2, minutes_ago=60 * 24 * 31)]
    for span in spans:
        insert_as(db, "service_role", span)
    insert_as(db, "service_role", spans[0])  # re-sent: ignored, not an error

    rows = as_role(db, "service_role", f"SELECT span_id FROM public.{TABLE_NAME} ORDER BY 1")
    assert rows == [("0000000000000001",), ("0000000000000002",)]
    assert as_role(db, "service_role", RETENTION, (NOW,)) == [(1,)]
    bypass = db.execute("SELECT rolbypassrls FROM pg_roles WHERE rolname = 'service_role'")
    assert bypass.fetchone() == (False,)  # access came from the policy, not BYPASSRLS


def test_authenticated__without_the_read_grant__permission_denied_42501(db):
    insert_as(db, "service_role", make_span(1))
    with pytest.raises(errors.InsufficientPrivilege):
        as_role(db, "authenticated", f"SELECT count(*) FROM public.{TABLE_NAME}")


def test_authenticated__read_granted__reads_but_cannot_insert_or_call_retention(db):
    insert_as(db, "service_role", make_span(1))
    db.execute(f"GRANT SELECT ON public.{TABLE_NAME} TO authenticated")

    assert as_role(db, "authenticated", f"SELECT count(*) FROM public.{TABLE_NAME}") == [(1,)]
    with pytest.raises(errors.InsufficientPrivilege):
        insert_as(db, "authenticated", make_span(2))
    with pytest.raises(errors.InsufficientPrivilege):
        as_role(db, "authenticated", RETENTION, (NOW,))


def test_row_level_security__grant_without_a_policy__sees_no_rows(db):
    """RLS is really on: a grant alone (no policy for the role) shows nothing."""
    insert_as(db, "service_role", make_span(1))
    db.execute(f"GRANT SELECT ON public.{TABLE_NAME} TO anon")
    assert as_role(db, "anon", f"SELECT count(*) FROM public.{TABLE_NAME}") == [(0,)]


def test_stats_function__as_service_role__percentiles_errors_and_llm_tokens(db):
    durations = [12.0, 40.0, 7.5, 100.0, 5.0]
    spans = [make_span(n, minutes_ago=n, duration_ms=d) for n, d in enumerate(durations, 1)]
    spans[0] = make_span(1, minutes_ago=1, duration_ms=12.0, status=SpanStatus.ERROR)
    spans[4] = make_span(5, minutes_ago=5, duration_ms=5.0, span_kind=SpanKind.LLM,
                         input_tokens=4, output_tokens=6)  # fmt: skip
    spans.append(make_span(6, minutes_ago=61, duration_ms=999.0))  # outside the hour
    for span in spans:
        insert_as(db, "service_role", span)

    with db.cursor(row_factory=psycopg.rows.dict_row) as cur, db.transaction():
        cur.execute("SET LOCAL ROLE service_role")
        (row,) = cur.execute(STATS, (NOW,)).fetchall()

    cuts = statistics.quantiles(durations, n=100, method="inclusive")
    assert (row["agent_name"], row["count"], row["error_count"]) == ("gap_analyzer", 5, 1)
    assert row["p50_ms"] == pytest.approx(statistics.median(durations))
    assert (row["p95_ms"], row["p99_ms"]) == (pytest.approx(cuts[94]), pytest.approx(cuts[98]))
    assert (row["llm_calls"], row["input_tokens"], row["total_tokens"]) == (1, 4, 10)
    assert row["spans_per_minute"] == pytest.approx(5 / 60)


def test_json_columns__written_as_service_role__round_trip_as_objects(db):
    span = make_span(1, attributes={"nested": {"k": [1, 2]}}, trace_id=TRACE)
    insert_as(db, "service_role", span)
    (attributes,) = as_role(db, "service_role", f"SELECT attributes FROM public.{TABLE_NAME}")[0]
    assert attributes == {"nested": {"k": [1, 2]}}


async def test_stats_function__as_service_role__same_stats_as_the_postgres_repository(db, pg_dsn):
    """The policy lets service_role see every row: its numbers equal the owner's."""
    postgres = PostgresSpanRepository(pg_dsn, clock=lambda: NOW)
    try:
        by_agent = random_spans(seed=3)
        await postgres.insert_spans_batch([s for spans in by_agent.values() for s in spans])
        expected = await postgres.get_latency_stats("1h", exact=True)
    finally:
        await postgres.close()

    rows = as_role(db, "service_role", STATS, (NOW,))

    assert [stats_from_row(row, "1h") for row in rows] == expected
    assert len(expected) == len(by_agent)


@pytest.mark.parametrize("enabled", [True, False])
async def test_postgres_setup__supabase_authenticated_read_setting__grants_read_only(
    db, pg_dsn, enabled
):
    """storage.supabase_authenticated_read decides whether `authenticated` may read."""
    insert_as(db, "service_role", make_span(1))
    repository = PostgresSpanRepository(pg_dsn, authenticated_read=enabled)
    try:
        await repository.setup()
    finally:
        await repository.close()
    query = f"SELECT count(*) FROM public.{TABLE_NAME}"
    if enabled:
        assert as_role(db, "authenticated", query) == [(1,)]
        with pytest.raises(errors.InsufficientPrivilege):
            insert_as(db, "authenticated", make_span(2))
    else:
        with pytest.raises(errors.InsufficientPrivilege):
            as_role(db, "authenticated", query)
