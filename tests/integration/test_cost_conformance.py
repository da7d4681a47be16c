"""Cost columns and cost statistics on every backend (SQLite, PostgreSQL, Supabase).

Same fixtures as the repository conformance suite; expected values are computed here from the
same spans: sums over priced `llm` spans, percentiles of per-trace sums with
`statistics.quantiles(..., method="inclusive")` (PostgreSQL's percentile_cont), against
`exact=True` (the default reads rollups and a cost sketch: test_trace_costs.py). PostgreSQL sums
`numeric` exactly, SQLite sums floats: totals agree to 1e-12 relative, not bit for bit.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from src.agents.ml_foundation.observability_connector.cost_models import (
    CostBreakdownRow,
    CostSummary,
)
from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan, SpanKind
from src.repositories import _sqlite_sql
from src.repositories.observability_span import SpanRepository, SqliteSpanRepository
from src.repositories.span_store import TABLE_NAME
from tests.integration.test_repository_conformance import (
    BACKEND_MARKS,
    BACKENDS,
    NOW,
    FixedClock,
    make_span,
)

REL = 1e-12
MODELS = ("gpt-4o", "claude-sonnet-4-20250514", "gemini-2.5-pro", None)


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


def cost_spans(seed: int = 7, n: int = 120) -> list[ObservabilitySpan]:
    """LLM spans over three agents, 15 traces and two UTC days (some unpriced, some without a
    model), plus non-LLM spans whose cost must never count."""
    rng = random.Random(seed)
    traces = [f"{rng.getrandbits(128) | 1:032x}" for _ in range(15)]
    spans = []
    for _ in range(n):
        model = rng.choice(MODELS)
        priced = model is not None and rng.random() > 0.2
        spans.append(
            make_span(
                rng.uniform(1, 60 * 30),  # up to 30 h ago: two UTC days
                agent=rng.choice(["planner", "gap_analyzer", "explainer"]),
                trace_id=rng.choice(traces),
                span_kind=SpanKind.LLM,
                llm_model=model,
                provider=rng.choice(["openai", "anthropic", None]),
                input_tokens=rng.randint(100, 5000),
                output_tokens=rng.randint(10, 900),
                cache_read_tokens=rng.choice([None, 0, 50]),
                cache_write_tokens=rng.choice([None, 20]),
                reasoning_tokens=rng.choice([None, 5]),
                cost_usd=round(rng.uniform(0, 0.05), 9) if priced else None,
            )
        )
    spans += [make_span(rng.uniform(1, 600), agent="planner", cost_usd=1.0) for _ in range(5)]
    return spans


def _in_window(span: ObservabilitySpan, hours: float) -> bool:
    return NOW - timedelta(hours=hours) <= span.start_time <= NOW


def expected_costs(spans: list[ObservabilitySpan], hours: float) -> dict[str | None, CostSummary]:
    llm = [s for s in spans if s.span_kind is SpanKind.LLM and _in_window(s, hours)]
    groups: dict[str | None, list[ObservabilitySpan]] = {None: llm}
    for span in llm:
        groups.setdefault(span.agent_name, []).append(span)
    out = {}
    for agent, members in groups.items():
        priced = [s for s in members if s.cost_usd is not None]
        per_trace: dict[str, float] = {}
        by_model: dict[str, float] = {}
        for s in priced:
            per_trace[s.trace_id] = per_trace.get(s.trace_id, 0.0) + s.cost_usd
            key = s.llm_model or "(no model)"
            by_model[key] = by_model.get(key, 0.0) + s.cost_usd
        values = sorted(per_trace.values())
        p50 = p95 = None
        if len(values) >= 2:
            q = statistics.quantiles(values, n=100, method="inclusive")
            p50, p95 = q[49], q[94]
        elif values:
            p50 = p95 = values[0]
        out[agent] = CostSummary(
            agent_name=agent,
            cost_usd=sum(s.cost_usd for s in priced),
            priced_llm_calls=len(priced),
            unpriced_llm_calls=len(members) - len(priced),
            traces_with_cost=len(values),
            cost_per_trace_p50=p50,
            cost_per_trace_p95=p95,
            cost_by_model=dict(sorted(by_model.items())),
        )
    return out


def assert_cost_close(got: CostSummary, want: CostSummary) -> None:
    g, w = got.model_dump(), want.model_dump()
    for key, value in w.items():
        if isinstance(value, float):
            assert g[key] == pytest.approx(value, rel=REL), (want.agent_name, key)
        elif isinstance(value, dict):
            assert g[key].keys() == value.keys(), (want.agent_name, key)
            for model, cost in value.items():
                assert g[key][model] == pytest.approx(cost, rel=REL), (want.agent_name, model)
        else:
            assert g[key] == value, (want.agent_name, key)


async def test_cost_columns__round_trip__same_values_back(repository):
    span = make_span(
        span_kind=SpanKind.LLM,
        llm_model="claude-sonnet-4-20250514",
        provider="anthropic",
        input_tokens=1200,
        output_tokens=300,
        cache_read_tokens=1000,
        cache_write_tokens=100,
        reasoning_tokens=40,
        cost_usd=0.0071234567890123,  # 17 significant digits: numeric keeps them all
    )
    unpriced = make_span(span_kind=SpanKind.LLM, llm_model="my-model", input_tokens=5)
    await repository.insert_spans_batch([span, unpriced])

    stored = {s.span_id: s for s in await repository.get_spans_by_trace(span.trace_id)}
    assert stored[span.span_id] == span
    assert stored[span.span_id].cost_usd == 0.0071234567890123
    assert stored[unpriced.span_id].cost_usd is None


async def test_get_cost_stats__random_data__per_agent_and_window_match(repository):
    spans = cost_spans()
    await repository.insert_spans_batch(spans)

    for window, hours in (("24h", 24), ("7d", 24 * 7)):
        got = await repository.get_cost_stats(window, exact=True)
        want = expected_costs(spans, hours)
        assert [c.agent_name for c in got] == [None, *sorted(a for a in want if a)]
        for row in got:
            assert_cost_close(row, want[row.agent_name])


async def test_get_cost_stats__agent_filter_and_empty_window__that_agent_or_nothing(
    repository, clock
):
    spans = cost_spans(seed=3)
    await repository.insert_spans_batch(spans)

    got = await repository.get_cost_stats("7d", agent_name="planner", exact=True)
    want = expected_costs([s for s in spans if s.agent_name == "planner"], 24 * 7)
    assert [c.agent_name for c in got] == [None, "planner"]
    assert_cost_close(got[1], want["planner"])
    assert_cost_close(got[0], want["planner"].model_copy(update={"agent_name": None}))
    clock.now = NOW + timedelta(days=30)
    assert await repository.get_cost_stats("1h", exact=True) == []
    assert await repository.get_cost_stats("1h") == []


@pytest.mark.parametrize("by", ["agent", "model", "day", "provider"])
async def test_get_cost_breakdown__by_each_key__matches_the_spans(repository, by):
    spans = cost_spans(seed=5)
    await repository.insert_spans_batch(spans)

    got = await repository.get_cost_breakdown("7d", by=by)

    def key(s: ObservabilitySpan) -> str:
        if by == "agent":
            return s.agent_name
        if by == "model":
            return s.llm_model or "(no model)"
        if by == "provider":
            return s.provider or "(no provider)"
        return s.start_time.date().isoformat()

    groups: dict[str, list[ObservabilitySpan]] = {}
    for s in spans:
        if s.span_kind is SpanKind.LLM:
            groups.setdefault(key(s), []).append(s)
    assert [r.key for r in got] == sorted(groups)
    for row in got:
        members = groups[row.key]
        want = CostBreakdownRow(
            key=row.key,
            llm_calls=len(members),
            priced_llm_calls=sum(s.cost_usd is not None for s in members),
            traces=len({s.trace_id for s in members}),
            input_tokens=sum(s.input_tokens or 0 for s in members),
            output_tokens=sum(s.output_tokens or 0 for s in members),
            cache_read_tokens=sum(s.cache_read_tokens or 0 for s in members),
            cache_write_tokens=sum(s.cache_write_tokens or 0 for s in members),
            reasoning_tokens=sum(s.reasoning_tokens or 0 for s in members),
            cost_usd=sum(s.cost_usd or 0.0 for s in members),
        )
        assert row.model_dump(exclude={"cost_usd"}) == want.model_dump(exclude={"cost_usd"})
        assert row.cost_usd == pytest.approx(want.cost_usd, rel=REL)


async def test_get_cost_breakdown__unknown_key__value_error_naming_accepted(repository):
    with pytest.raises(ValueError, match="agent, model, day, provider"):
        await repository.get_cost_breakdown("1h", by="week")


@pytest.mark.postgres
async def test_cost_totals__sqlite_postgres_supabase__agree_by_agent_and_model(request, clock):
    spans = cost_spans(seed=21, n=300)
    results = {}
    for name, factory in BACKENDS.items():
        repo = factory(request, clock)
        await repo.setup()
        await repo.insert_spans_batch(spans)
        results[name] = (
            await repo.get_cost_breakdown("7d", by="agent"),
            await repo.get_cost_breakdown("7d", by="model"),
            await repo.get_cost_stats("7d", exact=True),
            await repo.get_cost_stats("7d"),
        )
        await repo.close()
    sqlite_result = results.pop("sqlite")
    for other in results.values():
        for mine, theirs in zip(sqlite_result[:2], other[:2], strict=True):
            assert [r.key for r in mine] == [r.key for r in theirs]
            for a, b in zip(mine, theirs, strict=True):
                assert a.model_dump(exclude={"cost_usd"}) == b.model_dump(exclude={"cost_usd"})
                assert a.cost_usd == pytest.approx(b.cost_usd, rel=REL)
        for mine, theirs in zip(sqlite_result[2:], other[2:], strict=True):
            for a, b in zip(mine, theirs, strict=True):
                assert_cost_close(a, b)  # the sketch too: same buckets on every backend


async def test_sqlite_setup__table_from_before_the_cost_columns__migrated_in_place(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    for statement in _sqlite_sql.MIGRATIONS[0]:
        old.execute(statement)
    old.execute(
        f"INSERT INTO {TABLE_NAME} (id, span_id, trace_id, operation_name, agent_name, "
        "start_time, status) VALUES ('5f0c7e46-9a3b-4e0b-8d9e-2c1f6b0a7d11', "
        "'00f067aa0ba902b7', '0af7651916cd43dd8448eb211c80319c', "
        "'op', 'planner', '2026-03-01T11:00:00.000000+00:00', 'started')"
    )
    old.execute("PRAGMA user_version = 1")
    old.commit()
    old.close()

    repo = SqliteSpanRepository(path, clock=FixedClock())
    await repo.setup()
    await repo.setup()  # idempotent
    [kept] = await repo.get_spans_by_trace("0af7651916cd43dd8448eb211c80319c")
    await repo.close()

    assert kept.cost_usd is None and kept.provider is None
    columns = {row[1] for row in sqlite3.connect(path).execute(f"PRAGMA table_info({TABLE_NAME})")}
    assert {name for name, _ in _sqlite_sql.ADDED_COLUMNS} <= columns


async def test_sqlite_setup__columns_already_there_but_version_old__no_duplicate_column(tmp_path):
    """A file whose user_version says 1 although the columns exist (restored from a copy,
    altered by hand): the migration checks `PRAGMA table_info`, it does not fail."""
    path = tmp_path / "odd.db"
    repo = SqliteSpanRepository(path, clock=FixedClock())
    await repo.setup()
    await repo.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()

    repo = SqliteSpanRepository(path, clock=FixedClock())
    await repo.setup()
    await repo.close()
    (version,) = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()
    assert version == len(_sqlite_sql.MIGRATIONS)
