"""The reference orchestrator end to end on real parts: LangGraph graphs, the demo chat model
(a langchain-core BaseChatModel carrying usage_metadata), the connector's batch processor
writing to a real SQLite file or a real PostgreSQL server, and the real opik SDK talking to
the loopback Opik server.

Expected values come from independent sources: tokens and failures from the model's own
ledger, error rates and thresholds recomputed from the stored spans.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from src.agents.ml_foundation.observability_connector.agent import ObservabilityConnectorAgent
from src.agents.ml_foundation.observability_connector.config import (
    ObservabilityConfig,
    load_config,
)
from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    QualityMetrics,
    SpanKind,
    SpanStatus,
)
from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    opik_span_uuid_for,
    opik_trace_uuid,
)
from src.reference_orchestrator.fake_llm import UsageLedger, build_demo_chat_model
from src.reference_orchestrator.graph import build_orchestrator_graph
from src.reference_orchestrator.health import OrchestratorSettings
from src.reference_orchestrator.runner import OrchestratorReport, run_orchestrator

DOMAIN_AGENTS = {"causal_impact", "gap_analyzer", "explainer"}
OBS_NODES = {"context_manager", "span_emitter", "metrics_aggregator"}
REQUESTS = [f"Why did NRx move in territory {i}?" for i in range(8)]


def make_config(tmp_path: Path, storage: dict[str, Any], **opik: Any) -> ObservabilityConfig:
    return load_config(
        env={},
        overrides={
            "storage": {"spool_dir": str(tmp_path / "spool"), **storage},
            "opik": {"enabled": False, **opik},
            "batching": {"max_batch_wait_seconds": 0.05},
        },
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> ObservabilityConfig:
    if request.param == "sqlite":
        return make_config(tmp_path, {"backend": "sqlite", "sqlite_path": str(tmp_path / "o.db")})
    dsn = request.getfixturevalue("pg_dsn")
    return make_config(tmp_path, {"backend": "postgres", "url": dsn})


@dataclass
class Run:
    report: OrchestratorReport
    ledger: UsageLedger
    traces: dict[str, list[ObservabilitySpan]]
    """Stored spans of each request's trace id."""

    @property
    def spans(self) -> list[ObservabilitySpan]:
        return [s for spans in self.traces.values() for s in spans]


async def run(
    config: ObservabilityConfig,
    *,
    failure_rate: float = 0.0,
    seed: int = 11,
    settings: OrchestratorSettings | None = None,
    requests: list[str] = REQUESTS,
    concurrency: int = 3,
) -> Run:
    ledger = UsageLedger()
    llm = build_demo_chat_model("demo-gpt", 0.005, failure_rate, seed, usage=ledger)
    async with ObservabilityConnectorAgent(config) as obs:
        report = await run_orchestrator(obs, llm, requests, concurrency, settings)
        traces = {t: await obs.repository.get_spans_by_trace(t) for t in report.trace_ids}
    return Run(report, ledger, traces)


def root_of(spans: list[ObservabilitySpan]) -> ObservabilitySpan:
    roots = [s for s in spans if s.parent_span_id is None]
    assert len(roots) == 1, [(s.agent_name, s.operation_name) for s in roots]
    return roots[0]


def ancestors(span: ObservabilitySpan, by_id: dict[str, ObservabilitySpan]) -> list[str]:
    """Operation names from the span's parent up to the root (fails on a broken chain)."""
    names = []
    while span.parent_span_id is not None:
        span = by_id[span.parent_span_id]
        names.append(span.operation_name)
    return names


def per_agent_counts(spans: list[ObservabilitySpan]) -> dict[str, tuple[int, int]]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for span in spans:
        counts[span.agent_name][0] += 1
        counts[span.agent_name][1] += span.status is SpanStatus.ERROR
    return {agent: (n, errors) for agent, (n, errors) in counts.items()}


def assert_tokens_match_ledger(run_: Run, metrics: QualityMetrics | None) -> None:
    totals = run_.ledger.totals()
    llm_spans = [s for s in run_.spans if s.span_kind is SpanKind.LLM]
    assert len(llm_spans) == totals["calls"]
    for field in ("input_tokens", "output_tokens", "total_tokens"):
        assert sum(getattr(s, field) or 0 for s in llm_spans) == totals[field], field
        assert metrics is not None and getattr(metrics, field) == totals[field], field


async def test_run_orchestrator__healthy_requests__one_trace_each_covering_every_part(
    config: ObservabilityConfig,
) -> None:
    result = await run(config)
    report = result.report

    assert [r.status for r in report.results] == ["ok"] * len(REQUESTS)
    assert len(set(report.trace_ids)) == len(REQUESTS)
    assert report.flushed and report.problems == []
    for request in report.results:
        spans = result.traces[request.trace_id]
        by_id = {s.span_id: s for s in spans}
        root = root_of(spans)
        assert (root.agent_name, root.operation_name, root.span_kind) == (
            "orchestrator",
            "handle_request",
            SpanKind.AGENT,
        )
        assert all(s.trace_id == request.trace_id for s in spans)
        for span in spans:  # every span hangs off the root through stored parents
            assert span is root or ancestors(span, by_id)[-1] == "handle_request"
        children = {
            (s.agent_name, s.operation_name) for s in spans if s.parent_span_id == root.span_id
        }
        assert children >= {
            ("orchestrator", "intent_classification"),
            ("orchestrator", "synthesis"),
            ("orchestrator", "request_outcome"),
            *((agent, agent) for agent in request.routed_agents),
        }
        assert request.routed_agents and set(request.routed_agents) <= DOMAIN_AGENTS
        domain = {s.agent_name for s in spans if s.agent_name in DOMAIN_AGENTS}
        assert domain == set(request.routed_agents)
        for agent in request.routed_agents:
            agent_span = next(
                s for s in spans if (s.agent_name, s.operation_name) == (agent, agent)
            )
            assert agent_span.span_kind is SpanKind.AGENT
            llm = [s for s in spans if s.agent_name == agent and s.span_kind is SpanKind.LLM]
            assert len(llm) == 1 and agent in ancestors(llm[0], by_id)
        llm_parents = Counter(
            by_id[s.parent_span_id].operation_name
            for s in spans
            if s.agent_name == "orchestrator" and s.span_kind is SpanKind.LLM
        )
        assert llm_parents == {"intent_classification": 1, "synthesis": 1}
        obs_ops = {s.operation_name for s in spans if s.agent_name == "observability_connector"}
        assert obs_ops >= OBS_NODES | {"observability_connector"}
        assert request.errors == ()

    assert_tokens_match_ledger(result, report.metrics)
    assert report.metrics is not None
    assert report.metrics.total_spans == len(result.spans)
    assert report.metrics.error_count == 0


async def test_run_orchestrator__injected_llm_failures__error_spans_error_rates_and_run_continues(
    config: ObservabilityConfig,
) -> None:
    result = await run(config, failure_rate=0.3, seed=5)
    report, spans = result.report, result.spans
    failures = result.ledger.totals()["failures"]
    assert failures > 0  # seeded: the same calls fail on every run

    llm_errors = [s for s in spans if s.span_kind is SpanKind.LLM and s.is_error]
    assert len(llm_errors) == failures
    assert {s.error_type for s in llm_errors} == {"InjectedLLMFailure"}
    assert len(report.results) == len(REQUESTS)  # no failure stopped the run
    for request in report.results:
        root = root_of(result.traces[request.trace_id])
        assert (root.status is SpanStatus.ERROR) == (request.status == "failed")
        if request.status == "failed":
            assert root.error_type == "InjectedLLMFailure"
            assert request.error and request.error.startswith("InjectedLLMFailure")
        for agent in request.failed_agents:
            agent_span = next(
                s for s in result.traces[request.trace_id] if s.operation_name == agent
            )
            assert agent_span.status is SpanStatus.ERROR
    assert report.failed + report.degraded > 0

    metrics = report.metrics
    assert metrics is not None
    expected = per_agent_counts(spans)
    assert {a: (s.count, s.error_count) for a, s in metrics.agents.items()} == expected
    for agent, stats in metrics.agents.items():
        count, errors = expected[agent]
        assert stats.error_rate == pytest.approx(errors / count)
    assert metrics.error_count == len([s for s in spans if s.is_error]) > 0
    assert_tokens_match_ledger(result, metrics)


async def test_run_orchestrator__agents_over_thresholds__health_check_flags_exactly_them(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path, {"backend": "sqlite", "sqlite_path": str(tmp_path / "o.db")})
    settings = OrchestratorSettings(
        p95_threshold_ms=1e9, error_rate_threshold=0.05, metrics_window="15m"
    )
    result = await run(config, failure_rate=0.3, seed=5, settings=settings)

    counts = per_agent_counts(result.spans)
    expected = {agent for agent, (n, errors) in counts.items() if errors / n > 0.05}
    assert expected and expected != set(counts)  # some agents over the line, some not
    alerts = result.report.alerts
    assert {a.agent_name for a in alerts} == expected
    for alert in alerts:
        assert alert.reasons == (f"error rate {alert.error_rate:.1%} > 5.0%",)


async def test_orchestrator_graph__p95_threshold_zero__in_graph_health_flags_agents_seen(
    tmp_path: Path,
) -> None:
    """The health_check node reads the metrics the observability subgraph put in state: those
    of the spans flushed while the request ran, i.e. all but the still-open root span."""
    config = make_config(tmp_path, {"backend": "sqlite", "sqlite_path": str(tmp_path / "o.db")})
    settings = OrchestratorSettings(p95_threshold_ms=0.0, error_rate_threshold=1.0)
    result = await run(config, settings=settings, requests=REQUESTS[:1], concurrency=1)

    (request,) = result.report.results
    flagged = {"orchestrator", "observability_connector", *request.routed_agents}
    assert {a.agent_name for a in request.alerts} == flagged
    assert all(a.reasons == (f"p95 {a.p95_ms:.1f} ms > 0.0 ms",) for a in request.alerts)
    in_graph = {a.agent_name: a.count for a in request.alerts}
    stored = per_agent_counts(result.spans)
    assert in_graph["orchestrator"] == stored["orchestrator"][0] - 1  # handle_request
    for agent in request.routed_agents:
        assert in_graph[agent] == stored[agent][0]
    assert {a.agent_name for a in result.report.alerts} == flagged


async def test_run_orchestrator__opik_sink_enabled__trace_trees_arrive_in_opik(
    tmp_path: Path, opik_server: Any
) -> None:
    config = make_config(
        tmp_path,
        {"backend": "sqlite", "sqlite_path": str(tmp_path / "o.db")},
        enabled=True,
        url_override=opik_server.base_url,
    )
    result = await run(config, requests=REQUESTS[:3])

    received = {s["id"]: s for s in opik_server.received_spans()}
    traces = opik_server.received_traces()
    for trace_id, spans in result.traces.items():
        opik_trace = opik_trace_uuid(trace_id)
        expected = {
            opik_span_uuid_for(trace_id, s.span_id): (
                opik_span_uuid_for(trace_id, s.parent_span_id) if s.parent_span_id else None,
                s.operation_name,
            )
            for s in spans
        }
        arrived = {
            span_id: (span.get("parent_span_id"), span["name"])
            for span_id, span in received.items()
            if span["trace_id"] == opik_trace
        }
        assert arrived == expected
        root = root_of(spans)
        named = [t for t in traces if t["id"] == opik_trace and t["name"] == "handle_request"]
        assert named and named[0]["metadata"]["root_span_id"] == root.span_id
    assert len({t["id"] for t in traces}) == len(result.traces)


async def test_orchestrator_graph__only_a_remote_traceparent__its_nodes_join_the_remote_trace(
    tmp_path: Path,
) -> None:
    """No current span (a caller in another process sent a header): the orchestrator's and
    the domain agents' spans still land under the remote parent, through `traceparent`."""
    remote_trace, remote_parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    config = make_config(tmp_path, {"backend": "sqlite", "sqlite_path": str(tmp_path / "o.db")})
    llm = build_demo_chat_model("demo-gpt", 0.005, 0.0, 3)
    async with ObservabilityConnectorAgent(config) as obs:
        graph = build_orchestrator_graph(obs, llm)
        state = await graph.ainvoke(
            {"request": "Why?", "traceparent": f"00-{remote_trace}-{remote_parent}-01"}
        )
        assert obs.flush(30)
        spans = await obs.repository.get_spans_by_trace(remote_trace)

    by_id = {s.span_id: s for s in spans}
    top = {s.operation_name for s in spans if s.parent_span_id == remote_parent}
    assert top == {
        "intent_classification",
        "synthesis",
        "request_outcome",
        *state["intent"],
    }
    assert all(s.parent_span_id in by_id for s in spans if s.parent_span_id != remote_parent)
    assert {s.agent_name for s in spans} >= {"orchestrator", *state["intent"]}
    assert state["trace_context"]["trace_id"] == remote_trace
