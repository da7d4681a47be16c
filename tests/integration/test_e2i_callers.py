"""Nine representative E2I callers, written the way E2I's modules call the connector
(E2I's integration notes, §1-4), run unchanged against the process default.

Each caller below is what an E2I module does: an agent node, a per-agent tracer driving the
context manager by hand, an LLM tracer, the seed's orchestrator, RAG evaluation guarding its
own Opik calls with the breaker, the feedback API, the model-serving audit, a chatbot tool and
API start-up/shutdown. The test runs them all and reads every trace back from the store
(SQLite and PostgreSQL, Opik on and off).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from src.agents.ml_foundation.observability_connector.models import SpanKind, SpanStatus
from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    new_trace_id,
    opik_trace_uuid,
)
from src.mlops import OpikConfig, OpikConnector, get_opik_connector
from tests.fixtures.e2i_connector import E2IStore

logger = logging.getLogger("e2i.callers")


def uuid7() -> uuid.UUID:
    return uuid.UUID(new_trace_id())


class RefutationError(RuntimeError):
    pass


# -- 1. an agent node (causal_impact) --------------------------------------------------------
async def causal_impact_node(state: dict[str, Any]) -> dict[str, Any]:
    opik = get_opik_connector()
    if opik and opik.is_enabled:
        async with opik.trace_agent(
            agent_name="causal_impact",
            operation="estimate",
            trace_id=state.get("query_id"),
            parent_span_id=state.get("span_id"),
            metadata={"treatment": state["treatment"]},
            tags=["causal_impact", "tier_2"],
            input_data={"query": state["query"]},
            force_new_trace=False,
        ) as span:
            span.set_attribute("brand", "Kisqali")
            span.set_input({"query": state["query"], "treatment": state["treatment"]})
            child_parent = span.span_id
            async with opik.trace_agent(
                "causal_impact", "refute", trace_id=state.get("query_id"),
                parent_span_id=child_parent,
            ) as refute:  # fmt: skip
                refute.add_event("placebo_test", attributes={"p_value": 0.41})
            span.set_output({"ate": 0.12})
    return {**state, "ate": 0.12}


# -- 2. a per-agent tracer driving the context manager by hand --------------------------------
class HeterogeneousOptimizerTracer:
    def __init__(self) -> None:
        self._opik = get_opik_connector()

    async def trace_analysis(self, query: str) -> str:
        trace_id = str(uuid7())
        opik_cm = self._opik.trace_agent(
            agent_name="heterogeneous_optimizer",
            operation="analyze",
            trace_id=trace_id,
            metadata={"pipeline": "cate", "tier": 2},
            tags=["heterogeneous_optimizer", "cate_analysis", "tier2", "Kisqali"],
            input_data={"query": query[:500], "segment_vars": ["region"]},
            force_new_trace=True,
        )
        opik_span = await opik_cm.__aenter__()
        try:
            for node in ("estimate_cate", "rank_segments"):
                async with self._opik.trace_agent(
                    "heterogeneous_optimizer", node, trace_id=trace_id,
                    parent_span_id=opik_span.span_id,
                ) as node_span:  # fmt: skip
                    node_span.set_output({"node": node})
        finally:
            await opik_cm.__aexit__(None, None, None)
        return trace_id


# -- 3. the same tracer shape when a node fails: the exception triple -------------------------
async def experiment_designer_validation(trace_id: str) -> None:
    opik = get_opik_connector()
    cm = opik.trace_agent("experiment_designer", "validate", trace_id=trace_id)
    await cm.__aenter__()
    try:
        raise RefutationError("power below 0.8")
    except RefutationError as exc:
        await cm.__aexit__(type(exc), exc, exc.__traceback__)
        logger.warning("validation failed: %s", exc)


# -- 4. an LLM tracer (intent classification) -------------------------------------------------
async def classify_intent(query: str, query_id: str) -> str:
    opik = get_opik_connector()
    if not (opik and opik.is_enabled):
        return "unknown"
    async with opik.trace_agent("orchestrator", "classify_intent", trace_id=query_id) as span:  # noqa: SIM117
        async with opik.trace_llm_call(
            model="claude-sonnet-4-20250514",
            trace_id=query_id,
            parent_span_id=span.span_id,
            provider="anthropic",
            prompt_template="intent_v2",
            input_data={"query": query},
            metadata={"max_tokens": 256},
        ) as llm:
            usage = {"input_tokens": 230, "output_tokens": 18}  # as client.messages.create says
            llm.log_tokens(input_tokens=usage["input_tokens"], output_tokens=usage["output_tokens"])
            llm.set_output({"text": "gap_analysis"})
            llm.set_cost(0.00096)
            logger.debug("%s used %s tokens", llm.model, llm.total_tokens)
    return "gap_analysis"


# -- 5. the seed's orchestrator: awaited trace_llm_call with llm_call= ------------------------
async def seed_orchestrator(prompt: str) -> tuple[str, str]:
    llm = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(
                    content="route: drift_monitor",
                    usage_metadata={"input_tokens": 40, "output_tokens": 6, "total_tokens": 46},
                )
            ]
        )
    )
    opik = get_opik_connector()
    async with opik.trace_agent("orchestrator", "intent_classification") as span:
        response = await opik.trace_llm_call(
            model="claude-sonnet-4",
            prompt=prompt,
            parent_span_id=span.span_id,
            llm_call=lambda: llm.ainvoke(prompt),
        )
        opik.log_metric("routing_confidence", 0.92)
    return span.trace_id, str(response.content)


# -- 6. RAG evaluation guards its own Opik calls with the breaker ------------------------------
def rag_evaluation(scores: dict[str, float]) -> str:
    opik = get_opik_connector()
    trace_id = str(uuid7())
    for name, value in scores.items():
        if not opik.circuit_breaker.allow_request():
            logger.info("Opik circuit open (%s); skipping %s", opik.circuit_breaker.state, name)
            continue
        try:
            opik.log_metric(name, value, trace_id=trace_id, metadata={"evaluator": "ragas"})
            opik.circuit_breaker.record_success()
        except Exception:
            opik.circuit_breaker.record_failure()
            raise
    return trace_id


# -- 7. the feedback API ------------------------------------------------------------------------
def submit_feedback(query_id: str, rating: int, comment: str | None) -> None:
    opik = get_opik_connector()
    if opik and opik.is_enabled:
        opik.log_feedback(query_id, rating / 5, feedback_type="user_rating", reason=comment)


# -- 8. model-serving audit ---------------------------------------------------------------------
async def audit_prediction(features: list[float], prediction: float) -> str | None:
    connector = OpikConnector()
    return await connector.log_model_prediction(
        model_name="churn_classifier",
        input_data={"features": features},
        output_data={"prediction": prediction, "class": "high_risk"},
        metadata={"latency_ms": 45.2, "service_type": "bentoml"},
    )


# -- 9. a chatbot tool and API start-up / shutdown ----------------------------------------------
async def chatbot_tool(session_id: str) -> str:
    opik = OpikConnector(config=None, circuit_breaker_config=None)
    async with opik.trace_agent(
        "tool_composer", "kpi_lookup", trace_id=session_id, tags=["chatbot"]
    ) as span:
        span.set_output({"kpi": "TRx", "value": 1834})
    return span.trace_id


def api_lifespan() -> dict[str, Any]:
    from_env = OpikConfig.from_env({})
    opik = get_opik_connector()
    status = opik.get_status()
    assert opik.flush() is True  # shutdown
    return {
        "project": opik.config.project_name,
        "enabled": opik.config.enabled,
        "sample_rate": opik.config.sample_rate,
        "status": status,
        "env_project": from_env.project_name,
    }


async def test_representative_e2i_callers__run_unchanged__every_trace_stored(
    e2i: E2IStore,
) -> None:
    query_id = str(uuid.uuid4())
    state = {"query_id": query_id, "span_id": None, "query": "Q3 TRx", "treatment": "calls"}

    assert (await causal_impact_node(state))["ate"] == 0.12
    cate_trace = await HeterogeneousOptimizerTracer().trace_analysis("CATE by region")
    await experiment_designer_validation(cate_trace)
    assert await classify_intent("why did TRx drop?", query_id) == "gap_analysis"
    seed_trace, routed = await seed_orchestrator("Route: drift in EU?")
    rag_trace = rag_evaluation({"faithfulness": 0.91, "answer_relevancy": 0.77})
    submit_feedback(query_id, 4, "useful")
    audit_trace = await audit_prediction([0.3, 1.2], 0.85)
    session_trace = await chatbot_tool("chat-session-42")
    lifespan = api_lifespan()

    causal = await e2i.by_name(uuid.UUID(query_id).hex)
    assert set(causal) == {
        "estimate", "refute", "classify_intent", "llm_call", "feedback.user_rating"
    }  # fmt: skip
    assert causal["refute"].parent_span_id == causal["estimate"].span_id
    assert causal["estimate"].attributes["tags"] == ["causal_impact", "tier_2"]
    assert causal["estimate"].attributes["output"] == {"ate": 0.12}
    assert causal["refute"].events[0].attributes == {"p_value": 0.41}
    llm = causal["llm_call"]
    assert (llm.span_kind, llm.parent_span_id) == (SpanKind.LLM, causal["classify_intent"].span_id)
    assert (llm.input_tokens, llm.output_tokens, llm.total_tokens) == (230, 18, 248)
    assert llm.attributes["llm.cost_usd"] == llm.cost_usd == 0.00096
    assert llm.provider == "anthropic"
    assert causal["feedback.user_rating"].attributes["feedback.reason"] == "useful"

    cate = await e2i.by_name(uuid.UUID(cate_trace).hex)
    assert set(cate) == {"analyze", "estimate_cate", "rank_segments", "validate"}
    assert cate["analyze"].parent_span_id is None
    assert cate["estimate_cate"].parent_span_id == cate["analyze"].span_id
    assert cate["validate"].status is SpanStatus.ERROR
    assert cate["validate"].error_message == "power below 0.8"

    seed = await e2i.by_name(seed_trace)
    assert routed == "route: drift_monitor" and seed["llm_call"].total_tokens == 46
    assert [e.name for e in seed["intent_classification"].events] == ["metric.routing_confidence"]

    rag = await e2i.by_name(uuid.UUID(rag_trace).hex)
    assert set(rag) == {"metric.faithfulness", "metric.answer_relevancy"}

    [audit] = await e2i.spans(uuid.UUID(audit_trace).hex)
    assert audit.attributes["output"]["class"] == "high_risk"

    [tool] = await e2i.spans(session_trace)
    assert tool.attributes["trace_id.original"] == "chat-session-42"

    assert lifespan["project"] == e2i.config.opik.project_name
    assert (lifespan["enabled"], lifespan["sample_rate"]) == (e2i.opik_on, 1.0)
    assert lifespan["status"]["enabled"] is True
    assert lifespan["env_project"] == "e2i-causal-analytics"

    if e2i.opik_on:
        scores = {(s["name"], s["id"]) for s in e2i.opik_scores()}
        # a UUIDv4 trace is scored on its UUIDv7 form in Opik (the only version Opik takes)
        assert ("user_rating", opik_trace_uuid(uuid.UUID(query_id).hex)) in scores
        assert ("faithfulness", rag_trace) in scores and ("answer_relevancy", rag_trace) in scores
        assert e2i.opik_traces()[cate_trace]["tags"][:2] == [
            "heterogeneous_optimizer",
            "cate_analysis",
        ]
