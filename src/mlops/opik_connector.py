"""`OpikConnector`: explicit tracing of agent operations and LLM calls (the seed plan's API).

    opik = get_opik_connector()
    async with opik.trace_agent("orchestrator", "intent_classification") as span:
        response = await opik.trace_llm_call(model="claude-sonnet-4", prompt=prompt,
                                             llm_call=lambda: llm.ainvoke(prompt))
        opik.log_metric("routing_confidence", 0.92)

Finished spans go to `processor.submit()` (the batch processor: database + Opik sinks). Nothing
here blocks on a sink or raises because of one; misuse of the API (an empty agent name, a NaN
metric) raises `ValueError` at the call. An exception inside a block marks the span `error` and
propagates unchanged.

`log_metric` does two things: a feedback score on the trace in Opik, queued on the Opik sink and
sent after the next batch of spans (so never a blocking HTTP call in the agent, and the trace
exists first), and an event in the database: added to the current `LiveSpan` when called inside
`trace_agent`/`trace_llm_call` on the same trace, otherwise a zero-duration `chain` span named
`metric.<name>` (parented to the current span when there is one).

`get_opik_connector()` is the process default built lazily from `load_config()`; see
`opik_default.py`. `circuit_state` is the Opik breaker's state, or "disabled" without Opik.
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from src.agents.ml_foundation.observability_connector.callback_runs import UNKNOWN_AGENT
from src.agents.ml_foundation.observability_connector.config import (
    CaptureSettings,
    ObservabilityConfig,
)
from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanKind,
    check_span_id,
    check_trace_id,
    utc_now,
)
from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    SAMPLED_FLAG,
    TraceContext,
    current_context,
    new_span_id,
    new_trace_id,
    start_child,
)
from src.agents.ml_foundation.observability_connector.usage import ProblemCounter

from .live_span import SPAN_PROBLEMS, LiveSpan, SpanScope, current_live_span
from .llm_text import record_llm_response, record_prompt
from .opik_default import get_opik_connector, reset_opik_connector
from .opik_mapping import METRIC_SPAN_PREFIX
from .opik_sink import FeedbackScore, OpikSink
from .span_parents import ORPHAN_PARENT_ATTRIBUTE, SpanParents

__all__ = ["OpikConnector", "SpanProcessor", "get_opik_connector", "reset_opik_connector"]

logger = logging.getLogger(__name__)

RECENT_SPANS = 10_000
METRIC_PROBLEMS = ProblemCounter("a metric could not be queued for Opik", log=logger)


class SpanProcessor(Protocol):
    def submit(self, span: ObservabilitySpan) -> None: ...
    def flush(self, timeout: float | None = None) -> bool: ...
    def close(self, timeout: float | None = None) -> bool: ...


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


class OpikConnector:
    """Explicit spans around agent work; see the module docstring."""

    def __init__(
        self,
        processor: SpanProcessor,
        *,
        opik_sink: OpikSink | None = None,
        repository: Any = None,
        config: ObservabilityConfig | None = None,
        clock: Callable[[], datetime] | None = None,
        registry: Any = None,
        metrics_service: Any = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        """`clock` returns the aware wall time of span starts/ends (default: now in UTC).
        `registry` maps agent name -> tier (an `AgentRegistry` or a plain mapping).
        `metrics_service` answers window metrics over `repository` (its cache is invalidated by
        the processor's `on_batch_written`); the observability graph uses it.
        `on_close` releases what the factory built (sinks, repository) after the processor."""
        self.processor = processor
        self.opik_sink = opik_sink
        self.repository = repository
        self.metrics_service = metrics_service
        self.metrics_cache = getattr(metrics_service, "cache", None)
        self.config = config or ObservabilityConfig()
        self._capture: CaptureSettings = self.config.capture
        self._clock = clock or utc_now
        self._registry = registry
        self._on_close = on_close
        self._lock = threading.Lock()
        self._parents = SpanParents(RECENT_SPANS)
        self._closed = False

    # -- spans -----------------------------------------------------------------------------
    def trace_agent(
        self,
        agent_name: str,
        operation: str,
        trace_id: str | None = None,
        parent_span_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SpanScope:
        """A span around an agent operation: `with` or `async with`, yields a `LiveSpan`."""
        return self._scope(
            agent_name, operation, SpanKind.AGENT, trace_id, parent_span_id, metadata
        )

    trace_agent_sync = trace_agent  # the same object works with `with` and `async with`

    async def trace_llm_call(
        self,
        model: str,
        prompt: Any,
        llm_call: Callable[[], Any],
        parent_span_id: str | None = None,
        agent_name: str | None = None,
        operation: str = "llm_call",
        metadata: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run `llm_call()` (awaited if it returns an awaitable) in an `llm` span; return its
        response unchanged. Tokens come from the response's usage metadata."""
        scope = self._llm_scope(model, prompt, parent_span_id, agent_name, operation, metadata)
        with scope as span:
            response = llm_call()
            if inspect.isawaitable(response):
                response = await response
            record_llm_response(span, response, self._capture)
            return response

    def trace_llm_call_sync(
        self,
        model: str,
        prompt: Any,
        llm_call: Callable[[], Any],
        parent_span_id: str | None = None,
        agent_name: str | None = None,
        operation: str = "llm_call",
        metadata: Mapping[str, Any] | None = None,
    ) -> Any:
        """`trace_llm_call` for synchronous code; `llm_call` must not return an awaitable."""
        scope = self._llm_scope(model, prompt, parent_span_id, agent_name, operation, metadata)
        with scope as span:
            response = llm_call()
            if inspect.isawaitable(response):
                if inspect.iscoroutine(response):
                    response.close()
                raise TypeError("llm_call returned an awaitable: use `await trace_llm_call(...)`")
            record_llm_response(span, response, self._capture)
            return response

    def log_metric(
        self,
        name: str,
        value: float,
        trace_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """A feedback score on the trace in Opik plus an event in the database (module doc)."""
        _name(name, "metric name")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"metric {name!r}: value must be a finite number, got {value!r}")
        meta = dict(metadata or {})
        live, ctx = current_live_span(), current_context()
        if trace_id is not None:
            check_trace_id(trace_id)
        attrs = {"metric.name": name, "metric.value": value, **meta}
        if live is not None and trace_id in (None, live.trace_id):
            live.add_event(f"metric.{name}", attrs)
            trace_id = live.trace_id
        else:
            same_trace = ctx is not None and trace_id in (None, ctx.trace_id)
            parent = ctx.span_id if same_trace and ctx is not None else None
            trace_id = trace_id or (ctx.trace_id if ctx is not None else new_trace_id())
            now = self._clock()
            span = LiveSpan(
                TraceContext(trace_id, new_span_id(), SAMPLED_FLAG),
                parent,
                agent_name=str(meta.get("agent_name") or UNKNOWN_AGENT),
                operation_name=f"{METRIC_SPAN_PREFIX}{name}",
                span_kind=SpanKind.CHAIN,
                start_time=now,
                attributes=attrs,
                clock=self._clock,
            )
            self.submit(span.finish(now))
        if self.opik_sink is not None:
            try:
                reason = meta.get("reason")
                score = FeedbackScore(trace_id, name, float(value), reason=reason and str(reason))
                self.opik_sink.enqueue_feedback_score(score)
            except Exception as exc:  # broad on purpose: Opik trouble never reaches the agent
                METRIC_PROBLEMS.record(f"{name}: {type(exc).__name__}: {exc}")

    # -- plumbing --------------------------------------------------------------------------
    def submit(self, span: ObservabilitySpan) -> None:
        """Hand a finished span to the processor, filling `agent_tier` from the registry.

        The span is handed over: its tier is set in place (a copy per span cost 1.4 us on the
        callback hot path, ten times the assignment)."""
        try:
            if span.agent_tier is None:
                tier = self._tier_of(span.agent_name)
                if tier is not None:
                    span.agent_tier = tier
            self.processor.submit(span)
        except Exception as exc:  # broad on purpose: never raise into the agent
            SPAN_PROBLEMS.record(f"submit failed: {type(exc).__name__}: {exc}")

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything submitted so far (and queued Opik scores); False on timeout."""
        done = self.processor.flush(timeout)
        if self.opik_sink is not None:
            self.opik_sink.flush_feedback_scores()
        return done

    def close(self, timeout: float | None = None) -> bool:
        """Flush and stop the processor (unsent spans are spooled), then release resources."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        try:
            done = self.processor.close(timeout)
            if self.opik_sink is not None:
                self.opik_sink.flush_feedback_scores()
        finally:
            if self._on_close is not None:
                self._on_close()
        return done

    @property
    def circuit_state(self) -> str:
        return self.opik_sink.breaker.state if self.opik_sink is not None else "disabled"

    # -- internals -------------------------------------------------------------------------
    def _tier_of(self, agent_name: str) -> int | None:
        registry = self._registry
        tier = None
        if registry is not None:
            lookup = getattr(registry, "tier_of", None) or registry.get
            tier = lookup(agent_name)
        return tier if tier is not None else self.config.default_agent_tier

    def _scope(
        self,
        agent_name: str,
        operation: str,
        kind: SpanKind,
        trace_id: str | None,
        parent_span_id: str | None,
        metadata: Mapping[str, Any] | None,
        configure: Callable[[LiveSpan], None] | None = None,
    ) -> SpanScope:
        _name(agent_name, "agent_name")
        _name(operation, "operation")
        if trace_id is not None:
            check_trace_id(trace_id)
        if parent_span_id is not None:
            check_span_id(parent_span_id, "parent_span_id")
        attributes = dict(metadata or {})
        thread = attributes.get("thread_id")

        def make() -> LiveSpan:
            base, parent_id, orphan_parent = self._parents.resolve(trace_id, parent_span_id)
            attrs = attributes
            if orphan_parent is not None:  # its trace is unknown: a new trace, parent kept
                attrs = {**attributes, ORPHAN_PARENT_ATTRIBUTE: orphan_parent}
            ctx = start_child(base)
            span = LiveSpan(
                ctx,
                parent_id,
                agent_name=agent_name,
                operation_name=operation,
                span_kind=kind,
                start_time=self._clock(),
                attributes=attrs,
                thread_id=thread if isinstance(thread, str) else None,
                clock=self._clock,
            )
            self._parents.remember(ctx.span_id, ctx.trace_id)
            if configure is not None:
                configure(span)
            return span

        return SpanScope(make, self.submit, self._clock)

    def _llm_scope(
        self,
        model: str,
        prompt: Any,
        parent_span_id: str | None,
        agent_name: str | None,
        operation: str,
        metadata: Mapping[str, Any] | None,
    ) -> SpanScope:
        _name(model, "model")
        live = current_live_span()
        agent = agent_name or (live.agent_name if live is not None else UNKNOWN_AGENT)

        def configure(span: LiveSpan) -> None:
            span.llm_model = model
            if self._capture.prompts:
                record_prompt(span, prompt, self._capture.max_chars)

        return self._scope(
            agent, operation, SpanKind.LLM, None, parent_span_id, metadata, configure
        )
