"""Trace summaries and span trees (src/cli/traces.py): pure logic on hand-built spans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanKind,
    SpanStatus,
)
from src.cli.traces import build_span_tree, normalize_trace_id, summarize_traces

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TRACE = "0af7651916cd43dd8448eb211c80319c"


def span(
    sid: int,
    parent: int | None,
    start_ms: float,
    duration_ms: float,
    trace: str = TRACE,
    **fields,
) -> ObservabilitySpan:
    start = T0 + timedelta(milliseconds=start_ms)
    return ObservabilitySpan(
        span_id=f"{sid:016x}",
        trace_id=trace,
        parent_span_id=None if parent is None else f"{parent:016x}",
        operation_name=f"op{sid}",
        agent_name=fields.pop("agent", "orchestrator"),
        start_time=start,
        end_time=start + timedelta(milliseconds=duration_ms),
        **fields,
    )


def test_summarize_traces__one_trace__root_extent_errors_and_llm_tokens():
    spans = [
        span(2, 1, 5, 50, span_kind=SpanKind.LLM, input_tokens=10, output_tokens=5),
        span(1, None, 0, 100, total_tokens=999),  # a parent's own count is not added
        span(3, 1, 60, 80, status=SpanStatus.ERROR, span_kind=SpanKind.TOOL),
    ]

    (summary,) = summarize_traces(spans)

    assert summary.root_name == "op1"
    assert summary.start_time == T0
    assert summary.duration_ms == pytest.approx(140.0)  # last end (60 + 80), not the root's
    assert (summary.span_count, summary.error_count, summary.total_tokens) == (3, 1, 15)


def test_summarize_traces__several_traces__newest_first():
    other = "4bf92f3577b34da6a3ce929d0e0e4736"
    spans = [span(1, None, 0, 10), span(2, None, 500, 10, trace=other)]

    assert [t.trace_id for t in summarize_traces(spans)] == [other, TRACE]


def test_summarize_traces__parent_not_stored__earliest_orphan_is_root():
    spans = [span(5, 9, 20, 10), span(4, 9, 10, 10)]

    (summary,) = summarize_traces(spans)

    assert summary.root_name == "op4"


def test_build_span_tree__nested_spans__children_oldest_first():
    spans = [span(3, 1, 30, 5), span(1, None, 0, 50), span(2, 1, 10, 5), span(4, 2, 11, 1)]

    (root,) = build_span_tree(spans)

    assert root.span.span_id == f"{1:016x}"
    assert [c.span.operation_name for c in root.children] == ["op2", "op3"]
    assert [c.span.operation_name for c in root.children[0].children] == ["op4"]
    assert not root.orphan


def test_build_span_tree__missing_parent__orphan_root():
    roots = build_span_tree([span(1, None, 0, 10), span(2, 7, 5, 1)])

    assert [(r.span.operation_name, r.orphan) for r in roots] == [("op1", False), ("op2", True)]


def test_build_span_tree__parent_cycle__every_span_shown_once():
    roots = build_span_tree([span(1, 2, 0, 10), span(2, 1, 5, 1)])

    seen = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        seen.append(node.span.operation_name)
        stack.extend(node.children)
    assert sorted(seen) == ["op1", "op2"]


@pytest.mark.parametrize(
    "text",
    [TRACE, TRACE.upper(), f"  {TRACE}\n", "0af76519-16cd-43dd-8448-eb211c80319c"],
)
def test_normalize_trace_id__accepted_forms__canonical_hex(text: str):
    assert normalize_trace_id(text) == TRACE


@pytest.mark.parametrize("text", ["xyz", "0" * 32, TRACE[:-1], TRACE + "0", "g" * 32])
def test_normalize_trace_id__invalid__value_error_naming_trace_id(text: str):
    with pytest.raises(ValueError, match="trace_id"):
        normalize_trace_id(text)
