"""A span being recorded (`LiveSpan`) and the scope that makes it current (`SpanScope`).

`SpanScope` is one object usable as `with` and `async with`: on entry it starts a `LiveSpan` and
makes its `TraceContext` the current one (the ContextVar of `nodes/context_manager.py`, so it
follows asyncio tasks); on exit it restores the previous context, marks the span `error` if an
exception escaped (the exception itself propagates unchanged) and hands the finished
`ObservabilitySpan` to a callback. Building or handing over the span never raises into the agent.
"""

from __future__ import annotations

import contextvars
import logging
import traceback
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

from src.agents.ml_foundation.observability_connector.callback_runs import error_outcome
from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanEvent,
    SpanKind,
    SpanStatus,
    check_token_count,
)
from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    TraceContext,
    format_tracestate,
    reset_current_context,
    set_current_context,
)
from src.agents.ml_foundation.observability_connector.usage import ProblemCounter

from .opik_mapping import TRACEBACK_ATTRIBUTE, json_safe

__all__ = ["LiveSpan", "SpanScope", "current_live_span"]

logger = logging.getLogger(__name__)

ERROR_MESSAGE_MAX_CHARS = 4000
TRACEBACK_MAX_CHARS = 8000
SPAN_PROBLEMS = ProblemCounter("a traced span could not be recorded", log=logger)

_CURRENT_LIVE: contextvars.ContextVar[LiveSpan | None] = contextvars.ContextVar(
    "e2i_obs_current_live_span", default=None
)


def current_live_span() -> LiveSpan | None:
    """The innermost `LiveSpan` of `trace_agent` / `trace_llm_call` in this context, if any."""
    return _CURRENT_LIVE.get()


def _check_key(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"{what} must be a non-empty string, got {key!r}")
    return key


class LiveSpan:
    """The mutable span inside a `trace_agent` / `trace_llm_call` block."""

    def __init__(
        self,
        context: TraceContext,
        parent_span_id: str | None,
        *,
        agent_name: str,
        operation_name: str,
        span_kind: SpanKind,
        start_time: datetime,
        attributes: Mapping[str, Any] | None = None,
        thread_id: str | None = None,
        clock: Callable[[], datetime],
    ) -> None:
        self.context = context
        self.parent_span_id = parent_span_id
        self.agent_name = agent_name
        self.operation_name = operation_name
        self.span_kind = span_kind
        self.start_time = start_time
        self.thread_id = thread_id
        self.attributes: dict[str, Any] = dict(attributes or {})
        self.events: list[SpanEvent] = []
        self.llm_model: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.total_tokens: int | None = None
        self.status = SpanStatus.COMPLETED
        self.error_type: str | None = None
        self.error_message: str | None = None
        self._clock = clock

    @property
    def span_id(self) -> str:
        return self.context.span_id

    @property
    def trace_id(self) -> str:
        return self.context.trace_id

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[_check_key(key, "attribute key")] = value

    def add_event(self, name: str, attrs: Mapping[str, Any] | None = None) -> None:
        """Record a point-in-time event (stored with the span in the database)."""
        _check_key(name, "event name")
        self.events.append(
            SpanEvent(name=name, timestamp=self._clock(), attributes=json_safe(dict(attrs or {})))
        )

    def set_tokens(
        self,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        total_tokens: int | None = None,
        *,
        model: str | None = None,
    ) -> None:
        """Token usage of the work in this span; a count that is not a whole number in
        0..2**31 - 1 is a ValueError naming it."""
        for field, value in (
            ("input_tokens", input_tokens),
            ("output_tokens", output_tokens),
            ("total_tokens", total_tokens),
        ):
            if value is not None:
                setattr(self, field, check_token_count(value, field))
        if model:
            self.llm_model = model

    def record_error(self, error: BaseException) -> None:
        """Mark the span as failed by `error` (LangGraph interrupts count as completed)."""
        outcome = error_outcome(error, ERROR_MESSAGE_MAX_CHARS)
        self.status = outcome["status"]
        self.error_type = outcome.get("error_type")
        self.error_message = outcome.get("error_message")
        self.attributes.update(outcome.get("attributes") or {})
        if self.status is SpanStatus.ERROR:
            text = "".join(traceback.format_exception(error))
            self.attributes[TRACEBACK_ATTRIBUTE] = text[-TRACEBACK_MAX_CHARS:]

    def finish(self, end_time: datetime) -> ObservabilitySpan:
        """The finished, validated span."""
        return ObservabilitySpan(
            span_id=self.span_id,
            trace_id=self.trace_id,
            parent_span_id=self.parent_span_id,
            operation_name=self.operation_name,
            agent_name=self.agent_name,
            span_kind=self.span_kind,
            start_time=self.start_time,
            end_time=max(end_time, self.start_time),
            status=self.status,
            error_type=self.error_type,
            error_message=self.error_message,
            attributes=json_safe(self.attributes),
            events=list(self.events),
            llm_model=self.llm_model,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            total_tokens=self.total_tokens,
            thread_id=self.thread_id,
            tracestate=format_tracestate(self.context.tracestate) or None,
        )

    def __repr__(self) -> str:
        return (
            f"LiveSpan(agent_name={self.agent_name!r}, operation_name={self.operation_name!r}, "
            f"trace_id={self.trace_id!r}, span_id={self.span_id!r})"
        )


class SpanScope:
    """`with` / `async with` scope around one `LiveSpan`; single use."""

    def __init__(
        self,
        make_span: Callable[[], LiveSpan],
        on_finish: Callable[[ObservabilitySpan], None],
        clock: Callable[[], datetime],
    ) -> None:
        self._make_span = make_span
        self._on_finish = on_finish
        self._clock = clock
        self._span: LiveSpan | None = None
        self._tokens: tuple[contextvars.Token[Any], contextvars.Token[Any]] | None = None
        self._used = False

    @property
    def span(self) -> LiveSpan | None:
        return self._span

    def __enter__(self) -> LiveSpan:
        if self._used:
            raise RuntimeError("a trace scope can be entered only once; call trace_agent() again")
        self._used = True
        span = self._make_span()
        self._span = span
        self._tokens = (set_current_context(span.context), _CURRENT_LIVE.set(span))
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span, tokens = self._span, self._tokens
        if span is None or tokens is None:
            return
        self._tokens = None
        try:
            _CURRENT_LIVE.reset(tokens[1])
            reset_current_context(tokens[0])
        except ValueError:  # exited in another context (e.g. a different task): leave it be
            SPAN_PROBLEMS.record(f"{span!r} exited outside the context it was entered in")
        try:
            if exc is not None:
                span.record_error(exc)
            self._on_finish(span.finish(self._clock()))
        except Exception as problem:  # broad on purpose: recording must never break the agent
            SPAN_PROBLEMS.record(f"{span!r}: {type(problem).__name__}: {problem}")

    async def __aenter__(self) -> LiveSpan:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
