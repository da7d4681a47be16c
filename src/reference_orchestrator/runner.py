"""Running the orchestrator: one root span per request, many requests concurrently.

    report = await run_orchestrator(obs, llm, ["Why did NRx drop in the West?"], concurrency=4,
                                    settings=OrchestratorSettings(p95_threshold_ms=1500))
    report.trace_ids, report.failed, report.alerts, report.metrics

`Orchestrator.handle` opens the request's root span (`trace_agent("orchestrator",
"handle_request")`) and runs the graph with that span's `traceparent` in the state, so every
span of the request, explicit or from callbacks, lands in one trace under the root. A request
whose graph raises is recorded as failed (its root span carries the error) and the run goes
on. At the end the connector is flushed and the window metrics are read back for the report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel

from src.agents.ml_foundation.observability_connector.agent import ObservabilityConnectorAgent
from src.agents.ml_foundation.observability_connector.models import QualityMetrics
from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    format_traceparent,
)

from .graph import ORCHESTRATOR, build_orchestrator_graph
from .health import AgentAlert, OrchestratorSettings, check_health

__all__ = ["Orchestrator", "OrchestratorReport", "RequestResult", "run_orchestrator"]

RequestStatus = Literal["ok", "degraded", "failed"]
DEFAULT_FLUSH_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class RequestResult:
    """One request's outcome; `trace_id` finds all its spans in the store and in Opik."""

    index: int
    request: str
    trace_id: str
    status: RequestStatus
    """ok; degraded (some domain agent failed, the answer uses the others); failed (raised)."""
    routed_agents: tuple[str, ...] = ()
    failed_agents: tuple[str, ...] = ()
    answer: str | None = None
    error: str | None = None
    alerts: tuple[AgentAlert, ...] = ()
    """health_check's alerts right after this request."""
    errors: tuple[str, ...] = ()
    """Messages the graph collected (a failed agent, an observability problem)."""
    duration_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class OrchestratorReport:
    results: list[RequestResult]
    """In request order."""
    metrics: QualityMetrics | None
    """Window metrics read after the final flush (None if they could not be read)."""
    alerts: list[AgentAlert]
    """health_check over those final metrics."""
    flushed: bool
    """Everything was delivered to the sinks within the flush timeout."""
    problems: list[str] = field(default_factory=list)

    @property
    def trace_ids(self) -> list[str]:
        return [r.trace_id for r in self.results]

    def count(self, status: RequestStatus) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def degraded(self) -> int:
        return self.count("degraded")


class Orchestrator:
    """The compiled orchestrator graph plus the root span around each request."""

    def __init__(
        self,
        obs: ObservabilityConnectorAgent,
        llm: BaseChatModel,
        settings: OrchestratorSettings | None = None,
    ) -> None:
        self.obs = obs
        self.settings = settings or OrchestratorSettings()
        self.graph = build_orchestrator_graph(obs, llm, self.settings)

    async def handle(self, request: str, index: int = 0) -> RequestResult:
        """Run one request in its own trace; never raises for a failure inside the graph."""
        if not isinstance(request, str) or not request.strip():
            raise ValueError(f"requests[{index}] must be a non-empty string, got {request!r}")
        started = time.perf_counter()
        request_id = f"req-{index}"
        meta = {"request_id": request_id}
        async with self.obs.connector.trace_agent(
            ORCHESTRATOR, "handle_request", metadata=meta
        ) as root:
            inputs = {
                "request": request,
                "request_id": request_id,
                "traceparent": format_traceparent(root.context),
            }
            try:
                state: dict[str, Any] = await self.graph.ainvoke(inputs)
            except Exception as exc:  # broad on purpose: one failed request must not stop a run
                root.record_error(exc)
                return RequestResult(
                    index,
                    request,
                    root.trace_id,
                    "failed",
                    error=f"{type(exc).__name__}: {exc}",
                    duration_ms=(time.perf_counter() - started) * 1000.0,
                )
            failed = tuple(r.agent_name for r in state.get("agent_results", []) if not r.ok)
            root.set_attribute("routed_agents", list(state.get("intent", [])))
            root.set_attribute("failed_agents", list(failed))
        return RequestResult(
            index,
            request,
            root.trace_id,
            "degraded" if failed else "ok",
            routed_agents=tuple(state.get("intent", [])),
            failed_agents=failed,
            answer=state.get("answer"),
            alerts=tuple(state.get("health", [])),
            errors=tuple(state.get("errors", [])),
            duration_ms=(time.perf_counter() - started) * 1000.0,
        )


async def run_orchestrator(
    obs: ObservabilityConnectorAgent,
    llm: BaseChatModel,
    requests: Sequence[str],
    concurrency: int = 4,
    settings: OrchestratorSettings | None = None,
    on_progress: Callable[[RequestResult], None] | None = None,
) -> OrchestratorReport:
    """Handle `requests` with at most `concurrency` in flight; flush; report with metrics."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
    if isinstance(requests, str):
        raise ValueError("requests must be a list of strings, got a single string")
    for index, request in enumerate(requests):
        if not isinstance(request, str) or not request.strip():
            raise ValueError(f"requests[{index}] must be a non-empty string, got {request!r}")
    orchestrator = Orchestrator(obs, llm, settings)
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, request: str) -> RequestResult:
        async with gate:
            result = await orchestrator.handle(request, index)
        if on_progress is not None:
            on_progress(result)
        return result

    results = await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    flushed = await asyncio.to_thread(obs.flush, DEFAULT_FLUSH_TIMEOUT_SECONDS)
    problems: list[str] = []
    metrics: QualityMetrics | None = None
    try:
        metrics = await obs.get_quality_metrics(orchestrator.settings.metrics_window)
    except Exception as exc:  # broad on purpose: the run happened; report what is missing
        problems.append(f"window metrics unavailable: {type(exc).__name__}: {exc}")
    return OrchestratorReport(
        results=list(results),
        metrics=metrics,
        alerts=check_health(metrics, orchestrator.settings),
        flushed=flushed,
        problems=problems,
    )
