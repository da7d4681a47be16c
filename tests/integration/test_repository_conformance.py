"""One conformance suite for every `SpanRepository` backend.

The `repository` fixture is parametrized over `BACKENDS`; a new backend is one more entry
(a factory taking the pytest request and the clock). Every test uses a fixed clock, so time
windows are deterministic, and compares against values computed here from the same data
(percentiles with `statistics.quantiles(..., method="inclusive")`).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from src.agents.ml_foundation.observability_connector.models import (
    LatencyStats,
    ObservabilitySpan,
    SpanEvent,
    SpanKind,
    SpanStatus,
    TraceSummary,
    WindowSummary,
)
from src.agents.ml_foundation.observability_connector.nodes.metrics_aggregator import (
    MetricsService,
)
from src.agents.ml_foundation.observability_connector.time_window import ACCEPTED_WINDOWS
from src.repositories.observability_span import (
    PostgresSpanRepository,
    RepositoryError,
    SpanRepository,
    SqliteSpanRepository,
    SupabaseSpanRepository,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TRACE_A = "0af7651916cd43dd8448eb211c80319c"
TRACE_B = "4bf92f3577b34da6a3ce929d0e0e4736"


class FixedClock:
    """A settable wall clock: `now` is what the repository sees as the current time."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _sqlite(request: pytest.FixtureRequest, clock: FixedClock) -> SpanRepository:
    path = request.getfixturevalue("tmp_path") / "store" / "spans.db"
    return SqliteSpanRepository(path, clock=clock)


def _postgres(request: pytest.FixtureRequest, clock: FixedClock) -> SpanRepository:
    return PostgresSpanRepository(request.getfixturevalue("pg_dsn"), clock=clock)


def _supabase(request: pytest.FixtureRequest, clock: FixedClock) -> SpanRepository:
    """The real supabase client against the PostgREST test double (not PostgREST) in front of
    the migrated test database with Supabase's roles (tests/fixtures/postgrest_double.py)."""
    stack = request.getfixturevalue("supabase_stack")
    return SupabaseSpanRepository(stack.url, stack.service_role_key, clock=clock)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, FixedClock], SpanRepository]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
    "supabase": _supabase,
}
BACKEND_MARKS = {"postgres": [pytest.mark.postgres], "supabase": [pytest.mark.postgres]}


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture(params=[pytest.param(name, marks=BACKEND_MARKS.get(name, [])) for name in BACKENDS])
async def repository(
    request: pytest.FixtureRequest, clock: FixedClock
) -> AsyncIterator[SpanRepository]:
    repo = BACKENDS[request.param](request, clock)
    await repo.setup()
    yield repo
    await repo.close()


_ids = iter(range(1, 1 << 60))


def make_span(
    minutes_ago: float = 1.0,
    *,
    agent: str = "gap_analyzer",
    trace_id: str = TRACE_A,
    duration_ms: float | None = 12.5,
    **fields,
) -> ObservabilitySpan:
    start = NOW - timedelta(minutes=minutes_ago)
    end = None if duration_ms is None else start + timedelta(milliseconds=duration_ms)
    fields.setdefault("status", SpanStatus.COMPLETED if end else SpanStatus.STARTED)
    return ObservabilitySpan(
        span_id=f"{next(_ids):016x}",
        trace_id=trace_id,
        operation_name="analyze",
        agent_name=agent,
        start_time=start,
        end_time=end,
        duration_ms=duration_ms,
        **fields,
    )


def expected_stats(
    spans: list[ObservabilitySpan], minutes: float, window: str = "1h"
) -> LatencyStats:
    durations = sorted(s.duration_ms for s in spans if s.duration_ms is not None)
    llm = [s for s in spans if s.span_kind is SpanKind.LLM]
    errors = sum(s.is_error for s in spans)
    if len(durations) >= 2:
        q = statistics.quantiles(durations, n=100, method="inclusive")
        p50, p95, p99 = q[49], q[94], q[98]
    else:  # one value: every percentile is that value
        p50 = p95 = p99 = durations[0] if durations else None
    tiers = [s.agent_tier for s in spans if s.agent_tier is not None]
    return LatencyStats(
        agent_name=spans[0].agent_name,
        agent_tier=max(tiers) if tiers else None,
        time_window=window,
        count=len(spans),
        error_count=errors,
        error_rate=errors / len(spans),
        avg_ms=statistics.fmean(durations) if durations else None,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        max_ms=max(durations) if durations else None,
        llm_calls=len(llm),
        input_tokens=sum(s.input_tokens or 0 for s in llm),
        output_tokens=sum(s.output_tokens or 0 for s in llm),
        total_tokens=sum(s.total_tokens or 0 for s in llm),
        spans_per_minute=len(spans) / minutes,
    )


def assert_stats_close(actual: list[LatencyStats], expected: list[LatencyStats]) -> None:
    assert [s.agent_name for s in actual] == [s.agent_name for s in expected]
    for got, want in zip(actual, expected, strict=True):
        got_d, want_d = got.model_dump(), want.model_dump()
        for key, value in want_d.items():
            if isinstance(value, float):
                assert got_d[key] == pytest.approx(value, rel=1e-6), (want.agent_name, key)
            else:
                assert got_d[key] == value, (want.agent_name, key)


# -- writing and reading ----------------------------------------------------------------------


def varied_spans(**llm_fields) -> list[ObservabilitySpan]:
    """An LLM span with every column set, a started span, and one with a non-UTC offset."""
    plus_two = timezone(timedelta(hours=2))
    full = make_span(
        5,
        agent_tier=3,
        span_kind=SpanKind.LLM,
        parent_span_id="00f067aa0ba902b7",
        status=SpanStatus.ERROR,
        error_type="TimeoutError",
        error_message="model did not answer in 30 s — retried",
        attributes={"model": {"name": "claude", "temperature": 0.2}, "tags": ["a", 1, None]},
        events=[
            SpanEvent(name="first_token", timestamp=NOW.astimezone(plus_two), attributes={"i": 1})
        ],
        llm_model="claude-sonnet",
        input_tokens=120,
        output_tokens=30,
        thread_id="thread-7",
        tracestate="congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
        **llm_fields,
    )
    started = make_span(2, duration_ms=None, agent="orchestrator")
    odd_time = ObservabilitySpan(  # a non-UTC offset and a derived duration
        span_id="b7ad6b7169203331",
        trace_id=TRACE_A,
        operation_name="plan",
        agent_name="orchestrator",
        start_time=(NOW - timedelta(minutes=4)).astimezone(plus_two),
        end_time=(NOW - timedelta(minutes=3, microseconds=7)).astimezone(plus_two),
    )
    return [full, started, odd_time]


async def test_repository__round_trip__reads_back_equal_spans(repository):
    spans = varied_spans()
    assert await repository.insert_spans_batch(spans) == 3

    stored = await repository.get_spans_by_trace(TRACE_A)
    assert stored == sorted(spans, key=lambda s: (s.start_time, s.span_id))
    for span in stored:
        assert span.start_time.utcoffset() == timedelta(0)
        assert span.end_time is None or span.end_time.utcoffset() == timedelta(0)


async def test_insert_spans_batch__replayed_spans_among_new__new_read_back_equal(repository):
    """A batch holding a span already stored takes PostgreSQL's idempotent path (its plain
    COPY is refused): the new spans must still come back equal, every column included."""
    stored_before = make_span(9)
    assert await repository.insert_spans_batch([stored_before]) == 1
    spans = varied_spans(
        provider="anthropic",
        cache_read_tokens=7,
        cache_write_tokens=3,
        reasoning_tokens=2,
        cost_usd=0.000123456789,
    )
    assert await repository.insert_spans_batch([stored_before, *spans, spans[0]]) == 3
    stored = await repository.get_spans_by_trace(TRACE_A)
    expected = sorted([stored_before, *spans], key=lambda s: (s.start_time, s.span_id))
    assert stored == expected


async def test_repository__nul_characters__stored_as_replacement_character(repository):
    """PostgreSQL text/jsonb cannot hold U+0000: every backend stores U+FFFD instead, so a
    provider's stray NUL never turns a batch into one that fails forever."""
    span = make_span(
        status=SpanStatus.ERROR,
        error_type="ValueError",
        error_message="bad\x00byte",
        attributes={"prompt": "a\x00b", "nested": ["\x00"], "k\x00": 1},
    )
    assert await repository.insert_spans_batch([span]) == 1
    (stored,) = await repository.get_spans_by_trace(span.trace_id)
    assert stored.error_message == "bad\ufffdbyte"
    assert stored.attributes == {"prompt": "a\ufffdb", "nested": ["\ufffd"], "k\ufffd": 1}


async def test_insert_span__new_then_resent__true_then_false(repository):
    span = make_span()
    assert await repository.insert_span(span) is True
    assert await repository.insert_span(span) is False
    assert await repository.get_spans_by_trace(TRACE_A) == [span]


async def test_insert_spans_batch__resent_and_repeated_spans__counts_only_new(repository):
    first = [make_span(i) for i in range(1, 6)]
    assert await repository.insert_spans_batch(first) == 5
    newer = [make_span(i) for i in range(6, 9)]
    assert await repository.insert_spans_batch([*first, *newer, newer[0]]) == 3
    assert await repository.insert_spans_batch([]) == 0
    stored = await repository.get_spans_by_trace(TRACE_A)
    assert len(stored) == 8 and set(stored_ids(stored)) == set(stored_ids([*first, *newer]))


async def test_insert_spans_batch__value_the_store_cannot_hold__permanent_error_nothing_kept(
    repository,
):
    """Issue 11 item 1: PostgreSQL's out-of-range error (SQLSTATE 22003) was treated as
    retryable, so its batch sat at the head of the spool for ever. A value no store holds is
    refused at entry now; one that still gets through is a *permanent* `RepositoryError` (the
    pipeline then isolates it), and the batch is all or nothing."""
    good = make_span()
    poison = make_span().model_copy(update={"input_tokens": 10**30})  # unvalidated, on purpose
    with pytest.raises(RepositoryError) as caught:
        await repository.insert_spans_batch([good, poison])
    assert caught.value.permanent is True
    assert await repository.get_spans_by_trace(TRACE_A) == []
    assert await repository.insert_spans_batch([good]) == 1


def stored_ids(spans: list[ObservabilitySpan]) -> list[str]:
    return [s.span_id for s in spans]


async def test_get_spans_by_time_window__edges__start_inclusive_now_inclusive(repository, clock):
    at_start = make_span(60)
    before_start = make_span(60).model_copy(
        update={"start_time": NOW - timedelta(hours=1, microseconds=1)}
    )
    at_now = make_span(0)
    in_future = make_span(0).model_copy(update={"start_time": NOW + timedelta(microseconds=1)})
    await repository.insert_spans_batch([at_start, before_start, at_now, in_future])

    got = await repository.get_spans_by_time_window("1h")

    assert got == [at_now, at_start]


async def test_get_spans_by_time_window__agent_filter_and_limit__newest_first(repository):
    mine = [make_span(m, agent="gap_analyzer") for m in (10, 3, 7, 1)]
    others = [make_span(m, agent="causal_impact") for m in (2, 4)]
    await repository.insert_spans_batch([*mine, *others])

    assert await repository.get_spans_by_time_window("1h", agent_name="gap_analyzer") == sorted(
        mine, key=lambda s: s.start_time, reverse=True
    )
    newest_two = await repository.get_spans_by_time_window("1h", limit=2)
    assert stored_ids(newest_two) == [mine[3].span_id, others[0].span_id]
    assert await repository.get_spans_by_time_window("1h", agent_name="nobody") == []


async def test_get_spans_by_time_window__clock_moves__window_follows_the_clock(repository, clock):
    span = make_span(30)
    await repository.insert_span(span)
    assert await repository.get_spans_by_time_window("1h") == [span]
    clock.now = NOW + timedelta(minutes=31)
    assert await repository.get_spans_by_time_window("1h") == []
    assert await repository.get_spans_by_time_window("2h") == [span]


async def test_get_spans_by_trace__several_traces__one_trace_oldest_first(repository):
    spans_a = [make_span(m, trace_id=TRACE_A) for m in (5, 9, 1)]
    span_b = make_span(3, trace_id=TRACE_B)
    await repository.insert_spans_batch([*spans_a, span_b])

    assert await repository.get_spans_by_trace(TRACE_A) == sorted(
        spans_a, key=lambda s: s.start_time
    )
    assert await repository.get_spans_by_trace(TRACE_B) == [span_b]
    assert await repository.get_spans_by_trace("1" * 32) == []


async def test_get_spans_by_time_window__status_and_tier_filters__applied_before_limit(
    repository,
):
    errors = [make_span(m, status=SpanStatus.ERROR, agent_tier=2) for m in (9, 5, 7)]
    completed = [make_span(m, agent_tier=2) for m in (1, 2)]
    tier_four = [
        make_span(3, agent="drift_monitor", agent_tier=4),
        make_span(4, agent="drift_monitor", agent_tier=4, status=SpanStatus.ERROR),
    ]
    open_span = make_span(6, duration_ms=None, agent_tier=0)
    await repository.insert_spans_batch([*errors, *completed, *tier_four, open_span])

    got_errors = await repository.get_spans_by_time_window("1h", status="error", limit=3)
    assert stored_ids(got_errors) == [tier_four[1].span_id, errors[1].span_id, errors[2].span_id]
    assert await repository.get_spans_by_time_window("1h", status=SpanStatus.STARTED) == [open_span]
    tier_two = await repository.get_spans_by_time_window("1h", agent_tier=2)
    assert stored_ids(tier_two) == [
        s.span_id for s in sorted([*errors, *completed], key=lambda s: s.start_time, reverse=True)
    ]
    both = await repository.get_spans_by_time_window(
        "1h", "drift_monitor", status="completed", agent_tier=4
    )
    assert both == [tier_four[0]]
    assert await repository.get_spans_by_time_window("1h", agent_tier=5) == []


async def test_get_trace_summary__mixed_spans__counts_first_start_last_end_llm_tokens(
    repository,
):
    root = make_span(10, agent="orchestrator", duration_ms=9000.0)
    llm = make_span(9, span_kind=SpanKind.LLM, input_tokens=120, output_tokens=30)
    llm_error = make_span(
        8, span_kind=SpanKind.LLM, status=SpanStatus.ERROR, input_tokens=7, total_tokens=9
    )
    agent_tokens = make_span(7, agent="causal_impact", input_tokens=1000, output_tokens=1000)
    still_open = make_span(0.5, agent="causal_impact", duration_ms=None)
    other_trace = make_span(3, trace_id=TRACE_B, span_kind=SpanKind.LLM, input_tokens=5)
    await repository.insert_spans_batch(
        [root, llm, llm_error, agent_tokens, still_open, other_trace]
    )

    summary = await repository.get_trace_summary(TRACE_A)

    assert summary == TraceSummary(
        trace_id=TRACE_A,
        span_count=5,
        agent_count=3,
        error_count=1,
        start_time=root.start_time,
        end_time=still_open.start_time,
        llm_calls=2,
        input_tokens=127,
        output_tokens=30,
        total_tokens=150 + 9,
    )
    assert summary.total_duration_ms == pytest.approx(9.5 * 60_000)
    assert summary.model_dump()["total_duration_ms"] == summary.total_duration_ms


async def test_get_trace_summary__unknown_trace__zero_counts_no_times(repository):
    await repository.insert_span(make_span())
    assert await repository.get_trace_summary(TRACE_B) == TraceSummary(trace_id=TRACE_B)
    assert (await repository.get_trace_summary(TRACE_B)).total_duration_ms == 0.0


# -- statistics ---------------------------------------------------------------------------------


def random_spans(seed: int) -> dict[str, list[ObservabilitySpan]]:
    """Per-agent spans inside the last hour: many sizes, ties, errors, llm and other kinds."""
    rng = random.Random(seed)
    by_agent: dict[str, list[ObservabilitySpan]] = {}
    for agent, size in (("orchestrator", 2), ("gap_analyzer", 37), ("causal_impact", 251)):
        spans = []
        for _ in range(size):
            kind = rng.choice(list(SpanKind))
            duration = rng.choice([rng.uniform(0.5, 9000.0), rng.lognormvariate(4, 1.5), 250.0])
            spans.append(
                make_span(
                    rng.uniform(0, 59.9),
                    agent=agent,
                    agent_tier=rng.choice([None, 2]),
                    span_kind=kind,
                    duration_ms=duration,
                    status=SpanStatus.ERROR if rng.random() < 0.2 else SpanStatus.COMPLETED,
                    input_tokens=rng.randint(0, 5000),
                    output_tokens=rng.randint(0, 900),
                )
            )
        by_agent[agent] = spans
    by_agent["single"] = [make_span(3, agent="single", duration_ms=42.0)]
    return by_agent


async def test_get_latency_stats__random_data__matches_statistics_quantiles(repository):
    by_agent = random_spans(seed=7)
    outside = [make_span(61, agent="gap_analyzer", duration_ms=1e6)]
    started = [make_span(2, agent="gap_analyzer", duration_ms=None)]
    by_agent["gap_analyzer"] += started
    await repository.insert_spans_batch([s for spans in by_agent.values() for s in spans])
    await repository.insert_spans_batch(outside)

    stats = await repository.get_latency_stats("1h", exact=True)

    expected = [expected_stats(by_agent[name], 60.0) for name in sorted(by_agent)]
    assert_stats_close(stats, expected)


async def test_get_latency_stats__errors_and_tokens__llm_spans_only_count_tokens(repository):
    spans = [
        make_span(1, span_kind=SpanKind.AGENT, input_tokens=1000, output_tokens=1000),
        make_span(2, span_kind=SpanKind.LLM, input_tokens=100, output_tokens=20),
        make_span(3, span_kind=SpanKind.LLM, input_tokens=50, output_tokens=5, total_tokens=60),
        make_span(4, span_kind=SpanKind.LLM, status=SpanStatus.ERROR),
        make_span(5, span_kind=SpanKind.TOOL, status=SpanStatus.ERROR, agent_tier=4),
    ]
    await repository.insert_spans_batch(spans)

    (stats,) = await repository.get_latency_stats("15m", agent_name="gap_analyzer")

    assert stats.time_window == "15m"
    assert (stats.count, stats.error_count, stats.error_rate) == (5, 2, 0.4)
    assert (stats.llm_calls, stats.input_tokens, stats.output_tokens) == (3, 150, 25)
    assert stats.total_tokens == 120 + 60
    assert stats.agent_tier == 4
    assert stats.spans_per_minute == pytest.approx(5 / 15)


async def test_get_latency_stats__agent_filter_and_empty_window__only_that_agent_or_none(
    repository,
):
    await repository.insert_spans_batch(
        [make_span(1, agent="a"), make_span(2, agent="b"), make_span(3, agent="b")]
    )
    (only_b,) = await repository.get_latency_stats("1h", agent_name="b")
    assert (only_b.agent_name, only_b.count) == ("b", 2)
    assert only_b.spans_per_minute == pytest.approx(2 / 60)
    assert await repository.get_latency_stats("1h", agent_name="nobody") == []
    assert [s.agent_name for s in await repository.get_latency_stats("7d")] == ["a", "b"]


def expected_summary(spans: list[ObservabilitySpan], window: str) -> WindowSummary:
    """The seed's figures computed by hand: p95 over ALL durations of the window."""
    durations = sorted(s.duration_ms for s in spans if s.duration_ms is not None)
    if len(durations) >= 2:
        p95 = statistics.quantiles(durations, n=100, method="inclusive")[94]
    else:
        p95 = durations[0] if durations else None
    return WindowSummary(
        time_window=window,
        total_spans=len(spans),
        successful_spans=sum(s.status is SpanStatus.COMPLETED for s in spans),
        failed_spans=sum(s.status is SpanStatus.ERROR for s in spans),
        avg_latency_ms=statistics.fmean(durations) if durations else None,
        p95_latency_ms=p95,
    )


def assert_summary_close(got: WindowSummary, want: WindowSummary) -> None:
    got_d, want_d = got.model_dump(), want.model_dump()
    for key in ("avg_latency_ms", "p95_latency_ms"):
        assert got_d.pop(key) == pytest.approx(want_d.pop(key), rel=1e-9), key
    assert got_d == want_d


async def test_get_window_summary__random_data__seed_fields_equal_hand_computed(repository):
    by_agent = random_spans(seed=23)
    by_agent["gap_analyzer"].append(make_span(2, agent="gap_analyzer", duration_ms=None))
    inside = [s for spans in by_agent.values() for s in spans]
    await repository.insert_spans_batch([*inside, make_span(61, agent="single", duration_ms=1e6)])

    summary = await repository.get_window_summary("1h", exact=True)

    assert_summary_close(summary, expected_summary(inside, "1h"))
    assert summary.total_spans == summary.successful_spans + summary.failed_spans + 1  # started
    stats = await repository.get_latency_stats("1h", exact=True)
    mean_of_p95s = statistics.fmean(s.p95_ms for s in stats if s.p95_ms is not None)
    assert summary.p95_latency_ms != pytest.approx(mean_of_p95s, rel=1e-3)  # over ALL spans
    only = await repository.get_window_summary("1h", agent_name="causal_impact", exact=True)
    assert_summary_close(only, expected_summary(by_agent["causal_impact"], "1h"))


async def test_get_window_summary__empty_window__zeros_and_no_latency(repository):
    await repository.insert_span(make_span(120))
    summary = await repository.get_window_summary("1h")
    assert summary == WindowSummary(time_window="1h")


async def test_metrics_service__seed_fields__from_the_backend_summary(repository, clock):
    spans = [
        make_span(1, duration_ms=10.0),
        make_span(2, duration_ms=20.0, status=SpanStatus.ERROR),
        make_span(3, agent="orchestrator", duration_ms=400.0),
        make_span(4, agent="orchestrator", duration_ms=None),
    ]
    await repository.insert_spans_batch(spans)

    metrics = await MetricsService(repository, clock=clock).get_quality_metrics("1h")

    want = expected_summary(spans, "1h")
    seed = (metrics.total_spans, metrics.successful_spans, metrics.failed_spans)
    assert seed == (4, 2, 1)
    assert metrics.avg_latency_ms == pytest.approx(want.avg_latency_ms)
    assert metrics.p95_latency_ms == pytest.approx(want.p95_latency_ms, rel=0.01)  # rollups
    assert metrics.p95_latency_ms == pytest.approx(362.0, rel=0.01)
    assert {s.time_window for s in metrics.agents.values()} == {"1h"}


# -- retention ------------------------------------------------------------------------------------


async def test_count_old_spans__dry_run__counts_what_delete_removes(repository):
    day = 24 * 60
    await repository.insert_spans_batch(
        [make_span(30 * day + 1 + i, trace_id=TRACE_B) for i in range(6)] + [make_span(30 * day)]
    )
    assert await repository.count_old_spans(days=30) == 6
    assert len(await repository.get_spans_by_time_window("60d")) == 7  # nothing deleted
    assert await repository.delete_old_spans(days=30, batch_size=4) == 6
    assert await repository.count_old_spans(days=30) == 0


@pytest.mark.parametrize(("old_count", "batch_size"), [(25, 7), (20, 10), (3, 1000)])
async def test_delete_old_spans__batches__deletes_exactly_the_old_rows(
    repository, old_count, batch_size
):
    day = 24 * 60
    old = [make_span(30 * day + 1 + i, trace_id=TRACE_B) for i in range(old_count)]
    at_cutoff = make_span(30 * day)
    young = [make_span(m) for m in (1, 60, 29 * day)]
    await repository.insert_spans_batch([*old, at_cutoff, *young])

    deleted = await repository.delete_old_spans(days=30, batch_size=batch_size)

    assert deleted == old_count
    assert await repository.get_spans_by_trace(TRACE_B) == []
    assert await repository.get_spans_by_trace(TRACE_A) == sorted(
        [at_cutoff, *young], key=lambda s: s.start_time
    )
    assert await repository.delete_old_spans(days=30, batch_size=batch_size) == 0


# -- bad input and lifecycle --------------------------------------------------------------------

BAD_WINDOWS = ["", "24", "1w", "0h", "-1h", " 1h", "1H", "1.5h", "99999999d"]


@pytest.mark.parametrize("window", BAD_WINDOWS)
async def test_windows__invalid_string__value_error_naming_accepted_forms(repository, window):
    for call in (repository.get_spans_by_time_window, repository.get_latency_stats):
        with pytest.raises(ValueError, match="invalid time window") as caught:
            await call(window)
        assert repr(window) in str(caught.value)
    with pytest.raises(ValueError) as caught:
        await repository.get_latency_stats("1w")
    assert ACCEPTED_WINDOWS in str(caught.value)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda r: r.get_spans_by_time_window("1h", limit=0), "limit"),
        (lambda r: r.get_spans_by_time_window("1h", limit=True), "limit"),
        (lambda r: r.get_spans_by_time_window("1h", agent_name=""), "agent_name"),
        (lambda r: r.get_latency_stats("1h", agent_name=""), "agent_name"),
        (lambda r: r.get_spans_by_trace("not-a-trace"), "trace_id"),
        (lambda r: r.get_trace_summary("not-a-trace"), "trace_id"),
        (lambda r: r.get_spans_by_time_window("1h", status="success"), "status"),
        (lambda r: r.get_spans_by_time_window("1h", agent_tier=6), "agent_tier"),
        (lambda r: r.get_spans_by_time_window("1h", agent_tier="2"), "agent_tier"),
        (lambda r: r.delete_old_spans(days=-1), "days"),
        (lambda r: r.delete_old_spans(days=30, batch_size=0), "batch_size"),
        (lambda r: r.get_window_summary("1h", agent_name=""), "agent_name"),
        (lambda r: r.get_window_summary("1w"), "time window"),
        (lambda r: r.count_old_spans(days=-1), "days"),
    ],
    ids=[
        "limit0",
        "limit_bool",
        "agent_window",
        "agent_stats",
        "trace",
        "summary_trace",
        "status",
        "tier_range",
        "tier_text",
        "days",
        "batch",
        "agent_summary",
        "window_summary",
        "count_days",
    ],
)
async def test_arguments__invalid__value_error_naming_the_argument(repository, call, argument):
    with pytest.raises(ValueError, match=argument):
        await call(repository)


async def test_setup__twice__keeps_data(repository):
    span = make_span()
    await repository.insert_span(span)
    await repository.setup()
    assert await repository.get_spans_by_trace(TRACE_A) == [span]


async def test_close__twice__safe_and_later_use_is_repository_error(repository):
    await repository.insert_span(make_span())
    await repository.close()
    await repository.close()
    with pytest.raises(RepositoryError, match="closed"):
        await repository.get_spans_by_time_window("1h")


# -- backends agree -----------------------------------------------------------------------------


@pytest.mark.postgres
async def test_latency_stats__sqlite_and_postgres_same_data__agree(tmp_path, pg_dsn):
    spans = [s for group in random_spans(seed=11).values() for s in group]
    stats = []
    for repo in (
        SqliteSpanRepository(tmp_path / "agree.db", clock=FixedClock()),
        PostgresSpanRepository(pg_dsn, clock=FixedClock()),
    ):
        await repo.setup()
        await repo.insert_spans_batch(spans)
        stats.append(await repo.get_latency_stats("1h"))
        await repo.close()
    sqlite_stats, postgres_stats = stats
    assert_stats_close(postgres_stats, sqlite_stats)
