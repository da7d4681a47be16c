"""The calls E2I's modules make (e2i README §1-5), written the way E2I writes them.

Every test runs against the process-default connector over SQLite and PostgreSQL, with Opik on
(loopback server, bodies checked against Opik's schema) and off, and reads the spans back from
the store: tree, ids, tags, input/output, tokens, cost, error status.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

import src.mlops as mlops
from src.agents.ml_foundation.observability_connector.config import SpansSettings
from src.agents.ml_foundation.observability_connector.models import SpanKind
from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    inject,
    new_trace_id,
    opik_span_uuid_for,
    opik_trace_uuid,
)
from src.mlops.opik_connector import (
    LLMSpanContext,
    OpikConfig,
    OpikConnector,
    SpanContext,
    SpanStatus,
    SpanType,
    get_opik_connector,
    reset_opik_connector,
)
from tests.fixtures.e2i_connector import E2I_PROJECT, E2IStore


def uuid7() -> uuid.UUID:
    """A UUIDv7, as E2I's `uuid7()` makes them (our trace ids are UUIDv7 in hex)."""
    return uuid.UUID(new_trace_id())


class EstimationFailedError(RuntimeError):
    pass


# -- §1 getting the connector ---------------------------------------------------------------
def test_get_opik_connector__e2i_forms__one_process_default(e2i: E2IStore) -> None:
    opik = get_opik_connector()
    assert opik and opik.is_enabled
    assert opik is e2i.connector
    assert OpikConnector() is opik
    assert OpikConnector(config=None, circuit_breaker_config=None) is opik
    assert OpikConnector(OpikConfig(project_name="ignored"), {"failure_threshold": 2}) is opik
    assert get_opik_connector(config=None, force_new=False) is opik
    assert mlops.get_opik_connector() is opik and mlops.OpikConnector is OpikConnector
    assert (mlops.SpanContext, mlops.LLMSpanContext) == (SpanContext, LLMSpanContext)
    assert (mlops.SpanType, mlops.SpanStatus, mlops.OpikConfig) == (
        SpanType,
        SpanStatus,
        OpikConfig,
    )

    assert opik.config.project_name == E2I_PROJECT
    assert opik.config.enabled is e2i.opik_on
    assert opik.config.sample_rate == 1.0
    status = opik.get_status()
    assert status["enabled"] is True and status["opik_enabled"] is e2i.opik_on
    assert status["circuit_state"] == ("closed" if e2i.opik_on else "disabled")
    assert status["circuit_breaker"]["state"] == "closed"
    assert status["processor"]["submitted"] == 0
    assert opik.flush() is True


async def test_get_opik_connector__force_new__old_one_closed_new_one_records(
    e2i: E2IStore,
) -> None:
    old = get_opik_connector()
    async with old.trace_agent("orchestrator", "before") as before:
        pass

    new = get_opik_connector(config=e2i.config, force_new=True)

    assert new is not old and new.is_enabled and not old.is_enabled
    assert get_opik_connector() is new and OpikConnector() is new
    async with new.trace_agent("orchestrator", "after") as after:
        pass
    e2i.connector = new
    assert [s.operation_name for s in await e2i.spans(before.trace_id)] == ["before"]
    assert [s.operation_name for s in await e2i.spans(after.trace_id)] == ["after"]

    reset_opik_connector()
    assert not new.is_enabled
    assert get_opik_connector(e2i.config) is not new
    e2i.connector = get_opik_connector()


# -- §2 agent spans --------------------------------------------------------------------------
async def test_trace_agent__e2i_keywords_and_dashed_uuid__tree_ids_tags_io_stored(
    e2i: E2IStore,
) -> None:
    opik = get_opik_connector()
    query_id = str(uuid7())
    state: dict[str, Any] = {"query_id": query_id, "span_id": None}

    async with opik.trace_agent(
        agent_name="causal_impact",
        operation="estimate",
        trace_id=state.get("query_id"),
        parent_span_id=state.get("span_id"),
        metadata={"pipeline": "causal", "brand": "Remibrutinib"},
        tags=["causal_impact", "tier_2"],
        input_data={"query": "Did the Q3 campaign lift TRx?"},
        force_new_trace=False,
    ) as span:
        span.set_attribute("brand", "Kisqali")
        span.set_input({"query": "Did the Q3 campaign lift TRx?", "region": "EU"})
        span.metadata["rows_scanned"] = 1200
        span.add_event("refutation_started", attributes={"tests": 3})
        span.add_event("checkpoint")
        child_parent = span.span_id
        async with opik.trace_agent(
            "causal_impact", "refute", trace_id=query_id, parent_span_id=child_parent
        ) as child:
            child.set_output({"passed": True})
        span.set_output({"ate": 0.12})
        assert span.status is SpanStatus.STARTED

    assert span.name == "causal_impact.estimate"
    assert span.status is SpanStatus.COMPLETED and span.duration_ms >= 0
    assert span.trace_id == uuid.UUID(query_id).hex
    as_dict = span.to_dict()
    assert as_dict["trace_id"] == span.trace_id and as_dict["status"] == "completed"
    assert as_dict["output"] == {"ate": 0.12} and as_dict["tags"] == ["causal_impact", "tier_2"]

    stored = await e2i.by_name(span.trace_id)
    estimate, refute = stored["estimate"], stored["refute"]
    assert (estimate.parent_span_id, refute.parent_span_id) == (None, estimate.span_id)
    assert estimate.span_id == span.span_id and refute.trace_id == span.trace_id
    assert estimate.attributes["brand"] == "Kisqali"
    assert estimate.attributes["pipeline"] == "causal"
    assert estimate.attributes["rows_scanned"] == 1200
    assert estimate.attributes["tags"] == ["causal_impact", "tier_2"]
    assert estimate.attributes["input"] == {
        "query": "Did the Q3 campaign lift TRx?",
        "region": "EU",
    }
    assert estimate.attributes["output"] == {"ate": 0.12}
    assert refute.attributes["output"] == {"passed": True}
    assert [(e.name, e.attributes) for e in estimate.events] == [
        ("refutation_started", {"tests": 3}),
        ("checkpoint", {}),
    ]
    assert estimate.agent_tier == 2  # causal_impact, from config/agent_config.yaml

    if e2i.opik_on:
        sent = e2i.opik_spans()
        assert sent["estimate"]["trace_id"] == query_id  # a UUIDv7 goes to Opik unchanged
        assert sent["estimate"]["tags"] == ["causal_impact", "tier_2"]
        assert sent["estimate"]["input"] == estimate.attributes["input"]
        assert sent["estimate"]["output"] == {"ate": 0.12}
        assert sent["refute"]["parent_span_id"] == sent["estimate"]["id"]
        trace = e2i.opik_traces()[query_id]
        assert trace["name"] == "estimate" and trace["output"] == {"ate": 0.12}
        assert trace["tags"] == ["causal_impact", "tier_2"]
        assert "input" not in sent["estimate"]["metadata"].get("attributes", {})


async def test_trace_agent__password_in_input_data_and_big_output__redacted_and_cut_everywhere(
    e2i: E2IStore,
) -> None:
    limits = SpansSettings(max_output_size_bytes=64)
    opik = get_opik_connector(e2i.config.model_copy(update={"spans": limits}), force_new=True)
    e2i.connector = opik
    async with opik.trace_agent(
        agent_name="explainer",
        operation="explain",
        tags=["tier_5"],
        input_data={"user": "ana", "password": "hunter2", "auth": {"api_key": "sk-live-1"}},
    ) as span:
        span.set_output({"text": "lift " * 100})

    [stored] = await e2i.spans(span.trace_id)
    assert stored.attributes["input"] == {
        "user": "ana",
        "password": "[REDACTED]",
        "auth": {"api_key": "[REDACTED]"},
    }
    output = stored.attributes["output"]
    assert isinstance(output, str) and len(output.encode()) <= 64
    assert stored.attributes["output_truncated"] is True
    if e2i.opik_on:
        sent = e2i.opik_spans()["explain"]
        assert sent["input"] == stored.attributes["input"]
        assert sent["output"] == {"value": output}
        bodies = str([r.body for r in e2i.server.requests])
        assert "hunter2" not in bodies and "sk-live-1" not in bodies


async def test_trace_agent__positional_and_sync_with__same_span(e2i: E2IStore) -> None:
    opik = get_opik_connector()
    with opik.trace_agent("gap_analyzer", "analyze_gaps") as span:
        span.set_attribute("result_count", 4)
    [stored] = await e2i.spans(span.trace_id)
    assert (stored.agent_name, stored.operation_name) == ("gap_analyzer", "analyze_gaps")
    assert stored.attributes == {"result_count": 4}


async def test_trace_agent__manual_aenter_aexit__completed_and_error_triples(
    e2i: E2IStore,
) -> None:
    opik = get_opik_connector()
    trace_id = str(uuid7())
    cm = opik.trace_agent(
        agent_name="heterogeneous_optimizer",
        operation="analyze",
        trace_id=trace_id,
        tags=["heterogeneous_optimizer", "cate_analysis", "tier2", "Kisqali"],
        input_data={"query": "cate by region", "segment_vars": ["region"]},
        force_new_trace=True,
    )
    span = await cm.__aenter__()
    node_cm = opik.trace_agent("heterogeneous_optimizer", "estimate_cate", trace_id=trace_id)
    node = await node_cm.__aenter__()
    error = EstimationFailedError("no overlap in segment EU")
    try:
        raise error
    except EstimationFailedError as exc:
        await node_cm.__aexit__(type(exc), exc, exc.__traceback__)
    await cm.__aexit__(None, None, None)

    assert (span.status, node.status) == (SpanStatus.COMPLETED, SpanStatus.ERROR)
    stored = await e2i.by_name(uuid.UUID(trace_id).hex)
    analyze, estimate = stored["analyze"], stored["estimate_cate"]
    assert analyze.parent_span_id is None and estimate.parent_span_id == analyze.span_id
    assert analyze.attributes["tags"] == [
        "heterogeneous_optimizer",
        "cate_analysis",
        "tier2",
        "Kisqali",
    ]
    assert estimate.status is SpanStatus.ERROR
    assert (estimate.error_type, estimate.error_message) == (
        "EstimationFailedError",
        "no overlap in segment EU",
    )
    if e2i.opik_on:
        sent = e2i.opik_spans()["estimate_cate"]
        assert sent["error_info"]["exception_type"] == "EstimationFailedError"
        assert e2i.opik_spans()["analyze"]["tags"][0] == "heterogeneous_optimizer"


async def test_trace_agent__force_new_trace_inside_a_span__root_of_its_own_trace(
    e2i: E2IStore,
) -> None:
    opik = get_opik_connector()
    async with opik.trace_agent("orchestrator", "dispatch") as outer:  # noqa: SIM117 (E2I's form)
        async with opik.trace_agent(
            agent_name="drift_monitor", operation="scan", force_new_trace=True
        ) as detached:
            pass
    assert detached.trace_id != outer.trace_id
    [stored] = await e2i.spans(detached.trace_id)
    assert stored.parent_span_id is None


async def test_trace_agent__exception__error_stored_and_same_exception(e2i: E2IStore) -> None:
    opik = get_opik_connector()
    error = EstimationFailedError("confounders missing")
    with pytest.raises(EstimationFailedError) as caught:
        async with opik.trace_agent("causal_impact", "estimate", tags=["tier_2"]) as span:
            raise error
    assert caught.value is error
    assert span.status is SpanStatus.ERROR
    [stored] = await e2i.spans(span.trace_id)
    assert (stored.status, stored.error_type) == (SpanStatus.ERROR, "EstimationFailedError")
    assert stored.error_message == "confounders missing"


# -- §3 LLM spans ----------------------------------------------------------------------------
async def test_trace_llm_call__e2i_context_manager__tokens_cost_provider_stored(
    e2i: E2IStore,
) -> None:
    opik = get_opik_connector()
    query_id = str(uuid7())
    async with opik.trace_agent("orchestrator", "classify", trace_id=query_id) as span:  # noqa: SIM117
        async with opik.trace_llm_call(
            model="claude-sonnet-4-20250514",
            trace_id=query_id,
            parent_span_id=span.span_id,
            provider="anthropic",
            prompt_template="intent_v2",
            input_data={"messages": [{"role": "user", "content": "why did TRx drop?"}]},
            metadata={"temperature": 0.0},
        ) as llm:
            llm.log_tokens(input_tokens=120, output_tokens=40)
            llm.set_output({"text": "intent: gap_analysis"})
            llm.set_cost(0.0042)
            llm.set_attribute("cached", False)
    assert (llm.model, llm.provider) == ("claude-sonnet-4-20250514", "anthropic")
    assert (llm.input_tokens, llm.output_tokens, llm.total_tokens) == (120, 40, 160)
    assert llm.total_cost == pytest.approx(0.0042)
    assert llm.to_dict()["model_name"] == "claude-sonnet-4-20250514"

    stored = (await e2i.by_name(uuid.UUID(query_id).hex))["llm_call"]
    assert stored.span_kind is SpanKind.LLM and stored.parent_span_id == span.span_id
    assert stored.agent_name == "orchestrator" and stored.llm_model == "claude-sonnet-4-20250514"
    assert (stored.input_tokens, stored.output_tokens, stored.total_tokens) == (120, 40, 160)
    assert stored.attributes["llm.cost_usd"] == pytest.approx(0.0042)
    assert stored.cost_usd == pytest.approx(0.0042)  # the caller's price wins over the table's
    assert stored.provider == stored.attributes["llm.provider"] == "anthropic"
    assert stored.attributes["llm.prompt_template"] == "intent_v2"
    assert stored.attributes["output"] == {"text": "intent: gap_analysis"}
    assert stored.attributes["input"]["messages"][0]["role"] == "user"
    assert stored.attributes["temperature"] == 0.0 and stored.attributes["cached"] is False
    if e2i.opik_on:
        sent = e2i.opik_spans()["llm_call"]
        assert sent["type"] == "llm" and sent["provider"] == "anthropic"
        assert sent["usage"] == {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160}
        assert sent["total_estimated_cost"] == pytest.approx(0.0042)
        assert sent["output"] == {"text": "intent: gap_analysis"}
        assert sent["parent_span_id"] == opik_span_uuid_for(span.trace_id, span.span_id)


async def test_trace_llm_call__seed_awaited_form__response_unchanged_tokens_stored(
    e2i: E2IStore,
) -> None:
    opik = get_opik_connector()
    message = AIMessage(
        content="Down 4% in Q3",
        usage_metadata={"input_tokens": 12, "output_tokens": 5, "total_tokens": 17},
        response_metadata={"model_name": "claude-sonnet-4-20250514"},
    )
    llm = GenericFakeChatModel(messages=iter([message]))
    prompt = "Why did TRx drop?"
    async with opik.trace_agent("orchestrator", "intent_classification") as span:
        response = await opik.trace_llm_call(
            model="claude-sonnet-4",
            prompt=prompt,
            parent_span_id=span.span_id,
            llm_call=lambda: llm.ainvoke(prompt),
        )
    assert response.content == "Down 4% in Q3"
    stored = (await e2i.by_name(span.trace_id))["llm_call"]
    assert stored.parent_span_id == span.span_id
    assert (stored.input_tokens, stored.output_tokens, stored.total_tokens) == (12, 5, 17)


async def test_trace_llm_call__exception_in_block__error_and_propagates(e2i: E2IStore) -> None:
    opik = get_opik_connector()
    error = TimeoutError("anthropic timed out")
    with pytest.raises(TimeoutError) as caught:
        async with opik.trace_llm_call(model="claude-haiku", provider="anthropic") as llm:
            raise error
    assert caught.value is error
    [stored] = await e2i.spans(llm.trace_id)
    assert (stored.status, stored.error_type) == (SpanStatus.ERROR, "TimeoutError")


# -- §4 metrics, feedback, predictions, breaker ----------------------------------------------
async def test_log_metric__uuid7_trace_id_outside_a_span__stored_and_scored(
    e2i: E2IStore,
) -> None:
    opik = get_opik_connector()
    trace_id = str(uuid7())
    opik.log_metric("rag_faithfulness", 0.87, trace_id=trace_id, metadata={"k": 5})
    [stored] = await e2i.spans(uuid.UUID(trace_id).hex)
    assert stored.operation_name == "metric.rag_faithfulness"
    assert stored.attributes["metric.value"] == 0.87 and stored.attributes["k"] == 5
    if e2i.opik_on:
        [score] = e2i.opik_scores()
        assert (score["id"], score["name"], score["value"]) == (trace_id, "rag_faithfulness", 0.87)


async def test_log_feedback__after_the_trace__opik_score_and_stored_event(e2i: E2IStore) -> None:
    opik = get_opik_connector()
    query_id = str(uuid7())
    async with opik.trace_agent("explainer", "explain", trace_id=query_id):
        pass
    opik.log_feedback(query_id, 0.9, feedback_type="helpfulness", reason="clear and sourced")
    opik.log_feedback(trace_id=query_id, score=0.4)

    stored = await e2i.by_name(uuid.UUID(query_id).hex)
    assert set(stored) == {"explain", "feedback.helpfulness", "feedback.quality"}
    helpful = stored["feedback.helpfulness"]
    assert helpful.attributes["feedback.score"] == 0.9
    assert helpful.attributes["feedback.reason"] == "clear and sourced"
    assert stored["feedback.quality"].attributes["feedback.score"] == 0.4
    if e2i.opik_on:
        scores = {s["name"]: s for s in e2i.opik_scores()}
        assert scores["helpfulness"]["id"] == query_id
        assert scores["helpfulness"]["reason"] == "clear and sourced"
        assert (scores["quality"]["value"], scores["quality"]["source"]) == (0.4, "sdk")
        assert e2i.opik_traces()[query_id]["name"] == "explain"  # the root names the trace


async def test_log_feedback__inside_the_span__event_on_that_span(e2i: E2IStore) -> None:
    opik = get_opik_connector()
    async with opik.trace_agent("feedback_learner", "learn") as span:
        opik.log_feedback(span.trace_id, 1.0, feedback_type="thumbs_up")
    [stored] = await e2i.spans(span.trace_id)
    [event] = stored.events
    assert event.name == "feedback.thumbs_up" and event.attributes["feedback.score"] == 1.0


async def test_log_model_prediction__audit_span_and_trace_id_returned(e2i: E2IStore) -> None:
    opik = get_opik_connector()
    returned = await opik.log_model_prediction(
        model_name="churn_classifier",
        input_data={"features": [0.2, 1.4]},
        output_data={"prediction": 0.85, "class": "high_risk"},
        metadata={"latency_ms": 45.2, "service_type": "bentoml"},
    )
    given = str(uuid.uuid4())
    same = await opik.log_model_prediction("uplift", {"x": 1}, {"y": 2}, trace_id=given)

    assert same == given
    assert isinstance(returned, str) and uuid.UUID(returned).version == 7
    [stored] = await e2i.spans(uuid.UUID(returned).hex)
    assert stored.operation_name == "prediction.churn_classifier"
    assert stored.agent_name == "model_serving"
    assert stored.attributes["input"] == {"features": [0.2, 1.4]}
    assert stored.attributes["output"] == {"prediction": 0.85, "class": "high_risk"}
    assert stored.attributes["tags"] == ["prediction", "churn_classifier", "model_serving"]
    assert stored.attributes["latency_ms"] == 45.2
    [other] = await e2i.spans(uuid.UUID(given).hex)
    assert other.operation_name == "prediction.uplift"
    if e2i.opik_on:
        assert e2i.opik_traces()[returned]["input"] == {"features": [0.2, 1.4]}
        # Opik takes only UUIDv7: a UUIDv4 trace id is sent with its version/variant bits set
        assert opik_trace_uuid(uuid.UUID(given).hex) in e2i.opik_traces()

    opik.close()
    assert await opik.log_model_prediction("m", {}, {}) is None


def test_circuit_breaker__e2i_guard__opens_after_threshold(e2i: E2IStore) -> None:
    breaker = get_opik_connector().circuit_breaker
    assert breaker.is_closed and not breaker.is_open and breaker.state == "closed"
    assert breaker.allow_request()
    breaker.record_success()
    for _ in range(breaker.failure_threshold):
        assert breaker.allow_request()
        breaker.record_failure()
    assert breaker.is_open and not breaker.is_closed and breaker.state == "open"
    assert breaker.allow_request() is False
    assert get_opik_connector().get_status()["circuit_breaker"]["state"] == "open"


# -- §5 identifiers as E2I makes them --------------------------------------------------------
@pytest.mark.parametrize(
    "form",
    ["uuid4", "uuid7", "uuid4_hex", "own_hex", "free_form"],
)
async def test_trace_agent__every_id_form__never_raises_and_maps_as_documented(
    e2i: E2IStore, form: str
) -> None:
    u4, u7, own = uuid.uuid4(), uuid7(), new_trace_id()
    given, expected = {
        "uuid4": (str(u4), u4.hex),
        "uuid7": (str(u7), u7.hex),
        "uuid4_hex": (u4.hex, u4.hex),
        "own_hex": (own, own),
        "free_form": ("trace-123", None),
    }[form]
    parent_uuid = str(uuid.uuid4())
    opik = get_opik_connector()
    async with opik.trace_agent("orchestrator", "route", trace_id=given) as root:
        headers = inject({})
        async with opik.trace_agent(
            "tool_composer", "compose", trace_id=given, parent_span_id=parent_uuid
        ) as child:
            pass
    if expected is None:  # free-form: deterministic, its text kept on the span
        expected = root.trace_id
        async with opik.trace_agent("orchestrator", "again", trace_id="trace-123") as again:
            pass
        assert again.trace_id == expected
    assert root.trace_id == child.trace_id == expected
    assert headers["traceparent"] == f"00-{expected}-{root.span_id}-01"
    assert child.parent_span_id == uuid.UUID(parent_uuid).hex[16:]

    stored = await e2i.by_name(expected)
    assert stored["route"].trace_id == expected
    assert stored["compose"].parent_span_id == uuid.UUID(parent_uuid).hex[16:]
    assert stored["compose"].attributes["parent_span_id.original"] == parent_uuid
    if form == "free_form":
        assert stored["route"].attributes["trace_id.original"] == "trace-123"
    else:
        assert "trace_id.original" not in stored["route"].attributes
    if e2i.opik_on:
        assert opik_trace_uuid(expected) in e2i.opik_traces()
