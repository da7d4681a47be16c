"""Cost statistics of a window from write-side state, O(slots) not O(spans in the window).

Why: `get_cost_stats` computed cost per trace p50/p95 by grouping every LLM span of the
window by trace; at 1M spans that was most of a cold `get_quality_metrics`. Now:
- totals, priced/unpriced calls and cost by model come from the rollups
  (`ml_observability_rollups`: cost_usd, priced_calls, llm_calls per slot, agent and model)
  with the window split of the other rollup reads (`split_window`: raw edges, minute and hour
  slots), so they stay exact;
- cost per trace: every insert keeps each trace's running cost per agent and over all agents
  (grp '') in `ml_observability_trace_costs` and moves the trace between the buckets of a
  cost sketch (`ml_observability_trace_cost_sketches`: traces per bucket, the latency
  sketch's 1% buckets applied to USD, packed per slot and grp like the latency sketches, in
  1-minute, 10-minute, 1-hour and 6-hour slots, so a 24 h window reads a few dozen rows per
  grp, added up by `sketch.Histogram`). A trace counts in the minute its first
  priced LLM call was first stored, with its cost so far; the sketch of a window covers the
  whole minutes whose start lies in it (`trace_bounds`), so p50/p95 are within 1% of
  `percentile_cont` over the traces of those minutes, and `traces_with_cost` counts them.
  A trace straddling the window's start counts with its whole cost or not at all.
`exact=True` computes everything from the raw spans as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from src.agents.ml_foundation.observability_connector.cost_models import CostSummary
from src.repositories._arguments import Window
from src.repositories._rows import cost_from_row
from src.repositories._sqlite_sql import NO_MODEL  # calls without a model; rollups store ''
from src.repositories.rollups import MINUTE, RollupBounds, floor_slot, split_window
from src.repositories.sketch import Histogram

__all__ = [
    "COST_BOUND_NAMES",
    "WHOLE",
    "cost_bounds",
    "cost_stats_from_rollups",
    "trace_bounds",
]

WHOLE = ""
"""The grp of the whole window's trace costs (every agent's calls of a trace)."""


COST_BOUND_NAMES = (
    *("start", "minute_from", "hour_from", "hour_to", "minute_to", "end"),
    *("trace_minute_from", "trace_ten_from", "trace_hour_from", "trace_six_from"),
    *("trace_six_to", "trace_hour_to", "trace_ten_to", "trace_minute_to"),
)
"""The parameters of a rollup cost read, in `cost_bounds` order (SQL functions: `p_` + name).
The totals table has minute and hour slots only: minutes in [minute_from, hour_from) and
[hour_to, minute_to), hours in [hour_from, hour_to) (`split_window`'s 10-minute and 6-hour
ranges lie inside those, so the same bounds split the window into minutes and hours). The
cost sketch has all four tiers: `trace_bounds` split as `RollupBounds` says."""


def trace_bounds(window: Window) -> RollupBounds:
    """The whole minutes of the cost sketch: those whose start lies in [start, end] (the
    minute holding `end`, still filling, included; the partial first minute not)."""
    end = floor_slot(window.end, MINUTE) + timedelta(seconds=MINUTE)
    return split_window(Window(start=window.start, end=end, length=end - window.start))


def cost_bounds(window: Window) -> tuple[datetime, ...]:
    """The values of `COST_BOUND_NAMES` for `window`."""
    split, trace = split_window(window), trace_bounds(window)
    return (
        *(split.start, split.minute_from, split.hour_from, split.hour_to, split.minute_to),
        split.end,
        *(trace.minute_from, trace.ten_from, trace.hour_from, trace.six_from),
        *(trace.six_to, trace.hour_to, trace.ten_to, trace.minute_to),
    )


def cost_stats_from_rollups(
    rows: Iterable[Sequence[Any]], agent_name: str | None
) -> list[CostSummary]:
    """`CostSummary` rows (the window first, then agents in "C" order) from a rollup cost
    read: (agent, model, cost, priced, llm calls, None x 5) rows and (grp, None x 4, traces,
    zero count, low, high, packed) rows, one per cost sketch row. Like the raw computation,
    agents without LLM calls in the window get no row, and no LLM call at all gives no rows."""
    calls: dict[str, list[Any]] = {}  # agent: [cost, priced, llm calls, {model: cost}]
    sketches: dict[str, tuple[list[int], Histogram]] = {}  # grp: ([traces], histogram)
    for agent, model, cost, priced, llm_calls, traces, zeros, low, high, packed in rows:
        if traces is None:
            totals = calls.setdefault(agent, [0, 0, 0, {}])
            totals[0] += cost
            totals[1] += int(priced)
            totals[2] += int(llm_calls)
            if priced:
                key = model or NO_MODEL
                totals[3][key] = totals[3].get(key, 0) + cost
        else:
            counted, histogram = sketches.setdefault(agent, ([0], Histogram()))
            counted[0] += int(traces)
            histogram.add(int(zeros), low, high, packed)
    if not calls:
        return []
    whole: list[Any] = [0, 0, 0, {}]
    for cost, priced, llm_calls, by_model in calls.values():
        whole[0] += cost
        whole[1] += priced
        whole[2] += llm_calls
        for model, model_cost in by_model.items():
            whole[3][model] = whole[3].get(model, 0) + model_cost
    groups = [(None, whole, WHOLE if agent_name is None else agent_name)]
    groups += [(a, calls[a], a) for a in sorted(calls, key=lambda a: a.encode("utf-8"))]
    result = []
    for name, (cost, priced, llm_calls, by_model), grp in groups:
        counted, histogram = sketches.get(grp, ([0], Histogram()))
        p50, p95 = histogram.quantiles((0.50, 0.95), total=counted[0])
        result.append(
            cost_from_row((name, cost, priced, llm_calls - priced, counted[0], p50, p95, by_model))
        )
    return result
