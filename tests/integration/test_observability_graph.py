"""The observability graph end to end: a real BatchProcessor + DatabaseSink writing to a real
SQLite file or PostgreSQL server, a real metrics cache, and real LangGraph parents.

Metrics are checked against a direct computation over the spans stored in the repository
(percentiles as `statistics.quantiles(method="inclusive")`, i.e. `percentile_cont`).
"""

from __future__ import annotations

import asyncio
import logging
import operator
import re
import statistics
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from src.agents.ml_foundation.observability_connector.batch_processor import BatchProcessor
from src.agents.ml_foundation.observability_connector.cache import InMemoryMetricsCache
from src.agents.ml_foundation.observability_connector.config import (
    BatchingSettings,
    CacheSettings,
)
from src.agents.ml_foundation.observability_connector.db_sink import DatabaseSink
from src.agents.ml_foundation.observability_connector.graph import build_observability_graph
from src.agents.ml_foundation.observability_connector.models import (
    EmissionResult,
    ObservabilitySpan,
    QualityMetrics,
    SpanKind,
    SpanStatus,
)
from src.agents.ml_foundation.observability_connector.nodes.metrics_aggregator import (
    MetricsService,
)
from src.agents.ml_foundation.observability_connector.pricing import Pricer
from src.agents.ml_foundation.observability_connector.state import CHECKPOINT_ALLOWED_TYPES
from src.mlops.opik_connector import reset_opik_connector
from src.repositories.postgres_repository import PostgresSpanRepository
from src.repositories.span_store import SpanRepository
from src.repositories.sqlite_repository import SqliteSpanRepository

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
REMOTE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
REMOTE_PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{REMOTE_TRACE}-{REMOTE_PARENT}-01"


def wall_clock() -> datetime:
    return NOW


class Monotonic:
    """The metrics cache's clock: frozen, so TTL never expires during a test."""

    def __call__(self) -> float:
        return 100.0


class Hex:
    """Matches any lowercase hex string of one length (a generated id)."""

    def __init__(self, length: int) -> None:
        self.pattern = re.compile(f"^[0-9a-f]{{{length}}}$")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(self.pattern.match(other))

    def __repr__(self) -> str:
        return f"Hex({self.pattern.pattern})"


class Matches:
    """Matches any string the regular expression matches in full."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern, re.DOTALL)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(self.pattern.fullmatch(other))

    def __repr__(self) -> str:
        return f"Matches({self.pattern.pattern!r})"


ROLLUP_PERCENTILES = ("p50_ms", "p95_ms", "p99_ms", "p95_latency_ms")
ROLLUP_PERCENTILES += ("cost_per_trace_p50", "cost_per_trace_p95")
"""Metrics come from rollups and the cost sketch by default: these within 1% of
percentile_cont (issue 15)."""


def approx_tree(value: Any, key: str | None = None) -> Any:
    """`value` with every float wrapped in pytest.approx (SQL and Python round differently;
    latency percentiles from rollups within 1%)."""
    if isinstance(value, float):
        if key in ROLLUP_PERCENTILES:
            return pytest.approx(value, rel=0.01)
        return pytest.approx(value, rel=1e-9, abs=1e-9)
    if isinstance(value, dict):
        return {k: approx_tree(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [approx_tree(v) for v in value]
    return value


def dumped(state: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value.model_dump() if hasattr(value, "model_dump") else value
        for key, value in state.items()
    }


_span_counter = iter(range(1, 1_000_000))


def make_span(
    agent: str,
    duration_ms: float,
    *,
    minutes_ago: float = 5,
    kind: SpanKind = SpanKind.AGENT,
    status: SpanStatus = SpanStatus.COMPLETED,
    tokens: tuple[int, int] | None = None,
    trace_id: str = "1" * 32,
    model: str | None = None,
) -> ObservabilitySpan:
    start = NOW - timedelta(minutes=minutes_ago)
    return ObservabilitySpan(
        span_id=f"{next(_span_counter):016x}",
        trace_id=trace_id,
        operation_name="work",
        agent_name=agent,
        span_kind=kind,
        start_time=start,
        end_time=start + timedelta(milliseconds=duration_ms),
        status=status,
        error_type="Boom" if status is SpanStatus.ERROR else None,
        input_tokens=tokens[0] if tokens else None,
        output_tokens=tokens[1] if tokens else None,
        llm_model=model,
    )


def sample_spans() -> list[ObservabilitySpan]:
    return [
        make_span("gap_analyzer", 120.0),
        make_span("gap_analyzer", 80.5, kind=SpanKind.LLM, tokens=(100, 20), model="gpt-4o"),
        make_span("gap_analyzer", 300.0, status=SpanStatus.ERROR),
        make_span("causal_impact", 40.0, kind=SpanKind.LLM, tokens=(10, 5)),
        make_span("causal_impact", 55.0),
        make_span("causal_impact", 10.0, minutes_ago=120),  # outside a 1h window
    ]


def expected_metrics(
    stored: list[ObservabilitySpan], window: str, length: timedelta, agent: str | None = None
) -> QualityMetrics:
    """Window metrics computed here, in Python, from the spans the repository holds."""
    start = NOW - length
    by_agent: dict[str, list[ObservabilitySpan]] = defaultdict(list)
    for span in stored:
        if start <= span.start_time <= NOW and agent in (None, span.agent_name):
            by_agent[span.agent_name].append(span)
    minutes = length.total_seconds() / 60
    agents: dict[str, dict[str, Any]] = {}
    for name, spans in sorted(by_agent.items()):
        durations = sorted(s.duration_ms for s in spans if s.duration_ms is not None)
        cuts = statistics.quantiles(durations, n=100, method="inclusive")
        llm = [s for s in spans if s.span_kind is SpanKind.LLM]
        errors = sum(s.is_error for s in spans)
        agents[name] = {
            "agent_name": name,
            "agent_tier": None,
            "time_window": window,
            "count": len(spans),
            "error_count": errors,
            "error_rate": errors / len(spans),
            "avg_ms": statistics.fmean(durations),
            "p50_ms": cuts[49],
            "p95_ms": cuts[94],
            "p99_ms": cuts[98],
            "max_ms": max(durations),
            "llm_calls": len(llm),
            "input_tokens": sum(s.input_tokens or 0 for s in llm),
            "output_tokens": sum(s.output_tokens or 0 for s in llm),
            "total_tokens": sum(s.total_tokens or 0 for s in llm),
            "spans_per_minute": len(spans) / minutes,
            **expected_cost(llm),
        }
    total = sum(a["count"] for a in agents.values())
    errors = sum(a["error_count"] for a in agents.values())
    window_spans = [s for spans in by_agent.values() for s in spans]
    durations = sorted(s.duration_ms for s in window_spans if s.duration_ms is not None)
    return QualityMetrics.model_validate(
        {
            "time_window": window,
            "window_start": start,
            "window_end": NOW,
            "agent_name": agent,
            "total_spans": total,
            "successful_spans": sum(s.status is SpanStatus.COMPLETED for s in window_spans),
            "failed_spans": errors,
            "avg_latency_ms": statistics.fmean(durations),
            "p95_latency_ms": statistics.quantiles(durations, n=100, method="inclusive")[94],
            "error_count": errors,
            "error_rate": errors / total if total else 0.0,
            "spans_per_minute": total / minutes,
            "input_tokens": sum(a["input_tokens"] for a in agents.values()),
            "output_tokens": sum(a["output_tokens"] for a in agents.values()),
            "total_tokens": sum(a["total_tokens"] for a in agents.values()),
            "agents": agents,
            **expected_cost(
                [s for spans in by_agent.values() for s in spans if s.span_kind == "llm"]
            ),
        }
    )


def expected_cost(llm: list[ObservabilitySpan]) -> dict[str, Any]:
    """Cost fields computed here from the stored LLM spans (priced by the batch worker)."""
    priced = [s for s in llm if s.cost_usd is not None]
    per_trace: dict[str, float] = defaultdict(float)
    by_model: dict[str, float] = defaultdict(float)
    for span in priced:
        per_trace[span.trace_id] += span.cost_usd
        by_model[span.llm_model or "(no model)"] += span.cost_usd
    values = sorted(per_trace.values())
    cuts = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else None
    return {
        "cost_usd": sum(s.cost_usd for s in priced),
        "priced_llm_calls": len(priced),
        "unpriced_llm_calls": len(llm) - len(priced),
        "traces_with_cost": len(values),
        "cost_per_trace_p50": cuts[49] if cuts else (values[0] if values else None),
        "cost_per_trace_p95": cuts[94] if cuts else (values[0] if values else None),
        "cost_by_model": dict(sorted(by_model.items())),
    }


async def stored_spans(repository: SpanRepository) -> list[ObservabilitySpan]:
    return await repository.get_spans_by_time_window("7d", limit=10_000)


def local_context() -> dict[str, Any]:
    return {
        "trace_id": Hex(32),
        "span_id": Hex(16),
        "trace_flags": 0x03,  # sampled + random: our UUIDv7 trace ids end in 7 random bytes
        "traceparent": _Traceparent(),
        "tracestate": None,
        "remote": False,
    }


class _Traceparent:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(
            re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-03", other)
        )

    def __repr__(self) -> str:
        return "<traceparent>"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def repository(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SpanRepository]:
    if request.param == "sqlite":
        repo: SpanRepository = SqliteSpanRepository(tmp_path / "obs.db", clock=wall_clock)
    else:
        repo = PostgresSpanRepository(request.getfixturevalue("pg_dsn"), clock=wall_clock)
    await repo.setup()
    yield repo
    await repo.close()


@dataclass
class Wiring:
    repository: SpanRepository
    cache: InMemoryMetricsCache
    processor: BatchProcessor
    service: MetricsService


@pytest.fixture
async def wiring(repository: SpanRepository, tmp_path: Path) -> AsyncIterator[Wiring]:
    cache = InMemoryMetricsCache(CacheSettings(), clock=Monotonic())
    sink = DatabaseSink(repository)
    processor = BatchProcessor(
        [sink],
        BatchingSettings(max_batch_wait_seconds=60.0),
        tmp_path / "spool",
        on_batch_written=cache.on_batch_written,
        pricer=Pricer(),
    )
    yield Wiring(repository, cache, processor, MetricsService(repository, cache, clock=wall_clock))
    await asyncio.to_thread(processor.close, 10.0)
    await asyncio.to_thread(sink.close)


# ------------------------------------------------------------------ the graph invoked directly


async def test_graph__emit_and_query__stores_spans_and_reports_matching_metrics(
    wiring: Wiring,
) -> None:
    graph = build_observability_graph(wiring.processor, wiring.service)
    spans = sample_spans()
    state = await graph.ainvoke(
        {"operation": "emit_and_query", "spans": spans, "time_window": "1h"}
    )
    stored = await stored_spans(wiring.repository)
    assert sorted(s.span_id for s in stored) == sorted(s.span_id for s in spans)
    assert state["quality_metrics"].cost_usd > 0  # gpt-4o priced on the worker
    assert state["quality_metrics"].unpriced_llm_calls == 1  # a call without a model
    assert dumped(state) == {
        "errors": [],
        "trace_context": local_context(),
        "emission_result": EmissionResult(
            submitted=6, per_sink={"database": 6}, flushed=True
        ).model_dump(),
        "quality_metrics": approx_tree(
            expected_metrics(stored, "1h", timedelta(hours=1)).model_dump()
        ),
    }


def test_graph__sync_invoke__emits_then_queries_one_agent(wiring: Wiring) -> None:
    graph = build_observability_graph(wiring.processor, wiring.service)
    spans = sample_spans()
    emitted = graph.invoke({"operation": "emit", "spans": spans, "traceparent": TRACEPARENT})
    assert emitted["emission_result"] == EmissionResult(
        submitted=6, per_sink={"database": 6}, flushed=True
    )
    state = graph.invoke(
        {"operation": "query_metrics", "time_window": "24h", "agent_name": "causal_impact"}
    )
    stored = asyncio.run(stored_spans(wiring.repository))
    assert dumped(state) == {
        "errors": [],
        "trace_context": local_context(),
        "quality_metrics": approx_tree(
            expected_metrics(stored, "24h", timedelta(hours=24), "causal_impact").model_dump()
        ),
    }


async def test_graph__span_dicts_without_ids__join_the_adopted_remote_trace(
    wiring: Wiring,
) -> None:
    graph = build_observability_graph(wiring.processor, wiring.service)
    start = NOW - timedelta(minutes=1)
    child = {
        "operation_name": "plan",
        "agent_name": "orchestrator",
        "start_time": start,
        "end_time": start + timedelta(milliseconds=15),
    }
    state = await graph.ainvoke(
        {
            "operation": "emit",
            "spans": [child],
            "traceparent": TRACEPARENT,
            "tracestate": "vendor=abc, ,tenant@sys=x ",
        }
    )
    assert dumped(state) == {
        "errors": [],
        "trace_context": {
            "trace_id": REMOTE_TRACE,
            "span_id": REMOTE_PARENT,
            "trace_flags": 1,
            "traceparent": TRACEPARENT,
            "tracestate": "vendor=abc,tenant@sys=x",
            "remote": True,
        },
        "emission_result": EmissionResult(
            submitted=1, per_sink={"database": 1}, flushed=True
        ).model_dump(),
    }
    (stored,) = await wiring.repository.get_spans_by_trace(REMOTE_TRACE)
    assert (stored.parent_span_id, stored.tracestate, stored.span_id) == (
        REMOTE_PARENT,
        "vendor=abc,tenant@sys=x",
        Hex(16),
    )


async def test_graph__invalid_tracestate__discarded_whole_reported_traceparent_kept(
    wiring: Wiring,
) -> None:
    """W3C Level 2 lets a vendor drop the bad member or the whole header; we drop the whole
    header (the strict choice), and say so in `errors`. 'Failure to parse tracestate MUST NOT
    affect the parsing of traceparent.'"""
    graph = build_observability_graph(wiring.processor, wiring.service)
    state = await graph.ainvoke(
        {"operation": "emit", "traceparent": TRACEPARENT, "tracestate": "vendor=abc,bad key=1"}
    )
    (error,) = state["errors"]
    assert error.startswith("context_manager: invalid tracestate 'vendor=abc,bad key=1': ")
    assert "whole tracestate was discarded, the traceparent kept" in error
    assert state["trace_context"]["trace_id"] == REMOTE_TRACE
    assert state["trace_context"]["tracestate"] is None


async def test_graph__second_query__served_from_cache_until_a_batch_is_written(
    wiring: Wiring,
) -> None:
    graph = build_observability_graph(wiring.processor, wiring.service)
    await graph.ainvoke({"operation": "emit", "spans": sample_spans()})
    query = {"operation": "query_metrics", "time_window": "1h"}
    first = (await graph.ainvoke(query))["quality_metrics"]
    assert (wiring.cache.stats().hits, wiring.cache.stats().misses) == (0, 1)

    # written behind the processor's back: no invalidation, so the cached answer stays
    await wiring.repository.insert_spans_batch([make_span("gap_analyzer", 999.0)])
    second = (await graph.ainvoke(query))["quality_metrics"]
    assert second == first
    assert wiring.cache.stats().hits == 1

    # a batch through the processor invalidates: the next answer counts every stored span
    await graph.ainvoke({"operation": "emit", "spans": [make_span("causal_impact", 5.0)]})
    assert wiring.cache.stats().invalidations == 2
    third = (await graph.ainvoke(query))["quality_metrics"]
    stored = await stored_spans(wiring.repository)
    assert dumped({"m": third}) == {
        "m": approx_tree(expected_metrics(stored, "1h", timedelta(hours=1)).model_dump())
    }
    assert third.total_spans == first.total_spans + 2


async def test_graph__bad_inputs__land_in_errors_and_good_spans_are_kept(
    wiring: Wiring,
) -> None:
    graph = build_observability_graph(wiring.processor, wiring.service)
    good = make_span("gap_analyzer", 12.0)
    state = await graph.ainvoke(
        {
            "operation": "emit_and_query",
            "spans": [{"agent_name": "x"}, good, "not a span"],
            "time_window": "24 hours",
            "traceparent": "00-zz-bad",
        }
    )
    assert dumped(state) == {
        "trace_context": local_context(),
        "emission_result": EmissionResult(
            submitted=1, rejected=2, per_sink={"database": 1}, flushed=True
        ).model_dump(),
        "errors": [
            "context_manager: invalid traceparent '00-zz-bad': expected "
            "'00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>' (W3C Trace Context); "
            "started a new trace",
            "span_emitter: spans[0] rejected: operation_name: Field required; "
            "start_time: Field required",
            "span_emitter: spans[2] rejected: expected an ObservabilitySpan or a dict, got str",
            "metrics_aggregator: invalid time window '24 hours': expected <n>m, <n>h or <n>d "
            "with n a positive integer (e.g. 15m, 1h, 24h, 7d)",
        ],
    }
    assert [s.span_id for s in await stored_spans(wiring.repository)] == [good.span_id]


async def test_graph__emit_with_a_span_no_store_holds__rest_stored_and_the_refusal_reported(
    wiring: Wiring,
) -> None:
    """Issue 11 item 1: 21 spans, one with a token count no store can hold (put in without
    validation): the database got 0 while `emit` reported errors=[]. Now the store's refusal is
    isolated to that span, the 20 others are stored, and the emission says so."""
    graph = build_observability_graph(wiring.processor, wiring.service)
    spans = [make_span("gap_analyzer", 10.0 + i) for i in range(21)]
    spans[10] = spans[10].model_copy(update={"input_tokens": 10**30})

    state = await graph.ainvoke({"operation": "emit", "spans": spans})

    stored = await stored_spans(wiring.repository)
    assert sorted(s.span_id for s in stored) == sorted(
        s.span_id for i, s in enumerate(spans) if i != 10
    )
    result = state["emission_result"]
    assert (result.submitted, result.rejected, result.per_sink) == (21, 1, {"database": 20})
    (error,) = state["errors"]
    assert "1 span(s) refused for good by a sink (kept in the spool's rejected/)" in error


@pytest.mark.parametrize("operation", ["delete_everything", None])
async def test_graph__unknown_or_missing_operation__error_and_nothing_done(
    wiring: Wiring, operation: str | None
) -> None:
    graph = build_observability_graph(wiring.processor, wiring.service)
    state = await graph.ainvoke({"operation": operation, "spans": [make_span("a", 1.0)]})
    assert dumped(state) == {
        "trace_context": local_context(),
        "errors": [
            f"operation: {operation!r} is not supported; "
            "accepted: emit, query_metrics, emit_and_query"
        ],
    }
    assert await stored_spans(wiring.repository) == []
    assert wiring.processor.stats().submitted == 0


async def test_graph__checkpointed_thread__spans_of_earlier_runs_not_emitted_again(
    wiring: Wiring, caplog: pytest.LogCaptureFixture
) -> None:
    saver = InMemorySaver(
        serde=JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_ALLOWED_TYPES)
    )
    graph = build_observability_graph(wiring.processor, wiring.service, checkpointer=saver)
    config = {"configurable": {"thread_id": "run-1"}}
    caplog.set_level(logging.WARNING)
    first = await graph.ainvoke({"operation": "emit", "spans": sample_spans()[:2]}, config)
    second = await graph.ainvoke({"operation": "emit", "spans": sample_spans()[:1]}, config)
    assert first["emission_result"].submitted == 2
    assert second["emission_result"] == EmissionResult(
        submitted=1, per_sink={"database": 1}, flushed=True
    )
    assert (await graph.aget_state(config)).values["spans"] == []
    assert len(await stored_spans(wiring.repository)) == 3
    assert "unregistered type" not in caplog.text


# ------------------------------------------------------------------ embedded in a parent graph


class ParentState(TypedDict, total=False):
    """A parent sharing the graph's keys, with plain `operator.add` reducers of its own."""

    operation: str
    spans: Annotated[list[Any], operator.add]
    time_window: str
    errors: Annotated[list[str], operator.add]
    trace_context: dict[str, Any]
    emission_result: EmissionResult
    quality_metrics: QualityMetrics
    steps: Annotated[list[str], operator.add]


async def test_graph__as_subgraph_node__parent_state_has_each_span_and_error_once(
    wiring: Wiring,
) -> None:
    spans = sample_spans()

    def plan(state: ParentState) -> dict[str, Any]:
        return {"spans": spans, "errors": ["plan: used a fallback model"], "steps": ["plan"]}

    def report(state: ParentState) -> dict[str, Any]:
        return {"steps": [f"report:{state['quality_metrics'].total_spans}"]}

    builder = StateGraph(ParentState)
    builder.add_node("plan", plan)
    builder.add_node("observability", build_observability_graph(wiring.processor, wiring.service))
    builder.add_node("report", report)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "observability")
    builder.add_edge("observability", "report")
    builder.add_edge("report", END)
    parent = builder.compile()

    state = await parent.ainvoke({"operation": "emit_and_query", "time_window": "1h"})
    stored = await stored_spans(wiring.repository)
    assert dumped(state) == {
        "operation": "emit_and_query",
        "time_window": "1h",
        "spans": spans,
        "errors": ["plan: used a fallback model"],
        "steps": ["plan", "report:5"],
        "trace_context": local_context(),
        "emission_result": EmissionResult(
            submitted=6, per_sink={"database": 6}, flushed=True
        ).model_dump(),
        "quality_metrics": approx_tree(
            expected_metrics(stored, "1h", timedelta(hours=1)).model_dump()
        ),
    }
    assert len(stored) == 6
    assert wiring.processor.stats().submitted == 6


def test_graph__as_subgraph_node_with_bad_input__parent_completes_with_errors(
    wiring: Wiring,
) -> None:
    builder = StateGraph(ParentState)
    builder.add_node("observability", build_observability_graph(wiring.processor, wiring.service))
    builder.add_node("after", lambda state: {"steps": ["after"]})
    builder.add_edge(START, "observability")
    builder.add_edge("observability", "after")
    builder.add_edge("after", END)
    parent = builder.compile()

    state = parent.invoke(
        {"operation": "query_metrics", "time_window": "yesterday", "errors": ["earlier"]}
    )
    assert dumped(state) == {
        "operation": "query_metrics",
        "time_window": "yesterday",
        "spans": [],
        "errors": [
            "earlier",
            "metrics_aggregator: invalid time window 'yesterday': expected <n>m, <n>h or <n>d "
            "with n a positive integer (e.g. 15m, 1h, 24h, 7d)",
        ],
        "steps": ["after"],
        "trace_context": local_context(),
    }


class OrchestratorState(TypedDict, total=False):
    window: str
    health: dict[str, Any]


async def test_graph__called_from_a_parent_node_with_its_own_input__returns_metrics(
    wiring: Wiring,
) -> None:
    observability = build_observability_graph(wiring.processor, wiring.service)
    await observability.ainvoke({"operation": "emit", "spans": sample_spans()})

    async def check_health(state: OrchestratorState) -> dict[str, Any]:
        result = await observability.ainvoke(
            {"operation": "query_metrics", "time_window": state["window"]}
        )
        if result.get("errors"):
            return {"health": {"ok": False, "errors": result["errors"]}}
        metrics = result["quality_metrics"]
        return {"health": {"ok": metrics.error_rate < 0.5, "metrics": metrics}}

    builder = StateGraph(OrchestratorState)
    builder.add_node("check_health", check_health)
    builder.add_edge(START, "check_health")
    builder.add_edge("check_health", END)
    parent = builder.compile()

    good = await parent.ainvoke({"window": "1h"})
    stored = await stored_spans(wiring.repository)
    good["health"] = dumped(good["health"])
    assert good == {
        "window": "1h",
        "health": {
            "ok": True,
            "metrics": approx_tree(expected_metrics(stored, "1h", timedelta(hours=1)).model_dump()),
        },
    }
    bad = await parent.ainvoke({"window": "0h"})
    assert bad == {
        "window": "0h",
        "health": {
            "ok": False,
            "errors": [
                "metrics_aggregator: invalid time window '0h': expected <n>m, <n>h or <n>d "
                "with n a positive integer (e.g. 15m, 1h, 24h, 7d)"
            ],
        },
    }


@pytest.fixture
def default_connector_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A config file for the process-default connector: SQLite in tmp_path, Opik off."""
    path = tmp_path / "observability.yaml"
    path.write_text(
        "opik:\n  enabled: false\n"
        f"storage:\n  backend: sqlite\n  sqlite_path: {tmp_path / 'default.db'}\n"
        f"  spool_dir: {tmp_path / 'spool'}\n",
        encoding="utf-8",
    )
    for name in ("E2I_OBS_DATABASE_URL", "SUPABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    yield path
    reset_opik_connector(10.0)


def test_build_observability_graph__no_connector__default_connector_built_on_first_use(
    default_connector_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The configuration is read when a run first needs the connector, not at build time."""
    graph = build_observability_graph()
    monkeypatch.setenv("E2I_OBS_CONFIG", str(default_connector_config))
    start = datetime.now(UTC) - timedelta(minutes=2)
    spans = [
        {
            "operation_name": "classify",
            "agent_name": "orchestrator",
            "start_time": start,
            "end_time": start + timedelta(milliseconds=ms),
        }
        for ms in (20, 40)
    ]
    state = graph.invoke({"operation": "emit_and_query", "spans": spans, "time_window": "1h"})
    assert state["errors"] == []
    assert state["emission_result"] == EmissionResult(
        submitted=2, per_sink={"database": 2}, circuit_state="disabled", flushed=True
    )
    metrics = state["quality_metrics"]
    assert (metrics.total_spans, metrics.agents["orchestrator"].max_ms) == (2, 40.0)


def test_build_observability_graph__emitter_without_repository_or_service__type_error(
    wiring: Wiring,
) -> None:
    with pytest.raises(TypeError, match="metrics_service is required: BatchProcessor"):
        build_observability_graph(wiring.processor)


# ------------------------------------------------------------------ regressions


class LoopState(TypedDict, total=False):
    """A parent that keeps every span it produced (plain `operator.add`) and loops."""

    operation: str
    spans: Annotated[list[Any], operator.add]
    emission_result: EmissionResult
    errors: Annotated[list[str], operator.add]
    rounds: int
    results: Annotated[list[int], operator.add]


async def test_graph__subgraph_in_a_parent_loop__each_produced_span_submitted_once(
    wiring: Wiring,
) -> None:
    """The output schema has no `spans`, so the parent hands back every earlier span each
    round; the emitter must not submit them again (3 produced: 3 submitted, not 6)."""
    produced = [make_span("looper", 10.0 * n) for n in (1, 2, 3)]

    def produce(state: LoopState) -> dict[str, Any]:
        return {"spans": [produced[state.get("rounds", 0)]], "rounds": state.get("rounds", 0) + 1}

    def record(state: LoopState) -> dict[str, Any]:
        return {"results": [state["emission_result"].submitted]}

    builder = StateGraph(LoopState)
    builder.add_node("produce", produce)
    builder.add_node("observability", build_observability_graph(wiring.processor, wiring.service))
    builder.add_node("record", record)
    builder.add_edge(START, "produce")
    builder.add_edge("produce", "observability")
    builder.add_edge("observability", "record")
    builder.add_conditional_edges("record", lambda s: "produce" if s["rounds"] < 3 else END)
    parent = builder.compile()

    state = await parent.ainvoke({"operation": "emit"})
    assert (state["results"], state["errors"], state["spans"]) == ([1, 1, 1], [], produced)
    assert wiring.processor.stats().submitted == 3
    stored = await stored_spans(wiring.repository)
    assert sorted(s.span_id for s in stored) == sorted(s.span_id for s in produced)


@dataclass
class ConnectorWithoutService:
    """A connector as `build_observability_graph` accepts it: submit/flush, a repository and
    a config, but no metrics service or cache of its own."""

    processor: BatchProcessor
    repository: SpanRepository
    config: Any

    def submit(self, span: ObservabilitySpan) -> None:
        self.processor.submit(span)

    def flush(self, timeout: float | None = None) -> bool:
        return self.processor.flush(timeout)


async def test_graph__connector_without_metrics_service__repeated_queries_see_new_spans(
    wiring: Wiring, monkeypatch: pytest.MonkeyPatch
) -> None:
    from src.agents.ml_foundation.observability_connector.config import ObservabilityConfig

    monkeypatch.delenv("REDIS_URL", raising=False)
    connector = ConnectorWithoutService(wiring.processor, wiring.repository, ObservabilityConfig())
    graph = build_observability_graph(connector)
    totals = []
    for duration in (10.0, 20.0, 30.0):
        state = await graph.ainvoke(
            {
                "operation": "emit_and_query",
                "spans": [make_span("gap_analyzer", duration)],
                "time_window": "1h",
            }
        )
        assert state["errors"] == []
        totals.append(state["quality_metrics"].total_spans)
    assert totals == [1, 2, 3]


def test_graph__no_connector_and_bad_environment__emit_reports_unsent_spans_in_errors(
    default_connector_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = build_observability_graph()
    monkeypatch.setenv("E2I_OBS_CONFIG", str(default_connector_config))
    monkeypatch.setenv("E2I_OBS_DATABASE_URL", "mysql://x")
    spans = [make_span("orchestrator", 5.0), make_span("orchestrator", 7.0)]
    state = graph.invoke({"operation": "emit", "spans": spans})
    assert dumped(state) == {
        "trace_context": local_context(),
        "emission_result": EmissionResult(circuit_state="unknown").model_dump(),
        "errors": [
            Matches(
                r"span_emitter: 2 of 2 valid span\(s\) not submitted \(kept in state\): the "
                r"emitter failed \(ConfigError: E2I_OBS_DATABASE_URL: unsupported URL scheme in "
                r"'mysql://x'; .+\)"
            )
        ],
    }


def test_graph__empty_time_window__reported_not_treated_as_24h(wiring: Wiring) -> None:
    graph = build_observability_graph(wiring.processor, wiring.service)
    graph.invoke({"operation": "emit", "spans": sample_spans()})
    state = graph.invoke({"operation": "query_metrics", "time_window": ""})
    assert dumped(state) == {
        "trace_context": local_context(),
        "errors": [
            "metrics_aggregator: invalid time window '': expected <n>m, <n>h or <n>d "
            "with n a positive integer (e.g. 15m, 1h, 24h, 7d)"
        ],
    }
