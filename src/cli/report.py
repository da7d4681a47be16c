"""The `e2i-obs report` HTML file: one self-contained page (inline CSS, script and SVG).

Sections: headline numbers; latency percentiles over time, one small chart per agent; error
rate per agent; token usage by agent and by model; LLM cost by agent, by model and over time;
the slowest traces, each opening into its waterfall; a per-agent table.
Everything from the data is HTML-escaped. `render_report` is a pure function of `ReportData`
(tests and the command share it); `write_report` replaces the file atomically.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

from .report_assets import REPORT_CSS, REPORT_JS, SERIES_COLORS
from .report_cost import cost_section
from .report_data import BucketStats, ReportData
from .report_tables import agents_section, empty, error_groups_card, slowest_section
from .report_waterfall import waterfall_section
from .svg import Bar, Segment, Series, bar_chart, line_chart
from .units import fmt_count, fmt_ms, fmt_percent, fmt_time, fmt_tokens, fmt_usd

__all__ = ["render_report", "write_report"]

PERCENTILES = (("p50", "p50 (median)"), ("p95", "p95"), ("p99", "p99"))
DASHED = frozenset({"p99"})


class _Charts:
    """Collects chart SVGs and counts them for the page's render check."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, svg: str) -> str:
        self.count += 1
        return svg


def _axis_ms(value: float) -> str:
    if value == 0:
        return "0"
    return f"{value / 1000:g} s" if value >= 1000 else f"{value:g} ms"


def _bucket_label(start: datetime, width: timedelta, span: timedelta) -> str:
    if span > timedelta(days=1):
        return fmt_time(start, seconds=False)[5:]  # MM-DD HH:MM
    if width < timedelta(seconds=1):
        return start.astimezone(UTC).strftime("%H:%M:%S.%f")[:10]  # tenths of a second
    return fmt_time(start, seconds=width < timedelta(minutes=1))[11:]


def _legend(scope: str, keys: Sequence[tuple[str, str]], hint: str = "") -> str:
    buttons = "".join(
        f'<button type="button" data-toggle="{key}" data-scope="{scope}" aria-pressed="true">'
        f'<span class="swatch{" dashed" if key in DASHED else ""}" '
        f'style="--c:{SERIES_COLORS[key]};background:{SERIES_COLORS[key]}"></span>'
        f"{escape(label)}</button>"
        for key, label in keys
    )
    extra = f'<span class="hint">{escape(hint)}</span>' if hint else ""
    return f'<div class="legend">{buttons}{extra}</div>'


def _kpi(label: str, value: str, detail: str = "", alert: bool = False) -> str:
    cls = "kpi alert" if alert else "kpi"
    return (
        f'<div class="{cls}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div><div class="detail">{escape(detail)}</div></div>'
    )


def _kpis(data: ReportData) -> str:
    m = data.metrics
    llm_calls = sum(s.llm_calls for s in m.agents.values())
    slowest = data.slowest_traces[0] if data.slowest_traces else None
    cards = [
        _kpi("Spans", fmt_count(m.total_spans), f"{m.spans_per_minute:.2f} per minute"),
        _kpi("Agents", fmt_count(len(m.agents)), "with spans in the window"),
        _kpi(
            "Error rate",
            fmt_percent(m.error_rate),
            f"{fmt_count(m.error_count)} error spans",
            alert=m.error_count > 0,
        ),
        _kpi("LLM calls", fmt_count(llm_calls), "spans of kind llm"),
        _kpi(
            "Tokens",
            fmt_tokens(m.total_tokens),
            f"{fmt_tokens(m.input_tokens)} in · {fmt_tokens(m.output_tokens)} out",
        ),
        _kpi(
            "LLM cost",
            fmt_usd(m.cost_usd) if m.priced_llm_calls else "–",
            f"per trace p50 {fmt_usd(m.cost_per_trace_p50)} · p95 {fmt_usd(m.cost_per_trace_p95)}"
            if m.priced_llm_calls
            else "no priced LLM calls",
            alert=m.unpriced_llm_calls > 0 and not m.priced_llm_calls,
        ),
        _kpi(
            "Slowest trace",
            fmt_ms(slowest.duration_ms) if slowest else "–",
            f"{slowest.root_name} ({slowest.agent_name})" if slowest else "no finished traces",
        ),
    ]
    return f'<section class="kpis">{"".join(cards)}</section>'


def _latency_card(agent: str, points: list[BucketStats], data: ReportData, charts: _Charts) -> str:
    axis = data.bucket_width * len(data.bucket_starts)
    labels = [_bucket_label(p.start, data.bucket_width, axis) for p in points]
    series = []
    for key, label in PERCENTILES:
        values = [getattr(p, f"{key}_ms") for p in points]
        tips = [
            f"{agent} · {fmt_time(p.start)} UTC +{_duration(data.bucket_width)}"
            f" · {label} {fmt_ms(v)} · {p.count} spans"
            for p, v in zip(points, values, strict=True)
        ]
        series.append(Series(key, label, SERIES_COLORS[key], values, tips, dashed=key in DASHED))
    stats = data.metrics.agents.get(agent)
    meta = (
        f"{fmt_count(stats.count)} spans · p95 over the window {fmt_ms(stats.p95_ms)}"
        f" · max {fmt_ms(stats.max_ms)}"
        if stats
        else f"{sum(p.count for p in points)} spans"
    )
    svg = line_chart(
        series, labels, y_format=_axis_ms, title=f"{agent}: latency percentiles over time (ms)"
    )
    return (
        f'<div class="card"><h3>{escape(agent)}</h3><div class="meta">{escape(meta)}</div>'
        f"{charts.add(svg)}</div>"
    )


def _duration(width: timedelta) -> str:
    seconds = width.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def _axis_range(data: ReportData) -> str:
    start = data.bucket_starts[0]
    end = start + data.bucket_width * len(data.bucket_starts)
    return f"{escape(fmt_time(start))} to {escape(fmt_time(end))}"


def _latency_section(data: ReportData, charts: _Charts) -> str:
    cards = "".join(
        _latency_card(agent, points, data, charts) for agent, points in data.latency.items()
    )
    body = f'<div class="grid">{cards}</div>' if cards else empty("no finished spans")
    legend = _legend(
        "latency", [(k, label) for k, label in PERCENTILES], "click to show or hide a percentile"
    )
    return (
        '<section id="latency"><h2>Latency percentiles over time</h2>'
        f'<p class="desc">Span duration per agent from {_axis_range(data)} UTC (first to last '
        f"span of the window), in {len(data.bucket_starts)} buckets of "
        f"{_duration(data.bucket_width)}; a gap is a bucket without finished spans. "
        "Each chart has its own scale.</p>"
        f"{legend}{body}</section>"
    )


def _errors_card(data: ReportData, charts: _Charts) -> str:
    stats = sorted(data.metrics.agents.values(), key=lambda s: (-s.error_rate, s.agent_name))
    bars = [
        Bar(
            s.agent_name,
            [Segment("errors", s.error_rate * 100, SERIES_COLORS["errors"])],
            note=f"{fmt_percent(s.error_rate)} · {s.error_count}/{s.count}",
            tip=f"{s.agent_name}: {s.error_count} errors in {s.count} spans",
            emphasis=s.error_count > 0,
        )
        for s in stats
    ]
    largest = max((b.segments[0].value for b in bars), default=0.0)
    body = (
        charts.add(
            bar_chart(
                bars,
                x_format=lambda v: f"{v:g}%",
                title="Error rate per agent (%)",
                maximum=max(largest, 5.0),
            )
        )
        if bars
        else empty("no spans")
    )
    return (
        '<div class="card"><h3>Error rate per agent</h3>'
        '<div class="meta">share of spans with status error (errors / spans)</div>'
        f"{body}</div>"
    )


def _token_bars(rows: Sequence[tuple[str, int, int, int, int]]) -> list[Bar]:
    return [
        Bar(
            label,
            [
                Segment("input", inp, SERIES_COLORS["input"]),
                Segment("output", out, SERIES_COLORS["output"]),
            ],
            note=fmt_tokens(total),
            tip=f"{label}: {inp:,} input + {out:,} output tokens in {calls:,} LLM calls",
        )
        for label, calls, inp, out, total in rows
    ]


def _token_card(
    title: str, meta: str, rows: Sequence[tuple[str, int, int, int, int]], charts: _Charts
) -> str:
    bars = _token_bars([r for r in rows if r[4] > 0])
    body = (
        charts.add(bar_chart(bars, x_format=fmt_tokens, title=f"{title} (tokens)"))
        if bars
        else empty("no LLM token usage recorded")
    )
    return (
        f'<div class="card"><h3>{escape(title)}</h3><div class="meta">{escape(meta)}</div>'
        f"{body}</div>"
    )


def _tokens_section(data: ReportData, charts: _Charts) -> str:
    by_agent = sorted(
        (
            (s.agent_name, s.llm_calls, s.input_tokens, s.output_tokens, s.total_tokens)
            for s in data.metrics.agents.values()
        ),
        key=lambda r: (-r[4], r[0]),
    )
    by_model = [
        (m.model, m.llm_calls, m.input_tokens, m.output_tokens, m.total_tokens)
        for m in data.tokens_by_model
    ]
    legend = _legend("tokens", [("input", "input tokens"), ("output", "output tokens")])
    return (
        '<section id="tokens"><h2>Token usage</h2>'
        '<p class="desc">Tokens of LLM spans (a parent span never double-counts its '
        "children), input and output stacked.</p>"
        f'{legend}<div class="two" id="tokens-cards">'
        f"{_token_card('Tokens by agent', 'all LLM calls of each agent', by_agent, charts)}"
        f"{_token_card('Tokens by model', 'model reported by the LLM', by_model, charts)}"
        "</div></section>"
    )


def render_report(data: ReportData, generated_at: datetime) -> str:
    """The whole HTML page for `data`."""
    m = data.metrics
    charts = _Charts()
    latency = _latency_section(data, charts)
    errors_tokens = (
        '<section id="errors"><h2>Errors</h2>'
        '<p class="desc">Agents sorted by error rate; highlighted agents had errors.</p>'
        f'<div class="two">{_errors_card(data, charts)}{error_groups_card(data)}</div></section>'
    )
    tokens = _tokens_section(data, charts)
    cost = cost_section(data, charts.add, empty("no priced LLM calls"))
    truncated = (
        f'<div class="note">Only the most recent {data.span_count:,} spans were loaded for the '
        "time series, model tokens and slowest traces; per-agent totals cover the whole "
        "window.</div>"
        if data.truncated
        else ""
    )
    title = f"E2I agent observability, last {m.time_window}"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{REPORT_CSS}</style></head>"
        f'<body data-charts="{charts.count}">'
        f"<header><h1>{escape(title)}</h1>"
        f'<div class="sub">{escape(fmt_time(m.window_start))} → '
        f"{escape(fmt_time(m.window_end))} UTC · store <code>{escape(data.store)}</code> · "
        f"generated {escape(fmt_time(generated_at))} UTC</div></header>"
        f"<main>{_kpis(data)}{truncated}{latency}{errors_tokens}{tokens}{cost}"
        f"{slowest_section(data)}{waterfall_section(data)}{agents_section(data)}"
        "<footer>Generated by <code>e2i-obs report</code>. Percentiles interpolate linearly "
        "between closest ranks (PostgreSQL percentile_cont). Times are UTC. The page needs "
        "no network.</footer></main>"
        f'<div id="tooltip" hidden></div><script>{REPORT_JS}</script></body></html>'
    )


def _new_file_mode() -> int:
    """0666 minus the process umask: the mode `open(path, "w")` would have given."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_report(path: Path, html: str) -> None:
    """Write `html` to `path` atomically (a reader never sees half a report)."""
    path = Path(path)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(html)
        os.chmod(temp, _new_file_mode())  # mkstemp makes 0600; a report is for sharing
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
