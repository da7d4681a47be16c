"""Where a new explicit span attaches: under the current span, an explicit parent, or nowhere.

Why a recent-span map: the seed API passes `parent_span_id=span.span_id` around, sometimes after
the parent's block has ended (no current context any more). Remembering the trace of the last
`max_spans` spans this connector started lets such a call still land in the right trace; the map
is bounded (LRU), so it never grows with the process's lifetime.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple

from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    SAMPLED_FLAG,
    TraceContext,
    new_span_id,
)
from src.agents.ml_foundation.observability_connector.otlp.join import ambient_context
from src.agents.ml_foundation.observability_connector.usage import ProblemCounter

from .live_span import SPAN_PROBLEMS

__all__ = ["ORPHAN_PARENT_ATTRIBUTE", "ParentChoice", "SpanParents"]

ORPHAN_PARENT_ATTRIBUTE = "orphan_parent_span_id"
"""Set on a span whose `parent_span_id` argument named a span of an unknown trace."""


class ParentChoice(NamedTuple):
    """Where a new span starts: `base` context (None = new trace) and its parent span id."""

    base: TraceContext | None
    parent_span_id: str | None
    orphan_parent_span_id: str | None = None
    """The requested parent, when its trace was unknown and a new trace started instead."""


class SpanParents:
    """Resolves (trace_id, parent_span_id) arguments against the current context."""

    def __init__(self, max_spans: int = 10_000, problems: ProblemCounter = SPAN_PROBLEMS) -> None:
        """`problems` counts (and warns, rate-limited, about) parents of unknown traces."""
        if max_spans < 1:
            raise ValueError(f"max_spans must be >= 1, got {max_spans!r}")
        self._max = max_spans
        self._problems = problems
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, str] = OrderedDict()  # span_id -> trace_id

    def remember(self, span_id: str, trace_id: str) -> None:
        with self._lock:
            self._recent[span_id] = trace_id
            self._recent.move_to_end(span_id)
            while len(self._recent) > self._max:
                self._recent.popitem(last=False)

    def resolve(
        self, trace_id: str | None, parent_span_id: str | None, *, new_trace: bool = False
    ) -> ParentChoice:
        """The context the new span starts under and its parent span id.

        - `new_trace` (E2I's `force_new_trace=True`): a root span, in `trace_id` when given,
          else in a new trace; the current span and `parent_span_id` are not used;
        - no ids: child of the current span, or a new trace;
        - only `trace_id`: child of the current span if it is in that trace, else a root span
          in that trace;
        - `parent_span_id`: that span, in `trace_id`, else the trace remembered for it, else the
          current trace; when none is known (evicted from the recent map, started by another
          process or the callback handler) a new trace starts, the requested parent is kept in
          `orphan_parent_span_id` and counted: tracing never raises into the agent.
        """
        if new_trace:
            base = TraceContext(trace_id, new_span_id(), SAMPLED_FLAG) if trace_id else None
            return ParentChoice(base, None)
        ctx = ambient_context()
        if parent_span_id is None:
            if trace_id is None or (ctx is not None and ctx.trace_id == trace_id):
                return ParentChoice(ctx, ctx.span_id if ctx is not None else None)
            return ParentChoice(TraceContext(trace_id, new_span_id(), SAMPLED_FLAG), None)
        if ctx is not None and ctx.span_id == parent_span_id and trace_id in (None, ctx.trace_id):
            return ParentChoice(ctx, parent_span_id)
        with self._lock:
            known = self._recent.get(parent_span_id)
        trace_id = trace_id or known or (ctx.trace_id if ctx is not None else None)
        if trace_id is None:
            self._problems.record(
                f"parent_span_id {parent_span_id!r} is not a span this connector knows and no "
                "trace_id or current trace was given; started a new trace"
            )
            return ParentChoice(None, None, parent_span_id)
        # Flags and tracestate belong to a trace: the current one's only carry into that trace
        # (its `random` flag says nothing about another trace-id's bytes).
        same = ctx is not None and ctx.trace_id == trace_id
        flags, state = (ctx.trace_flags, ctx.tracestate) if same and ctx else (SAMPLED_FLAG, ())
        return ParentChoice(TraceContext(trace_id, parent_span_id, flags, state), parent_span_id)
