"""The orchestrator graph's state.

It shares the observability graph's keys (`operation`, `spans`, `time_window`, `traceparent`,
`trace_context`, `emission_result`, `quality_metrics`, `errors`), so that compiled graph can be
one of its nodes: LangGraph hands a subgraph node the parent's values for the keys they share
and folds the subgraph's outputs back with the parent's reducers. `spans` reuses the
observability graph's `merge_spans` (de-duplicating, consumable); `errors` accumulates.
`agent_name` is deliberately absent: the observability graph would read it as "metrics of this
agent only", and the health check wants all agents.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, Any

from typing_extensions import TypedDict

from src.agents.ml_foundation.observability_connector.models import (
    EmissionResult,
    ObservabilitySpan,
    QualityMetrics,
)
from src.agents.ml_foundation.observability_connector.state import merge_spans

from .health import AgentAlert

__all__ = ["AgentResult", "DomainTask", "OrchestratorState"]


@dataclass(frozen=True, slots=True)
class AgentResult:
    """What one domain agent contributed to a request."""

    agent_name: str
    ok: bool
    finding: str | None = None
    error: str | None = None
    """`<ExceptionType>: <message>` when the agent failed."""


class DomainTask(TypedDict):
    """The payload `Send` hands a domain agent node."""

    request: str
    request_id: str
    traceparent: str | None


class OrchestratorState(TypedDict, total=False):
    request: str
    """The user's question."""
    request_id: str
    intent: list[str]
    """Domain agents the intent classifier routed the request to."""
    agent_results: Annotated[list[AgentResult], operator.add]
    answer: str
    health: list[AgentAlert]
    """Agents over a threshold in the window metrics seen after this request."""

    # shared with the observability graph
    traceparent: str | None
    """W3C context of the request's root span: every node joins it explicitly."""
    operation: str
    spans: Annotated[list[ObservabilitySpan | dict[str, Any]], merge_spans]
    time_window: str
    trace_context: dict[str, Any]
    emission_result: EmissionResult
    quality_metrics: QualityMetrics
    errors: Annotated[list[str], operator.add]
