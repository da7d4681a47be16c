"""ObservabilityConnectorAgent: the facade wired from config, end to end on real parts.

Real langgraph + langchain-core (a fake chat model carrying real usage_metadata), the real
batch processor writing to real SQLite, and the real opik REST client against the loopback
Opik server for the degraded-mode case.
"""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, StateGraph

from src.agents.ml_foundation.observability_connector.agent import ObservabilityConnectorAgent
from src.agents.ml_foundation.observability_connector.config import load_config


def make_config(tmp_path, **opik):
    return load_config(
        env={},
        overrides={
            "storage": {
                "backend": "sqlite",
                "sqlite_path": str(tmp_path / "spans.db"),
                "spool_dir": str(tmp_path / "spool"),
            },
            "opik": {"enabled": False, **opik},
            "batching": {
                "max_batch_wait_seconds": 0.05,
                "retry_base_delay_seconds": 0.01,
                "retry_max_attempts": 1,
            },
        },
    )


def fake_model(n: int) -> GenericFakeChatModel:
    replies = [
        AIMessage(
            content=f"answer {i}",
            usage_metadata={
                "input_tokens": 10 + i,
                "output_tokens": 5 + i,
                "total_tokens": 15 + 2 * i,
            },
            response_metadata={"model_name": "fake-sonnet"},
        )
        for i in range(n)
    ]
    return GenericFakeChatModel(messages=iter(replies))


class State(TypedDict):
    notes: Annotated[list[str], operator.add]


def two_node_graph(model):
    def plan(state: State) -> dict:
        return {"notes": [model.invoke("plan the analysis").content]}

    def explain(state: State) -> dict:
        return {"notes": [model.invoke("explain it").content]}

    builder = StateGraph(State)
    builder.add_node("plan", plan)
    builder.add_node("explain", explain)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "explain")
    builder.add_edge("explain", END)
    return builder.compile(name="gap_analyzer_graph")


async def test_agent__handler_then_metrics_in_graph_state__tokens_match_usage_callback(tmp_path):
    async with ObservabilityConnectorAgent(make_config(tmp_path)) as obs:
        graph = two_node_graph(fake_model(6))
        reference = UsageMetadataCallbackHandler()
        for _ in range(3):
            await graph.ainvoke(
                {"notes": []},
                config={"callbacks": [obs.callback_handler("gap_analyzer"), reference]},
            )
        assert obs.flush(10)

        state = await obs.graph.ainvoke({"operation": "query_metrics", "time_window": "1h"})
        metrics = state["quality_metrics"]
        usage = reference.usage_metadata["fake-sonnet"]
        assert metrics.agents["gap_analyzer"].llm_calls == 6
        assert metrics.input_tokens == usage["input_tokens"]
        assert metrics.output_tokens == usage["output_tokens"]
        assert metrics.total_tokens == usage["total_tokens"]
        # 3 runs x (graph root + 2 nodes + 2 llm calls)
        assert metrics.total_spans == 15
        assert metrics.error_count == 0
        assert state.get("errors", []) == []

        again = await obs.get_quality_metrics("1h")
        assert again == metrics
        health = obs.health()
        assert health.status == "healthy", health.reasons
        assert health.cache_hits >= 1
        assert health.emitted == {"database": 15}
        assert health.circuit_state == "disabled"


async def test_agent__opik_down__database_only_and_health_degraded(tmp_path, opik_server):
    opik_server.fail_with(503)
    config = make_config(
        tmp_path, enabled=True, url_override=opik_server.base_url, timeout_seconds=2
    )
    config = config.model_copy(
        update={
            "circuit_breaker": config.circuit_breaker.model_copy(update={"failure_threshold": 2})
        }
    )
    with ObservabilityConnectorAgent(config) as obs:
        graph = two_node_graph(fake_model(6))
        for _ in range(3):
            await graph.ainvoke({"notes": []}, config={"callbacks": [obs.callback_handler()]})
            assert obs.flush(10)
        health = obs.health()
        assert health.circuit_state == "open"
        assert health.status == "degraded"
        assert any("database-only" in r for r in health.reasons)
        assert health.emitted["database"] == 15
        assert health.sampled_out == 0
        metrics = await obs.get_quality_metrics("1h")
        assert metrics.total_spans == 15


async def test_agent__malformed_traceparent__counted_in_health_and_reported(tmp_path):
    async with ObservabilityConnectorAgent(make_config(tmp_path)) as obs:
        state = await obs.graph.ainvoke(
            {"operation": "query_metrics", "time_window": "1h", "traceparent": "00-XYZ-bad-01"}
        )
        assert any("traceparent" in message for message in state["errors"])
        assert obs.health().invalid_traceparents == 1
