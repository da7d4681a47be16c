"""The HTTP half of the Supabase backend: the real `supabase` client against the PostgREST
test double (tests/fixtures/postgrest_double.py; a double, not PostgREST), which runs every
request on the real test PostgreSQL server as the role of the key it was sent with.

Asserts what goes over the wire (method, path, query, headers, body) for every repository
method, and that HTTP errors, timeouts and refused connections become the documented
`SupabaseRequestError` subclasses without the key in their text.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import threading
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from supabase import AsyncClientOptions, acreate_client

from src.agents.ml_foundation.observability_connector.batch_processor import BatchProcessor
from src.agents.ml_foundation.observability_connector.config import (
    BatchingSettings,
    ConfigError,
    ObservabilityConfig,
    StorageSettings,
    load_config,
)
from src.agents.ml_foundation.observability_connector.db_sink import DatabaseSink
from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanKind,
    SpanStatus,
)
from src.repositories._rows import SPAN_COLUMNS
from src.repositories.observability_span import create_span_repository
from src.repositories.postgres_repository import PostgresSpanRepository
from src.repositories.span_store import TABLE_NAME, RepositoryError, SpanRepository
from src.repositories.supabase_errors import (
    SupabaseConnectionError,
    SupabaseRequestError,
    SupabaseSchemaError,
    SupabaseTimeoutError,
)
from src.repositories.supabase_repository import SupabaseSpanRepository
from tests.fixtures.postgrest_double import (
    SERVICE_ROLE_KEY,
    Fault,
    PostgrestDouble,
    RecordedRequest,
    SupabaseStack,
)
from tests.integration.test_postgres_repository import delete_log, install_delete_log
from tests.integration.test_repository_conformance import random_spans

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TABLE_PATH = f"/rest/v1/{TABLE_NAME}"


def make_span(n: int, *, minutes_ago: float = 1.0, agent: str = "gap_analyzer", **extra):
    start = NOW - timedelta(minutes=minutes_ago)
    return ObservabilitySpan(
        span_id=f"{n:016x}",
        trace_id=extra.pop("trace_id", TRACE),
        operation_name=extra.pop("operation_name", "analyze"),
        agent_name=agent,
        start_time=start,
        end_time=start + timedelta(milliseconds=extra.pop("duration_ms", 10.0 * n)),
        **extra,
    )


def repository(stack: SupabaseStack, key: str = SERVICE_ROLE_KEY, **kwargs):
    kwargs.setdefault("clock", lambda: NOW)
    kwargs.setdefault("timeout", 5.0)
    return SupabaseSpanRepository(stack.url, key, **kwargs)


@pytest.fixture
async def repo(supabase_stack: SupabaseStack):
    repository_ = repository(supabase_stack)
    yield repository_
    await repository_.close()


def only_request(double: PostgrestDouble) -> RecordedRequest:
    requests = double.requests
    assert len(requests) == 1, [(r.method, r.path) for r in requests]
    return requests[0]


def assert_authenticated_with(request: RecordedRequest, key: str) -> None:
    assert request.headers["apikey"] == key
    assert request.headers["authorization"] == f"Bearer {key}"
    assert request.headers["accept-profile"] == "public"


def prefer(request: RecordedRequest) -> set[str]:
    return {part.strip() for part in request.headers.get("prefer", "").split(",") if part}


# -- what goes over the wire --------------------------------------------------------------
async def test_supabase_repository__is_a_span_repository__protocol_holds(repo):
    assert isinstance(repo, SpanRepository)


async def test_insert_spans_batch__new_and_resent__one_ignore_duplicates_upsert_counting_new(
    repo, supabase_stack
):
    spans = [make_span(1), make_span(2)]
    assert await repo.insert_spans_batch(spans) == 2
    first = only_request(supabase_stack.double)
    supabase_stack.double.clear_requests()

    assert await repo.insert_spans_batch([make_span(2), make_span(3)]) == 1

    assert first.method == "POST" and first.path == TABLE_PATH
    assert_authenticated_with(first, SERVICE_ROLE_KEY)
    assert prefer(first) == {"return=minimal", "count=exact", "resolution=ignore-duplicates"}
    assert first.param("on_conflict") == "trace_id,span_id"
    assert set(first.param("columns").split(",")) == {f'"{c}"' for c in SPAN_COLUMNS}
    assert [row["span_id"] for row in first.body] == [s.span_id for s in spans]
    assert first.body[0]["attributes"] == {} and first.body[0]["events"] == []
    stored = await repo.get_spans_by_trace(TRACE)
    assert sorted(s.span_id for s in stored) == [f"{n:016x}" for n in (1, 2, 3)]


async def test_insert_spans_batch__more_rows_than_one_request__split_into_chunks(supabase_stack):
    repo = repository(supabase_stack, rows_per_request=2)
    try:
        assert await repo.insert_spans_batch([make_span(n) for n in range(1, 6)]) == 5
    finally:
        await repo.close()
    sizes = [len(r.body) for r in supabase_stack.double.requests]
    assert sizes == [2, 2, 1]


async def test_insert_spans_batch__empty__sends_nothing(repo, supabase_stack):
    assert await repo.insert_spans_batch([]) == 0
    assert supabase_stack.double.requests == []


async def test_insert_span__twice__true_then_false(repo):
    span = make_span(7, attributes={"k": [1, "two"]}, span_kind=SpanKind.LLM, input_tokens=3)
    assert await repo.insert_span(span) is True
    assert await repo.insert_span(span) is False
    assert await repo.get_spans_by_trace(TRACE) == [span]


async def test_get_spans_by_time_window__agent_and_limit__gte_lte_eq_order_limit_params(
    repo, supabase_stack
):
    spans = [
        make_span(1, minutes_ago=5),
        make_span(2, minutes_ago=3),
        make_span(3, minutes_ago=1),
        make_span(4, minutes_ago=2, agent="other"),
        make_span(5, minutes_ago=90),
    ]
    await repo.insert_spans_batch(spans)
    supabase_stack.double.clear_requests()

    got = await repo.get_spans_by_time_window("1h", agent_name="gap_analyzer", limit=2)

    assert got == [spans[2], spans[1]]
    request = only_request(supabase_stack.double)
    assert request.method == "GET" and request.path == TABLE_PATH
    assert_authenticated_with(request, SERVICE_ROLE_KEY)
    assert request.query == [
        ("select", ",".join(SPAN_COLUMNS)),
        ("start_time", f"gte.{(NOW - timedelta(hours=1)).isoformat()}"),
        ("start_time", f"lte.{NOW.isoformat()}"),
        ("agent_name", "eq.gap_analyzer"),
        ("order", "start_time.desc,trace_id.desc,span_id.desc"),
        ("limit", "2"),
    ]
    assert request.body is None


async def test_get_spans_by_trace__two_traces__eq_and_ascending_order_params(repo, supabase_stack):
    other = "0af7651916cd43dd8448eb211c80319c"
    spans = [make_span(1, minutes_ago=1), make_span(2, minutes_ago=4), make_span(3, trace_id=other)]
    await repo.insert_spans_batch(spans)
    supabase_stack.double.clear_requests()

    assert await repo.get_spans_by_trace(TRACE) == [spans[1], spans[0]]

    request = only_request(supabase_stack.double)
    assert (request.method, request.path) == ("GET", TABLE_PATH)
    assert request.query == [
        ("select", ",".join(SPAN_COLUMNS)),
        ("trace_id", f"eq.{TRACE}"),
        ("order", "start_time.asc,span_id.asc"),
    ]


async def test_get_latency_stats__window_and_agent__rpc_with_interval_agent_and_clock_now(
    repo, supabase_stack
):
    durations = [12.0, 40.0, 7.5, 100.0]
    spans = [make_span(n, minutes_ago=n, duration_ms=d) for n, d in enumerate(durations, 1)]
    spans[0] = make_span(1, minutes_ago=1, duration_ms=durations[0], status=SpanStatus.ERROR)
    spans.append(
        make_span(9, span_kind=SpanKind.LLM, duration_ms=5, input_tokens=4, output_tokens=6)
    )
    spans.append(make_span(10, agent="other", duration_ms=1.0))
    await repo.insert_spans_batch(spans)
    supabase_stack.double.clear_requests()

    (stats,) = await repo.get_latency_stats("1h", agent_name="gap_analyzer", exact=True)

    request = only_request(supabase_stack.double)
    assert (request.method, request.path) == ("POST", "/rest/v1/rpc/ml_agent_latency_stats")
    assert_authenticated_with(request, SERVICE_ROLE_KEY)
    assert request.body == {
        "p_window": "3600 seconds",
        "p_agent": "gap_analyzer",
        "p_now": NOW.isoformat(),
    }
    all_durations = [*durations, 5.0]
    cuts = statistics.quantiles(all_durations, n=100, method="inclusive")
    assert stats.agent_name == "gap_analyzer"
    assert (stats.count, stats.error_count, stats.llm_calls) == (5, 1, 1)
    assert stats.p50_ms == pytest.approx(statistics.median(all_durations))
    assert stats.p95_ms == pytest.approx(cuts[94])
    assert stats.p99_ms == pytest.approx(cuts[98])
    assert stats.max_ms == max(all_durations)
    assert (stats.input_tokens, stats.output_tokens, stats.total_tokens) == (4, 6, 10)

    supabase_stack.double.clear_requests()
    rolled = await repo.get_latency_stats("1h", agent_name="gap_analyzer")  # from rollups
    requests = sorted(supabase_stack.double.requests, key=lambda r: r.path)
    assert [r.path for r in requests] == ["/rest/v1/rpc/ml_rollup_window"]
    hour_ago = (NOW - timedelta(hours=1)).isoformat()
    bounds = {  # NOW is on a whole hour: the whole window is one hour slot
        "p_start": hour_ago,
        "p_minute_from": hour_ago,
        "p_ten_from": hour_ago,
        "p_hour_from": hour_ago,
        "p_six_from": NOW.isoformat(),
        "p_six_to": NOW.isoformat(),
        "p_hour_to": NOW.isoformat(),
        "p_ten_to": NOW.isoformat(),
        "p_minute_to": NOW.isoformat(),
        "p_end": NOW.isoformat(),
        "p_agent": "gap_analyzer",
    }
    assert all(r.body == bounds for r in requests)
    assert (rolled[0].count, rolled[0].error_count, rolled[0].total_tokens) == (5, 1, 10)
    assert rolled[0].p95_ms == pytest.approx(stats.p95_ms, rel=0.01)


async def test_delete_old_spans__5_old_batch_2__3_rpcs_same_cutoff_never_a_rest_delete(
    repo, supabase_stack
):
    """One rpc per batch (each request its own transaction) until a batch comes back short."""
    old = [make_span(n, minutes_ago=60 * 24 * 40 + n) for n in range(1, 6)]
    fresh = make_span(9, minutes_ago=1)
    await repo.insert_spans_batch([*old, fresh])
    install_delete_log(supabase_stack.dsn)
    supabase_stack.double.clear_requests()

    assert await repo.delete_old_spans(days=30, batch_size=2) == 5

    requests = supabase_stack.double.requests
    assert [(r.method, r.path) for r in requests] == [
        ("POST", "/rest/v1/rpc/ml_delete_old_spans")
    ] * 3
    body = {"p_older_than": "30 days", "p_batch_size": 2, "p_now": NOW.isoformat()}
    assert [r.body for r in requests] == [body] * 3
    log = delete_log(supabase_stack.dsn)
    assert [rows for _, rows in log] == [2, 2, 1]
    assert len({xact for xact, _ in log}) == 3
    assert await repo.get_spans_by_trace(TRACE) == [fresh]


async def test_setup__schema_applied__reads_the_table_and_calls_the_stats_function(
    repo, supabase_stack
):
    await repo.setup()
    paths = [(r.method, r.path) for r in supabase_stack.double.requests]
    assert paths == [("GET", TABLE_PATH), ("POST", "/rest/v1/rpc/ml_agent_latency_stats")]


async def test_setup__schema_not_applied__schema_error_says_how_to_apply_it(
    pg_dsn, supabase_roles, postgrest_double_factory
):
    double = postgrest_double_factory(pg_dsn, {SERVICE_ROLE_KEY: "service_role"})
    repo = SupabaseSpanRepository(double.url, SERVICE_ROLE_KEY, clock=lambda: NOW)
    try:
        with pytest.raises(SupabaseSchemaError) as caught:
            await repo.setup()
    finally:
        await repo.close()
    error = caught.value
    assert (error.status, error.code, error.retryable) == (404, "PGRST205", False)
    assert "database/ml/mlops_tables.sql" in str(error) and "e2i-obs db init" in str(error)
    assert SERVICE_ROLE_KEY not in str(error)


# -- failures -----------------------------------------------------------------------------
OPERATIONS = {
    "insert": lambda r: r.insert_spans_batch([make_span(1)]),
    "window": lambda r: r.get_spans_by_time_window("1h"),
    "trace": lambda r: r.get_spans_by_trace(TRACE),
    "stats": lambda r: r.get_latency_stats("24h"),
    "retention": lambda r: r.delete_old_spans(days=1),
    "setup": lambda r: r.setup(),
}


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_every_operation__server_answers_503__retryable_error_after_one_request(
    repo, supabase_stack, operation
):
    supabase_stack.double.inject(Fault(status=503, body={"message": "upstream unavailable"}))
    with pytest.raises(SupabaseRequestError) as caught:
        await OPERATIONS[operation](repo)
    error = caught.value
    assert isinstance(error, RepositoryError)
    assert (error.status, error.retryable) == (503, True)
    assert "HTTP 503" in str(error) and "upstream unavailable" in str(error)
    assert len(supabase_stack.double.requests) == 1  # the client's own retries are off


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (502, True), (408, True), (429, True), (400, False)]
)
async def test_insert_spans_batch__error_status__retryable_only_for_5xx_408_429(
    repo, supabase_stack, status, retryable
):
    supabase_stack.double.inject(Fault(status=status))
    with pytest.raises(SupabaseRequestError) as caught:
        await repo.insert_spans_batch([make_span(1)])
    assert (caught.value.status, caught.value.retryable) == (status, retryable)


async def test_any_operation__error_body_echoes_the_key__key_scrubbed_from_the_error(
    repo, supabase_stack
):
    echo = {"message": f"bad header apikey={SERVICE_ROLE_KEY}", "hint": SERVICE_ROLE_KEY}
    supabase_stack.double.inject(Fault(status=400, body=echo))
    with pytest.raises(SupabaseRequestError) as caught:
        await repo.get_spans_by_trace(TRACE)
    assert SERVICE_ROLE_KEY not in str(caught.value)
    assert SERVICE_ROLE_KEY not in repr(caught.value) and "**********" in str(caught.value)


async def test_insert_spans_batch__wrong_key__401_not_retryable_without_the_key(supabase_stack):
    wrong = "not-the-service-role-key-5a5a5a5a"
    repo = repository(supabase_stack, key=wrong)
    try:
        with pytest.raises(SupabaseRequestError) as caught:
            await repo.insert_spans_batch([make_span(1)])
    finally:
        await repo.close()
    assert (caught.value.status, caught.value.retryable) == (401, False)
    assert "Invalid API key" in str(caught.value) and wrong not in str(caught.value)


async def test_insert_spans_batch__anon_key__row_level_security_denies_with_42501(supabase_stack):
    repo = repository(supabase_stack, key=supabase_stack.anon_key)
    try:
        with pytest.raises(SupabaseRequestError) as caught:
            await repo.insert_spans_batch([make_span(1)])
    finally:
        await repo.close()
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (401, "42501", False)


async def test_authenticated_key__read_granted__reads_but_insert_is_403_42501(supabase_stack):
    service = repository(supabase_stack)
    reader = repository(supabase_stack, key=supabase_stack.authenticated_key)
    span = make_span(1)
    try:
        await service.insert_spans_batch([span])
        with psycopg.connect(supabase_stack.dsn, autocommit=True) as conn:
            conn.execute(f"GRANT SELECT ON public.{TABLE_NAME} TO authenticated")
        assert await reader.get_spans_by_trace(TRACE) == [span]
        with pytest.raises(SupabaseRequestError) as caught:
            await reader.insert_spans_batch([make_span(2)])
    finally:
        await service.close()
        await reader.close()
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (403, "42501", False)


async def test_get_spans_by_trace__server_hangs_past_the_timeout__timeout_error_then_recovers(
    supabase_stack,
):
    repo = repository(supabase_stack, timeout=0.3)
    span = make_span(1)
    try:
        await repo.insert_spans_batch([span])
        supabase_stack.double.inject(Fault(hang=True))
        with pytest.raises(SupabaseTimeoutError) as caught:
            await repo.get_spans_by_trace(TRACE)
        supabase_stack.double.release_hung()
        assert await repo.get_spans_by_trace(TRACE) == [span]
    finally:
        await repo.close()
    error = caught.value
    assert error.retryable and error.status is None and "0.3 s" in str(error)
    assert SERVICE_ROLE_KEY not in str(error)


async def test_insert_spans_batch__nothing_listening__connection_error_retryable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    repo = SupabaseSpanRepository(f"http://127.0.0.1:{port}", SERVICE_ROLE_KEY, timeout=2)
    try:
        with pytest.raises(SupabaseConnectionError) as caught:
            await repo.insert_spans_batch([make_span(1)])
    finally:
        await repo.close()
    assert caught.value.retryable and SERVICE_ROLE_KEY not in str(caught.value)


# -- construction and event loops ---------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"url": "ftp://x", "key": "k"}, "supabase_url"),
        ({"url": "https://x.supabase.co", "key": ""}, "supabase_key"),
        ({"url": "https://x.supabase.co", "key": "k", "timeout": 0}, "timeout"),
        ({"url": "https://x.supabase.co", "key": "k", "rows_per_request": 0}, "rows_per_request"),
    ],
)
def test_supabase_repository__bad_argument__value_error_names_it(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SupabaseSpanRepository(**kwargs)


def test_supabase_repository__repr__never_shows_the_key():
    repo = SupabaseSpanRepository("https://x.supabase.co", SERVICE_ROLE_KEY)
    assert SERVICE_ROLE_KEY not in repr(repo) and SERVICE_ROLE_KEY not in str(repo)


async def test_supabase_repository__used_from_another_thread_and_loop__each_loop_works(
    repo, supabase_stack
):
    results: list[int] = []
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            results.append(asyncio.run(repo.insert_spans_batch([make_span(1)])))
            results.append(asyncio.run(repo.insert_spans_batch([make_span(2)])))
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(timeout=30)
    assert errors == [] and results == [1, 1]
    assert await repo.insert_spans_batch([make_span(1), make_span(3)]) == 1


async def test_injected_client__success_and_denied__works_and_maps_api_error_by_code(
    supabase_stack,
):
    """A caller's own client (no status hook): errors are mapped from postgrest's APIError."""
    http = httpx.AsyncClient(timeout=5)
    options = AsyncClientOptions(httpx_client=http, postgrest_client_retry=False)
    service = await acreate_client(supabase_stack.url, supabase_stack.service_role_key, options)
    anon = await acreate_client(supabase_stack.url, supabase_stack.anon_key, options)
    span = make_span(1)
    try:
        writer = SupabaseSpanRepository(supabase_stack.url, "unused", client=service)
        assert await writer.insert_spans_batch([span]) == 1
        assert await writer.get_spans_by_trace(TRACE) == [span]
        denied = SupabaseSpanRepository(supabase_stack.url, supabase_stack.anon_key, client=anon)
        with pytest.raises(SupabaseRequestError) as caught:
            await denied.insert_spans_batch([make_span(2)])
    finally:
        await http.aclose()
    assert (caught.value.code, caught.value.retryable) == ("42501", False)
    assert supabase_stack.anon_key not in str(caught.value)


# -- wiring and the whole pipeline --------------------------------------------------------
def test_create_span_repository__supabase_env__supabase_repository_with_the_timeout(tmp_path):
    config_file = tmp_path / "observability.yaml"
    config_file.write_text("storage:\n  timeout_seconds: 3\n")
    env = {"SUPABASE_URL": "https://abc.supabase.co", "SUPABASE_KEY": SERVICE_ROLE_KEY}
    repo = create_span_repository(load_config(config_file, env=env))
    assert isinstance(repo, SupabaseSpanRepository)
    assert SERVICE_ROLE_KEY not in repr(repo)


def test_create_span_repository__supabase_without_key__config_error_naming_both():
    config = ObservabilityConfig(
        storage=StorageSettings(backend="supabase", supabase_url="https://abc.supabase.co")
    )
    with pytest.raises(ConfigError, match="supabase_key"):
        create_span_repository(config)


async def test_create_span_repository__supabase_config__reads_what_it_wrote(supabase_stack):
    storage = StorageSettings(
        backend="supabase",
        supabase_url=supabase_stack.url,
        supabase_key=supabase_stack.service_role_key,
    )
    repo = create_span_repository(ObservabilityConfig(storage=storage), clock=lambda: NOW)
    span = make_span(1)
    try:
        await repo.setup()
        assert await repo.insert_span(span) is True
        assert await repo.get_spans_by_time_window("15m") == [span]
    finally:
        await repo.close()


async def test_supabase_and_postgres_repositories__same_database__same_latency_stats(
    repo, supabase_stack
):
    by_agent = random_spans(seed=11)
    await repo.insert_spans_batch([s for spans in by_agent.values() for s in spans])
    direct = PostgresSpanRepository(supabase_stack.dsn, clock=lambda: NOW)
    try:
        expected = await direct.get_latency_stats("1h")
    finally:
        await direct.close()
    assert await repo.get_latency_stats("1h") == expected


def test_pipeline__supabase_down_then_up__spools_then_replays_no_loss_no_duplicates(
    supabase_stack, tmp_path
):
    """Real BatchProcessor + DatabaseSink over the real supabase client: 503s spool, replay."""
    repo = repository(supabase_stack)
    sink = DatabaseSink(repo, timeout=20)
    settings = BatchingSettings(
        max_batch_size=5,
        max_batch_wait_seconds=60,
        retry_max_attempts=2,
        retry_base_delay_seconds=0.01,
    )
    # a clock that stands still: the failing sink is not probed again until replay_spool()
    processor = BatchProcessor([sink], settings, tmp_path / "spool", clock=lambda: 0.0)
    first = [make_span(n) for n in range(1, 6)]
    second = [make_span(n) for n in range(6, 13)]
    try:
        for span in first:
            processor.submit(span)
        assert processor.flush(timeout=30)
        supabase_stack.double.inject(Fault(status=503), times=1000)
        for span in [*second, *first[:2]]:  # two re-sent spans ride along
            processor.submit(span)
        assert processor.flush(timeout=30)
        during = processor.stats().sinks[sink.name]
        inserts = supabase_stack.double.requests
        failed = [r for r in inserts if r.method == "POST" and r.path.endswith(TABLE_NAME)]

        supabase_stack.double.clear_faults()
        processor.replay_spool(timeout=30)
        after = processor.stats()
    finally:
        processor.close(timeout=10)
        sink.close()

    assert (during.emitted, during.spooled, during.dropped) == (5, 9, 0)
    # the first batch; then two attempts for the next (retried on the sink's own thread),
    # none for the one after: while a sink retries or is failing, batches spool at once
    assert len(failed) == 1 + 2
    assert after.sinks[sink.name].replayed == 9 and after.dropped == 0
    assert after.submitted == after.sinks[sink.name].emitted + after.sinks[sink.name].spooled
    with psycopg.connect(supabase_stack.dsn) as conn:
        rows = conn.execute(
            f"SELECT span_id, count(*) FROM public.{TABLE_NAME} GROUP BY span_id ORDER BY 1"
        ).fetchall()
    assert rows == [(span.span_id, 1) for span in [*first, *second]]
