# ruff: noqa: F811  (the conformance suite's `repository` and `clock` fixtures, imported)
"""Rollups (issue 15) on every backend: real SQLite, real PostgreSQL, and the Supabase path
(the real supabase client against the PostgREST test double in front of the test PostgreSQL).

Window metrics read per-minute/hour rollups plus the raw spans of the window's partial
minutes; these tests hold them to the raw computation (`exact=True`, which the conformance
suite holds to `statistics.quantiles`) on the same spans: counts, errors and tokens equal,
means to float rounding, percentiles within 1%. Replays, rebuilds and retention keep them so.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest

from src.agents.ml_foundation.observability_connector.cache import InMemoryMetricsCache
from src.agents.ml_foundation.observability_connector.config import CacheSettings
from src.agents.ml_foundation.observability_connector.models import (
    LatencyStats,
    ObservabilitySpan,
    SpanKind,
    SpanStatus,
    WindowSummary,
)
from src.agents.ml_foundation.observability_connector.nodes.metrics_aggregator import (
    MetricsService,
)
from src.repositories import _sqlite_rollups as rollup_sql
from src.repositories._rows import format_utc
from src.repositories.postgres_repository import PostgresSpanRepository
from src.repositories.rollups import LOG_GAMMA, RELATIVE_ACCURACY, ZERO_BUCKET
from src.repositories.sketch import pack
from src.repositories.span_store import SpanRepository
from src.repositories.sqlite_repository import SqliteSpanRepository
from tests.integration.test_repository_conformance import (  # fixtures: clock, repository
    NOW,
    FixedClock,
    clock,  # noqa: F401
    make_span,
    repository,  # noqa: F401
)

PERCENTILES = ("p50_ms", "p95_ms", "p99_ms")
MODELS = (None, "gpt-4o-mini", "claude-sonnet-4")


def traffic(seed: int, hours: float = 3.0, n: int = 1500) -> list[ObservabilitySpan]:
    """Spans at random instants over the last `hours` (and a little past now): several agents,
    models, kinds, errors, open spans, zero and long durations, tokens and cost."""
    rng = random.Random(seed)
    spans = []
    for _ in range(n):
        kind = rng.choice([SpanKind.LLM, SpanKind.LLM, SpanKind.AGENT, SpanKind.TOOL])
        duration = rng.choice(
            [rng.lognormvariate(4.5, 1.0), rng.uniform(0.01, 30_000.0), 0.0, 250.0, None]
        )
        llm = kind is SpanKind.LLM
        error = duration is not None and rng.random() < 0.1
        fields: dict[str, object] = {"status": SpanStatus.ERROR} if error else {}
        if llm:
            fields |= {
                "llm_model": rng.choice(MODELS),
                "input_tokens": rng.randint(0, 5000),
                "output_tokens": rng.randint(0, 900),
                "cost_usd": rng.choice([None, rng.uniform(0, 0.05)]),
            }
        spans.append(
            make_span(
                rng.uniform(-0.5, hours * 60),
                agent=rng.choice(["orchestrator", "gap_analyzer", "causal_impact", "explainer"]),
                agent_tier=rng.choice([None, 1, 3]),
                span_kind=kind,
                duration_ms=duration,
                **fields,
            )
        )
    return spans


def assert_stats_match(rolled: list[LatencyStats], raw: list[LatencyStats]) -> None:
    assert [s.agent_name for s in rolled] == [s.agent_name for s in raw]
    for got, want in zip(rolled, raw, strict=True):
        got_d, want_d = got.model_dump(), want.model_dump()
        for key, value in want_d.items():
            if key in PERCENTILES and value is not None:
                assert got_d[key] == pytest.approx(value, rel=RELATIVE_ACCURACY), (
                    got.agent_name,
                    key,
                )
            elif isinstance(value, float | dict):  # dict: cost by model
                assert got_d[key] == pytest.approx(value, rel=1e-9), (got.agent_name, key)
            else:
                assert got_d[key] == value, (got.agent_name, key)


def assert_summary_match(rolled: WindowSummary, raw: WindowSummary) -> None:
    assert (rolled.total_spans, rolled.successful_spans, rolled.failed_spans) == (
        raw.total_spans,
        raw.successful_spans,
        raw.failed_spans,
    )
    assert rolled.avg_latency_ms == pytest.approx(raw.avg_latency_ms, rel=1e-9)
    assert rolled.p95_latency_ms == pytest.approx(raw.p95_latency_ms, rel=RELATIVE_ACCURACY)


async def rollup_view(repository: SpanRepository, window: str = "3h") -> tuple[object, ...]:
    """What the rollups say about a window (the clock is on a whole minute in the callers,
    so nothing comes from raw edges but spans starting exactly at the window's end)."""
    return (
        await repository.get_latency_stats(window),
        await repository.get_window_summary(window),
    )


def assert_same_view(got: tuple[object, ...], want: tuple[object, ...]) -> None:
    """Equal, up to float summation order in the duration sums (means)."""
    got_stats, got_summary = got
    want_stats, want_summary = want
    assert len(got_stats) == len(want_stats)
    for a, b in zip(got_stats, want_stats, strict=True):
        assert a.model_dump(exclude={"avg_ms"}) == b.model_dump(exclude={"avg_ms"})
        assert a.avg_ms == pytest.approx(b.avg_ms, rel=1e-12)
    assert got_summary.model_dump(exclude={"avg_latency_ms"}) == want_summary.model_dump(
        exclude={"avg_latency_ms"}
    )
    assert got_summary.avg_latency_ms == pytest.approx(want_summary.avg_latency_ms, rel=1e-12)


@pytest.mark.parametrize(
    "offset",
    [timedelta(seconds=17.25), -timedelta(minutes=28, seconds=0.001), timedelta(0)],
    ids=["mid-minute", "mid-hour", "aligned"],
)
@pytest.mark.parametrize("window", ["15m", "2h", "1d"])
async def test_rollups__window_edges_mid_minute__equal_raw_computation(
    repository, clock: FixedClock, offset, window
):
    spans = traffic(seed=5)
    for start in range(0, len(spans), 400):  # several transactions add to the same slots
        await repository.insert_spans_batch(spans[start : start + 400])
    clock.now = NOW + offset
    assert (await repository.get_window_summary(window, exact=True)).total_spans > 50

    assert_stats_match(
        await repository.get_latency_stats(window),
        await repository.get_latency_stats(window, exact=True),
    )
    assert_summary_match(
        await repository.get_window_summary(window),
        await repository.get_window_summary(window, exact=True),
    )
    assert_stats_match(
        await repository.get_latency_stats(window, agent_name="causal_impact"),
        await repository.get_latency_stats(window, agent_name="causal_impact", exact=True),
    )


@pytest.mark.parametrize("agent", [None, "explainer"])
async def test_window_metrics__one_read__same_as_stats_and_summary(
    repository, clock: FixedClock, agent
):
    """`get_window_metrics` (what MetricsService asks for) equals the two separate reads."""
    await repository.insert_spans_batch(traffic(seed=8, n=600))
    clock.now = NOW + timedelta(seconds=41.5)  # mid-minute: raw edges included
    stats, summary = await repository.get_window_metrics("2h", agent)
    assert stats and summary.total_spans > 0
    assert stats == await repository.get_latency_stats("2h", agent)
    assert summary == await repository.get_window_summary("2h", agent)


async def test_rollups__one_agent_many_spans__percentiles_within_one_percent(
    repository, clock: FixedClock
):
    rng = random.Random(11)
    spans = [
        make_span(rng.uniform(0, 59), agent="model_trainer", duration_ms=rng.lognormvariate(5, 2))
        for _ in range(3000)
    ]
    await repository.insert_spans_batch(spans)
    clock.now = NOW + timedelta(seconds=42.5)

    (rolled,) = await repository.get_latency_stats("1h")
    (raw,) = await repository.get_latency_stats("1h", exact=True)

    assert rolled.count == raw.count == 3000
    for key in PERCENTILES:
        assert getattr(rolled, key) == pytest.approx(getattr(raw, key), rel=RELATIVE_ACCURACY)


async def test_rollups__same_batch_replayed__counted_once(repository, clock: FixedClock):
    spans = traffic(seed=8, n=600)
    assert await repository.insert_spans_batch(spans) == 600
    once = await rollup_view(repository)

    assert await repository.insert_spans_batch(spans) == 0  # the whole batch again
    assert await repository.insert_spans_batch(spans[100:300]) == 0  # a part of it
    for span in spans[:5]:
        assert await repository.insert_span(span) is False

    assert await rollup_view(repository) == once
    extra = make_span(1.5, agent="orchestrator", duration_ms=99.0)
    assert await repository.insert_spans_batch([*spans[:50], extra]) == 1  # old and new mixed
    (orchestrator,) = await repository.get_latency_stats("3h", agent_name="orchestrator")
    (before,) = [s for s in once[0] if s.agent_name == "orchestrator"]
    assert orchestrator.count == before.count + 1


async def test_rollups__rebuild__reproduces_the_rollups(repository, clock: FixedClock):
    spans = traffic(seed=13, n=800)
    await repository.insert_spans_batch(spans[:500])
    await repository.insert_spans_batch(spans[300:])
    written = await rollup_view(repository)

    assert await repository.rebuild_rollups() == 800
    assert_same_view(await rollup_view(repository), written)
    since = NOW - timedelta(minutes=70, seconds=5)  # from 10:00 (its hour) on
    rolled_up = await repository.rebuild_rollups(since)
    assert rolled_up == sum(s.start_time >= NOW - timedelta(hours=2) for s in spans)
    assert_same_view(await rollup_view(repository), written)


async def test_rollups__span_cleanup__rollups_stay_until_their_own_retention(
    repository, clock: FixedClock
):
    old = [
        make_span(10 * 24 * 60 + i, agent="drift_monitor", duration_ms=5.0 + i) for i in range(30)
    ]
    await repository.insert_spans_batch(old)
    before = await repository.get_latency_stats("14d")

    assert await repository.delete_old_spans(days=7) == 30
    assert await repository.get_latency_stats("14d", exact=True) == []
    assert await repository.get_latency_stats("14d") == before  # trends outlive the spans
    assert await repository.delete_old_rollups(days=400) == 0
    assert await repository.get_latency_stats("14d") == before
    assert await repository.delete_old_rollups(days=7) > 0
    assert await repository.get_latency_stats("14d") == []


async def test_rollups__minute_retention__old_minutes_deleted_hours_and_recent_kept(
    repository, clock: FixedClock
):
    old = [
        make_span(10 * 24 * 60 + i, agent="drift_monitor", duration_ms=5.0 + i) for i in range(30)
    ]
    recent = [make_span(5 + i, agent="explainer", duration_ms=7.0 + i) for i in range(20)]
    await repository.insert_spans_batch(old + recent)
    await repository.delete_old_spans(days=7)
    trend, last_hour = (
        await repository.get_latency_stats("14d"),
        await rollup_view(repository, "1h"),
    )

    deleted = await repository.delete_old_rollups(days=400, minute_days=7)
    assert deleted >= 2 * 30  # each old minute: a figures row and a sketch row
    assert await repository.delete_old_rollups(days=400, minute_days=7) == 0
    assert await repository.get_latency_stats("14d") == trend  # the hour slots stay
    assert await rollup_view(repository, "1h") == last_hour  # recent minutes stay
    assert await repository.delete_old_rollups(days=7, minute_days=400) > 0  # capped at days
    assert [s.agent_name for s in await repository.get_latency_stats("14d")] == ["explainer"]
    with pytest.raises(ValueError, match="minute_days"):
        await repository.delete_old_rollups(days=400, minute_days=-1)


async def test_metrics_service__exact__from_raw_spans_and_never_cached(
    repository, clock: FixedClock
):
    spans = traffic(seed=21, n=400)
    await repository.insert_spans_batch(spans)
    clock.now = NOW + timedelta(seconds=30)
    cache = InMemoryMetricsCache(CacheSettings())
    service = MetricsService(repository, cache=cache, clock=clock)

    exact = await service.get_quality_metrics("1h", exact=True)
    assert cache.get("1h", None) is None  # an exact answer is not cached
    rolled = await service.get_quality_metrics("1h")
    assert cache.get("1h", None) == rolled
    assert await service.get_quality_metrics("1h", exact=True) == exact  # not the cached one

    # every span is in one trace (make_span's default) that began before the window: the cost
    # sketch counts a trace in the minute of its first priced call (test_trace_costs.py)
    sketched = ("traces_with_cost", "cost_per_trace_p50", "cost_per_trace_p95")
    assert all(rolled.agents[name].traces_with_cost == 0 for name in rolled.agents)
    assert_stats_match(
        [
            rolled.agents[name].model_copy(
                update={key: getattr(exact.agents[name], key) for key in sketched}
            )
            for name in sorted(rolled.agents)
        ],
        [exact.agents[name] for name in sorted(exact.agents)],
    )
    assert (
        exact.agents["gap_analyzer"].p95_ms
        == (await repository.get_latency_stats("1h", agent_name="gap_analyzer", exact=True))[
            0
        ].p95_ms
    )
    with pytest.raises(ValueError, match="exact must be True or False, got 'yes'"):
        await service.get_quality_metrics("1h", exact="yes")


async def test_sqlite_migration__file_from_before_rollups__rolled_up_on_setup(tmp_path):
    path = tmp_path / "spans.db"
    clock = FixedClock()
    repo = SqliteSpanRepository(path, clock=clock)
    await repo.setup()
    spans = traffic(seed=34, n=300)
    await repo.insert_spans_batch(spans)
    written = await rollup_view(repo)
    await repo.close()
    with sqlite3.connect(path) as conn:  # as a file written before issue 15 looks
        conn.execute("DROP TABLE ml_observability_rollups")
        conn.execute("DROP TABLE ml_observability_rollup_sketches")
        conn.execute("PRAGMA user_version = 2")

    again = SqliteSpanRepository(path, clock=clock)
    await again.setup()
    try:
        assert_same_view(await rollup_view(again), written)
    finally:
        await again.close()


@pytest.mark.postgres
async def test_postgres_schema__spans_from_before_rollups__rolled_up_when_applied(pg_dsn):
    repo = PostgresSpanRepository(pg_dsn, clock=FixedClock())
    await repo.setup()
    try:
        await repo.insert_spans_batch(traffic(seed=35, n=300))
        written = await rollup_view(repo)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:  # as before issue 15
            conn.execute("DROP TABLE ml_observability_rollups, ml_observability_rollup_sketches")
        await repo.setup()  # the schema file again: tables, trigger, then the backfill
        assert_same_view(await rollup_view(repo), written)
    finally:
        await repo.close()


async def test_postgres_schema__two_argument_rollup_retention__replaced_when_applied(pg_dsn):
    """A schema from before minute retention had ml_delete_old_rollups(interval, timestamptz):
    applying the file again leaves only the three-argument function, so two-argument calls
    (older clients, Supabase rpc) still resolve to one function."""
    repo = PostgresSpanRepository(pg_dsn, clock=FixedClock())
    await repo.setup()
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("DROP FUNCTION ml_delete_old_rollups(interval, timestamptz, interval)")
            conn.execute(
                "CREATE FUNCTION ml_delete_old_rollups(p_older_than interval, p_now timestamptz"
                " DEFAULT now()) RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint'"
            )
        await repo.setup()
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            signatures = conn.execute(
                "SELECT pg_get_function_identity_arguments(oid) FROM pg_proc "
                "WHERE proname = 'ml_delete_old_rollups'"
            ).fetchall()
            assert signatures == [
                (
                    "p_older_than interval, p_now timestamp with time zone, "
                    "p_minute_older_than interval",
                )
            ]
            assert conn.execute("SELECT ml_delete_old_rollups('1 day', now())").fetchone() == (0,)
    finally:
        await repo.close()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "counts", [[1, 0, 7], [0, 65535], [1, 65536, 0], [(1 << 32) - 1], [3, 1 << 32], [5]]
)
async def test_ml_sketch_pack__16_32_and_64_bit_counts__same_bytes_as_python(pg_dsn, counts):
    """PostgreSQL packs in SQL what SQLite packs in Python: the read side takes both alike."""
    repo = PostgresSpanRepository(pg_dsn, clock=FixedClock())
    await repo.setup()
    await repo.close()
    with psycopg.connect(pg_dsn) as conn:
        (packed,) = conn.execute("SELECT ml_sketch_pack(%s::bigint[])", (counts,)).fetchone()
    assert packed == pack(counts)


_SKETCH_COLUMNS = (
    "period_s, slot, agent_name, agent_tier, span_count, error_count, completed_count, "
    "duration_count, duration_sum, duration_max, llm_calls, input_tokens, output_tokens, "
    "total_tokens, zero_count, low, high, packed"
)


def _rollup_rows(fetch, slot_text) -> tuple[list[tuple], list[tuple]]:  # type: ignore[no-untyped-def]
    """Every rollup and sketch row, slots as text, sorted; floats rounded (summation order)."""
    queries = (
        "SELECT * FROM ml_observability_rollups",
        f"SELECT {_SKETCH_COLUMNS} FROM ml_observability_rollup_sketches",
    )
    out = []
    for query in queries:
        rows = []
        for row in fetch(query):
            values = [slot_text(v) if i == 1 else v for i, v in enumerate(row)]
            rows.append(tuple(round(float(v), 6) if isinstance(v, float) else v for v in values))
        out.append(sorted(rows, key=repr))
    return out[0], out[1]


@pytest.mark.postgres
async def test_rollup_rows__sqlite_batches__equal_postgres_trigger_rows(tmp_path, pg_dsn):
    """SQLite groups each batch's new spans once by minute and derives the hour rows from those
    minute groups; PostgreSQL's trigger is a separate implementation. Same spans, written in
    overlapping batches (replayed spans must not count), must give the same rows on both."""
    spans = traffic(seed=41, n=900)
    batches = (spans[:400], spans[250:700], spans[650:], spans[:30])
    sqlite_repo = SqliteSpanRepository(tmp_path / "spans.db", clock=FixedClock())
    postgres_repo = PostgresSpanRepository(pg_dsn, clock=FixedClock())
    await sqlite_repo.setup()
    await postgres_repo.setup()
    try:
        for batch in batches:
            assert await sqlite_repo.insert_spans_batch(batch) == (
                await postgres_repo.insert_spans_batch(batch)
            )
    finally:
        await sqlite_repo.close()
        await postgres_repo.close()
    with sqlite3.connect(tmp_path / "spans.db") as conn:
        from_sqlite = _rollup_rows(lambda q: conn.execute(q).fetchall(), str)
    with psycopg.connect(pg_dsn) as conn:
        from_postgres = _rollup_rows(
            lambda q: [
                tuple(float(v) if isinstance(v, Decimal) else v for v in row)
                for row in conn.execute(q).fetchall()
            ],
            format_utc,
        )
    assert len(from_sqlite[0]) > 100 and len(from_sqlite[1]) > 100  # minutes and hours, many
    assert {row[0] for row in from_sqlite[0]} == {60, 3600}
    assert {row[0] for row in from_sqlite[1]} == {60, 600, 3600, 21600}
    assert from_sqlite == from_postgres


def _old_bucket_rows(slot: str, bucket: str) -> str:
    """The row-per-bucket rollups of migration 3 / the schema before sketches, from the spans
    (`slot`: the SQL of a slot from `start_time` and `{period}`; `bucket`: of `duration_ms`)."""
    return " UNION ALL ".join(
        f"SELECT {period}, {slot.format(period=period)}, agent_name, {bucket}, count(*)"
        " FROM ml_observability_spans WHERE duration_ms IS NOT NULL GROUP BY 2, 3, 4"
        for period in (60, 3600)
    )


async def test_sqlite_migration__row_per_bucket_file__converted_without_the_spans(tmp_path):
    """A file of migration 3 (a row per slot, agent and bucket) gets sketches from those rows
    and the totals rows, not from the spans (rollups outlive them): same windows after."""
    path = tmp_path / "spans.db"
    repo = SqliteSpanRepository(path, clock=FixedClock())
    await repo.setup()
    await repo.insert_spans_batch(traffic(seed=36, n=600))
    written = (await rollup_view(repo), await rollup_view(repo, "24h"))
    await repo.close()
    with sqlite3.connect(path) as conn:  # as the file looked at migration 3
        rollup_sql.ensure_math(conn)
        conn.execute("DROP TABLE ml_observability_rollup_sketches")
        conn.execute(rollup_sql.CREATE_ROLLUPS[1])
        slot = (
            "CASE {period} WHEN 60 THEN substr(start_time, 1, 16) || ':00.000000+00:00' "
            "ELSE substr(start_time, 1, 13) || ':00:00.000000+00:00' END"
        )
        bucket = (
            f"CASE WHEN duration_ms > 0 THEN CAST(ceil(ln(duration_ms) / {LOG_GAMMA!r}) "
            f"AS INTEGER) ELSE {ZERO_BUCKET} END"
        )
        conn.execute(
            "INSERT INTO ml_observability_rollup_buckets " + _old_bucket_rows(slot, bucket)
        )
        conn.execute("DELETE FROM ml_observability_spans")
        conn.execute("PRAGMA user_version = 3")

    again = SqliteSpanRepository(path, clock=FixedClock())
    await again.setup()
    try:
        converted = (await rollup_view(again), await rollup_view(again, "24h"))
        for got, want in zip(converted, written, strict=True):
            assert_same_view(got, want)
    finally:
        await again.close()
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert "ml_observability_rollup_buckets" not in tables


@pytest.mark.postgres
async def test_postgres_schema__row_per_bucket_table__converted_without_the_spans(pg_dsn):
    repo = PostgresSpanRepository(pg_dsn, clock=FixedClock())
    await repo.setup()
    try:
        await repo.insert_spans_batch(traffic(seed=37, n=600))
        written = (await rollup_view(repo), await rollup_view(repo, "24h"))
        slot = "date_bin(interval '{period} seconds', start_time, '2000-01-01 00:00:00+00')"
        bucket = (
            "CASE WHEN duration_ms > 0 THEN ceil(ln(duration_ms) / ln(1.01::float8 / "
            f"0.99::float8))::integer ELSE {ZERO_BUCKET} END"
        )
        with psycopg.connect(pg_dsn, autocommit=True) as conn:  # as before the sketches
            conn.execute(
                "CREATE TABLE ml_observability_rollup_buckets (period_s integer NOT NULL, "
                "slot timestamptz NOT NULL, agent_name text NOT NULL, bucket integer NOT NULL, "
                "count bigint NOT NULL, PRIMARY KEY (period_s, slot, agent_name, bucket))"
            )
            conn.execute(
                "INSERT INTO ml_observability_rollup_buckets " + _old_bucket_rows(slot, bucket)
            )
            conn.execute("DROP TABLE ml_observability_rollup_sketches")
            conn.execute("DELETE FROM ml_observability_spans")
        await repo.setup()  # the schema file again: sketch table, conversion
        converted = (await rollup_view(repo), await rollup_view(repo, "24h"))
        for got, want in zip(converted, written, strict=True):
            assert_same_view(got, want)
        with psycopg.connect(pg_dsn) as conn:
            old = conn.execute("SELECT to_regclass('ml_observability_rollup_buckets')")
            assert old.fetchone() == (None,)
    finally:
        await repo.close()
