"""Spans grouped into traces: one summary line per trace, and a trace as a tree of spans.

Both the `traces`/`trace` commands and the HTML report's slowest-traces table read these, so a
trace's duration, token count and root mean the same thing everywhere:

- root: the earliest span with no parent, or whose parent is not stored (a trace continued
  from another process, or one whose parent was sampled out);
- duration: first start to last end over all finished spans (the wall time the trace took);
- tokens and cost: LLM spans only, like the per-agent totals, so a parent never double-counts
  its children; a trace's cost is None when none of its LLM spans has a price.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanKind,
    check_trace_id,
)

__all__ = [
    "SpanNode",
    "TraceSummary",
    "build_span_tree",
    "llm_cost",
    "normalize_trace_id",
    "summarize_traces",
]


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One trace, as a line of the `traces` table."""

    trace_id: str
    root_name: str
    agent_name: str
    start_time: datetime
    duration_ms: float | None
    """First start to last end; None while no span of the trace has finished."""
    span_count: int
    error_count: int
    total_tokens: int
    cost_usd: float | None = None
    """Sum of the priced LLM spans; None when no LLM span of the trace has a price."""
    unpriced_llm_calls: int = 0


@dataclass(slots=True)
class SpanNode:
    """A span and its children (oldest first); `orphan` when its parent is not stored."""

    span: ObservabilitySpan
    children: list[SpanNode] = field(default_factory=list)
    orphan: bool = False


def normalize_trace_id(text: str) -> str:
    """Accept a W3C trace id, also upper-case or dashed like a UUID (Opik's form).

    ValueError (naming the accepted form) for anything else.
    """
    candidate = text.strip().lower() if isinstance(text, str) else text
    if isinstance(candidate, str) and len(candidate) == 36 and candidate.count("-") == 4:
        candidate = candidate.replace("-", "")
    return check_trace_id(candidate)


def _by_start(span: ObservabilitySpan) -> tuple[datetime, str]:
    return span.start_time, span.span_id


def _roots(spans: list[ObservabilitySpan]) -> list[ObservabilitySpan]:
    ids = {span.span_id for span in spans}
    return [s for s in spans if s.parent_span_id is None or s.parent_span_id not in ids]


def _llm_tokens(spans: Iterable[ObservabilitySpan]) -> int:
    return sum(s.total_tokens or 0 for s in spans if s.span_kind is SpanKind.LLM)


def llm_cost(spans: Iterable[ObservabilitySpan]) -> tuple[float | None, int]:
    """(sum of the priced LLM spans or None if none is priced, LLM spans without a price)."""
    costs = [s.cost_usd for s in spans if s.span_kind is SpanKind.LLM]
    priced = [c for c in costs if c is not None]
    return (sum(priced) if priced else None), len(costs) - len(priced)


def summarize_trace(spans: list[ObservabilitySpan]) -> TraceSummary:
    """Summary of one trace's spans (at least one span, all of the same trace)."""
    ordered = sorted(spans, key=_by_start)
    roots = _roots(ordered)
    root = next((s for s in roots if s.parent_span_id is None), roots[0] if roots else ordered[0])
    start = ordered[0].start_time
    ends = [s.end_time for s in ordered if s.end_time is not None]
    duration = (max(ends) - start).total_seconds() * 1000.0 if ends else None
    cost, unpriced = llm_cost(ordered)
    return TraceSummary(
        trace_id=root.trace_id,
        root_name=root.operation_name,
        agent_name=root.agent_name,
        start_time=start,
        duration_ms=duration,
        span_count=len(ordered),
        error_count=sum(s.is_error for s in ordered),
        total_tokens=_llm_tokens(ordered),
        cost_usd=cost,
        unpriced_llm_calls=unpriced,
    )


def summarize_traces(spans: Iterable[ObservabilitySpan]) -> list[TraceSummary]:
    """One summary per trace, newest trace first."""
    grouped: dict[str, list[ObservabilitySpan]] = {}
    for span in spans:
        grouped.setdefault(span.trace_id, []).append(span)
    summaries = [summarize_trace(group) for group in grouped.values()]
    return sorted(summaries, key=lambda t: (t.start_time, t.trace_id), reverse=True)


def build_span_tree(spans: Iterable[ObservabilitySpan]) -> list[SpanNode]:
    """The spans of one trace as a forest (normally one root), children oldest first."""
    ordered = sorted(spans, key=_by_start)
    nodes = {span.span_id: SpanNode(span) for span in ordered}
    roots: list[SpanNode] = []
    for span in ordered:
        node = nodes[span.span_id]
        parent = nodes.get(span.parent_span_id) if span.parent_span_id else None
        if parent is None or parent is node:
            node.orphan = span.parent_span_id is not None
            roots.append(node)
        else:
            parent.children.append(node)
    _adopt_cycles(ordered, nodes, roots)
    return roots


def _adopt_cycles(
    ordered: list[ObservabilitySpan], nodes: dict[str, SpanNode], roots: list[SpanNode]
) -> None:
    """Spans whose parent chain loops (corrupt data) become orphan roots, cycle cut."""
    reachable: set[str] = set()

    def mark(start: SpanNode) -> None:
        stack = [start]
        while stack:
            node = stack.pop()
            if node.span.span_id not in reachable:
                reachable.add(node.span.span_id)
                stack.extend(node.children)

    for root in roots:
        mark(root)
    for span in ordered:
        if span.span_id in reachable:
            continue
        node = nodes[span.span_id]
        nodes[span.parent_span_id].children.remove(node)  # type: ignore[index]
        node.orphan = True
        roots.append(node)
        mark(node)
