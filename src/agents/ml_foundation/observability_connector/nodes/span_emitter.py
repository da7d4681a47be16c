"""The span_emitter node: validate the spans in graph state and hand them to the emitter.

Spans come from other nodes or a parent graph as models or dicts. Each one is checked on its
own: a bad one becomes a message in `errors` and the others are still emitted, so nothing
already accepted is lost because of a later bad input. Dicts without ids join the adopted
trace (see `fill_from_context`). The node then submits, optionally flushes, and reports an
`EmissionResult`; it consumes the spans it handled (`RemoveSpans`, see state.py) so a
checkpointed thread never emits them again, and skips spans it already submitted (a parent
graph looping through this one hands them in again). A failing emitter becomes a message in
`errors` saying how many spans were not submitted.

The emitter is anything with `submit(span)` and `flush(timeout) -> bool` (the batch processor,
the Opik connector). Optional extras are used when present: `sampler.should_keep(span)`,
`stats()` (its own or its `processor`'s) returning `ProcessorStats`-like counters
(`emitted` per sink, `sampled_out`, `rejected`), and `circuit_state`. Counts from `stats()`
are the processor's delta over this call, so spans other producers submit at the same moment
are included in them.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pydantic import ValidationError

from ..models import EmissionResult, ObservabilitySpan
from ..state import RemoveSpans, SpanKey, span_key
from .context_manager import new_span_id

__all__ = ["SpanEmitter", "fill_from_context", "make_span_emitter_node", "validate_span"]


logger = logging.getLogger(__name__)

DEFAULT_FLUSH_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_REMEMBERED_SPANS = 10_000
"""How many submitted (trace_id, span_id) keys the node remembers to skip re-submissions."""


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
    emitter: SpanEmitter,
    *,
    flush_timeout_seconds: float = DEFAULT_FLUSH_TIMEOUT_SECONDS,
    max_remembered_spans: int = DEFAULT_MAX_REMEMBERED_SPANS,
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """The span_emitter node (synchronous: LangGraph runs it in a worker thread under
    `ainvoke`, so a blocking `flush` never stalls the event loop).

    Already-submitted spans are skipped silently. A parent graph that loops through this graph
    hands it its whole `spans` list every time (the output schema has no `spans`, so the
    `RemoveSpans` never reaches the parent); the node remembers the (trace_id, span_id) of the
    last `max_remembered_spans` spans it submitted (LRU) and neither submits nor counts them
    again. Sinks are idempotent anyway; this keeps the queue and the counts honest.

    A failing emitter (e.g. the default connector cannot be built from a bad environment)
    never raises into the graph: the node reports in `errors` how many spans were not
    submitted, and keeps those in state so a checkpointed thread offers them again next run.
    """
    if max_remembered_spans < 1:
        raise ValueError(f"max_remembered_spans must be >= 1, got {max_remembered_spans!r}")
    remembered: OrderedDict[tuple[str, str], None] = OrderedDict()
    lock = threading.Lock()

    def already_submitted(span: ObservabilitySpan) -> bool:
        key = (span.trace_id, span.span_id)
        with lock:
            if key in remembered:
                remembered.move_to_end(key)
                return True
            return False

    def remember(span: ObservabilitySpan) -> None:
        with lock:
            remembered[(span.trace_id, span.span_id)] = None
            remembered.move_to_end((span.trace_id, span.span_id))
            while len(remembered) > max_remembered_spans:
                remembered.popitem(last=False)

    def span_emitter(state: Mapping[str, Any]) -> dict[str, Any]:
        items = state.get("spans") or []
        ctx = state.get("trace_context")
        errors: list[str] = []
        valid: list[tuple[SpanKey, ObservabilitySpan]] = []
        handled: set[SpanKey] = set()
        rejected = 0
        for index, item in enumerate(items):
            if isinstance(item, dict | ObservabilitySpan):
                item = fill_from_context(item, ctx)
            span = validate_span(item, index)
            if isinstance(span, str):
                errors.append(span)
                rejected += 1
                handled.add(span_key(items[index]))
                continue
            valid.append((span_key(items[index]), span))
        submitted = sampled_out = 0
        flushed = False
        per_sink: dict[str, int] = {}
        circuit_state = "unknown"
        try:
            before = _stats(emitter)
            sampler = getattr(emitter, "sampler", None)
            for key, span in valid:
                if already_submitted(span):
                    handled.add(key)
                    continue
                if sampler is not None and not sampler.should_keep(span):
                    sampled_out += 1
                    handled.add(key)
                    continue
                emitter.submit(span)
                remember(span)
                handled.add(key)
                submitted += 1
            if state.get("flush", True):
                # False on timeout: the spans stay queued or spooled and are delivered later
                flushed = bool(emitter.flush(flush_timeout_seconds)) if submitted else True
            after = _stats(emitter)
            if before is not None and after is not None:
                per_sink = {
                    sink: count - before.emitted.get(sink, 0)
                    for sink, count in after.emitted.items()
                }
                sampled_out += after.sampled_out - before.sampled_out
                refused = after.rejected - before.rejected
                lost = after.dropped - before.dropped
                rejected += refused
                if refused or lost:  # say so: the caller must not read an empty errors list
                    errors.append(_loss_message(refused, lost, after.last_error))
            circuit_state = _circuit_state(emitter)
        except Exception as exc:  # the graph boundary: a failing emitter never raises into a parent
            flushed = False
            unsent = sum(1 for key, _ in valid if key not in handled)
            logger.warning("span_emitter: emitter failed: %s", type(exc).__name__)
            errors.append(
                f"span_emitter: {unsent} of {len(valid)} valid span(s) not submitted "
                f"(kept in state): the emitter failed ({type(exc).__name__}: {exc})"
            )
        result = EmissionResult(
            submitted=submitted,
            sampled_out=sampled_out,
            rejected=rejected,
            per_sink=per_sink,
            circuit_state=circuit_state,
            flushed=flushed,
        )
        update: dict[str, Any] = {
            "emission_result": result,
            "spans": RemoveSpans(frozenset(handled)),
        }
        if errors:
            update["errors"] = errors
        return update

    return span_emitter


def _loss_message(refused: int, lost: int, last_error: str | None) -> str:
    parts = []
    if refused:
        parts.append(
            f"{refused} span(s) refused for good by a sink (kept in the spool's rejected/)"
        )
    if lost:
        parts.append(f"{lost} span(s) dropped (spool full or unwritable)")
    reason = f": {last_error}" if last_error else ""
    return f"span_emitter: {' and '.join(parts)}{reason}"
