"""Rich renderables for the terminal: the metrics table, the traces table, one trace as a tree,
and the health snapshot. Pure functions of their data (no I/O); user data (agent and operation
names, error messages) goes in as `Text`, never as markup, so a `[` in a name cannot restyle
the output, and through `printable()`, so a control character in it cannot drive the terminal.

Widths (`FittedTable`): a name longer than `NAME_MAX_CHARS` ends in `…`; ids and numbers are
never shortened, so one 300-character agent name cannot collapse the numbers beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.table import Column, Table
from rich.text import Text
from rich.tree import Tree

from src.agents.ml_foundation.observability_connector.cost_models import CostBreakdownRow
from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    QualityMetrics,
    SpanKind,
    SpanStatus,
)
from src.agents.ml_foundation.observability_connector.self_monitor import HealthSnapshot

from .terminal import printable
from .traces import SpanNode, TraceSummary
from .units import fmt_count, fmt_ms, fmt_percent, fmt_time, fmt_tokens, fmt_usd

__all__ = [
    "NAME_MAX_CHARS",
    "FittedTable",
    "cost_table",
    "health_table",
    "metrics_table",
    "trace_tree",
    "traces_table",
]

_STATUS_STYLE = {"healthy": "bold green", "degraded": "bold yellow", "unhealthy": "bold red"}
_MAX_ERROR_CHARS = 120
NAME_MAX_CHARS = 40
"""Widest agent / operation name shown; a longer one is cut with an ellipsis."""
NAME_MIN_CHARS = 12
"""Names shrink no further than this on a narrow terminal."""


def _text(value: object, style: str = "") -> Text:
    """Stored text as a cell: control characters escaped, never read as markup."""
    return Text(printable(value), style=style)


def _capped(value: object, limit: int = NAME_MAX_CHARS) -> str:
    text = printable(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _add_name_column(table: Table, header: str, **options: Any) -> None:
    table.add_column(header, no_wrap=True, overflow="ellipsis", **options)


def _plain(cell: RenderableType | None) -> str:
    if cell is None:
        return ""
    return cell.plain if isinstance(cell, Text) else str(cell)


def _content_width(column: Column) -> int:
    cells = [column.header, column.footer, *column.cells]
    return max(cell_len(_plain(cell)) for cell in cells)  # type: ignore[arg-type]


class FittedTable:
    """A table whose name columns give way first, so ids and numbers always show in full.

    Rich, short of width, shrinks every column evenly, and a 300-character agent name turned
    every number beside it into `…`. Here each name is capped at `NAME_MAX_CHARS`; when even
    that does not fit, the widest names shrink (not below `NAME_MIN_CHARS`) and every other
    column keeps its widest cell. A terminal narrower than that minimum gets the full table
    anyway (print it with `crop=False`): a wrapped line reads better than a lost number.
    """

    def __init__(self, table: Table, name_columns: Sequence[int]) -> None:
        self.table = table
        self.name_columns = tuple(name_columns)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = self.table
        padding = 2  # rich's default cell padding (0, 1)
        widths = [_content_width(column) for column in table.columns]
        for index, column in enumerate(table.columns):
            if index not in self.name_columns:
                column.min_width = widths[index]
                column.no_wrap = True
        names = {i: min(widths[i], NAME_MAX_CHARS) for i in self.name_columns}
        fixed = sum(w for i, w in enumerate(widths) if i not in names)
        borders = (2 if table.show_edge else 0) + len(widths) - 1 if table.box else 0
        chrome = borders + padding * len(widths)
        while fixed + sum(names.values()) + chrome > options.max_width:
            widest = max(names, key=lambda i: names[i], default=None)
            if widest is None or names[widest] <= NAME_MIN_CHARS:
                break
            names[widest] -= 1
        for index, width in names.items():
            table.columns[index].max_width = width
        needed = fixed + sum(names.values()) + chrome
        yield from console.render(table, options.update_width(max(needed, options.max_width)))


def _error_style(count: int) -> str:
    return "red" if count else ""


def _cost_caption(metrics: QualityMetrics) -> str:
    parts = []
    if metrics.priced_llm_calls:
        parts.append(
            f"LLM cost {fmt_usd(metrics.cost_usd)}, per trace p50 "
            f"{fmt_usd(metrics.cost_per_trace_p50)} / p95 {fmt_usd(metrics.cost_per_trace_p95)}"
            " (e2i-obs cost for the breakdown)"
        )
    if metrics.unpriced_llm_calls:
        parts.append(f"{metrics.unpriced_llm_calls:,} LLM calls had no known price")
    return "; ".join(parts)


def metrics_table(metrics: QualityMetrics) -> FittedTable:
    """Per-agent statistics with a totals row; durations in ms, tokens and cost of LLM spans
    only. The Cost column appears when the window has a priced LLM call; the caption gives the
    window's cost per trace and how many calls had no known price."""
    priced = metrics.priced_llm_calls > 0
    caption = "tokens: LLM spans only (input + output)"
    cost_note = _cost_caption(metrics)
    table = Table(
        title=(
            f"Agent metrics, last {metrics.time_window} "
            f"({fmt_time(metrics.window_start)} → {fmt_time(metrics.window_end)} UTC)"
        ),
        caption=f"{caption}\n{cost_note}" if cost_note else caption,
        show_footer=bool(metrics.agents),
    )
    _add_name_column(table, "Agent", footer="all agents")
    table.add_column("Tier", justify="right")
    table.add_column("Spans", justify="right", footer=fmt_count(metrics.total_spans))
    table.add_column("Errors", justify="right", footer=fmt_count(metrics.error_count))
    table.add_column("Error rate", justify="right", footer=fmt_percent(metrics.error_rate))
    for label in ("p50", "p95", "p99"):
        table.add_column(label, justify="right")
    table.add_column("LLM calls", justify="right")
    table.add_column("Tokens", justify="right", footer=fmt_tokens(metrics.total_tokens))
    if priced:
        table.add_column("Cost", justify="right", footer=fmt_usd(metrics.cost_usd))
    for name in sorted(metrics.agents):
        s = metrics.agents[name]
        cost = [fmt_usd(s.cost_usd if s.priced_llm_calls else None)] if priced else []
        table.add_row(
            _text(name),
            "–" if s.agent_tier is None else str(s.agent_tier),
            fmt_count(s.count),
            Text(fmt_count(s.error_count), style=_error_style(s.error_count)),
            Text(fmt_percent(s.error_rate), style=_error_style(s.error_count)),
            fmt_ms(s.p50_ms),
            fmt_ms(s.p95_ms),
            fmt_ms(s.p99_ms),
            fmt_count(s.llm_calls),
            fmt_tokens(s.total_tokens),
            *cost,
        )
    return FittedTable(table, name_columns=[0])


def cost_table(rows: list[CostBreakdownRow], by: str, window: str) -> FittedTable:
    """LLM cost by agent, model, provider or UTC day, with token kinds and a totals row."""
    table = Table(
        title=f"LLM cost by {by}, last {window}",
        caption="tokens of LLM spans; cache read/write are parts of input, reasoning of output",
        show_footer=bool(rows),
    )
    _add_name_column(table, {"day": "Day (UTC)"}.get(by, by.capitalize()), footer="total")
    columns = (
        ("LLM calls", "llm_calls", fmt_count),
        ("Unpriced", None, fmt_count),
        ("Traces", "traces", fmt_count),
        ("Input", "input_tokens", fmt_tokens),
        ("Cache read", "cache_read_tokens", fmt_tokens),
        ("Cache write", "cache_write_tokens", fmt_tokens),
        ("Output", "output_tokens", fmt_tokens),
        ("Reasoning", "reasoning_tokens", fmt_tokens),
    )
    for title, field, fmt in columns:
        if field is None:
            total = sum(r.llm_calls - r.priced_llm_calls for r in rows)
        elif field == "traces":
            total = None  # a trace may appear in several groups
        else:
            total = sum(getattr(r, field) for r in rows)
        table.add_column(title, justify="right", footer="" if total is None else fmt(total))
    total_cost = sum(r.cost_usd for r in rows)
    table.add_column("Cost", justify="right", footer=fmt_usd(total_cost))
    table.add_column("Share", justify="right")
    for r in rows:
        unpriced = r.llm_calls - r.priced_llm_calls
        table.add_row(
            _text(r.key),
            fmt_count(r.llm_calls),
            Text(fmt_count(unpriced), style="yellow" if unpriced else ""),
            fmt_count(r.traces),
            fmt_tokens(r.input_tokens),
            fmt_tokens(r.cache_read_tokens),
            fmt_tokens(r.cache_write_tokens),
            fmt_tokens(r.output_tokens),
            fmt_tokens(r.reasoning_tokens),
            fmt_usd(r.cost_usd if r.priced_llm_calls else None),
            fmt_percent(r.cost_usd / total_cost if total_cost and r.priced_llm_calls else None),
        )
    return FittedTable(table, name_columns=[0])


def traces_table(summaries: list[TraceSummary], window: str) -> FittedTable:
    """One line per trace, newest first."""
    table = Table(title=f"Traces, last {window} (newest first)")
    table.add_column("Trace ID", no_wrap=True, style="cyan")
    _add_name_column(table, "Root")
    _add_name_column(table, "Agent")
    table.add_column("Start (UTC)", no_wrap=True)
    table.add_column("Duration", justify="right")
    table.add_column("Spans", justify="right")
    table.add_column("Errors", justify="right")
    table.add_column("Tokens", justify="right")
    table.add_column("Cost", justify="right")
    for t in summaries:
        table.add_row(
            t.trace_id,
            _text(t.root_name),
            _text(t.agent_name),
            fmt_time(t.start_time),
            fmt_ms(t.duration_ms),
            fmt_count(t.span_count),
            Text(fmt_count(t.error_count), style=_error_style(t.error_count)),
            fmt_tokens(t.total_tokens),
            fmt_usd(t.cost_usd),
        )
    return FittedTable(table, name_columns=[1, 2])


def _status_text(span: ObservabilitySpan) -> Text:
    if span.status is SpanStatus.ERROR:
        detail = ": ".join(p for p in (span.error_type, span.error_message) if p)
        detail = _capped(detail, _MAX_ERROR_CHARS)
        return Text("✗ error" + (f" ({detail})" if detail else ""), style="bold red")
    if span.status is SpanStatus.STARTED:
        return Text("… running", style="yellow")
    return Text("✓ ok", style="green")


def _span_label(node: SpanNode, trace_start: datetime) -> Text:
    span = node.span
    offset = (span.start_time - trace_start).total_seconds() * 1000.0
    label = Text.assemble(
        (_capped(span.operation_name), "bold"),
        "  ",
        (f"[{span.span_kind.value}] ", "magenta"),
        (_capped(span.agent_name), "blue"),
        "  ",
        (fmt_ms(span.duration_ms), "bold"),
        (f" at +{fmt_ms(offset)}  ", "dim"),
        _status_text(span),
    )
    if span.llm_model:
        label.append(f"  model {_capped(span.llm_model)}", style="cyan")
    if span.total_tokens is not None:
        label.append(
            f"  tokens {fmt_count(span.input_tokens or 0)} in / "
            f"{fmt_count(span.output_tokens or 0)} out",
            style="dim cyan",
        )
    if span.cost_usd is not None:
        label.append(f"  cost {fmt_usd(span.cost_usd)}", style="green")
    elif span.span_kind is SpanKind.LLM and span.total_tokens is not None:
        label.append("  cost – (no known price)", style="dim yellow")
    if node.orphan:
        label.append(f"  (parent {printable(span.parent_span_id)} not stored)", style="dim yellow")
    return label


def trace_tree(summary: TraceSummary, roots: list[SpanNode]) -> Tree:
    """The trace as a tree: each span with kind, agent, duration, offset, status, model, tokens."""
    header = Text.assemble(
        ("trace ", "dim"),
        (summary.trace_id, "bold cyan"),
        f"  {fmt_time(summary.start_time)} UTC  ",
        (fmt_ms(summary.duration_ms), "bold"),
        f"  {summary.span_count} spans  ",
        (f"{summary.error_count} errors", _error_style(summary.error_count) or "dim"),
        f"  {fmt_tokens(summary.total_tokens)} tokens  ",
        (f"cost {fmt_usd(summary.cost_usd)}", "bold green"),
        (
            f" ({summary.unpriced_llm_calls} LLM calls without a known price)"
            if summary.unpriced_llm_calls
            else "",
            "dim yellow",
        ),
    )
    tree = Tree(header, guide_style="dim")

    def add(parent: Tree, node: SpanNode) -> None:
        branch = parent.add(_span_label(node, summary.start_time))
        for child in node.children:
            add(branch, child)

    for root in roots:
        add(tree, root)
    return tree


def health_table(snapshot: HealthSnapshot) -> Table:
    """The self-monitor snapshot: status and reasons first, then every counter."""
    table = Table(title="Connector health", show_header=False)
    table.add_column("Field", style="bold", no_wrap=True)
    table.add_column("Value")
    table.add_row("status", Text(snapshot.status, style=_STATUS_STYLE.get(snapshot.status, "")))
    for reason in snapshot.reasons:
        table.add_row("reason", _text(reason, style="yellow"))
    table.add_row("span store", snapshot.store)
    table.add_row("queue", f"{snapshot.queue_depth:,} / {snapshot.queue_capacity:,}")
    table.add_row("circuit breaker (Opik)", snapshot.circuit_state)
    for field in ("submitted", "retried", "spooled", "replayed", "dropped", "rejected"):
        table.add_row(field, fmt_count(getattr(snapshot, field)))
    table.add_row("sampled out", fmt_count(snapshot.sampled_out))
    for sink, count in sorted(snapshot.emitted.items()):
        table.add_row(f"emitted to {sink}", fmt_count(count))
    for sink, size in sorted(snapshot.spool_bytes.items()):
        table.add_row(f"spool {sink}", f"{size:,} bytes")
    cache = snapshot.cache_backend or "none"
    if snapshot.cache_degraded:
        cache += " (degraded: Redis unreachable)"
    table.add_row("metrics cache", cache)
    table.add_row("invalid traceparents", fmt_count(snapshot.invalid_traceparents))
    if snapshot.last_error:
        table.add_row("last error", _text(snapshot.last_error, style="red"))
    return table
