"""`build_orchestrator_graph()`: the reference orchestrator as a LangGraph `StateGraph`.

    START -> intent_classifier -(Send)-> causal_impact | gap_analyzer | explainer
          -> synthesizer -> record_outcome -> observability -> health_check -> END

All three ways into the observability connector, in one request:
- intent_classifier and synthesizer trace themselves explicitly (`trace_agent` around
  `trace_llm_call`, the seed plan's pattern);
- the domain agents are compiled graphs with no tracing code, run with the connector's
  callback handler;
- the observability graph itself is a node (it shares this graph's keys, see state.py): it
  emits the request's outcome span, flushes, and writes window metrics into `quality_metrics`,
  which health_check compares with the `OrchestratorSettings` thresholds.

One request is one trace. The caller opens the root span (`Orchestrator.handle` in runner.py)
and runs the graph inside it, passing the span's W3C `traceparent` in the state. The current
span (a contextvar) follows LangGraph's tasks into every node and into the domain agents' runs;
the nodes written here also join `traceparent` explicitly, so a caller holding only a header
(another process) still gets the orchestrator's and domain agents' spans in its trace. The
observability node's own spans come from a callback handler, which follows the current span
only: run the graph inside the root span, as `Orchestrator.handle` does.

A failing domain agent degrades the answer (its result says why); a failing classifier or
synthesizer fails the run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send

from src.agents.ml_foundation.observability_connector.agent import ObservabilityConnectorAgent
from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    current_context,
    new_span_id,
    parse_traceparent,
    use_context,
)

from .domain_agents import DEFAULT_DOMAIN_AGENTS, DomainAgentSpec, build_domain_agent
from .health import OrchestratorSettings, check_health
from .state import AgentResult, DomainTask, OrchestratorState

__all__ = ["ORCHESTRATOR", "build_orchestrator_graph", "joined_request_context", "model_name_of"]

ORCHESTRATOR = "orchestrator"
OBSERVABILITY_AGENT = "observability_connector"


def model_name_of(llm: BaseChatModel) -> str:
    """The model's name as providers spell it (`model_name` or `model`), else its class."""
    for attribute in ("model_name", "model"):
        value = getattr(llm, attribute, None)
        if isinstance(value, str) and value:
            return value
    return type(llm).__name__


@contextmanager
def joined_request_context(state: Mapping[str, Any]) -> Iterator[None]:
    """Make the request's root span (state `traceparent`) the current span in this block.

    When the current context already is that span (contextvars followed the task), it is
    kept as is, with its tracestate; without a valid `traceparent` nothing changes.
    """
    ctx = parse_traceparent(state.get("traceparent"))
    current = current_context()
    if ctx is None or (
        current is not None and (current.trace_id, current.span_id) == (ctx.trace_id, ctx.span_id)
    ):
        yield
        return
    with use_context(ctx):
        yield


def _classification_prompt(request: str, agents: Sequence[str]) -> str:
    return (
        "Route this analytics request to the agents that should work on it.\n"
        f"Request: {request}\n"
        f"Choices: {', '.join(agents)}\n"
        "Reply with the chosen agent names, comma-separated."
    )


def _synthesis_prompt(request: str, results: Sequence[AgentResult]) -> str:
    lines = [f"Answer the request from the agents' findings.\nRequest: {request}"]
    for result in results:
        lines.append(f"- {result.finding}" if result.ok else f"- {result.agent_name}: no answer")
    return "\n".join(lines)


def _parse_agents(text: str, agents: Sequence[str]) -> list[str]:
    named = {part.strip() for part in text.replace("\n", ",").split(",")}
    return [name for name in agents if name in named]


def build_orchestrator_graph(
    obs: ObservabilityConnectorAgent,
    llm: BaseChatModel,
    settings: OrchestratorSettings | None = None,
    *,
    domain_agents: Sequence[DomainAgentSpec] = DEFAULT_DOMAIN_AGENTS,
) -> CompiledStateGraph:
    """The compiled orchestrator graph, traced through `obs`, thinking with `llm`."""
    settings = settings or OrchestratorSettings()
    connector = obs.connector
    model = model_name_of(llm)
    names = [spec.name for spec in domain_agents]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"domain_agents must be non-empty with unique names, got {names!r}")
    fallback = "explainer" if "explainer" in names else names[0]

    async def intent_classifier(state: OrchestratorState) -> dict[str, Any]:
        prompt = _classification_prompt(state["request"], names)
        meta = {"request_id": state.get("request_id")}
        with joined_request_context(state):
            async with connector.trace_agent(
                ORCHESTRATOR, "intent_classification", metadata=meta
            ) as span:
                response = await connector.trace_llm_call(
                    model=model,
                    prompt=prompt,
                    parent_span_id=span.span_id,
                    llm_call=lambda: llm.ainvoke(prompt),
                )
                intent = _parse_agents(str(response.content), names) or [fallback]
                span.set_attribute("routed_agents", intent)
        return {"intent": intent}

    def dispatch(state: OrchestratorState) -> list[Send]:
        task_of = {"request": state["request"], "request_id": state.get("request_id", "")}
        task_of["traceparent"] = state.get("traceparent")
        return [Send(name, dict(task_of)) for name in state["intent"]]

    async def synthesizer(state: OrchestratorState) -> dict[str, Any]:
        results = sorted(state.get("agent_results", []), key=lambda r: names.index(r.agent_name))
        prompt = _synthesis_prompt(state["request"], results)
        meta = {"request_id": state.get("request_id")}
        with joined_request_context(state):
            async with connector.trace_agent(ORCHESTRATOR, "synthesis", metadata=meta) as span:
                response = await connector.trace_llm_call(
                    model=model,
                    prompt=prompt,
                    parent_span_id=span.span_id,
                    llm_call=lambda: llm.ainvoke(prompt),
                )
        return {"answer": str(response.content)}

    def record_outcome(state: OrchestratorState) -> dict[str, Any]:
        """Hand the observability node this request's outcome span (it emits and flushes)."""
        results = state.get("agent_results", [])
        now = datetime.now(UTC)
        span: dict[str, Any] = {
            "span_id": new_span_id(),
            "operation_name": "request_outcome",
            "agent_name": ORCHESTRATOR,
            "span_kind": "chain",
            "start_time": now,
            "end_time": now,
            "attributes": {
                "request_id": state.get("request_id"),
                "routed_agents": list(state.get("intent", [])),
                "failed_agents": [r.agent_name for r in results if not r.ok],
                "answer_chars": len(state.get("answer", "")),
            },
        }
        ctx = parse_traceparent(state.get("traceparent"))
        if ctx is not None:
            span.update(trace_id=ctx.trace_id, parent_span_id=ctx.span_id)
        return {
            "operation": "emit_and_query",
            "time_window": settings.metrics_window,
            "spans": [span],
        }

    def health_check(state: OrchestratorState) -> dict[str, Any]:
        return {"health": check_health(state.get("quality_metrics"), settings)}

    builder = StateGraph(OrchestratorState)
    builder.add_node("intent_classifier", intent_classifier)
    for spec in domain_agents:
        handler = obs.callback_handler(spec.name)
        builder.add_node(spec.name, _domain_node(spec, build_domain_agent(spec, llm), handler))
        builder.add_edge(spec.name, "synthesizer")
    builder.add_node("synthesizer", synthesizer)
    builder.add_node("record_outcome", record_outcome)
    obs_handler = obs.callback_handler(OBSERVABILITY_AGENT)
    builder.add_node(OBSERVABILITY_AGENT, obs.graph.with_config(callbacks=[obs_handler]))
    builder.add_node("health_check", health_check)
    builder.add_edge(START, "intent_classifier")
    builder.add_conditional_edges("intent_classifier", dispatch, names)
    builder.add_edge("synthesizer", "record_outcome")
    builder.add_edge("record_outcome", OBSERVABILITY_AGENT)
    builder.add_edge(OBSERVABILITY_AGENT, "health_check")
    builder.add_edge("health_check", END)
    return builder.compile(name=ORCHESTRATOR)


@contextmanager
def _detached_from_parent_run() -> Iterator[None]:
    """Run a domain agent as a run of its own, not nested in the orchestrator's graph run.

    LangGraph merges the ambient config (the calling node's callbacks, checkpoint namespace)
    into a graph invoked inside a node. A domain agent is an agent in its own right, so its
    callback handler must see its graph as the root run (an `agent` span); the W3C context,
    joined explicitly, still puts it in the request's trace.
    """
    token = var_child_runnable_config.set(None)
    try:
        yield
    finally:
        var_child_runnable_config.reset(token)


def _domain_node(spec: DomainAgentSpec, agent: CompiledStateGraph, handler: Any) -> Any:
    """Run one domain agent under the callback handler; its failure becomes its result."""

    async def run_domain_agent(task: DomainTask) -> dict[str, Any]:
        config = {
            "callbacks": [handler],
            "run_name": spec.name,
            "metadata": {"agent_name": spec.name, "request_id": task.get("request_id")},
        }
        with joined_request_context(task), _detached_from_parent_run():
            try:
                output = await agent.ainvoke({"question": task["request"]}, config=config)
            except Exception as exc:  # broad on purpose: one agent failing degrades the answer
                error = f"{type(exc).__name__}: {exc}"
                return {
                    "agent_results": [AgentResult(spec.name, ok=False, error=error)],
                    "errors": [f"{spec.name}: {error}"],
                }
        return {"agent_results": [AgentResult(spec.name, ok=True, finding=output["finding"])]}

    run_domain_agent.__name__ = f"run_{spec.name}"
    return run_domain_agent
