"""Small domain agents the orchestrator dispatches to, each its own compiled LangGraph graph.

They contain no tracing code at all: the orchestrator runs each with
`config={"callbacks": [obs.callback_handler(name)]}` and the callback handler turns the graph
run, its nodes and its LLM call into spans (the design's first way in). Each agent is two
steps, one asking the chat model and one shaping its reply, like the real E2I agents' think /
format split.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from typing_extensions import TypedDict

__all__ = ["DEFAULT_DOMAIN_AGENTS", "DomainAgentSpec", "DomainState", "build_domain_agent"]


@dataclass(frozen=True, slots=True)
class DomainAgentSpec:
    name: str
    """Agent name, as in config/agent_config.yaml (it sets the span's agent and tier)."""
    step: str
    """Name of the node that asks the model."""
    instructions: str
    """System prompt of that node."""


DEFAULT_DOMAIN_AGENTS: tuple[DomainAgentSpec, ...] = (
    DomainAgentSpec(
        "causal_impact",
        "estimate_effect",
        "You are a causal analyst. Estimate the causal effect the question is about; name the "
        "driver, the effect size and how confident you are.",
    ),
    DomainAgentSpec(
        "gap_analyzer",
        "find_gaps",
        "You compare segments. Find the largest performance gaps the question touches and "
        "rank them by their value at stake.",
    ),
    DomainAgentSpec(
        "explainer",
        "explain",
        "You explain analytics results to a commercial audience in two plain sentences.",
    ),
)


class DomainState(TypedDict, total=False):
    question: str
    draft: str
    finding: str


def build_domain_agent(spec: DomainAgentSpec, llm: BaseChatModel) -> CompiledStateGraph:
    """`START -> <spec.step> (LLM) -> report -> END`, compiled under the agent's name."""

    async def ask_model(state: Mapping[str, Any]) -> dict[str, Any]:
        messages = [SystemMessage(spec.instructions), HumanMessage(state["question"])]
        response = await llm.ainvoke(messages)
        return {"draft": str(response.content)}

    def report(state: Mapping[str, Any]) -> dict[str, Any]:
        return {"finding": f"{spec.name}: {state['draft'].strip()}"}

    builder = StateGraph(DomainState)
    builder.add_node(spec.step, ask_model)
    builder.add_node("report", report)
    builder.add_edge(START, spec.step)
    builder.add_edge(spec.step, "report")
    builder.add_edge("report", END)
    return builder.compile(name=spec.name)
