"""Stored span -> OTLP protobuf -> decoded: ids, parent, times, status, gen_ai.* exactly."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanEvent,
    SpanKind,
    SpanStatus,
)
from src.agents.ml_foundation.observability_connector.otlp.mapping import (
    SCHEMA_URL,
    decoded_attributes,
    encode_request,
    unix_nanos,
)

EXPECTED_OPERATION = {
    SpanKind.LLM: "chat",
    SpanKind.AGENT: "invoke_agent",
    SpanKind.TOOL: "execute_tool",
    SpanKind.CHAIN: None,
}

hex_id = lambda n: st.text("0123456789abcdef", min_size=n, max_size=n).filter(  # noqa: E731
    lambda s: set(s) != {"0"}
)
token = st.one_of(st.none(), st.integers(0, 2**31 - 1))


@st.composite
def spans(draw: st.DrawFn) -> ObservabilitySpan:
    start = draw(
        st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
        )
    )
    kind = draw(st.sampled_from(list(SpanKind)))
    status = draw(st.sampled_from([SpanStatus.COMPLETED, SpanStatus.ERROR]))
    return ObservabilitySpan(
        trace_id=draw(hex_id(32)),
        span_id=draw(hex_id(16)),
        parent_span_id=draw(st.one_of(st.none(), hex_id(16))),
        operation_name=draw(st.text(min_size=1, max_size=30).filter(str.strip)),
        agent_name=draw(st.text(min_size=1, max_size=30).filter(str.strip)),
        span_kind=kind,
        start_time=start,
        end_time=start + draw(st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=2))),
        status=status,
        error_type="ValueError" if status is SpanStatus.ERROR else None,
        error_message=draw(st.text(max_size=40)) if status is SpanStatus.ERROR else None,
        llm_model=draw(st.one_of(st.none(), st.sampled_from(["gpt-4o", "claude-sonnet-4-5"])))
        if kind is SpanKind.LLM
        else None,
        input_tokens=draw(token),
        output_tokens=draw(token),
        thread_id=draw(st.one_of(st.none(), st.text(min_size=1, max_size=20))),
        attributes={"provider": "openai"} if kind is SpanKind.LLM else {},
    )


def _roundtrip(batch: list[ObservabilitySpan], **kwargs) -> list[Span]:
    wire = gzip.compress(encode_request(batch, {"service.name": "t"}, **kwargs).SerializeToString())
    decoded = ExportTraceServiceRequest.FromString(gzip.decompress(wire))
    (resource_spans,) = decoded.resource_spans
    assert resource_spans.schema_url == SCHEMA_URL
    (scope_spans,) = resource_spans.scope_spans
    return list(scope_spans.spans)


@given(st.lists(spans(), min_size=1, max_size=5))
def test_to_otlp__any_stored_span__recovered_exactly_after_decoding(batch):
    for span, otlp in zip(batch, _roundtrip(batch), strict=True):
        attributes = decoded_attributes(otlp.attributes)
        assert otlp.trace_id.hex() == span.trace_id
        assert otlp.span_id.hex() == span.span_id
        assert (otlp.parent_span_id.hex() or None) == span.parent_span_id
        assert otlp.start_time_unix_nano == unix_nanos(span.start_time)
        assert otlp.end_time_unix_nano == unix_nanos(span.end_time)
        assert otlp.name == span.operation_name
        is_error = span.status is SpanStatus.ERROR
        assert otlp.status.code == (
            Status.STATUS_CODE_ERROR if is_error else Status.STATUS_CODE_UNSET
        )
        assert attributes.get("error.type") == ("ValueError" if is_error else None)
        assert attributes.get("gen_ai.operation.name") == EXPECTED_OPERATION[span.span_kind]
        assert attributes["gen_ai.agent.name"] == span.agent_name
        assert attributes.get("gen_ai.conversation.id") == span.thread_id
        assert attributes.get("gen_ai.request.model") == span.llm_model
        assert attributes.get("gen_ai.usage.input_tokens") == span.input_tokens
        assert attributes.get("gen_ai.usage.output_tokens") == span.output_tokens
        assert otlp.kind == (
            Span.SPAN_KIND_CLIENT if span.span_kind is SpanKind.LLM else Span.SPAN_KIND_INTERNAL
        )


def _llm_span(**overrides) -> ObservabilitySpan:
    start = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
    fields = dict(
        trace_id="0af7651916cd43dd8448eb211c80319c",
        span_id="b7ad6b7169203331",
        operation_name="ChatAnthropic",
        agent_name="causal_impact",
        span_kind=SpanKind.LLM,
        start_time=start,
        end_time=start + timedelta(milliseconds=250),
        llm_model="claude-sonnet-4-5",
        input_tokens=10,
        output_tokens=5,
        attributes={
            "provider": "google_genai",
            "llm.prompt": "hi",
            "llm.response": "yo",
            "brand": "Kisqali",
            "tags": ["a", "b"],
        },
        events=[SpanEvent(name="first_token", timestamp=start + timedelta(milliseconds=40))],
    )
    fields.update(overrides)
    return ObservabilitySpan(**fields)


def test_to_otlp__provider__well_known_name_and_old_name_unless_latest_opt_in():
    (otlp,) = _roundtrip([_llm_span()])
    attributes = decoded_attributes(otlp.attributes)
    assert attributes["gen_ai.provider.name"] == "gcp.gen_ai"
    assert attributes["gen_ai.system"] == "gcp.gen_ai"
    (latest,) = _roundtrip([_llm_span()], latest_only=True)
    assert "gen_ai.system" not in decoded_attributes(latest.attributes)


def test_to_otlp__captured_text_and_own_attributes__messages_and_e2i_prefix():
    (otlp,) = _roundtrip([_llm_span()])
    attributes = decoded_attributes(otlp.attributes)
    assert '"content": "hi"' in attributes["gen_ai.input.messages"]
    assert '"role": "assistant"' in attributes["gen_ai.output.messages"]
    assert attributes["e2i.brand"] == "Kisqali"
    assert attributes["e2i.tags"] == ["a", "b"]
    assert "e2i.llm.prompt" not in attributes
    assert [e.name for e in otlp.events] == ["first_token"]


def test_to_otlp__error__exception_event_with_type_and_message():
    span = _llm_span(status=SpanStatus.ERROR, error_type="RateLimitError", error_message="429")
    (otlp,) = _roundtrip([span])
    (event,) = [e for e in otlp.events if e.name == "exception"]
    assert decoded_attributes(event.attributes) == {
        "exception.type": "RateLimitError",
        "exception.message": "429",
    }
    assert otlp.status.message == "429"
    assert event.time_unix_nano == unix_nanos(span.end_time)
