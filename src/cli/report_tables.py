"""The report's tables: slowest traces, most frequent errors, per-agent summary.

Plain HTML tables (sortable by the page's script where `th` has a `data-type`); every value
from the data is escaped.
"""

from __future__ import annotations

from html import escape

from .report_data import ReportData
from .units import fmt_ms, fmt_percent, fmt_time, fmt_tokens, fmt_usd

__all__ = ["agents_section", "clip", "empty", "error_groups_card", "slowest_section"]


def empty(text: str) -> str:
    return f'<div class="empty">{escape(text)}</div>'


def error_groups_card(data: ReportData) -> str:
    if not data.error_groups:
        body = empty("no errors in this window")
    else:
        rows = "".join(
            f"<tr><td>{escape(g.agent_name)}</td>"
            f'<td class="msg"><div class="etype">{escape(g.error_type)}</div>'
            f'<div title="{escape(g.last_message or "")}">'
            f"{escape(clip(g.last_message or 'no message', 90))}</div></td>"
            f'<td class="num err">{g.count:,}</td>'
            f"<td>{escape(fmt_time(g.last_seen))}</td></tr>"
            for g in data.error_groups
        )
        body = (
            "<table><thead><tr><th>Agent</th><th>Error type and last message</th>"
            '<th class="num">Count</th><th>Last seen (UTC)</th></tr>'
            f"</thead><tbody>{rows}</tbody></table>"
        )
    return (
        '<div class="card"><h3>Most frequent errors</h3>'
        '<div class="meta">error spans grouped by agent and error type</div>'
        f"{body}</div>"
    )


def clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slowest_section(data: ReportData) -> str:
    traces = data.slowest_traces
    if not traces:
        placeholder = empty("no finished traces")
        return f'<section id="slowest"><h2>Slowest traces</h2>{placeholder}</section>'
    longest = max(t.duration_ms or 0.0 for t in traces) or 1.0
    rows = []
    for rank, t in enumerate(traces, start=1):
        width = max(2.0, (t.duration_ms or 0.0) / longest * 120)
        err = ' class="num err"' if t.error_count else ' class="num"'
        rows.append(
            f'<tr><td class="num" data-sort="{rank}">{rank}</td>'
            f'<td class="num" data-sort="{t.duration_ms:.3f}"><div class="durcell">'
            f'<span class="durbar" style="width:{width:.0f}px"></span>'
            f"{escape(fmt_ms(t.duration_ms))}</div></td>"
            f"<td>{escape(t.root_name)}</td><td>{escape(t.agent_name)}</td>"
            f"<td>{escape(fmt_time(t.start_time))}</td>"
            f'<td class="num">{t.span_count}</td><td{err}>{t.error_count}</td>'
            f'<td class="num" data-sort="{t.total_tokens}">{escape(fmt_tokens(t.total_tokens))}'
            f'</td><td class="num" data-sort="{t.cost_usd or 0}">{escape(fmt_usd(t.cost_usd))}'
            f'</td><td class="id"><a href="#trace-{t.trace_id}">{t.trace_id}</a></td></tr>'
        )
    head = (
        '<tr><th class="num" data-type="num">#</th><th class="num" data-type="num">Duration</th>'
        '<th data-type="text">Root operation</th><th data-type="text">Agent</th>'
        '<th data-type="text">Start (UTC)</th><th class="num" data-type="num">Spans</th>'
        '<th class="num" data-type="num">Errors</th><th class="num" data-type="num">Tokens</th>'
        '<th class="num" data-type="num">Cost</th><th>Trace ID (opens its waterfall)</th></tr>'
    )
    return (
        '<section id="slowest"><h2>Slowest traces</h2>'
        f'<p class="desc">The {len(traces)} longest traces in the window (first span start to '
        "last span end). Click a trace ID for its waterfall below, or run "
        "<code>e2i-obs trace TRACE_ID</code>.</p>"
        f'<div class="table-wrap"><table class="sortable"><thead>{head}</thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
        "</section>"
    )


def agents_section(data: ReportData) -> str:
    stats = [data.metrics.agents[name] for name in sorted(data.metrics.agents)]
    if not stats:
        return ""
    rows = "".join(
        f"<tr><td>{escape(s.agent_name)}</td>"
        f'<td class="num">{"–" if s.agent_tier is None else s.agent_tier}</td>'
        f'<td class="num">{s.count:,}</td>'
        f'<td class="num{" err" if s.error_count else ""}">{s.error_count:,}</td>'
        f'<td class="num" data-sort="{s.error_rate}">{fmt_percent(s.error_rate)}</td>'
        + "".join(
            f'<td class="num" data-sort="{v or 0}">{escape(fmt_ms(v))}</td>'
            for v in (s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms)
        )
        + f'<td class="num">{s.llm_calls:,}</td>'
        f'<td class="num" data-sort="{s.total_tokens}">{escape(fmt_tokens(s.total_tokens))}</td>'
        f'<td class="num" data-sort="{s.cost_usd}">'
        f"{escape(fmt_usd(s.cost_usd if s.priced_llm_calls else None))}</td>"
        "</tr>"
        for s in stats
    )
    cols = ("Tier", "Spans", "Errors", "Error rate", "p50", "p95", "p99", "Max", "LLM calls")
    head = '<th data-type="text">Agent</th>' + "".join(
        f'<th class="num" data-type="num">{c}</th>' for c in (*cols, "Tokens", "Cost")
    )
    return (
        '<section id="agents"><h2>Per-agent summary</h2>'
        '<p class="desc">The whole window, computed by the span store (same numbers as '
        "<code>e2i-obs metrics</code>).</p>"
        f'<div class="table-wrap"><table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
        "</section>"
    )
