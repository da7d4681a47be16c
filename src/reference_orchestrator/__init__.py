"""The reference orchestrator: a LangGraph graph that uses the observability connector three
ways (explicit spans, callback handler, the observability graph as a subgraph node)."""

from .fake_llm import DemoChatModel, InjectedLLMFailure, UsageLedger, build_demo_chat_model
from .graph import build_orchestrator_graph
from .health import AgentAlert, OrchestratorSettings, check_health
from .runner import Orchestrator, OrchestratorReport, RequestResult, run_orchestrator

__all__ = [
    "AgentAlert",
    "DemoChatModel",
    "InjectedLLMFailure",
    "Orchestrator",
    "OrchestratorReport",
    "OrchestratorSettings",
    "RequestResult",
    "UsageLedger",
    "build_demo_chat_model",
    "build_orchestrator_graph",
    "check_health",
    "run_orchestrator",
]
