"""What a window of LLM calls cost: the fields every metrics model shares, and the rows the
cost breakdown (`e2i-obs cost`, the report's cost panel) is made of.

Costs are USD floats summed over `llm` spans only (a parent never double-counts its children).
A call with no known price (`cost_usd` null on the span) adds nothing to `cost_usd` and is
counted in `unpriced_llm_calls`, so a reader can tell "cheap" from "not priced". Cost per trace
is the sum of a trace's priced LLM calls inside the window, and its percentiles run over the
traces that have at least one priced call (linear interpolation, like the latency percentiles).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["COST_BREAKDOWN_KEYS", "CostBreakdownRow", "CostFields", "CostSummary", "merge_costs"]

COST_BREAKDOWN_KEYS = ("agent", "model", "day", "provider")
"""What `get_cost_breakdown(window, by=...)` groups by (`day` is the UTC date)."""
CostBy = Literal["agent", "model", "day", "provider"]


class CostFields(BaseModel):
    """Cost figures of a window, for one agent (`LatencyStats`) or all (`QualityMetrics`)."""

    model_config = ConfigDict(extra="forbid")

    cost_usd: float = Field(default=0.0, ge=0.0)
    """Sum of the priced LLM calls, USD."""
    priced_llm_calls: int = Field(default=0, ge=0)
    unpriced_llm_calls: int = Field(default=0, ge=0)
    """LLM calls whose model has no known price: not in `cost_usd`."""
    traces_with_cost: int = Field(default=0, ge=0)
    cost_per_trace_p50: float | None = None
    cost_per_trace_p95: float | None = None
    cost_by_model: dict[str, float] = Field(default_factory=dict)
    """USD per model (the model the span names; calls without a model under `unknown`)."""

    def cost_fields(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in CostFields.model_fields}


class CostSummary(CostFields):
    """One row of a backend's cost statistics: an agent, or the whole window (`agent_name`
    None)."""

    agent_name: str | None = None


class CostBreakdownRow(BaseModel):
    """Cost and token kinds of one group (an agent, a model, a UTC day or a provider)."""

    model_config = ConfigDict(extra="forbid")

    key: str
    llm_calls: int = Field(default=0, ge=0)
    priced_llm_calls: int = Field(default=0, ge=0)
    traces: int = Field(default=0, ge=0)
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cache_read_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)
    cost_usd: float = Field(default=0.0, ge=0.0)


def merge_costs(parts: list[CostFields]) -> dict[str, object]:
    """Totals of several agents' cost fields (percentiles cannot be merged: None)."""
    by_model: dict[str, float] = {}
    for part in parts:
        for model, cost in part.cost_by_model.items():
            by_model[model] = by_model.get(model, 0.0) + cost
    return {
        "cost_usd": sum(p.cost_usd for p in parts),
        "priced_llm_calls": sum(p.priced_llm_calls for p in parts),
        "unpriced_llm_calls": sum(p.unpriced_llm_calls for p in parts),
        "traces_with_cost": 0,
        "cost_per_trace_p50": None,
        "cost_per_trace_p95": None,
        "cost_by_model": dict(sorted(by_model.items())),
    }
