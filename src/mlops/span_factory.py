"""Scopes of explicit spans: what `trace_agent` and `trace_llm_call` return.

Arguments are checked at the call (an empty agent name, a tag that is not a string: a
`ValueError` naming it); the span itself starts when the scope is entered. Ids arrive in any
form E2I makes them and are mapped by `ids.py` (a dashed UUID trace id is stored as its 32 hex;
no form raises); a free-form trace id, or a parent span id that was not already 16 hex, keeps
its text in the attribute `trace_id.original` / `parent_span_id.original`.
Where the span attaches (current span, explicit parent, `force_new_trace`) is `SpanParents`'
decision; `tags` and `input_data` are stored on the span like `add_tags` / `set_input` would.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Mapping, MutableMapping
from datetime import datetime
from typing import Any

from src.agents.ml_foundation.observability_connector.callback_runs import UNKNOWN_AGENT
from src.agents.ml_foundation.observability_connector.config import CaptureSettings
from src.agents.ml_foundation.observability_connector.ids import (
    normalize_span_id,
    normalize_trace_id,
)
from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan, SpanKind
from src.agents.ml_foundation.observability_connector.nodes.context_manager import start_child

from .live_span import LiveSpan, SpanScope, current_live_span
from .llm_span import PROMPT_TEMPLATE_ATTRIBUTE, PROVIDER_ATTRIBUTE, LLMSpanContext
from .llm_text import record_llm_response, record_prompt
from .span_parents import ORPHAN_PARENT_ATTRIBUTE, SpanParents

__all__ = [
    "ORIGINAL_PARENT_SPAN_ID_ATTRIBUTE",
    "ORIGINAL_TRACE_ID_ATTRIBUTE",
    "RECENT_SPANS",
    "SpanFactory",
    "caller_id",
    "check_name",
]

RECENT_SPANS = 10_000
"""Spans whose trace is remembered for a later `parent_span_id` (see `SpanParents`)."""
ORIGINAL_TRACE_ID_ATTRIBUTE = "trace_id.original"
"""The caller's trace id, when its W3C form does not give it back (free-form text)."""
ORIGINAL_PARENT_SPAN_ID_ATTRIBUTE = "parent_span_id.original"
"""The caller's parent span id, when it was not already 16 hex (a UUID, free-form text)."""


def caller_id(
    value: Any,
    normalize: Callable[[Any], str],
    attributes: MutableMapping[str, Any],
    original_attribute: str,
) -> str | None:
    """A caller's id mapped by `ids.py`; None or blank -> None. Never raises: a value of
    another type (an int...) maps by its text. When the W3C id does not give the caller's
    value back (not just lowercased / undashed), the value is kept in `original_attribute`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        mapped = normalize(value)
    except ValueError:
        mapped = normalize(str(value))
    text = value.hex if isinstance(value, uuid.UUID) else str(value)
    if text.strip().replace("-", "").lower() != mapped:
        attributes[original_attribute] = str(value)
    return mapped


def check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


class SpanFactory:
    """Builds the scopes of one connector; finished spans go to `submit`."""

    def __init__(
        self,
        submit: Callable[[ObservabilitySpan], None],
        clock: Callable[[], datetime],
        capture: CaptureSettings,
        parents: SpanParents | None = None,
    ) -> None:
        self._submit = submit
        self._clock = clock
        self._capture = capture
        self._parents = parents or SpanParents(RECENT_SPANS)

    def scope(
        self,
        agent_name: str,
        operation: str,
        kind: SpanKind,
        trace_id: Any = None,
        parent_span_id: Any = None,
        metadata: Mapping[str, Any] | None = None,
        configure: Callable[[LiveSpan], None] | None = None,
        *,
        tags: Any = None,
        input_data: Any = None,
        new_trace: bool = False,
        span_class: type[LiveSpan] = LiveSpan,
    ) -> SpanScope:
        """A scope whose span is a `span_class`, configured by `configure` once started."""
        check_name(agent_name, "agent_name")
        check_name(operation, "operation")
        if tags is not None:
            LiveSpan.check_tags(tags)
        attributes = dict(metadata or {})
        trace = caller_id(trace_id, normalize_trace_id, attributes, ORIGINAL_TRACE_ID_ATTRIBUTE)
        parent = None
        if not new_trace:
            parent = caller_id(
                parent_span_id, normalize_span_id, attributes, ORIGINAL_PARENT_SPAN_ID_ATTRIBUTE
            )
        thread = attributes.get("thread_id")

        def make() -> LiveSpan:
            base, parent_id, orphan = self._parents.resolve(trace, parent, new_trace=new_trace)
            attrs = attributes
            if orphan is not None:  # its trace is unknown: a new trace, parent kept
                attrs = {**attributes, ORPHAN_PARENT_ATTRIBUTE: orphan}
            ctx = start_child(base)
            span = span_class(
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
            span.add_tags(tags)
            if input_data is not None:
                span.set_input(input_data)
            if configure is not None:
                configure(span)
            return span

        return SpanScope(make, self._submit, self._clock)

    def llm_scope(
        self,
        model: str,
        prompt: Any = None,
        trace_id: Any = None,
        parent_span_id: Any = None,
        agent_name: str | None = None,
        operation: str = "llm_call",
        metadata: Mapping[str, Any] | None = None,
        *,
        provider: str | None = None,
        prompt_template: str | None = None,
        input_data: Any = None,
        tags: Any = None,
    ) -> SpanScope:
        """An `llm` span yielding an `LLMSpanContext`; the agent is the current span's."""
        check_name(model, "model")
        live = current_live_span()
        agent = agent_name or (live.agent_name if live is not None else UNKNOWN_AGENT)
        capture = self._capture

        def configure(span: LiveSpan) -> None:
            span.llm_model = model
            if provider:
                span.set_attribute(PROVIDER_ATTRIBUTE, provider)
            if prompt_template:
                span.set_attribute(PROMPT_TEMPLATE_ATTRIBUTE, prompt_template)
            if prompt is not None and capture.prompts:
                record_prompt(span, prompt, capture.max_chars)

        return self.scope(
            agent, operation, SpanKind.LLM, trace_id, parent_span_id, metadata, configure,
            tags=tags, input_data=input_data, span_class=LLMSpanContext,
        )  # fmt: skip

    async def run_llm(self, scope: SpanScope, llm_call: Callable[[], Any]) -> Any:
        """The seed's form: run `llm_call()` (awaited if awaitable) in `scope`, return its
        response unchanged; tokens and model come from the response's usage metadata."""
        with scope as span:
            response = llm_call()
            if inspect.isawaitable(response):
                response = await response
            record_llm_response(span, response, self._capture)
            return response

    def run_llm_sync(self, scope: SpanScope, llm_call: Callable[[], Any]) -> Any:
        """`run_llm` for synchronous code; `llm_call` must not return an awaitable."""
        with scope as span:
            response = llm_call()
            if inspect.isawaitable(response):
                if inspect.iscoroutine(response):
                    response.close()
                raise TypeError("llm_call returned an awaitable: use `await trace_llm_call(...)`")
            record_llm_response(span, response, self._capture)
            return response
