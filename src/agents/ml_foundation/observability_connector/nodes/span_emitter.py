"""The span_emitter node: validate the spans in graph state and hand them to the emitter.

Spans come from other nodes or a parent graph as models or dicts. Each one is checked on its
own: a bad one becomes a message in `errors` and the others are still emitted, so nothing
already accepted is lost because of a later bad input. Dicts without ids join the adopted
trace (see `fill_from_context`). The node then submits, optionally flushes, and reports an
`EmissionResult`; it consumes the spans it handled (`RemoveSpans`, see state.py) so a
checkpointed thread never emits them again.

The emitter is anything with `submit(span)` and `flush(timeout) -> bool` (the batch processor,
the Opik connector). Optional extras are used when present: `sampler.should_keep(span)`,
`stats()` (its own or its `processor`'s) returning `ProcessorStats`-like counters
(`emitted` per sink, `sampled_out`, `rejected`), and `circuit_state`. Counts from `stats()`
are the processor's delta over this call, so spans other producers submit at the same moment
are included in them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pydantic import ValidationError

from ..models import EmissionResult, ObservabilitySpan
from ..state import RemoveSpans, span_key
from .context_manager import new_span_id

__all__ = ["SpanEmitter", "fill_from_context", "make_span_emitter_node", "validate_span"]


DEFAULT_FLUSH_TIMEOUT_SECONDS = 10.0


class SpanEmitter(Protocol):
    def submit(self, span: ObservabilitySpan) -> None: ...

    def flush(self, timeout: float | None = None) -> bool: ...


def fill_from_context(
    span: ObservabilitySpan | dict[str, Any], ctx: Mapping[str, Any] | None
) -> ObservabilitySpan | dict[str, Any]:
    """Join the adopted trace: a dict without `trace_id` gets the context's trace (and a new
    `span_id` if it has none); a root span of that trace gets the remote caller's span as its
    parent (W3C parent-id); `tracestate` travels along. A new local trace has no parent span."""
    if not ctx:
        return span
    updates: dict[str, Any] = {}
    if isinstance(span, dict):
        if span.get("trace_id") is None:
            updates["trace_id"] = ctx["trace_id"]
        if span.get("span_id") is None:
            updates["span_id"] = new_span_id()
    trace_id = updates.get("trace_id", _get(span, "trace_id"))
    span_id = updates.get("span_id", _get(span, "span_id"))
    if (
        ctx.get("remote")
        and trace_id == ctx["trace_id"]
        and _get(span, "parent_span_id") is None
        and span_id != ctx["span_id"]
    ):
        updates["parent_span_id"] = ctx["span_id"]
    if _get(span, "tracestate") is None and ctx.get("tracestate") and trace_id == ctx["trace_id"]:
        updates["tracestate"] = ctx["tracestate"]
    if not updates:
        return span
    if isinstance(span, dict):
        return {**span, **updates}
    return span.model_copy(update=updates)


def _get(span: ObservabilitySpan | dict[str, Any], field: str) -> Any:
    return span.get(field) if isinstance(span, dict) else getattr(span, field)


def validate_span(item: object, index: int) -> ObservabilitySpan | str:
    """The span, or a message naming the entry, the fields and what is wrong."""
    if isinstance(item, ObservabilitySpan):
        return item
    if not isinstance(item, dict):
        return (
            f"span_emitter: spans[{index}] rejected: expected an ObservabilitySpan or a dict, "
            f"got {type(item).__name__}"
        )
    try:
        return ObservabilitySpan.model_validate(item)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'span'}: {e['msg']}" for e in exc.errors()
        )
        return f"span_emitter: spans[{index}] rejected: {problems}"


def _stats(emitter: object) -> Any | None:
    """The emitter's counters, or its batch processor's (an Opik connector holds one)."""
    stats = getattr(emitter, "stats", None)
    if not callable(stats):
        stats = getattr(getattr(emitter, "processor", None), "stats", None)
    if not callable(stats):
        return None
    snapshot = stats()
    return snapshot if hasattr(snapshot, "emitted") else None


def _circuit_state(emitter: object) -> str:
    state = getattr(emitter, "circuit_state", None)
    if callable(state):
        state = state()
    if state is None:
        return "closed"
    return str(getattr(state, "value", state))


def make_span_emitter_node(
    emitter: SpanEmitter, *, flush_timeout_seconds: float = DEFAULT_FLUSH_TIMEOUT_SECONDS
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """The span_emitter node (synchronous: LangGraph runs it in a worker thread under
    `ainvoke`, so a blocking `flush` never stalls the event loop)."""

    def span_emitter(state: Mapping[str, Any]) -> dict[str, Any]:
        items = state.get("spans") or []
        ctx = state.get("trace_context")
        errors: list[str] = []
        before = _stats(emitter)
        sampler = getattr(emitter, "sampler", None)
        submitted = sampled_out = rejected = 0
        for index, item in enumerate(items):
            if isinstance(item, dict | ObservabilitySpan):
                item = fill_from_context(item, ctx)
            span = validate_span(item, index)
            if isinstance(span, str):
                errors.append(span)
                rejected += 1
                continue
            if sampler is not None and not sampler.should_keep(span):
                sampled_out += 1
                continue
            emitter.submit(span)
            submitted += 1
        flushed = False
        if state.get("flush", True):
            # False on timeout: the spans stay queued or spooled and are delivered later
            flushed = bool(emitter.flush(flush_timeout_seconds)) if submitted else True
        per_sink: dict[str, int] = {}
        after = _stats(emitter)
        if before is not None and after is not None:
            per_sink = {
                sink: count - before.emitted.get(sink, 0) for sink, count in after.emitted.items()
            }
            sampled_out += after.sampled_out - before.sampled_out
            rejected += after.rejected - before.rejected
        result = EmissionResult(
            submitted=submitted,
            sampled_out=sampled_out,
            rejected=rejected,
            per_sink=per_sink,
            circuit_state=_circuit_state(emitter),
            flushed=flushed,
        )
        update: dict[str, Any] = {
            "emission_result": result,
            "spans": RemoveSpans(frozenset(span_key(item) for item in items)),
        }
        if errors:
            update["errors"] = errors
        return update

    return span_emitter
