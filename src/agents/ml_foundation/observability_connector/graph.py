"""`build_observability_graph()`: the observability connector as a compiled LangGraph graph.

    START -> context_manager -> span_emitter -> (metrics_aggregator if emit_and_query) -> END
                             -> metrics_aggregator                                    -> END
                             -> END (unknown operation)

Wiring only: the nodes call an emitter and a `MetricsService`. Without explicit collaborators
the Opik connector (`get_opik_connector()`) is created on the first run that needs it, never
at build time, so building the graph opens no connection and reads no file. Bad input (a bad
window, an unknown operation, a malformed traceparent, tracestate or span) becomes a message in
`errors`;
the graph does not raise into a parent graph. Input and output schemas keep `spans` from
being handed back to a parent (see state.py).

Both `invoke` and `ainvoke` work. The metrics node is async (the repository is); under the
synchronous API it runs on one private event loop owned by the graph, so loop-bound
connections (e.g. a psycopg pool) see the same loop on every synchronous call.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from .loop_thread import LoopThread
from .models import QualityMetrics
from .nodes.context_manager import (
    InvalidContextCounter,
    TraceContext,
    format_traceparent,
    format_tracestate,
    parse_traceparent,
    parse_tracestate,
    start_child,
)
from .nodes.metrics_aggregator import MetricsService, make_metrics_aggregator_node
from .nodes.span_emitter import make_span_emitter_node
from .nodes.trace_headers import KEY_GRAMMAR, MAX_TRACESTATE_MEMBERS, VALUE_GRAMMAR
from .state import OPERATIONS, ObservabilityInput, ObservabilityOutput, ObservabilityState

__all__ = ["build_observability_graph", "make_context_manager_node"]

_MAX_SHOWN_HEADER = 80


def make_context_manager_node(
    counter: InvalidContextCounter | None = None,
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """Adopt the incoming W3C context (or start a trace) and check `operation`."""

    def context_manager(state: Mapping[str, Any]) -> dict[str, Any]:
        errors: list[str] = []
        raw = state.get("traceparent")
        adopted = parse_traceparent(raw) if raw else None
        if raw and adopted is None:
            if counter is not None:
                counter.increment()
            errors.append(
                f"context_manager: invalid traceparent {_shown(raw)}: expected "
                "'00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>' (W3C Trace Context); "
                "started a new trace"
            )
        if adopted is not None:
            raw_state = state.get("tracestate")
            members = tuple(parse_tracestate(raw_state))
            if not members and _lists_members(raw_state):
                errors.append(
                    f"context_manager: invalid tracestate {_shown(raw_state)}: expected at most "
                    f"{MAX_TRACESTATE_MEMBERS} comma-separated key=value members, key: "
                    f"{KEY_GRAMMAR}; value: {VALUE_GRAMMAR} (W3C Trace Context Level 2); the "
                    "whole tracestate was discarded, the traceparent kept"
                )
            ctx = TraceContext(adopted.trace_id, adopted.span_id, adopted.trace_flags, members)
        else:
            ctx = start_child(None)  # an invalid traceparent also voids its tracestate
        operation = state.get("operation")
        if operation not in OPERATIONS:
            errors.append(
                f"operation: {operation!r} is not supported; accepted: {', '.join(OPERATIONS)}"
            )
        update: dict[str, Any] = {
            "trace_context": {
                "trace_id": ctx.trace_id,
                "span_id": ctx.span_id,
                "trace_flags": ctx.trace_flags,
                "traceparent": format_traceparent(ctx),
                "tracestate": format_tracestate(ctx.tracestate) or None,
                "remote": adopted is not None,
            }
        }
        if errors:
            update["errors"] = errors
        return update

    return context_manager


def _shown(value: object) -> str:
    return repr(value[:_MAX_SHOWN_HEADER] if isinstance(value, str) else value)


def _lists_members(tracestate: object) -> bool:
    """Whether a tracestate value has any non-empty member (an empty one is valid)."""
    if not isinstance(tracestate, str):
        return tracestate is not None
    return any(member.strip(" \t") for member in tracestate.split(","))


def _route_after_context(state: Mapping[str, Any]) -> str:
    operation = state.get("operation")
    if operation in ("emit", "emit_and_query"):
        return "span_emitter"
    if operation == "query_metrics":
        return "metrics_aggregator"
    return END


def _route_after_emit(state: Mapping[str, Any]) -> str:
    return "metrics_aggregator" if state.get("operation") == "emit_and_query" else END


class _ConnectorRef:
    """The given connector, or the process default looked up on every use (never at build
    time, and a `reset_opik_connector()` is followed rather than outlived)."""

    def __init__(self, connector: Any | None) -> None:
        self._connector = connector

    def get(self) -> Any:
        return self._connector if self._connector is not None else _default_connector()


def _default_connector() -> Any:
    from src.mlops.opik_connector import get_opik_connector  # lazily: reads config on use

    return get_opik_connector()


def _emitter_of(connector: Any) -> Any:
    """The connector itself when it batches spans, else its batch processor."""
    if callable(getattr(connector, "submit", None)) and callable(getattr(connector, "flush", None)):
        return connector
    for attribute in ("processor", "batch_processor"):
        processor = getattr(connector, attribute, None)
        if processor is not None:
            return processor
    raise TypeError(f"{type(connector).__name__} has no submit/flush and no batch processor")


def _metrics_service_of(connector: Any) -> MetricsService:
    """The connector's own service if it has one (its cache is invalidated by its batch
    processor), else one over its repository with the connector's `metrics_cache`, else one
    with no cache: a cache built here would never hear of the batches the connector writes
    (`on_batch_written`), so every answer after the first would be stale."""
    service = getattr(connector, "metrics_service", None)
    if service is not None:
        return service
    return MetricsService(connector.repository, getattr(connector, "metrics_cache", None))


class _LazyEmitter:
    def __init__(self, connector: _ConnectorRef) -> None:
        self._connector = connector

    def _target(self) -> Any:
        return _emitter_of(self._connector.get())

    def submit(self, span: Any) -> None:
        self._target().submit(span)

    def flush(self, timeout: float | None = None) -> bool:
        return bool(self._target().flush(timeout))

    def __getattr__(self, name: str) -> Any:  # sampler, stats, circuit_state when present
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._target(), name)


class _LazyMetricsService:
    """The connector's metrics service, resolved at first use (and again if it changes)."""

    def __init__(self, connector: _ConnectorRef) -> None:
        self._connector = connector
        self._built: tuple[Any, Any] | None = None  # (connector, service)
        self._lock = threading.Lock()

    def _service(self) -> Any:
        connector = self._connector.get()
        with self._lock:
            if self._built is None or self._built[0] is not connector:
                self._built = (connector, _metrics_service_of(connector))
            return self._built[1]

    async def get_quality_metrics(
        self, window: str = "24h", agent_name: str | None = None, *, exact: bool = False
    ) -> QualityMetrics:
        if exact:
            return await self._service().get_quality_metrics(window, agent_name, exact=True)
        return await self._service().get_quality_metrics(window, agent_name)


def _sync_and_async(
    name: str, afunc: Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]
) -> RunnableLambda:
    """Under the sync API the node runs on one `LoopThread` per graph (started on first use):
    the loop outlives each call, so loop-bound resources such as a psycopg pool keep their
    background tasks, and sync `invoke` works inside a running loop too. The caller's
    contextvars travel with each call; the loop stops when the graph is garbage-collected."""
    loop = LoopThread("obs-graph-loop")
    return RunnableLambda(lambda state: loop.run(lambda: afunc(state)), afunc=afunc, name=name)


def build_observability_graph(
    connector: Any | None = None,
    metrics_service: Any | None = None,
    *,
    checkpointer: Any | None = None,
    name: str = "observability_connector",
    context_counter: InvalidContextCounter | None = None,
) -> CompiledStateGraph:
    """The compiled observability graph.

    `connector`: the emitter (`submit`/`flush`, e.g. a `BatchProcessor`) or an object holding
    one (`processor`) and a `repository`; default `get_opik_connector()` on first use.
    `metrics_service`: anything with `async get_quality_metrics(window, agent_name)`; default
    a `MetricsService` over the connector's repository.
    `context_counter`: counts invalid incoming `traceparent` headers (for the self-monitor).
    """
    connector_ref = _ConnectorRef(connector)
    emitter = _LazyEmitter(connector_ref) if connector is None else _emitter_of(connector)
    if metrics_service is None:
        if connector is not None and not any(
            getattr(connector, attribute, None) is not None
            for attribute in ("metrics_service", "repository")
        ):
            raise TypeError(
                f"metrics_service is required: {type(connector).__name__} has neither "
                "`metrics_service` nor `repository` to build one from"
            )
        metrics_service = _LazyMetricsService(connector_ref)

    builder = StateGraph(
        ObservabilityState, input_schema=ObservabilityInput, output_schema=ObservabilityOutput
    )
    builder.add_node("context_manager", make_context_manager_node(context_counter))
    builder.add_node("span_emitter", make_span_emitter_node(emitter))
    builder.add_node(
        "metrics_aggregator",
        _sync_and_async("metrics_aggregator", make_metrics_aggregator_node(metrics_service)),
    )
    builder.add_edge(START, "context_manager")
    builder.add_conditional_edges(
        "context_manager", _route_after_context, ["span_emitter", "metrics_aggregator", END]
    )
    builder.add_conditional_edges("span_emitter", _route_after_emit, ["metrics_aggregator", END])
    builder.add_edge("metrics_aggregator", END)
    return builder.compile(checkpointer=checkpointer, name=name)
