"""The OTLP sink over real HTTP to a loopback receiver that decodes each request as a collector.

Covers what the OTLP/HTTP specification asks of an exporter (protobuf, gzip, headers, retryable
and permanent answers, partial success) and the join of a running OpenTelemetry trace, with
the real OpenTelemetry SDK providing the current span.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider

from src.agents.ml_foundation.observability_connector.callback import (
    ObservabilityCallbackHandler,
)
from src.agents.ml_foundation.observability_connector.config import (
    OpikSettings,
    load_config,
)
from src.agents.ml_foundation.observability_connector.config_otlp import OtlpSettings
from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan, SpanKind
from src.agents.ml_foundation.observability_connector.otlp.join import set_otel_join
from src.agents.ml_foundation.observability_connector.otlp.mapping import decoded_attributes
from src.agents.ml_foundation.observability_connector.otlp.sink import OtlpSink
from src.agents.ml_foundation.observability_connector.sinks import (
    PermanentSinkError,
    RetryableSinkError,
    SinkUnavailableError,
)
from src.mlops.circuit_breaker import CircuitBreaker
from src.mlops.opik_default import build_opik_connector
from src.repositories.observability_span import create_span_repository

START = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _span(n: int = 1, **overrides) -> ObservabilitySpan:
    fields = dict(
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        span_id=f"{n:016x}",
        operation_name=f"op{n}",
        agent_name="gap_analyzer",
        span_kind=SpanKind.LLM,
        start_time=START,
        end_time=START + timedelta(milliseconds=5),
        llm_model="gpt-4o",
        input_tokens=3,
        output_tokens=4,
    )
    fields.update(overrides)
    return ObservabilitySpan(**fields)


def _sink(receiver, **settings) -> OtlpSink:
    otlp = OtlpSettings(endpoint=receiver.endpoint, **settings)
    return OtlpSink(otlp, CircuitBreaker(failure_threshold=2), service_version="9.9")


def test_write__batch__one_gzip_protobuf_request_with_headers_and_resource(otlp_receiver):
    sink = _sink(
        otlp_receiver,
        headers={"api-key": "k1"},
        resource_attributes={"deployment.environment.name": "test"},
    )
    assert sink.write([_span(1), _span(2)]) == 2
    (received,) = otlp_receiver.received
    assert received.path == "/v1/traces"
    assert received.headers["content-encoding"] == "gzip"
    assert received.headers["content-type"] == "application/x-protobuf"
    assert received.headers["api-key"] == "k1"
    resource = decoded_attributes(received.request.resource_spans[0].resource.attributes)
    assert resource["service.name"] == "e2i-causal-analytics"
    assert resource["service.version"] == "9.9"
    assert resource["deployment.environment.name"] == "test"
    assert [s.name for s in otlp_receiver.spans()] == ["op1", "op2"]
    assert "k1" not in repr(sink)


@pytest.mark.parametrize("status", [429, 502, 503, 504, 500])
def test_write__retryable_status__retryable_error_and_breaker_failure(otlp_receiver, status):
    sink = _sink(otlp_receiver)
    otlp_receiver.respond(status, b"busy", {"Retry-After": "3"})
    with pytest.raises(RetryableSinkError, match=str(status)) as caught:
        sink.write([_span()])
    assert caught.value.retry_after == 3.0
    assert sink.breaker.consecutive_failures == 1


def test_write__breaker_open__unavailable_without_a_request(otlp_receiver):
    sink = _sink(otlp_receiver)
    otlp_receiver.respond(503, times=2)
    for _ in range(2):
        with pytest.raises(RetryableSinkError):
            sink.write([_span()])
    with pytest.raises(SinkUnavailableError, match="circuit breaker open"):
        sink.write([_span()])
    assert sink.stats()["requests"] == 2


def test_write__bad_request__permanent_and_breaker_stays_closed(otlp_receiver):
    sink = _sink(otlp_receiver)
    otlp_receiver.respond(400, b"bad span")
    with pytest.raises(PermanentSinkError, match="400: bad span"):
        sink.write([_span()])
    assert sink.breaker.is_closed


def test_write__unauthorized__spooled_until_configuration_fixed(otlp_receiver):
    sink = _sink(otlp_receiver)
    otlp_receiver.respond(401, b"no key")
    with pytest.raises(SinkUnavailableError, match="OTEL_EXPORTER_OTLP_HEADERS"):
        sink.write([_span()])


def test_write__connection_refused__retryable_with_endpoint_masked():
    otlp = OtlpSettings(endpoint="http://user:pw@127.0.0.1:9/v1/traces", timeout_seconds=2)
    sink = OtlpSink(otlp, CircuitBreaker(failure_threshold=5))
    with pytest.raises(RetryableSinkError) as caught:
        sink.write([_span()])
    assert ":pw@" not in str(caught.value)
    sink.close()


def test_write__partial_success__rejected_spans_not_counted_as_delivered(otlp_receiver):
    sink = _sink(otlp_receiver)
    body = ExportTraceServiceResponse(
        partial_success=ExportTracePartialSuccess(rejected_spans=1, error_message="too old")
    ).SerializeToString()
    otlp_receiver.respond(200, body)
    assert sink.write([_span(1), _span(2)]) == 1
    assert sink.stats()["spans_partially_rejected"] == 1


def _connector(tmp_path, receiver, **otlp):
    config = load_config(
        env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint},
        overrides={
            "opik": OpikSettings(enabled=False).model_dump(),
            "storage": {
                "sqlite_path": str(tmp_path / "spans.db"),
                "spool_dir": str(tmp_path / "spool"),
            },
            "otlp": otlp,
        },
    )
    return config, build_opik_connector(config)


def _fake_llm() -> GenericFakeChatModel:
    message = AIMessage(
        "ok",
        usage_metadata={"input_tokens": 7, "output_tokens": 2, "total_tokens": 9},
        response_metadata={"model_name": "gpt-4o-mini"},
    )
    return GenericFakeChatModel(messages=iter([message]))


def test_otel_join__sdk_span_current__root_span_joins_its_trace_in_db_and_export(
    tmp_path, otlp_receiver
):
    config, connector = _connector(tmp_path, otlp_receiver)
    tracer = TracerProvider().get_tracer("e2i.api")
    handler = ObservabilityCallbackHandler(agent_name="explainer", connector=connector)
    try:
        with tracer.start_as_current_span("POST /explain") as request_span:
            _fake_llm().invoke("why?", config={"callbacks": [handler]})
        assert connector.flush(20)
    finally:
        connector.close(20)
    context = request_span.get_span_context()
    trace_id, parent = format(context.trace_id, "032x"), format(context.span_id, "016x")
    repository = create_span_repository(config)
    stored = asyncio.run(repository.get_spans_by_trace(trace_id))
    asyncio.run(repository.close())
    assert [(s.trace_id, s.parent_span_id) for s in stored] == [(trace_id, parent)]
    (exported,) = otlp_receiver.spans()
    assert (exported.trace_id.hex(), exported.parent_span_id.hex()) == (trace_id, parent)
    assert decoded_attributes(exported.attributes)["gen_ai.usage.input_tokens"] == 7


def test_otel_join__switched_off__new_trace(tmp_path, otlp_receiver):
    _, connector = _connector(tmp_path, otlp_receiver, join_otel_trace=False)
    tracer = TracerProvider().get_tracer("e2i.api")
    handler = ObservabilityCallbackHandler(agent_name="explainer", connector=connector)
    try:
        with tracer.start_as_current_span("POST /explain") as request_span:
            _fake_llm().invoke("why?", config={"callbacks": [handler]})
        assert connector.flush(20)
    finally:
        connector.close(20)
        set_otel_join(True)
    (exported,) = otlp_receiver.spans()
    assert exported.trace_id.hex() != format(request_span.get_span_context().trace_id, "032x")
    assert exported.parent_span_id == b""
