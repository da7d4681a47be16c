# ruff: noqa: F811  (the conformance suite's `repository` and `clock` fixtures, imported)
"""Cost statistics from rollups and the trace-cost sketch (issue 15) on every backend: real
SQLite, real PostgreSQL and the Supabase path (PostgREST test double).

`get_cost_stats` (default) reads the rollups for totals, priced/unpriced calls and cost by
model (exact, whatever the window's edges), and the cost sketch for traces_with_cost and cost
per trace p50/p95: within 1% of the raw computation (`exact=True`, which
test_cost_conformance holds to `statistics.quantiles`) when no trace straddles the window's
start. Traces are spread over several batches, so the sketch's bucket moves are exercised;
replays, rebuilds and retention keep them right.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import datetime, timedelta

import psycopg
import pytest

from src.agents.ml_foundation.observability_connector.cost_models import CostSummary
from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan, SpanKind
from src.repositories import _sqlite_trace_costs as trace_sql
from src.repositories._arguments import resolve_window
from src.repositories.cost_rollups import COST_BOUND_NAMES, cost_bounds
from src.repositories.postgres_repository import PostgresSpanRepository
from src.repositories.rollups import RELATIVE_ACCURACY, floor_slot
from src.repositories.sketch import bucket_of
from src.repositories.sqlite_repository import SqliteSpanRepository
from tests.integration.test_cost_conformance import REL, assert_cost_close, cost_spans
from tests.integration.test_repository_conformance import (  # fixtures: clock, repository
    NOW,
    FixedClock,
    clock,  # noqa: F401
    make_span,
    repository,  # noqa: F401
)

AGENTS = ("planner", "gap_analyzer", "explainer")
SKETCHED = ("traces_with_cost", "cost_per_trace_p50", "cost_per_trace_p95")


def trace_traffic(seed: int, traces: int = 300, hours: float = 3.0) -> list[ObservabilitySpan]:
    """Traces whose LLM calls all start within one minute (5-50 s past it), at random minutes
    of the last `hours`; several agents per trace, unpriced and model-less calls, zero costs,
    and non-LLM spans with a cost that must never count."""
    rng = random.Random(seed)
    spans = []
    for _ in range(traces):
        trace_id = f"{rng.getrandbits(128) | 1:032x}"
        minute = rng.randrange(1, int(hours * 60))
        for _ in range(rng.randint(1, 8)):
            spans.append(
                make_span(
                    minute - rng.uniform(5, 50) / 60,
                    agent=rng.choice(AGENTS),
                    trace_id=trace_id,
                    span_kind=SpanKind.LLM,
                    llm_model=rng.choice(["gpt-4o", "claude-sonnet-4", None]),
                    cost_usd=rng.choice([None, 0.0, *(rng.lognormvariate(-6, 1.5),) * 4]),
                )
            )
        spans.append(make_span(minute - 0.5, agent="planner", trace_id=trace_id, cost_usd=1.0))
    rng.shuffle(spans)  # a trace's calls land in different batches
    return spans


async def insert_in_batches(repository, spans, size: int = 97) -> None:
    for start in range(0, len(spans), size):
        await repository.insert_spans_batch(spans[start : start + size])


def assert_rolled_match(rolled: list[CostSummary], raw: list[CostSummary]) -> None:
    """Totals, calls and cost by model equal (float summation order aside); the sketched
    fields: the same number of traces, p50/p95 within 1%."""
    assert [c.agent_name for c in rolled] == [c.agent_name for c in raw]
    for got, want in zip(rolled, raw, strict=True):
        assert_cost_close(got.model_copy(update={k: getattr(want, k) for k in SKETCHED}), want)
        assert got.traces_with_cost == want.traces_with_cost, got.agent_name
        for key in SKETCHED[1:]:
            assert getattr(got, key) == pytest.approx(
                getattr(want, key), rel=RELATIVE_ACCURACY, abs=1e-15
            ), (got.agent_name, key)


@pytest.mark.parametrize(
    "offset",
    [timedelta(seconds=17.25), -timedelta(minutes=28, seconds=0.001), timedelta(0)],
    ids=["mid-minute", "mid-hour", "aligned"],
)
async def test_cost_stats__traces_inside_window__sketch_within_one_percent(
    repository, clock: FixedClock, offset
):
    spans = trace_traffic(seed=3)
    await insert_in_batches(repository, spans)
    clock.now = NOW + offset

    for agent in (None, "explainer"):
        raw = await repository.get_cost_stats("4h", agent, exact=True)
        assert raw and raw[0].traces_with_cost > 100
        assert_rolled_match(await repository.get_cost_stats("4h", agent), raw)


@pytest.mark.parametrize("window", ["15m", "2h", "1d", "7d"])
async def test_cost_stats__window_edges_mid_minute__totals_exact(
    repository, clock: FixedClock, window
):
    """Totals, calls and cost by model come from rollups plus raw edges: exact at any edge,
    even where traces straddle it (only the sketched fields are per whole minute)."""
    spans = cost_spans(seed=9, n=400)
    await insert_in_batches(repository, spans, size=53)
    clock.now = NOW - timedelta(minutes=33, seconds=21.5)

    raw = await repository.get_cost_stats(window, exact=True)
    rolled = await repository.get_cost_stats(window)
    assert [c.agent_name for c in rolled] == [c.agent_name for c in raw]
    for got, want in zip(rolled, raw, strict=True):
        assert_cost_close(got.model_copy(update={k: getattr(want, k) for k in SKETCHED}), want)


@pytest.mark.parametrize(
    "offset",
    [timedelta(seconds=17.25), -timedelta(hours=2, minutes=28, seconds=0.001)],
    ids=["mid-minute", "mid-6-hours"],
)
async def test_cost_stats__day_window__every_sketch_tier_within_one_percent(
    repository, clock: FixedClock, offset
):
    """A 24 h window over 30 h of traffic reads 1-minute, 10-minute, 1-hour and 6-hour sketch
    rows (traces in the partial minute at the window's start left out of the data: the sketch
    counts whole minutes only)."""
    clock.now = NOW + offset
    first_minute = floor_slot(clock.now - timedelta(days=1), 60)
    spans = [
        span
        for span in trace_traffic(seed=21, traces=500, hours=30.0)
        if floor_slot(span.start_time, 60) != first_minute
    ]
    await insert_in_batches(repository, spans, size=211)

    for agent in (None, "planner"):
        raw = await repository.get_cost_stats("1d", agent, exact=True)
        assert raw and raw[0].traces_with_cost > 150
        assert_rolled_match(await repository.get_cost_stats("1d", agent), raw)


async def test_cost_sketch__day_window__reads_a_few_dozen_rows_per_grp(tmp_path):
    """The packed tiers: a 24 h window reads at most 2 x (9 + 5 + 5) + 4 sketch rows per grp,
    however many minutes hold traces (one trace a minute here)."""
    path = tmp_path / "spans.db"
    clock = FixedClock(NOW + timedelta(seconds=17.25))
    repo = SqliteSpanRepository(path, clock=clock)
    await repo.setup()
    spans = [
        make_span(
            minute - 0.5,
            agent="planner",
            trace_id=f"{minute + 1:032x}",
            span_kind=SpanKind.LLM,
            cost_usd=0.001 * (1 + minute % 97),
        )
        for minute in range(1, 26 * 60)
    ]
    await insert_in_batches(repo, spans, size=500)
    await repo.close()
    bounds = dict(zip(COST_BOUND_NAMES, cost_bounds(resolve_window("1d", clock)), strict=True))
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            trace_sql.ROLLUP_COSTS,
            {name: bound.isoformat() for name, bound in bounds.items()} | {"agent": None},
        ).fetchall()
    sketch_rows = [row for row in rows if row[5] is not None]
    for grp in ("", "planner"):
        read = [row for row in sketch_rows if row[0] == grp]
        assert 0 < len(read) <= 2 * (9 + 5 + 5) + 4, grp
        # one trace in each whole minute but the current one (the clock's, still empty)
        assert sum(row[5] for row in read) == 24 * 60 - 1, grp


async def test_cost_stats__no_llm_calls__no_rows(repository, clock: FixedClock):
    await repository.insert_spans_batch([make_span(3, agent="planner", cost_usd=2.0)])
    assert await repository.get_cost_stats("1h") == []
    assert await repository.get_cost_stats("1h", "planner") == []


async def test_cost_sketch__replays__each_call_counted_once(repository, clock: FixedClock):
    spans = trace_traffic(seed=5, traces=80)
    await insert_in_batches(repository, spans)
    once = await repository.get_cost_stats("4h")

    await insert_in_batches(repository, spans, size=41)  # every batch again, other cuts
    for span in spans[:5]:
        assert await repository.insert_span(span) is False
    assert await repository.get_cost_stats("4h") == once

    extra = make_span(
        2, agent="planner", trace_id=spans[0].trace_id, span_kind=SpanKind.LLM, cost_usd=3.0
    )
    await repository.insert_spans_batch([*spans[:30], extra])
    after = await repository.get_cost_stats("4h")
    assert after[0].cost_usd == pytest.approx(once[0].cost_usd + 3.0, rel=REL)
    assert after[0].traces_with_cost == once[0].traces_with_cost  # the same trace, dearer
    assert_rolled_match(after, await repository.get_cost_stats("4h", exact=True))


async def test_cost_sketch__rebuild__reproduces_it(repository, clock: FixedClock):
    spans = trace_traffic(seed=13, traces=120)
    await insert_in_batches(repository, spans)
    written = await repository.get_cost_stats("4h")

    await repository.rebuild_rollups()
    assert_rolled_match(await repository.get_cost_stats("4h"), written)
    await repository.rebuild_rollups(NOW - timedelta(minutes=70))
    assert_rolled_match(await repository.get_cost_stats("4h"), written)


async def test_cost_sketch__span_cleanup__sketch_stays_until_rollup_retention(
    repository, clock: FixedClock
):
    old = [
        make_span(
            10 * 24 * 60 + i,
            agent="drift_monitor",
            trace_id=f"{i + 1:032x}",
            span_kind=SpanKind.LLM,
            cost_usd=0.01 * (i + 1),
        )
        for i in range(20)
    ]
    await repository.insert_spans_batch(old)
    before = await repository.get_cost_stats("14d")
    assert before[0].traces_with_cost == 20

    assert await repository.delete_old_spans(days=7) == 20
    assert await repository.get_cost_stats("14d", exact=True) == []
    kept = await repository.get_cost_stats("14d")
    assert [c.traces_with_cost for c in kept] == [20, 20]  # the sketch outlives the spans
    assert kept[0].cost_usd == pytest.approx(before[0].cost_usd, rel=REL)
    # the running costs went with the spans: the same trace ids count afresh when they return
    await repository.insert_spans_batch(
        [
            make_span(
                3,
                agent="drift_monitor",
                trace_id=old[0].trace_id,
                span_kind=SpanKind.LLM,
                cost_usd=0.5,
            )
        ]
    )
    (window, agent) = await repository.get_cost_stats("1h")
    assert window.traces_with_cost == agent.traces_with_cost == 1
    assert window.cost_per_trace_p50 == pytest.approx(0.5, rel=RELATIVE_ACCURACY)

    assert await repository.delete_old_rollups(days=7) > 0
    assert [c.traces_with_cost for c in await repository.get_cost_stats("14d")] == [1, 1]


async def test_sqlite_migration__file_from_before_trace_costs__filled_on_setup(tmp_path):
    path = tmp_path / "spans.db"
    clock = FixedClock()
    repo = SqliteSpanRepository(path, clock=clock)
    await repo.setup()
    await insert_in_batches(repo, trace_traffic(seed=34, traces=60))
    written = await repo.get_cost_stats("4h")
    await repo.close()
    with sqlite3.connect(path) as conn:  # as a file written before the trace costs looks
        conn.execute("DROP TABLE ml_observability_trace_costs")
        conn.execute("DROP TABLE ml_observability_trace_cost_sketches")
        conn.execute("PRAGMA user_version = 4")

    again = SqliteSpanRepository(path, clock=clock)
    await again.setup()
    try:
        assert_rolled_match(await again.get_cost_stats("4h"), written)
    finally:
        await again.close()


def old_bucket_rows(costs) -> list[tuple]:
    """The row-per-bucket cost sketch of migration 5 / the schema before packing, from the
    running costs (slot text or timestamptz, grp, cost): traces per minute and hour slot, grp
    and bucket."""
    counts: dict[tuple, int] = {}
    for slot, grp, cost in costs:
        moment = slot if not isinstance(slot, str) else datetime.fromisoformat(slot)
        for period in (60, 3600):
            start = floor_slot(moment, period)
            key = (
                period,
                start if not isinstance(slot, str) else start.isoformat(timespec="microseconds"),
                grp,
                bucket_of(float(cost)),
            )
            counts[key] = counts.get(key, 0) + 1
    return [(*key, count) for key, count in counts.items()]


async def test_sqlite_migration__row_per_bucket_sketch__packed_on_setup(tmp_path):
    path = tmp_path / "spans.db"
    clock = FixedClock()
    repo = SqliteSpanRepository(path, clock=clock)
    await repo.setup()
    await insert_in_batches(repo, trace_traffic(seed=36, traces=80))
    written = await repo.get_cost_stats("4h")
    await repo.close()
    with sqlite3.connect(path) as conn:  # as a file of migration 5 looks
        costs = conn.execute(f"SELECT slot, grp, cost FROM {trace_sql.COSTS_TABLE}").fetchall()
        conn.execute(f"DROP TABLE {trace_sql.SKETCH_TABLE}")
        conn.execute(
            f"CREATE TABLE {trace_sql.OLD_SKETCH_TABLE} (period_s INTEGER NOT NULL, slot TEXT "
            "NOT NULL, grp TEXT NOT NULL, bucket INTEGER NOT NULL, count INTEGER NOT NULL, "
            "PRIMARY KEY (period_s, slot, grp, bucket)) WITHOUT ROWID"
        )
        conn.executemany(
            f"INSERT INTO {trace_sql.OLD_SKETCH_TABLE} VALUES (?, ?, ?, ?, ?)",
            old_bucket_rows(costs),
        )
        conn.execute(f"DELETE FROM {trace_sql.COSTS_TABLE}")  # converted, not recomputed
        conn.execute("PRAGMA user_version = 5")

    again = SqliteSpanRepository(path, clock=clock)
    await again.setup()
    try:
        assert_rolled_match(await again.get_cost_stats("4h"), written)
        assert_rolled_match(
            await again.get_cost_stats("4h", "explainer"),
            await again.get_cost_stats("4h", "explainer", exact=True),
        )
    finally:
        await again.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = ?", (trace_sql.OLD_SKETCH_TABLE,)
        ).fetchone() == (0,)


@pytest.mark.postgres
async def test_postgres_schema__row_per_bucket_sketch__packed_when_applied(pg_dsn):
    repo = PostgresSpanRepository(pg_dsn, clock=FixedClock())
    await repo.setup()
    try:
        await insert_in_batches(repo, trace_traffic(seed=37, traces=80))
        written = await repo.get_cost_stats("4h")
        with psycopg.connect(pg_dsn, autocommit=True) as conn:  # as before the packing
            costs = conn.execute(
                "SELECT slot, grp, cost FROM ml_observability_trace_costs"
            ).fetchall()
            conn.execute("DROP TABLE ml_observability_trace_cost_sketches")
            conn.execute(
                "CREATE TABLE ml_observability_trace_cost_buckets (period_s integer NOT NULL, "
                "slot timestamptz NOT NULL, grp text NOT NULL, bucket integer NOT NULL, "
                "count bigint NOT NULL, PRIMARY KEY (period_s, slot, grp, bucket))"
            )
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO ml_observability_trace_cost_buckets VALUES (%s, %s, %s, %s, %s)",
                    old_bucket_rows(costs),
                )
        await repo.setup()  # the schema file again: the new table, converted
        assert_rolled_match(await repo.get_cost_stats("4h"), written)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            assert conn.execute(
                "SELECT to_regclass('public.ml_observability_trace_cost_buckets')"
            ).fetchone() == (None,)
    finally:
        await repo.close()


@pytest.mark.postgres
async def test_postgres_schema__spans_from_before_trace_costs__filled_when_applied(pg_dsn):
    repo = PostgresSpanRepository(pg_dsn, clock=FixedClock())
    await repo.setup()
    try:
        await insert_in_batches(repo, trace_traffic(seed=35, traces=60))
        written = await repo.get_cost_stats("4h")
        with psycopg.connect(pg_dsn, autocommit=True) as conn:  # as before the trace costs
            conn.execute(
                "DROP TABLE ml_observability_trace_costs, ml_observability_trace_cost_sketches"
            )
        await repo.setup()  # the schema file again: tables, then the backfill
        assert_rolled_match(await repo.get_cost_stats("4h"), written)
    finally:
        await repo.close()


@pytest.mark.postgres
async def test_postgres_trigger__concurrent_writers_same_traces__sketch_consistent(pg_dsn):
    """Two connections adding calls of the same traces at once: the upsert's row locks
    serialise each trace's moves, so the sketch still counts each trace once, at its cost."""
    import asyncio

    clock = FixedClock()
    writers = [PostgresSpanRepository(pg_dsn, clock=clock) for _ in range(2)]
    for writer in writers:
        await writer.setup()
    try:
        spans = trace_traffic(seed=41, traces=40)
        halves = [spans[0::2], spans[1::2]]
        await asyncio.gather(
            *(insert_in_batches(w, half, size=11) for w, half in zip(writers, halves, strict=True))
        )
        assert_rolled_match(
            await writers[0].get_cost_stats("4h"),
            await writers[0].get_cost_stats("4h", exact=True),
        )
    finally:
        for writer in writers:
            await writer.close()
