"""The report's cost panel: LLM cost by agent, by model and over time.

Numbers by agent and by model come from the store's window statistics (`QualityMetrics`, the
same as `e2i-obs metrics` and `e2i-obs cost`); cost over time from the priced LLM spans the
report loaded, in the latency charts' buckets. Calls without a known price are counted, never
shown as free.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

from .report_assets import SERIES_COLORS
from .report_data import ReportData
from .svg import Bar, Segment, Series, bar_chart, line_chart
from .units import fmt_count, fmt_time, fmt_usd

__all__ = ["cost_section"]


def _bars(rows: list[tuple[str, float, str]]) -> list[Bar]:
    return [
        Bar(label, [Segment("cost", cost, SERIES_COLORS["cost"])], note=fmt_usd(cost), tip=tip)
        for label, cost, tip in rows
    ]


def _card(title: str, meta: str, body: str) -> str:
    return (
        f'<div class="card"><h3>{escape(title)}</h3><div class="meta">{escape(meta)}</div>'
        f"{body}</div>"
    )


def cost_section(data: ReportData, add_chart: Callable[[str], str], empty: str) -> str:
    """The cost section; `add_chart` registers each chart (the page counts them)."""
    m = data.metrics
    agents = sorted(
        (s for s in m.agents.values() if s.priced_llm_calls),
        key=lambda s: (-s.cost_usd, s.agent_name),
    )
    by_agent = _bars(
        [
            (
                s.agent_name,
                s.cost_usd,
                f"{s.agent_name}: {fmt_usd(s.cost_usd)} in {s.priced_llm_calls:,} priced LLM calls"
                f" · per trace p50 {fmt_usd(s.cost_per_trace_p50)}, p95 "
                f"{fmt_usd(s.cost_per_trace_p95)}",
            )
            for s in agents
        ]
    )
    models = sorted(m.cost_by_model.items(), key=lambda item: (-item[1], item[0]))
    by_model = _bars([(name, cost, f"{name}: {fmt_usd(cost)}") for name, cost in models])
    points = data.cost_series
    labels = [fmt_time(p.start, seconds=False)[5:] for p in points]
    tips = [
        f"{fmt_time(p.start)} UTC: {fmt_usd(p.cost_usd)}"
        + "".join(f" · {k} {fmt_usd(v)}" for k, v in sorted(p.by_model.items()))
        for p in points
    ]
    has_cost = any(p.cost_usd for p in points)
    over_time = (
        add_chart(
            line_chart(
                [Series("cost", "cost", SERIES_COLORS["cost"], [p.cost_usd for p in points], tips)],
                labels,
                y_format=fmt_usd,
                title="LLM cost per time bucket (USD)",
            )
        )
        if has_cost
        else empty
    )
    unpriced = (
        f" {fmt_count(m.unpriced_llm_calls)} LLM calls had no known price and are not in these "
        "totals (add the model under pricing.models in the configuration)."
        if m.unpriced_llm_calls
        else ""
    )

    def chart(bars: list[Bar], title: str) -> str:
        return add_chart(bar_chart(bars, x_format=fmt_usd, title=title))

    return (
        '<section id="cost"><h2>Cost</h2>'
        f'<p class="desc">USD of the priced LLM calls in the window: {escape(fmt_usd(m.cost_usd))}'
        f" in {fmt_count(m.priced_llm_calls)} calls; per trace p50 "
        f"{escape(fmt_usd(m.cost_per_trace_p50))}, p95 {escape(fmt_usd(m.cost_per_trace_p95))}."
        f"{escape(unpriced)}</p>"
        '<div class="grid" id="cost-cards">'
        + _card(
            "Cost by agent",
            "priced LLM calls of each agent",
            chart(by_agent, "Cost by agent (USD)") if by_agent else empty,
        )
        + _card(
            "Cost by model",
            "model reported by the LLM",
            chart(by_model, "Cost by model (USD)") if by_model else empty,
        )
        + _card("Cost over time", "priced LLM calls per bucket, by start time", over_time)
        + "</div></section>"
    )
