"""`OpikConnector`: explicit tracing of agent operations and LLM calls (the seed plan's API,
and the calls E2I's modules already make).

    opik = get_opik_connector()                      # or OpikConnector(): the same object
    if opik and opik.is_enabled:
        async with opik.trace_agent(agent_name="causal_impact", operation="estimate",
                                    trace_id=query_id, tags=["tier_2"],
                                    input_data={"query": q}) as span:
            async with opik.trace_llm_call(model="claude-sonnet-4", provider="anthropic",
                                           parent_span_id=span.span_id) as llm:
                llm.log_tokens(input_tokens=120, output_tokens=40)
            response = await opik.trace_llm_call(model="claude-sonnet-4", prompt=prompt,
                                                 llm_call=lambda: llm_model.ainvoke(prompt))
            span.set_output({"ate": 0.12})
        opik.log_metric("routing_confidence", 0.92, trace_id=query_id)

Finished spans go to `processor.submit()` (the batch processor: database + Opik sinks). Nothing
here blocks on a sink or raises because of one; misuse of the API (an empty agent name, a NaN
metric) raises `ValueError` at the call. An exception inside a block marks the span `error` and
propagates unchanged. Ids may come in any form E2I makes them (`ids.py`: a dashed UUID is stored
as its 32 hex; free-form text maps deterministically), so no id raises into the agent.

`is_enabled` is True while the connector records spans (until `close()`); Opik being off
(`config.enabled` False) only leaves the Opik sink out, spans still reach the database.
`OpikConnector()` with no processor (E2I's singleton habit) returns the process default of
`opik_default.get_opik_connector`; tests and the factory pass their own collaborators.
`circuit_breaker` is the Opik sink's breaker, or a stand-alone one from config without Opik.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any, Protocol

from src.agents.ml_foundation.observability_connector.config import ObservabilityConfig
from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanKind,
    SpanStatus,
    utc_now,
)

from .circuit_breaker import CircuitBreaker
from .live_span import SPAN_PROBLEMS, LiveSpan, SpanScope
from .llm_span import LLMSpanContext
from .opik_config import OpikConfig, resolve_config
from .opik_default import get_opik_connector, reset_opik_connector
from .opik_mapping import SpanType
from .opik_sink import OpikSink
from .scores import ScoreRecorder
from .span_factory import SpanFactory, check_name

__all__ = [
    "LLMSpanContext",
    "OpikConfig",
    "OpikConnector",
    "SpanContext",
    "SpanProcessor",
    "SpanStatus",
    "SpanType",
    "get_opik_connector",
    "reset_opik_connector",
]

MODEL_SERVING_AGENT = "model_serving"
"""Agent name of `log_model_prediction` spans unless `metadata["agent_name"]` says otherwise."""

SpanContext = LiveSpan
"""E2I's name for the span yielded by `trace_agent` (see `LiveSpan`)."""


class SpanProcessor(Protocol):
    def submit(self, span: ObservabilitySpan) -> None: ...
    def flush(self, timeout: float | None = None) -> bool: ...
    def close(self, timeout: float | None = None) -> bool: ...


def _is_config(value: Any) -> bool:
    return isinstance(value, OpikConfig | ObservabilityConfig)


class OpikConnector:
    """Explicit spans around agent work; see the module docstring."""

    def __new__(cls, processor: Any = None, *args: Any, **kwargs: Any) -> OpikConnector:
        """`OpikConnector()`, `OpikConnector(config=..., circuit_breaker_config=...)` (or those
        two positionally): the process default, built on first use from them."""
        if processor is None or _is_config(processor):
            known = {"config", "circuit_breaker_config"}
            if set(kwargs) - known or len(args) > 1:
                raise TypeError(
                    "OpikConnector() without a processor takes only config and "
                    f"circuit_breaker_config, got {sorted(set(kwargs) - known) or args!r}"
                )
            config = processor if processor is not None else kwargs.get("config")
            breaker = args[0] if args else kwargs.get("circuit_breaker_config")
            return get_opik_connector(config, circuit_breaker_config=breaker)
        return super().__new__(cls)

    def __init__(
        self,
        processor: SpanProcessor | None = None,
        *args: Any,
        opik_sink: OpikSink | None = None,
        repository: Any = None,
        config: ObservabilityConfig | OpikConfig | None = None,
        circuit_breaker_config: Any = None,
        clock: Callable[[], datetime] | None = None,
        registry: Any = None,
        metrics_service: Any = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        """`processor` takes the finished spans; `config` an `ObservabilityConfig` (default:
        built-in defaults) or an `OpikConfig`. `clock` returns the aware wall time of span
        starts/ends. `registry` maps agent name -> tier (an `AgentRegistry` or a mapping).
        `metrics_service` answers window metrics over `repository` (the observability graph
        uses it). `on_close` releases what the factory built, after the processor.
        `circuit_breaker_config` shapes the stand-alone breaker used when there is no Opik sink.
        """
        if processor is None or _is_config(processor):
            return  # the process default from __new__, initialised when it was built
        if args:
            raise TypeError(f"OpikConnector(processor, ...) takes keyword arguments, got {args!r}")
        settings = ObservabilityConfig() if config is None else resolve_config(config)
        if circuit_breaker_config is not None:
            settings = resolve_config(settings, circuit_breaker_config)
        self.processor = processor
        self.opik_sink = opik_sink
        self.repository = repository
        self.metrics_service = metrics_service
        self.metrics_cache = getattr(metrics_service, "cache", None)
        self.settings = settings
        """The full configuration (`config` is E2I's view of it)."""
        self.config = OpikConfig.from_observability(settings)
        self._clock = clock or utc_now
        self._registry = registry
        self._on_close = on_close
        self._lock = threading.Lock()
        self._spans = SpanFactory(self.submit, self._clock, settings.capture)
        self._scores = ScoreRecorder(self.submit, opik_sink, self._clock)
        self._breaker = (
            opik_sink.breaker
            if opik_sink is not None
            else CircuitBreaker.from_settings(settings.circuit_breaker)
        )
        self._closed = False
        self.last_flush: Any = None
        """The batch processor's answer to the last `flush()` (a `FlushResult`: `.dropped` per
        sink, `.timed_out`, `.stats`), or None before the first."""

    def __copy__(self) -> OpikConnector:
        """A connector is a process resource (queue, worker, connections): copies are itself.
        (Without this, `copy` would call `__new__` with no processor: the process default.)"""
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> OpikConnector:
        return self

    # -- state -----------------------------------------------------------------------------
    @property
    def is_enabled(self) -> bool:
        """True while spans are recorded (until `close()`), with Opik on or off."""
        return not self._closed

    @property
    def circuit_breaker(self) -> CircuitBreaker:
        return self._breaker

    @property
    def circuit_state(self) -> str:
        return self.opik_sink.breaker.state if self.opik_sink is not None else "disabled"

    def get_status(self) -> dict[str, Any]:
        """Enabled flags, project, sampling, the breaker and the pipeline's counters."""
        stats = getattr(self.processor, "stats", None)
        return {
            "enabled": self.is_enabled,
            "opik_enabled": self.opik_sink is not None,
            "project_name": self.config.project_name,
            "workspace": self.config.workspace,
            "sample_rate": self.config.sample_rate,
            "circuit_state": self.circuit_state,
            "circuit_breaker": self._breaker.stats(),
            "processor": _as_dict(stats()) if callable(stats) else {},
            "opik": self.opik_sink.stats() if self.opik_sink is not None else {},
        }

    # -- spans -----------------------------------------------------------------------------
    def trace_agent(
        self,
        agent_name: str,
        operation: str,
        trace_id: Any = None,
        parent_span_id: Any = None,
        metadata: Mapping[str, Any] | None = None,
        tags: list[str] | None = None,
        input_data: Any = None,
        force_new_trace: bool = False,
    ) -> SpanScope:
        """A span around an agent operation: `with` / `async with` (or `__aenter__` by hand),
        yields a `SpanContext`. `force_new_trace`: a root span, in `trace_id` when given."""
        return self._spans.scope(
            agent_name,
            operation,
            SpanKind.AGENT,
            trace_id,
            parent_span_id,
            metadata,
            tags=tags,
            input_data=input_data,
            new_trace=force_new_trace,
        )

    trace_agent_sync = trace_agent  # the same object works with `with` and `async with`

    def trace_llm_call(
        self,
        model: str,
        prompt: Any = None,
        llm_call: Callable[[], Any] | None = None,
        parent_span_id: Any = None,
        agent_name: str | None = None,
        operation: str = "llm_call",
        metadata: Mapping[str, Any] | None = None,
        *,
        trace_id: Any = None,
        provider: str | None = None,
        prompt_template: str | None = None,
        input_data: Any = None,
        tags: list[str] | None = None,
    ) -> Any:
        """An `llm` span. With `llm_call` (the seed's form): await the result, it runs
        `llm_call()` and returns its response, tokens read from its usage metadata. Without
        (E2I's form): an async (or sync) context manager yielding an `LLMSpanContext`."""
        scope = self._spans.llm_scope(
            model, prompt, trace_id, parent_span_id, agent_name, operation, metadata,
            provider=provider, prompt_template=prompt_template, input_data=input_data, tags=tags,
        )  # fmt: skip
        return scope if llm_call is None else self._spans.run_llm(scope, llm_call)

    def trace_llm_call_sync(
        self,
        model: str,
        prompt: Any,
        llm_call: Callable[[], Any],
        parent_span_id: Any = None,
        agent_name: str | None = None,
        operation: str = "llm_call",
        metadata: Mapping[str, Any] | None = None,
        provider: str | None = None,
    ) -> Any:
        """`trace_llm_call` for synchronous code; `llm_call` must not return an awaitable."""
        scope = self._spans.llm_scope(
            model, prompt, None, parent_span_id, agent_name, operation, metadata,
            provider=provider,
        )  # fmt: skip
        return self._spans.run_llm_sync(scope, llm_call)

    # -- scores and predictions ------------------------------------------------------------
    def log_metric(
        self,
        name: str,
        value: float,
        trace_id: Any = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """A feedback score `name` on the trace in Opik plus an event with the spans
        (`scores.py`); `metadata["reason"]` becomes the score's reason."""
        self._scores.metric(name, value, trace_id, metadata)

    def log_feedback(
        self,
        trace_id: Any,
        score: float,
        feedback_type: str = "quality",
        reason: str | None = None,
    ) -> None:
        """A feedback score named `feedback_type` on the trace in Opik, and an event
        `feedback.<feedback_type>` stored with the trace's spans (`scores.py`)."""
        self._scores.feedback(trace_id, score, feedback_type, reason)

    async def log_model_prediction(
        self,
        model_name: str,
        input_data: Any,
        output_data: Any,
        metadata: Mapping[str, Any] | None = None,
        trace_id: Any = None,
    ) -> str | None:
        """A completed span `prediction.<model_name>` with the input and output (an audit
        record); a child of the current span when there is one in that trace. Returns the
        trace id: `trace_id` as given (as a str), else the trace's dashed UUID (its 32 hex is
        what is stored); None when tracing is off."""
        if not self.is_enabled:
            return None
        check_name(model_name, "model_name")
        meta = dict(metadata or {})
        agent = str(meta.pop("agent_name", None) or MODEL_SERVING_AGENT)
        meta.setdefault("model_name", model_name)
        meta.setdefault("prediction_type", "model_serving")
        scope = self.trace_agent(
            agent,
            f"prediction.{model_name}",
            trace_id=trace_id,
            metadata=meta,
            tags=["prediction", model_name, "model_serving"],
            input_data=input_data,
        )
        async with scope as span:
            span.set_output(output_data)
        given = "" if trace_id is None else str(trace_id)
        return given if given.strip() else str(uuid.UUID(span.trace_id))

    # -- plumbing --------------------------------------------------------------------------
    def submit(self, span: ObservabilitySpan) -> None:
        """Hand a finished span to the processor, filling `agent_tier` from the registry.

        The span is handed over: its tier is set in place (a copy per span cost 1.4 us on the
        callback hot path, ten times the assignment)."""
        try:
            if span.agent_tier is None:
                tier = self.tier_of(span.agent_name)
                if tier is not None:
                    span.agent_tier = tier
            self.processor.submit(span)
        except Exception as exc:  # broad on purpose: never raise into the agent
            SPAN_PROBLEMS.record(f"submit failed: {type(exc).__name__}: {exc}")

    def submit_later(self, build: Callable[[], ObservabilitySpan]) -> None:
        """Hand the processor a call that builds a span on its worker (the callback handler's
        path: it sets the tier itself); a processor without a worker gets `build()`'s span."""
        try:
            later = getattr(self.processor, "submit_later", None)
            if later is not None:
                later(build)
            else:
                self.submit(build())
        except Exception as exc:  # broad on purpose: never raise into the agent
            SPAN_PROBLEMS.record(f"submit failed: {type(exc).__name__}: {exc}")

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything submitted so far (and queued Opik scores). True only when every
        span submitted before the call is in every sink or durably spooled; False on timeout
        or when any of them was dropped. The batch processor's full answer (a `FlushResult`:
        what was dropped, per-sink counters) is kept in `last_flush`."""
        result = self.processor.flush(timeout)
        self.last_flush = result
        if self.opik_sink is not None:
            self.opik_sink.flush_feedback_scores()
        return bool(result)

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

    # -- internals -------------------------------------------------------------------------
    def tier_of(self, agent_name: str) -> int | None:
        """The tier `submit` gives a span of `agent_name` that has none: the registry's, else
        the configured default. The callback handler asks once per agent and sets it itself."""
        registry = self._registry
        tier = None
        if registry is not None:
            lookup = getattr(registry, "tier_of", None) or registry.get
            tier = lookup(agent_name)
        return tier if tier is not None else self.settings.default_agent_tier


def _as_dict(stats: Any) -> dict[str, Any]:
    if is_dataclass(stats) and not isinstance(stats, type):
        return asdict(stats)
    return dict(stats) if isinstance(stats, Mapping) else {"value": stats}
