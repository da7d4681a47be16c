"""The report's trace waterfalls: each of the slowest traces opens into its span tree.

One `<details id="trace-<trace_id>">` per trace (no script needed to open it; the page's script
also opens the one a `#trace-...` link points at). Inside, one row per span in tree order
(depth-first, children oldest first, as `e2i-obs trace` prints them): name indented by depth,
kind, agent, then a bar on the trace's own time axis (first span start = 0 %, last span end =
100 %, so bars are proportional to durations and placed at their offsets), then duration,
model, tokens, cost and the error. Every value from the data is escaped.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanKind,
    SpanStatus,
)

from .report_data import ReportData
from .svg import nice_ticks
from .traces import SpanNode, TraceSummary, build_span_tree
from .units import fmt_count, fmt_ms, fmt_usd

__all__ = ["waterfall_section"]

INDENT_PX = 14


def _flatten(roots: list[SpanNode]) -> list[tuple[SpanNode, int]]:
    """Depth-first, children in order: the rows of the waterfall with their depth."""
    rows: list[tuple[SpanNode, int]] = []
    stack = [(root, 0) for root in reversed(roots)]
    while stack:
        node, depth = stack.pop()
        rows.append((node, depth))
        stack.extend((child, depth + 1) for child in reversed(node.children))
    return rows


def _axis(spans: list[ObservabilitySpan]) -> tuple[datetime, float]:
    start = min(s.start_time for s in spans)
    ends = [s.end_time or s.start_time for s in spans]
    total_ms = (max(ends) - start).total_seconds() * 1000.0
    return start, max(total_ms, 1e-6)


def _meta(span: ObservabilitySpan) -> str:
    parts = [f'<span class="wf-dur">{escape(fmt_ms(span.duration_ms))}</span>']
    if span.llm_model:
        parts.append(f'<span class="wf-model">{escape(span.llm_model)}</span>')
    if span.total_tokens is not None:
        parts.append(
            f"<span>{escape(fmt_count(span.input_tokens or 0))} in / "
            f"{escape(fmt_count(span.output_tokens or 0))} out</span>"
        )
    if span.cost_usd is not None:
        parts.append(f'<span class="wf-cost">{escape(fmt_usd(span.cost_usd))}</span>')
    elif span.span_kind is SpanKind.LLM and span.total_tokens is not None:
        parts.append('<span class="wf-nocost" title="no known price for this model">$ –</span>')
    if span.status is SpanStatus.ERROR:
        detail = ": ".join(p for p in (span.error_type, span.error_message) if p) or "error"
        parts.append(f'<span class="wf-err" title="{escape(detail)}">✗ {escape(detail)}</span>')
    return " · ".join(parts)


def _row(node: SpanNode, depth: int, start: datetime, total_ms: float) -> str:
    span = node.span
    offset = (span.start_time - start).total_seconds() * 1000.0
    duration = span.duration_ms or 0.0
    left = offset / total_ms * 100.0
    width = duration / total_ms * 100.0
    kind = span.span_kind.value
    bar_class = f"wf-bar k-{kind}" + (" err" if span.status is SpanStatus.ERROR else "")
    tip = f"{span.operation_name} ({kind}, {span.agent_name}): {fmt_ms(duration)}"
    tip += f" at +{fmt_ms(offset)}"
    orphan = ' <span class="wf-orphan">(parent not stored)</span>' if node.orphan else ""
    return (
        f'<div class="wf-row" data-span-id="{span.span_id}" data-depth="{depth}" '
        f'data-offset-ms="{offset:.3f}" data-duration-ms="{duration:.3f}">'
        f'<div class="wf-name" style="padding-left:{depth * INDENT_PX}px">'
        f'<span class="wf-kind k-{kind}">{kind}</span> {escape(span.operation_name)} '
        f'<span class="wf-agent">{escape(span.agent_name)}</span>{orphan}</div>'
        f'<div class="wf-track"><div class="{bar_class}" '
        f'style="left:{left:.4f}%;width:{width:.4f}%" data-tip="{escape(tip)}"></div></div>'
        f'<div class="wf-meta">{_meta(span)}</div></div>'
    )


def _ticks(total_ms: float) -> str:
    marks = []
    for tick in nice_ticks(total_ms, 4):
        if tick > total_ms:
            break
        marks.append(
            f'<span class="wf-tick" style="left:{tick / total_ms * 100:.4f}%">'
            f"{escape(fmt_ms(tick))}</span>"
        )
    return "".join(marks)


def _waterfall(rank: int, trace: TraceSummary, spans: list[ObservabilitySpan]) -> str:
    start, total_ms = _axis(spans)
    rows = "".join(
        _row(node, depth, start, total_ms) for node, depth in _flatten(build_span_tree(spans))
    )
    cost = fmt_usd(trace.cost_usd)
    errors = (
        f' · <span class="wf-err">{trace.error_count} errors</span>' if trace.error_count else ""
    )
    return (
        f'<details class="waterfall" id="trace-{trace.trace_id}" '
        f'data-trace-id="{trace.trace_id}" data-trace-ms="{total_ms:.3f}">'
        f"<summary><b>#{rank}</b> {escape(trace.root_name)} · {escape(trace.agent_name)} · "
        f"{escape(fmt_ms(trace.duration_ms))} · {trace.span_count} spans · cost "
        f"{escape(cost)}{errors} <code>{trace.trace_id}</code></summary>"
        f'<div class="wf"><div class="wf-row wf-header"><div class="wf-name">span</div>'
        f'<div class="wf-track wf-axis">{_ticks(total_ms)}</div>'
        f'<div class="wf-meta">duration · model · tokens · cost · error</div></div>'
        f"{rows}</div></details>"
    )


def waterfall_section(data: ReportData) -> str:
    """One collapsible waterfall per slowest trace, in the slowest-traces table's order."""
    if not data.slowest_traces:
        return ""
    body = "".join(
        _waterfall(rank, trace, data.trace_spans[trace.trace_id])
        for rank, trace in enumerate(data.slowest_traces, start=1)
        if data.trace_spans.get(trace.trace_id)
    )
    return (
        '<section id="waterfalls"><h2>Trace waterfalls</h2>'
        '<p class="desc">Open a trace to see where its time went: its spans in tree order, '
        "each bar placed on the trace's own time axis (first span start to last span end), "
        "with kind, agent, model, tokens, cost and errors.</p>"
        f"{body}</section>"
    )
