"""The observability graph's state, and how `spans` behaves when the graph is a subgraph.

The spans problem. A compiled graph used as a node of a parent graph gets the parent's values
for the keys they share and hands its final values back, which the parent folds in with *its*
reducers. With a plain `operator.add` on `spans` (or `errors`), everything the parent already
had comes back a second time: the parent ends with every span (and error) twice, and a later
emit step would send them all again. Three measures, each covering a different way in:

1. The graph's *output* schema (`ObservabilityOutput`) has no `spans`, and its *input* schema
   (`ObservabilityInput`) has no `errors` or outputs. So whatever reducers the parent uses, the
   spans it passes in never come back, and the errors that come back are only the new ones.
   (`build_observability_graph` compiles with these schemas.)
2. `spans` uses `merge_spans`, not `operator.add`: an update replaces a span with the same
   (trace_id, span_id) instead of appending a copy, so parallel branches that add the same
   span (or a span fed in twice) hold it once.
3. The span_emitter node *consumes* what it handled: it writes `RemoveSpans(keys)` and
   `merge_spans` drops those spans. With a checkpointer, the next run on the same thread starts
   from the stored state: without this, it would emit the previous run's spans again. Removing
   by key (not clearing everything) keeps spans a parallel branch adds in the same step.
   `CLEAR_SPANS` removes all.

A parent that reuses `merge_spans` for its own `spans` key gets the de-duplication too.
Sinks are idempotent on (trace_id, span_id) anyway; these measures keep graph state honest.

With a checkpointer, `errors` accumulate over a thread's runs like any `operator.add` key.
Checkpoint serializers that allow-list types (LangGraph's msgpack allow-list) need
`CHECKPOINT_ALLOWED_TYPES`, e.g. `JsonPlusSerializer(allowed_msgpack_modules=...)`.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from typing_extensions import TypedDict

from .models import (
    EmissionResult,
    LatencyStats,
    ObservabilitySpan,
    QualityMetrics,
    SpanEvent,
    SpanKind,
    SpanStatus,
)

Operation = Literal["emit", "query_metrics", "emit_and_query"]
OPERATIONS: tuple[str, ...] = ("emit", "query_metrics", "emit_and_query")

SpanKey = tuple[str, ...]
"""("span", trace_id, span_id) for anything carrying both ids, else ("raw", canonical JSON)."""


@dataclass(frozen=True, slots=True)
class RemoveSpans:
    """A `spans` update that removes entries instead of adding them."""

    keys: frozenset[SpanKey] | None = None
    """Keys (see `span_key`) to remove; None removes every span."""


CLEAR_SPANS = RemoveSpans()


def span_key(item: object) -> SpanKey:
    """The identity `merge_spans` de-duplicates on; a dict and its span share one key."""
    if isinstance(item, ObservabilitySpan):
        return ("span", item.trace_id, item.span_id)
    if isinstance(item, Mapping):
        trace_id, span_id = item.get("trace_id"), item.get("span_id")
        if isinstance(trace_id, str) and isinstance(span_id, str):
            return ("span", trace_id, span_id)
    try:
        canonical = json.dumps(item, sort_keys=True, default=repr)
    except (TypeError, ValueError):  # e.g. keys that are not strings, circular data
        canonical = repr(item)
    return ("raw", type(item).__name__, canonical)


def _as_items(update: object) -> Iterable[object]:
    if update is None:
        return ()
    if isinstance(update, list | tuple):
        return update
    return (update,)  # a lone span or dict; anything else is reported by the emitter


def merge_spans(
    current: list[ObservabilitySpan | dict[str, Any]] | None, update: object
) -> list[ObservabilitySpan | dict[str, Any]]:
    """`spans` reducer: add with de-duplication by (trace_id, span_id), or apply `RemoveSpans`.

    A later entry with a known key replaces the earlier one in place (a span fed in twice is
    one span). Never raises: malformed items are kept for the emitter to report.
    """
    merged: dict[SpanKey, Any] = {span_key(item): item for item in current or ()}
    if isinstance(update, RemoveSpans):
        if update.keys is None:
            return []
        return [item for key, item in merged.items() if key not in update.keys]
    for item in _as_items(update):
        merged[span_key(item)] = item
    return list(merged.values())


class ObservabilityInput(TypedDict, total=False):
    """What a caller (or a parent graph sharing these keys) passes in."""

    operation: Operation
    """`emit`, `query_metrics` or `emit_and_query` (emit first, then query)."""
    spans: Annotated[list[ObservabilitySpan | dict[str, Any]], merge_spans]
    """Spans to emit: models or dicts (validated; missing trace ids filled from the context)."""
    time_window: str
    """Metrics window such as `15m`, `1h`, `24h` (default), `7d`."""
    agent_name: str | None
    """Restrict metrics to one agent; None for all."""
    exact_metrics: bool
    """Compute metrics from the raw spans (default False: per-minute rollups, counts, tokens
    and cost exact, percentiles within 1%)."""
    traceparent: str | None
    """Incoming W3C traceparent; absent or invalid starts a new trace."""
    tracestate: str | None
    flush: bool
    """Wait for the sinks after emitting (default True)."""


class ObservabilityOutput(TypedDict, total=False):
    """What the graph hands back. `spans` is absent on purpose (see the module docstring)."""

    trace_context: dict[str, Any]
    """trace_id, span_id, trace_flags, traceparent, tracestate, remote (adopted or new)."""
    emission_result: EmissionResult
    quality_metrics: QualityMetrics
    errors: Annotated[list[str], operator.add]
    """One message per bad input (window, operation, header, span); the graph never raises.
    Always in the returned state (`[]` when all was well)."""


class ObservabilityState(ObservabilityInput, ObservabilityOutput, total=False):
    """Everything the nodes read and write."""


CHECKPOINT_ALLOWED_TYPES: tuple[tuple[str, str], ...] = tuple(
    (cls.__module__, cls.__qualname__)
    for cls in (
        ObservabilitySpan,
        SpanEvent,
        SpanKind,
        SpanStatus,
        EmissionResult,
        QualityMetrics,
        LatencyStats,
        RemoveSpans,
    )
)
"""(module, class) of every type this state stores, for a checkpointer's msgpack allow-list."""
