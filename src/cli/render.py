"""Rich renderables for the terminal: the metrics table, the traces table, one trace as a tree,
and the health snapshot. Pure functions of their data (no I/O); user data (agent and operation
names, error messages) goes in as `Text`, never as markup, so a `[` in a name cannot restyle
the output.
"""

from __future__ import annotations

from datetime import datetime

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    QualityMetrics,
    SpanStatus,
)
from src.agents.ml_foundation.observability_connector.self_monitor import HealthSnapshot

from .traces import SpanNode, TraceSummary
from .units import fmt_count, fmt_ms, fmt_percent, fmt_time, fmt_tokens

__all__ = ["health_table", "metrics_table", "trace_tree", "traces_table"]

_STATUS_STYLE = {"healthy": "bold green", "degraded": "bold yellow", "unhealthy": "bold red"}
_MAX_ERROR_CHARS = 120


def _error_style(count: int) -> str:
    return "red" if count else ""


def metrics_table(metrics: QualityMetrics) -> Table:
    """Per-agent statistics with a totals row; durations in ms, tokens of LLM spans only."""
    table = Table(
        title=(
            f"Agent metrics, last {metrics.time_window} "
            f"({fmt_time(metrics.window_start)} → {fmt_time(metrics.window_end)} UTC)"
        ),
        caption="tokens: LLM spans only (input + output)",
        show_footer=bool(metrics.agents),
    )
    table.add_column("Agent", footer="all agents", no_wrap=True)
    table.add_column("Tier", justify="right")
    table.add_column("Spans", justify="right", footer=fmt_count(metrics.total_spans))
    table.add_column("Errors", justify="right", footer=fmt_count(metrics.error_count))
    table.add_column("Error rate", justify="right", footer=fmt_percent(metrics.error_rate))
    for label in ("p50", "p95", "p99"):
        table.add_column(label, justify="right")
    table.add_column("LLM calls", justify="right")
    table.add_column("Tokens", justify="right", footer=fmt_tokens(metrics.total_tokens))
    for name in sorted(metrics.agents):
        s = metrics.agents[name]
        table.add_row(
            Text(name),
            "–" if s.agent_tier is None else str(s.agent_tier),
            fmt_count(s.count),
            Text(fmt_count(s.error_count), style=_error_style(s.error_count)),
            Text(fmt_percent(s.error_rate), style=_error_style(s.error_count)),
            fmt_ms(s.p50_ms),
            fmt_ms(s.p95_ms),
            fmt_ms(s.p99_ms),
            fmt_count(s.llm_calls),
            fmt_tokens(s.total_tokens),
        )
    return table


def traces_table(summaries: list[TraceSummary], window: str) -> Table:
    """One line per trace, newest first."""
    table = Table(title=f"Traces, last {window} (newest first)")
    table.add_column("Trace ID", no_wrap=True, style="cyan")
    table.add_column("Root", no_wrap=True)
    table.add_column("Agent", no_wrap=True)
    table.add_column("Start (UTC)", no_wrap=True)
    table.add_column("Duration", justify="right")
    table.add_column("Spans", justify="right")
    table.add_column("Errors", justify="right")
    table.add_column("Tokens", justify="right")
    for t in summaries:
        table.add_row(
            t.trace_id,
            Text(t.root_name),
            Text(t.agent_name),
            fmt_time(t.start_time),
            fmt_ms(t.duration_ms),
            fmt_count(t.span_count),
            Text(fmt_count(t.error_count), style=_error_style(t.error_count)),
            fmt_tokens(t.total_tokens),
        )
    return table


def _status_text(span: ObservabilitySpan) -> Text:
    if span.status is SpanStatus.ERROR:
        detail = ": ".join(p for p in (span.error_type, span.error_message) if p)
        if len(detail) > _MAX_ERROR_CHARS:
            detail = detail[: _MAX_ERROR_CHARS - 1] + "…"
        return Text("✗ error" + (f" ({detail})" if detail else ""), style="bold red")
    if span.status is SpanStatus.STARTED:
        return Text("… running", style="yellow")
    return Text("✓ ok", style="green")


def _span_label(node: SpanNode, trace_start: datetime) -> Text:
    span = node.span
    offset = (span.start_time - trace_start).total_seconds() * 1000.0
    label = Text.assemble(
        (span.operation_name, "bold"),
        "  ",
        (f"[{span.span_kind.value}] ", "magenta"),
        (span.agent_name, "blue"),
        "  ",
        (fmt_ms(span.duration_ms), "bold"),
        (f" at +{fmt_ms(offset)}  ", "dim"),
        _status_text(span),
    )
    if span.llm_model:
        label.append(f"  model {span.llm_model}", style="cyan")
    if span.total_tokens is not None:
        label.append(
            f"  tokens {fmt_count(span.input_tokens or 0)} in / "
            f"{fmt_count(span.output_tokens or 0)} out",
            style="dim cyan",
        )
    if node.orphan:
        label.append(f"  (parent {span.parent_span_id} not stored)", style="dim yellow")
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
        f"  {fmt_tokens(summary.total_tokens)} tokens",
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
        table.add_row("reason", Text(reason, style="yellow"))
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
        table.add_row("last error", Text(snapshot.last_error, style="red"))
    return table
