"""database/ml/mlops_tables.sql on a real PostgreSQL server.

Idempotence is checked on the catalog itself (columns, constraints, indexes, policies,
functions, grants, view), both with Supabase's roles and on a plain server without them.
Role checks run statements under `SET LOCAL ROLE` the way PostgREST does.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import psycopg
import pytest
from psycopg import errors, sql

from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanKind,
    SpanStatus,
)
from src.agents.ml_foundation.observability_connector.resources import schema_file
from src.repositories._rows import SPAN_COLUMNS, span_to_postgres_row
from src.repositories.postgres_repository import PostgresSpanRepository
from src.repositories.span_store import TABLE_NAME

pytestmark = pytest.mark.postgres

INSERT = sql.SQL("INSERT INTO {table} ({columns}) VALUES ({values})").format(
    table=sql.Identifier("public", TABLE_NAME),
    columns=sql.SQL(", ").join(map(sql.Identifier, SPAN_COLUMNS)),
    values=sql.SQL(", ").join(sql.Placeholder() * len(SPAN_COLUMNS)),
)

FUNCTIONS = "('ml_agent_latency_stats', 'ml_delete_old_spans', 'ml_trace_summary')"

CATALOG = """
SELECT 'column', a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' '
       || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = 'public.ml_observability_spans'::regclass AND a.attnum > 0
  AND NOT a.attisdropped
UNION ALL
SELECT 'constraint', conname || ' ' || pg_get_constraintdef(oid) || ' ' || oid::text
FROM pg_constraint WHERE conrelid = 'public.ml_observability_spans'::regclass
UNION ALL
SELECT 'index', pg_get_indexdef(indexrelid) || ' ' || indexrelid::text
FROM pg_index WHERE indrelid = 'public.ml_observability_spans'::regclass
UNION ALL
SELECT 'policy', policyname || ' ' || permissive || ' ' || roles::text || ' ' || cmd || ' '
       || coalesce(qual, '') || ' ' || coalesce(with_check, '')
FROM pg_policies WHERE schemaname = 'public' AND tablename = 'ml_observability_spans'
UNION ALL
SELECT 'function', p.oid::regprocedure::text || ' ' || pg_get_functiondef(p.oid) || ' '
       || coalesce(p.proacl::text, '<default>') || ' ' || coalesce(obj_description(p.oid), '')
FROM pg_proc p
WHERE p.proname IN ('ml_agent_latency_stats', 'ml_delete_old_spans', 'ml_trace_summary')
UNION ALL
SELECT 'relation', c.oid::text || ' ' || c.relname || ' ' || c.relkind::text || ' '
       || c.relrowsecurity || ' ' || coalesce(c.relacl::text, '<default>') || ' '
       || coalesce(c.reloptions::text, '') || ' ' || coalesce(obj_description(c.oid), '')
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace
  AND c.relname IN ('ml_observability_spans', 'v_agent_latency_summary')
UNION ALL
SELECT 'view', pg_get_viewdef('public.v_agent_latency_summary'::regclass)
ORDER BY 1, 2
"""


def catalog(dsn: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(CATALOG).fetchall()


def apply_file(dsn: str) -> None:
    """What `psql --single-transaction -f database/ml/mlops_tables.sql` does."""
    with psycopg.connect(dsn) as conn:
        conn.execute(schema_file().read_text(encoding="utf-8"))


async def setup_with_repository(dsn: str) -> None:
    repo = PostgresSpanRepository(dsn)
    try:
        await repo.setup()
    finally:
        await repo.close()


_ids = iter(range(1, 1 << 60))


def make_span(
    start: datetime, agent: str = "gap_analyzer", duration_ms: float = 10.0, **fields
) -> ObservabilitySpan:
    return ObservabilitySpan(
        span_id=f"{next(_ids):016x}",
        trace_id="0af7651916cd43dd8448eb211c80319c",
        operation_name="analyze",
        agent_name=agent,
        start_time=start,
        end_time=start + timedelta(milliseconds=duration_ms),
        **fields,
    )


@pytest.fixture
def db(pg_dsn: str) -> Iterator[psycopg.Connection]:
    """The migrated test database, autocommit (each statement or block its own transaction)."""
    apply_file(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


def as_role(conn: psycopg.Connection, role: str, query, params=()) -> list[tuple]:
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


# -- idempotence ----------------------------------------------------------------------------------


async def test_schema__applied_twice_with_supabase_roles__no_error_and_no_change(
    pg_dsn, supabase_roles
):
    await setup_with_repository(pg_dsn)
    first = catalog(pg_dsn)
    apply_file(pg_dsn)
    await setup_with_repository(pg_dsn)

    assert catalog(pg_dsn) == first
    kinds = {kind for kind, _ in first}
    assert kinds == {"column", "constraint", "index", "policy", "function", "relation", "view"}


async def test_schema__plain_postgres_without_supabase_roles__applies_twice_without_policies(
    pg_dsn,
):
    await setup_with_repository(pg_dsn)
    first = catalog(pg_dsn)
    await setup_with_repository(pg_dsn)

    assert catalog(pg_dsn) == first
    assert not [row for row in first if row[0] == "policy"]
    with psycopg.connect(pg_dsn) as conn:
        (rls,) = conn.execute(
            "SELECT relrowsecurity FROM pg_class "
            "WHERE oid = 'public.ml_observability_spans'::regclass"
        ).fetchone()
        grantees = conn.execute(  # grantee 0 is PUBLIC
            "SELECT p.proname, a.grantee::regrole::text FROM pg_proc p, aclexplode(p.proacl) a "
            f"WHERE p.proname IN {FUNCTIONS} AND a.grantee <> 0 ORDER BY 1"
        ).fetchall()
        (public,) = conn.execute(
            "SELECT count(*) FROM pg_proc p, aclexplode(p.proacl) a "
            f"WHERE p.proname IN {FUNCTIONS} AND a.grantee = 0"
        ).fetchone()
    assert rls is True
    assert public == 0
    assert grantees == [
        ("ml_agent_latency_stats", "postgres"),
        ("ml_delete_old_spans", "postgres"),
        ("ml_trace_summary", "postgres"),
    ]


def test_schema__seed_era_table__gains_new_columns_and_unique_key(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            "CREATE TABLE public.ml_observability_spans ("
            " id uuid PRIMARY KEY DEFAULT gen_random_uuid(), span_id text NOT NULL,"
            " trace_id text NOT NULL, parent_span_id text, operation_name text NOT NULL,"
            " agent_name text NOT NULL, agent_tier smallint, start_time timestamptz NOT NULL,"
            " end_time timestamptz, duration_ms double precision, status text NOT NULL,"
            " error_type text, error_message text, attributes jsonb NOT NULL DEFAULT '{}',"
            " llm_model text, input_tokens int, output_tokens int, total_tokens int,"
            " created_at timestamptz NOT NULL DEFAULT now())"
        )
    apply_file(pg_dsn)

    span = make_span(datetime.now(UTC), tracestate="rojo=00f067aa0ba902b7")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(INSERT, span_to_postgres_row(span))
        with pytest.raises(errors.UniqueViolation):
            conn.execute(INSERT, span_to_postgres_row(span.model_copy(update={"id": uuid4()})))


# -- roles ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        f"SELECT count(*) FROM public.{TABLE_NAME}",
        "SELECT * FROM public.v_agent_latency_summary",
        "SELECT * FROM public.ml_agent_latency_stats(interval '1 hour')",
        "SELECT public.ml_delete_old_spans(interval '1 day', 10)",
        "SELECT * FROM public.ml_trace_summary('0af7651916cd43dd8448eb211c80319c')",
    ],
    ids=["select", "view", "stats_function", "retention_function", "summary_function"],
)
def test_anon__select_view_and_functions__permission_denied_42501(pg_dsn, supabase_roles, query):
    apply_file(pg_dsn)
    with (
        psycopg.connect(pg_dsn, autocommit=True) as conn,
        pytest.raises(errors.InsufficientPrivilege) as caught,
    ):
        as_role(conn, supabase_roles.anon, query)
    assert caught.value.sqlstate == "42501"


def test_anon__insert__permission_denied_42501(pg_dsn, supabase_roles):
    apply_file(pg_dsn)
    row = span_to_postgres_row(make_span(datetime.now(UTC)))
    with (
        psycopg.connect(pg_dsn, autocommit=True) as conn,
        pytest.raises(errors.InsufficientPrivilege) as caught,
    ):
        as_role(conn, supabase_roles.anon, INSERT, row)
    assert caught.value.sqlstate == "42501"


def test_service_role__inserts_reads_and_calls_functions__through_its_policy(
    pg_dsn, supabase_roles
):
    apply_file(pg_dsn)
    now = datetime.now(UTC)
    span = make_span(now - timedelta(minutes=5))
    old = make_span(now - timedelta(days=40))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        role = supabase_roles.service_role
        as_role(conn, role, INSERT, span_to_postgres_row(span))
        as_role(conn, role, INSERT, span_to_postgres_row(old))
        read = as_role(conn, role, f"SELECT span_id FROM public.{TABLE_NAME} ORDER BY start_time")
        stats = as_role(conn, role, "SELECT agent_name, count FROM public.v_agent_latency_summary")
        deleted = as_role(conn, role, "SELECT public.ml_delete_old_spans(interval '30 days', 10)")
        summary = as_role(
            conn, role, "SELECT span_count FROM public.ml_trace_summary(%s)", (span.trace_id,)
        )

        assert read == [(old.span_id,), (span.span_id,)]
        assert stats == [("gap_analyzer", 1)]
        assert deleted == [(1,)]
        assert summary == [(1,)]

        conn.execute(f"DROP POLICY ml_obs_spans_service_role_all ON public.{TABLE_NAME}")
        assert as_role(conn, role, f"SELECT span_id FROM public.{TABLE_NAME}") == []
        with pytest.raises(errors.InsufficientPrivilege):  # row-level security, no BYPASSRLS
            as_role(conn, role, INSERT, span_to_postgres_row(make_span(now)))


def test_authenticated__read_policy__denied_until_select_is_granted_and_never_writes(
    pg_dsn, supabase_roles
):
    apply_file(pg_dsn)
    span = make_span(datetime.now(UTC))
    query = f"SELECT span_id FROM public.{TABLE_NAME}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(INSERT, span_to_postgres_row(span))
        role = supabase_roles.authenticated
        with pytest.raises(errors.InsufficientPrivilege):
            as_role(conn, role, query)

        conn.execute(f"GRANT SELECT, INSERT ON public.{TABLE_NAME} TO {role}")
        assert as_role(conn, role, query) == [(span.span_id,)]
        with pytest.raises(errors.InsufficientPrivilege):  # no policy lets it write
            as_role(conn, role, INSERT, span_to_postgres_row(make_span(datetime.now(UTC))))


# -- view and functions ---------------------------------------------------------------------------


def test_view__last_24h__equals_the_function_for_24_hours(db):
    rng = random.Random(3)
    now = datetime.now(UTC)
    for agent in ("orchestrator", "gap_analyzer"):
        for _ in range(40):
            span = make_span(
                now - timedelta(minutes=rng.uniform(1, 23 * 60)),
                agent=agent,
                duration_ms=rng.uniform(1, 800),
                span_kind=rng.choice(list(SpanKind)),
                status=rng.choice([SpanStatus.COMPLETED, SpanStatus.ERROR]),
                input_tokens=rng.randint(0, 100),
            )
            db.execute(INSERT, span_to_postgres_row(span))
    db.execute(INSERT, span_to_postgres_row(make_span(now - timedelta(hours=25), agent="old")))

    with db.transaction():  # one now() for both
        view = db.execute("SELECT * FROM public.v_agent_latency_summary").fetchall()
        function = db.execute(
            "SELECT * FROM public.ml_agent_latency_stats(interval '24 hours')"
        ).fetchall()

    assert view == function
    assert [(row[0], row[2]) for row in view] == [("gap_analyzer", 40), ("orchestrator", 40)]


@pytest.mark.parametrize(
    ("old_count", "batch_size", "per_call"),
    [(25, 10, [10, 10, 5]), (20, 10, [10, 10, 0]), (5, 2, [2, 2, 1]), (1, 1, [1, 0])],
)
def test_ml_delete_old_spans__called_until_short__one_batch_of_the_oldest_per_call(
    db, old_count, batch_size, per_call
):
    """One call deletes at most p_batch_size rows, oldest first; callers repeat (each call its
    own transaction here: autocommit) until a call returns fewer than p_batch_size."""
    now = datetime(2026, 3, 1, tzinfo=UTC)
    old = [make_span(now - timedelta(days=31, minutes=i)) for i in range(old_count)]
    for span in old:
        db.execute(INSERT, span_to_postgres_row(span))
    young = make_span(now - timedelta(days=29))
    db.execute(INSERT, span_to_postgres_row(young))
    call = "SELECT public.ml_delete_old_spans(interval '30 days', %s, %s)"
    oldest_first = [s.span_id for s in sorted(old, key=lambda s: s.start_time)]

    (first,) = db.execute(call, (batch_size, now)).fetchone()
    after_first = {row[0] for row in db.execute(f"SELECT span_id FROM public.{TABLE_NAME}")}
    counts = [first]
    while counts[-1] == batch_size and len(counts) <= len(per_call):  # bounded if broken
        counts.append(db.execute(call, (batch_size, now)).fetchone()[0])

    assert counts == per_call
    assert after_first == {*oldest_first[first:], young.span_id}
    remaining = db.execute(f"SELECT span_id FROM public.{TABLE_NAME}").fetchall()
    assert remaining == [(young.span_id,)]


@pytest.mark.parametrize(
    "call",
    [
        "SELECT public.ml_delete_old_spans(interval '30 days', 0)",
        "SELECT public.ml_delete_old_spans(interval '-1 day', 10)",
    ],
    ids=["batch_zero", "negative_age"],
)
def test_ml_delete_old_spans__bad_arguments__invalid_parameter_value_22023(db, call):
    with pytest.raises(errors.InvalidParameterValue) as caught:
        db.execute(call)
    assert caught.value.sqlstate == "22023"
