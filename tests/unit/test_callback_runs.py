"""build_span skips pydantic validation on the hot path: its spans must be exactly the spans
validation would produce, and the ids it draws must keep their W3C / UUID formats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from src.agents.ml_foundation.observability_connector.callback_runs import (
    _new_span_id,
    _new_trace_id,
    _new_uuid4,
    build_span,
    open_record,
)
from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanEvent,
    SpanKind,
    SpanStatus,
    check_span_id,
    check_trace_id,
)
from src.agents.ml_foundation.observability_connector.usage import TokenUsage, extract_usage

START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def record(kind: SpanKind, **overrides: object):
    rec = open_record(
        uuid4(),
        None,
        None,
        kind,
        "step",
        ["user-tag", "seq:step:1"],
        {"thread_id": "t-1"},
        {},
        is_node=False,
        model="m-start",
        agent_name="bench",
        start_time=START,
    )
    for key, value in overrides.items():
        setattr(rec, key, value)
    return rec


def revalidated(span: ObservabilitySpan) -> ObservabilitySpan:
    return ObservabilitySpan.model_validate(span.model_dump())


@pytest.mark.parametrize(
    ("kind", "outcome"),
    [
        (SpanKind.LLM, {"usage": TokenUsage(12, 6, 18, "m-usage")}),
        (SpanKind.LLM, {"usage": TokenUsage(12, 6, None, None)}),
        (SpanKind.LLM, {}),
        (SpanKind.TOOL, {"attributes": {"output": "x"}}),
        (
            SpanKind.CHAIN,
            {"status": SpanStatus.ERROR, "error_type": "ValueError", "error_message": "bad"},
        ),
    ],
)
def test_build_span__trusted_values__equal_to_the_validated_span(kind, outcome):
    span = build_span(record(kind), START + timedelta(milliseconds=250), **outcome)
    assert revalidated(span) == span
    assert span.duration_ms == 250.0 and span.attributes["tags"] == ["user-tag"]


def test_build_span__usage_without_total__total_derived_like_the_model():
    span = build_span(record(SpanKind.LLM), START, usage=TokenUsage(12, 6, None, None))
    assert (span.total_tokens, span.llm_model) == (18, "m-start")


def test_build_span__end_before_start__clamped_to_zero_duration():
    span = build_span(record(SpanKind.TOOL), START - timedelta(seconds=1))
    assert span.end_time == START and span.duration_ms == 0.0 and revalidated(span) == span


def test_build_span__streamed_llm_run__events_kept_and_ttft_set():
    """The span takes over the (finished, popped) record's events and attributes: no copies
    on the hot path."""
    first = START + timedelta(milliseconds=40)
    events = [SpanEvent(name="first_token", timestamp=first)]
    rec = record(SpanKind.LLM, first_token_at=first, events=list(events))
    span = build_span(rec, START + timedelta(milliseconds=90))
    assert span.attributes["ttft_ms"] == 40.0 and span.events == events
    assert revalidated(span) == span


def test_build_span__model_named_by_neither_usage_nor_response__looked_up_in_start_sources():
    sources = ({"kwargs": {"model": "m-kwargs"}}, {"model_name": "m-params"}, {})
    rec = record(SpanKind.LLM, llm_model=None, model_sources=sources)
    assert build_span(rec, START, usage=TokenUsage(1, 1, 2, None)).llm_model == "m-params"
    rec = record(SpanKind.LLM, llm_model=None, model_sources=sources)
    assert build_span(rec, START, usage=TokenUsage(1, 1, 2, "m-usage")).llm_model == "m-usage"
    rec = record(SpanKind.LLM, llm_model="m-response", model_sources=sources)
    assert build_span(rec, START).llm_model == "m-response"


def test_build_span__two_spans__distinct_version_4_ids():
    one, two = (build_span(record(SpanKind.TOOL), START) for _ in range(2))
    assert one.id != two.id and one.id.version == two.id.version == 4


def test_new_ids__many_draws__valid_w3c_and_uuid_formats():
    for _ in range(2000):
        trace_id = check_trace_id(_new_trace_id())
        assert UUID(hex=trace_id).version == 7
        check_span_id(_new_span_id())
        uid = _new_uuid4()
        assert uid.version == 4 and uid.variant == "specified in RFC 4122"


def test_new_trace_id__now__carries_the_current_unix_milliseconds():
    before = int(datetime.now(UTC).timestamp() * 1000)
    stamp = int(_new_trace_id()[:12], 16)
    assert before - 1 <= stamp <= int(datetime.now(UTC).timestamp() * 1000) + 1


def test_extract_usage__standard_llm_result__fast_path_same_as_the_walk():
    message = AIMessage(
        content="hi",
        usage_metadata={"input_tokens": 5, "output_tokens": 2, "total_tokens": 7},
        response_metadata={"model": "m-1"},
    )
    result = LLMResult(generations=[[ChatGeneration(message=message)]])
    assert extract_usage(result) == TokenUsage(5, 2, 7, "m-1")
    assert extract_usage(message) == TokenUsage(5, 2, 7, "m-1")
