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

from .opik_mapping import (
    COST_ATTRIBUTE,
    INPUT_ATTRIBUTE,
    OUTPUT_ATTRIBUTE,
    PROVIDER_ATTRIBUTES,
    TAGS_ATTRIBUTE,
    TRACEBACK_ATTRIBUTE,
    json_safe,
)

__all__ = ["LiveSpan", "SpanScope", "current_live_span", "span_payload"]

logger = logging.getLogger(__name__)

ERROR_MESSAGE_MAX_CHARS = 4000
TRACEBACK_MAX_CHARS = 8000
SPAN_PROBLEMS = ProblemCounter("a traced span could not be recorded", log=logger)

_CURRENT_LIVE: contextvars.ContextVar[LiveSpan | None] = contextvars.ContextVar(
    "e2i_obs_current_live_span", default=None
)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _cost(value: Any) -> float | None:
    """The caller's cost attribute as the span's `cost_usd` (checked where it was set)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if number and value >= 0 else None


def current_live_span() -> LiveSpan | None:
    """The innermost `LiveSpan` of `trace_agent` / `trace_llm_call` in this context, if any."""
    return _CURRENT_LIVE.get()


def span_payload(value: Any) -> Any:
    """What `set_input` / `set_output` store: a JSON-safe copy of the caller's value.

    The one place a span's input/output is shaped before it is stored; redaction and size
    limits (config `spans.*`) apply to the stored attributes on the way to every sink."""
    return json_safe(value)


def _check_key(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"{what} must be a non-empty string, got {key!r}")
    return key


class LiveSpan:
    """The mutable span inside a `trace_agent` / `trace_llm_call` block.

    Also E2I's `SpanContext`: `metadata` is the attributes dict itself (what a caller writes
    into it is stored), `set_input` / `set_output` / tags are stored as the attributes `input`,
    `output` and `tags` (and become Opik's fields of those names), `name`, `status`,
    `end_time` and `duration_ms` are readable after the block, `to_dict()` is E2I's shape.
    """

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
        self.status = SpanStatus.STARTED
        """`started` inside the block; `completed` or `error` once it has ended."""
        self.end_time: datetime | None = None
        self.duration_ms: float | None = None
        self.cache_read_tokens: int | None = None
        self.cache_write_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        self.error_type: str | None = None
        self.error_message: str | None = None
        self._clock = clock

    @property
    def span_id(self) -> str:
        return self.context.span_id

    @property
    def trace_id(self) -> str:
        return self.context.trace_id

    @property
    def name(self) -> str:
        """`<agent_name>.<operation_name>`, as E2I names its spans."""
        return f"{self.agent_name}.{self.operation_name}"

    @property
    def metadata(self) -> dict[str, Any]:
        """The span's attributes (the same dict): keys written here are stored."""
        return self.attributes

    @property
    def input_data(self) -> Any:
        return self.attributes.get(INPUT_ATTRIBUTE)

    @property
    def output_data(self) -> Any:
        return self.attributes.get(OUTPUT_ATTRIBUTE)

    @property
    def tags(self) -> list[str]:
        return list(self.attributes.get(TAGS_ATTRIBUTE) or [])

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[_check_key(key, "attribute key")] = value

    def set_input(self, input_data: Any) -> None:
        """The operation's input (replaces an earlier one); stored as attribute `input`."""
        self.attributes[INPUT_ATTRIBUTE] = span_payload(input_data)

    def set_output(self, output_data: Any) -> None:
        """The operation's result (replaces an earlier one); stored as attribute `output`."""
        self.attributes[OUTPUT_ATTRIBUTE] = span_payload(output_data)

    @staticmethod
    def check_tags(tags: Any) -> list[str]:
        """`tags` as a list; anything but a list/tuple/set of non-empty strings is a ValueError."""
        if isinstance(tags, str) or not isinstance(tags, list | tuple | set | frozenset):
            raise ValueError(f"tags must be a list of strings, got {tags!r}")
        for tag in tags:
            if not isinstance(tag, str) or not tag:
                raise ValueError(f"each tag must be a non-empty string, got {tag!r} in {tags!r}")
        return list(tags)

    def add_tags(self, tags: Any) -> None:
        """Add tags (duplicates kept once, in order); stored as the attribute `tags`."""
        if tags is None:
            return
        current = self.tags
        current.extend(t for t in dict.fromkeys(self.check_tags(tags)) if t not in current)
        self.attributes[TAGS_ATTRIBUTE] = current

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        """Record a point-in-time event (stored with the span in the database)."""
        _check_key(name, "event name")
        self.events.append(
            SpanEvent(
                name=name, timestamp=self._clock(), attributes=json_safe(dict(attributes or {}))
            )
        )

    def set_tokens(
        self,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        total_tokens: int | None = None,
        *,
        model: str | None = None,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        provider: str | None = None,
    ) -> None:
        """Token usage of the work in this span (cache reads/writes are parts of the input,
        reasoning a part of the output, as in LangChain); a count that is not a whole number in
        0..2**31 - 1 is a ValueError naming it."""
        for field, value in (
            ("input_tokens", input_tokens),
            ("output_tokens", output_tokens),
            ("total_tokens", total_tokens),
            ("cache_read_tokens", cache_read_tokens),
            ("cache_write_tokens", cache_write_tokens),
            ("reasoning_tokens", reasoning_tokens),
        ):
            if value is not None:
                setattr(self, field, check_token_count(value, field))
        if model:
            self.llm_model = model
        if provider and not self.attributes.get(PROVIDER_ATTRIBUTES[0]):
            self.attributes[PROVIDER_ATTRIBUTES[0]] = _check_key(provider, "provider")

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
        """The finished, validated span; `status`, `end_time`, `duration_ms` are set here."""
        if self.status is SpanStatus.STARTED:
            self.status = SpanStatus.COMPLETED
        self.end_time = max(end_time, self.start_time)
        self.duration_ms = (self.end_time - self.start_time).total_seconds() * 1000.0
        return ObservabilitySpan(
            span_id=self.span_id,
            trace_id=self.trace_id,
            parent_span_id=self.parent_span_id,
            operation_name=self.operation_name,
            agent_name=self.agent_name,
            span_kind=self.span_kind,
            start_time=self.start_time,
            end_time=self.end_time,
            status=self.status,
            error_type=self.error_type,
            error_message=self.error_message,
            attributes=json_safe(self.attributes),
            events=list(self.events),
            llm_model=self.llm_model,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            total_tokens=self.total_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens,
            provider=_text(self.attributes.get(PROVIDER_ATTRIBUTES[0])),
            cost_usd=_cost(self.attributes.get(COST_ATTRIBUTE)),  # the caller's set_cost
            thread_id=self.thread_id,
            tracestate=format_tracestate(self.context.tracestate) or None,
        )

    def to_dict(self) -> dict[str, Any]:
        """E2I's dictionary of the span (ids, names, times, status, attributes, input, output)."""
        return {
            "span_id": self.span_id,
            "trace_id": self.trace_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name,
            "operation_name": self.operation_name,
            "agent_name": self.agent_name,
            "span_kind": self.span_kind.value,
            "started_at": self.start_time.isoformat(),
            "ended_at": self.end_time.isoformat() if self.end_time else None,
            "duration_ms": self.duration_ms,
            "status": self.status.value,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "attributes": json_safe(self.attributes),
            "events": [e.model_dump(mode="json") for e in self.events],
            "tags": self.tags,
            "input": self.input_data,
            "output": self.output_data,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(agent_name={self.agent_name!r}, "
            f"operation_name={self.operation_name!r}, trace_id={self.trace_id!r}, "
            f"span_id={self.span_id!r})"
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
