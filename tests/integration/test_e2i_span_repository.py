"""`ObservabilitySpanRepository` called the way E2I's modules call it (E2I's integration notes,
§6 "Repository and agent", copied into these tests as calls): constructed with no arguments
(the configured default backend: SQLite, or PostgreSQL through `E2I_OBS_DATABASE_URL`) or with
`supabase_client=` (the real supabase client, async and sync, against the PostgREST test
double), keyword arguments, dashed UUID trace ids, real wall-clock time. Every read goes back to
the store.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from supabase import AsyncClientOptions, ClientOptions, acreate_client, create_client

from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanKind,
    SpanStatus,
)
from src.repositories.observability_span import (
    ObservabilitySpanRepository,
    PostgresSpanRepository,
    SqliteSpanRepository,
    SupabaseSpanRepository,
)

ENV_NAMES = ("E2I_OBS_CONFIG", "E2I_OBS_DATABASE_URL", "SUPABASE_URL", "SUPABASE_KEY")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No storage settings from the environment; the working directory is empty."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("supabase", marks=pytest.mark.postgres),
        pytest.param("supabase_sync", marks=pytest.mark.postgres),
    ]
)
async def repo(request, clean_env) -> AsyncIterator[ObservabilitySpanRepository]:
    if request.param == "sqlite":
        yield ObservabilitySpanRepository()
    elif request.param == "postgres":
        clean_env.setenv("E2I_OBS_DATABASE_URL", request.getfixturevalue("pg_dsn"))
        repository = ObservabilitySpanRepository()
        yield repository
        await repository.close()
    elif request.param == "supabase":
        stack = request.getfixturevalue("supabase_stack")
        async with httpx.AsyncClient(timeout=10) as http:
            options = AsyncClientOptions(httpx_client=http, postgrest_client_retry=False)
            client = await acreate_client(stack.url, stack.service_role_key, options)
            yield ObservabilitySpanRepository(supabase_client=client)
    else:
        stack = request.getfixturevalue("supabase_stack")
        with httpx.Client(timeout=10) as http:
            options = ClientOptions(httpx_client=http, postgrest_client_retry=False)
            client = create_client(stack.url, stack.service_role_key, options)
            yield ObservabilitySpanRepository(supabase_client=client)


def make_span(
    trace: uuid.UUID,
    minutes_ago: float,
    agent_name: str = "causal_impact",
    *,
    duration_ms: float = 40.0,
    **fields,
) -> ObservabilitySpan:
    start = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    fields.setdefault("agent_tier", 2)
    return ObservabilitySpan(
        span_id=uuid.uuid4().hex[:16],
        trace_id=trace.hex,
        operation_name="estimate",
        agent_name=agent_name,
        start_time=start,
        end_time=start + timedelta(milliseconds=duration_ms),
        duration_ms=duration_ms,
        **fields,
    )


async def test_default_construction__no_environment__embedded_sqlite_in_the_working_directory(
    clean_env, tmp_path
):
    repo = ObservabilitySpanRepository()
    span = make_span(uuid.uuid4(), 1)
    try:
        assert isinstance(repo.store, SqliteSpanRepository)
        assert await repo.insert_span(span) == span
    finally:
        await repo.close()
    assert (tmp_path / ".e2i_obs" / "observability.db").is_file()


async def test_default_construction__database_url_in_environment__that_backend(clean_env):
    clean_env.setenv("E2I_OBS_DATABASE_URL", "postgresql://obs@db.invalid/e2i")
    assert isinstance(ObservabilitySpanRepository().store, PostgresSpanRepository)


async def test_insert_span__then_read_by_dashed_uuid__same_span_back(repo):
    query_id = uuid.uuid4()
    span = make_span(query_id, 2, attributes={"brand": "Kisqali"})

    result = await repo.insert_span(span)

    assert result == span
    assert await repo.get_spans_by_trace_id(str(query_id)) == [span]
    assert await repo.get_spans_by_trace_id(query_id.hex) == [span]
    assert await repo.insert_span(span) == span  # re-sent: still stored once
    assert len(await repo.get_spans_by_trace_id(trace_id=str(query_id))) == 1


async def test_insert_spans_batch__new_and_resent__e2i_result_dict(repo):
    trace = uuid.uuid4()
    spans = [make_span(trace, m) for m in (3, 2, 1)]

    results = await repo.insert_spans_batch(spans)
    again = await repo.insert_spans_batch(spans[:2])

    ids = [s.span_id for s in spans]
    assert results == {
        "success": True,
        "inserted_count": 3,
        "duplicate_count": 0,
        "failed_count": 0,
        "span_ids": ids,
    }
    assert (again["inserted_count"], again["duplicate_count"]) == (0, 2)
    assert await repo.insert_spans_batch([]) == {**results, "inserted_count": 0, "span_ids": []}
    assert [s.span_id for s in await repo.get_spans_by_trace_id(str(trace))] == ids


async def test_get_spans_by_time_window__agent_and_status_keywords__filtered_newest_first(repo):
    trace = uuid.uuid4()
    ok = [make_span(trace, m) for m in (5, 15)]
    failed = make_span(trace, 10, status=SpanStatus.ERROR, error_type="TimeoutError")
    other_agent = make_span(trace, 1, "gap_analyzer")
    old = make_span(trace, 120)
    await repo.insert_spans_batch([*ok, failed, other_agent, old])

    window = await repo.get_spans_by_time_window(window="1h", agent_name="causal_impact")
    errors = await repo.get_spans_by_time_window(window="1h", status="error")
    successes = await repo.get_spans_by_time_window(
        window="1h", agent_name="causal_impact", status="success", limit=1
    )

    assert window == [ok[0], failed, ok[1]]
    assert errors == [failed]
    assert successes == [ok[0]]
    assert len(await repo.get_spans_by_time_window()) == 5  # default "24h"


async def test_get_trace_summary__dashed_uuid__counts_duration_and_llm_tokens(repo):
    query_id = uuid.uuid4()
    root = make_span(query_id, 10, "orchestrator", duration_ms=120_000.0)
    llm = make_span(
        query_id,
        9.5,
        span_kind=SpanKind.LLM,
        llm_model="claude",
        input_tokens=900,
        output_tokens=100,
    )
    failed = make_span(query_id, 9, "gap_analyzer", status=SpanStatus.ERROR)
    await repo.insert_spans_batch([root, llm, failed])

    summary = await repo.get_trace_summary(str(query_id))

    assert summary == {
        "trace_id": query_id.hex,
        "span_count": 3,
        "agent_count": 3,
        "error_count": 1,
        "start_time": root.start_time,
        "end_time": root.end_time,
        "llm_calls": 1,
        "input_tokens": 900,
        "output_tokens": 100,
        "total_tokens": 1000,
        "total_duration_ms": pytest.approx(120_000.0),
    }
    unknown = await repo.get_trace_summary(trace_id=str(uuid.uuid4()))
    assert (unknown["span_count"], unknown["total_duration_ms"]) == (0, 0.0)


async def test_get_spans_by_agent__hours_and_limit__that_agents_recent_spans(repo):
    trace = uuid.uuid4()
    recent = [make_span(trace, m, "drift_monitor", agent_tier=3) for m in (30, 20, 10)]
    older = make_span(trace, 90, "drift_monitor", agent_tier=3)
    await repo.insert_spans_batch([*recent, older, make_span(trace, 5)])

    spans = await repo.get_spans_by_agent(agent_name="drift_monitor", hours=1, limit=2)

    assert spans == [recent[2], recent[1]]
    assert len(await repo.get_spans_by_agent("drift_monitor", hours=2)) == 4


async def test_get_spans_by_tier__tier_name_or_number__spans_of_every_agent_in_it(repo):
    trace = uuid.uuid4()
    causal = [make_span(trace, 3, "causal_impact"), make_span(trace, 2, "gap_analyzer")]
    coordination = make_span(trace, 1, "orchestrator", agent_tier=1)
    await repo.insert_spans_batch([*causal, coordination])

    by_name = await repo.get_spans_by_tier(agent_tier="causal_analytics", hours=1)

    assert by_name == [causal[1], causal[0]]
    assert await repo.get_spans_by_tier(agent_tier=2) == by_name
    assert await repo.get_spans_by_tier("coordination", hours=24, limit=10) == [coordination]


async def test_get_error_spans__hours__only_recent_errors(repo):
    trace = uuid.uuid4()
    recent = make_span(trace, 30, status=SpanStatus.ERROR, error_message="boom")
    stale = make_span(trace, 180, status=SpanStatus.ERROR)
    await repo.insert_spans_batch([recent, stale, make_span(trace, 1)])

    assert await repo.get_error_spans(hours=1) == [recent]
    assert await repo.get_error_spans(hours=24, limit=100) == [recent, stale]


async def test_get_latency_stats__agent_name_keyword__last_24_hours_per_agent(repo):
    trace = uuid.uuid4()
    await repo.insert_spans_batch(
        [
            make_span(trace, 60, duration_ms=10.0),
            make_span(trace, 50, duration_ms=30.0, status=SpanStatus.ERROR),
            make_span(trace, 40, "gap_analyzer", duration_ms=5.0),
            make_span(trace, 25 * 60, duration_ms=999.0),  # older than 24 hours
        ]
    )

    every = await repo.get_latency_stats(agent_name=None)
    (causal,) = await repo.get_latency_stats(agent_name="causal_impact")

    assert [s.agent_name for s in every] == ["causal_impact", "gap_analyzer"]
    assert (causal.count, causal.error_count, causal.avg_ms, causal.max_ms) == (2, 1, 20.0, 30.0)


async def test_get_quality_metrics__time_window_keyword__window_totals(repo):
    trace = uuid.uuid4()
    await repo.insert_spans_batch(
        [
            make_span(trace, 5, span_kind=SpanKind.LLM, input_tokens=10, output_tokens=5),
            make_span(trace, 4, "gap_analyzer", status=SpanStatus.ERROR),
            make_span(trace, 3 * 60),
        ]
    )

    metrics = await repo.get_quality_metrics(time_window="1h")

    assert (metrics.time_window, metrics.total_spans, metrics.error_count) == ("1h", 2, 1)
    assert (metrics.successful_spans, metrics.failed_spans) == (1, 1)  # the seed's fields
    assert metrics.avg_latency_ms == pytest.approx(40.0)
    assert metrics.total_tokens == 15
    assert sorted(metrics.agents) == ["causal_impact", "gap_analyzer"]
    assert (await repo.get_quality_metrics()).total_spans == 3


async def test_delete_old_spans__retention_days__deletes_older_spans_in_batches(repo):
    trace = uuid.uuid4()
    old = [make_span(trace, 60 * 24 * days) for days in (31, 40, 45)]
    kept = make_span(trace, 60 * 24 * 29)
    await repo.insert_spans_batch([*old, kept])

    before = datetime.now(UTC)
    result = await repo.delete_old_spans(retention_days=30, batch_size=2)

    assert result["deleted_count"] == 3
    cutoff = datetime.fromisoformat(result["cutoff_date"])
    assert before - timedelta(days=30) <= cutoff <= datetime.now(UTC) - timedelta(days=30)
    assert await repo.get_spans_by_trace_id(str(trace)) == [kept]
    assert (await repo.delete_old_spans())["deleted_count"] == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.get_spans_by_time_window(window="1w"), "invalid time window '1w'"),
        (lambda r: r.get_spans_by_time_window(status="timeout"), "status must be one of"),
        (lambda r: r.get_spans_by_agent(agent_name=None), "agent_name"),
        (lambda r: r.get_spans_by_agent("causal_impact", hours=0), "hours"),
        (lambda r: r.get_spans_by_tier(agent_tier="tier_9"), "accepted: causal_analytics"),
        (lambda r: r.get_spans_by_tier(agent_tier=6), "agent_tier"),
        (lambda r: r.get_error_spans(hours=1.5), "hours"),
        (lambda r: r.get_trace_summary(trace_id=None), "trace_id"),
        (lambda r: r.delete_old_spans(retention_days=-1), "retention_days"),
        (lambda r: r.delete_old_spans(batch_size=0), "batch_size"),
        (lambda r: r.get_quality_metrics(time_window="yesterday"), "invalid time window"),
    ],
)
async def test_arguments__invalid__value_error_naming_the_argument(clean_env, call, message):
    repo = ObservabilitySpanRepository()
    try:
        with pytest.raises(ValueError, match=message):
            await call(repo)
    finally:
        await repo.close()


async def test_inserts__not_spans__type_error_naming_the_argument(clean_env):
    repo = ObservabilitySpanRepository()
    try:
        with pytest.raises(TypeError, match=r"span must be an ObservabilitySpan, got dict"):
            await repo.insert_span({"span_id": "00f067aa0ba902b7"})
        with pytest.raises(TypeError, match=r"spans\[1\] must be an ObservabilitySpan"):
            await repo.insert_spans_batch([make_span(uuid.uuid4(), 1), "span"])
    finally:
        await repo.close()


def test_supabase_client__not_a_supabase_client__type_error_naming_what_is_accepted():
    with pytest.raises(TypeError, match="supabase_client must be a supabase Client or AsyncClient"):
        ObservabilitySpanRepository(supabase_client="https://x.supabase.co")


@pytest.mark.postgres
async def test_supabase_client__given__supabase_backend_over_that_client(supabase_stack):
    async with httpx.AsyncClient(timeout=10) as http:
        options = AsyncClientOptions(httpx_client=http, postgrest_client_retry=False)
        client = await acreate_client(supabase_stack.url, supabase_stack.service_role_key, options)
        repo = ObservabilitySpanRepository(supabase_client=client)
        span = make_span(uuid.uuid4(), 1)
        await repo.insert_span(span)

    assert isinstance(repo.store, SupabaseSpanRepository)
    assert supabase_stack.service_role_key not in repr(repo)
    posts = [r for r in supabase_stack.double.requests if r.method == "POST"]
    assert [r.path for r in posts][-1] == "/rest/v1/ml_observability_spans"
    assert posts[-1].body[0]["span_id"] == span.span_id
