"""OpikSink: the real opik REST client over HTTP to the loopback Opik server (schema-checked)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from src.agents.ml_foundation.observability_connector.config import CaptureSettings, OpikSettings
from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanKind,
    SpanStatus,
)
from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    new_span_id,
    new_trace_id,
    opik_span_uuid_for,
    opik_trace_uuid,
)
from src.agents.ml_foundation.observability_connector.sinks import (
    PermanentSinkError,
    RetryableSinkError,
    Sink,
    SinkUnavailableError,
)
from src.mlops.circuit_breaker import CircuitBreaker
from src.mlops.opik_mapping import PROMPT_ATTRIBUTE, RESPONSE_ATTRIBUTE
from src.mlops.opik_sink import (
    OPIK_CLOUD_URL,
    FeedbackScore,
    OpikRejectedError,
    OpikSink,
    build_opik_client,
)
from tests.fixtures.opik_server import (
    SPANS_BATCH_PATH,
    TRACE_SCORES_PATH,
    TRACES_BATCH_PATH,
    OpikTestServer,
)

API_KEY = "test-key-3f9c2a71d0"
WORKSPACE = "e2i-team"
PROJECT = "e2i-tests"
T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: float = 500.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _sink(
    server: OpikTestServer,
    clock: FakeClock | None = None,
    capture: CaptureSettings | None = None,
) -> OpikSink:
    settings = OpikSettings(
        api_key=SecretStr(API_KEY),
        url_override=server.base_url + "/",
        workspace=WORKSPACE,
        project_name=PROJECT,
        timeout_seconds=5.0,
    )
    breaker = CircuitBreaker(5, 30.0, clock=clock or FakeClock())
    return OpikSink(build_opik_client(settings), PROJECT, breaker, capture=capture)


def _tree(trace_id: str | None = None) -> dict[str, ObservabilitySpan]:
    """root agent span -> llm child (usage) and tool child (error)."""
    trace_id = trace_id or new_trace_id()
    root_id = new_span_id()
    root = ObservabilitySpan(
        span_id=root_id,
        trace_id=trace_id,
        operation_name="intent_classification",
        agent_name="orchestrator",
        agent_tier=1,
        span_kind=SpanKind.AGENT,
        start_time=T0,
        end_time=T0 + timedelta(seconds=3),
        thread_id="thread-7",
        attributes={"query": "why did TRx drop?"},
    )
    llm = ObservabilitySpan(
        span_id=new_span_id(),
        trace_id=trace_id,
        parent_span_id=root_id,
        operation_name="llm_call",
        agent_name="orchestrator",
        span_kind=SpanKind.LLM,
        start_time=T0 + timedelta(milliseconds=100),
        end_time=T0 + timedelta(seconds=1),
        llm_model="claude-sonnet-4",
        input_tokens=120,
        output_tokens=30,
        attributes={"llm.provider": "anthropic", "ttft_ms": 210.5},
    )
    tool = ObservabilitySpan(
        span_id=new_span_id(),
        trace_id=trace_id,
        parent_span_id=root_id,
        operation_name="lookup_kpi",
        agent_name="gap_analyzer",
        span_kind=SpanKind.TOOL,
        start_time=T0 + timedelta(seconds=1),
        end_time=T0 + timedelta(seconds=2),
        status=SpanStatus.ERROR,
        error_type="TimeoutError",
        error_message="KPI store did not answer",
    )
    return {"root": root, "llm": llm, "tool": tool}


def test_opik_sink__is_a_sink(opik_server: OpikTestServer) -> None:
    sink = _sink(opik_server)
    assert isinstance(sink, Sink)
    assert sink.name == "opik"


def test_opik_sink__trace_tree__arrives_with_mapped_ids_usage_and_errors(
    opik_server: OpikTestServer,
) -> None:
    tree = _tree()
    sink = _sink(opik_server)

    accepted = sink.write([tree["llm"], tree["tool"], tree["root"]])

    assert accepted == 3
    trace_uuid = opik_trace_uuid(tree["root"].trace_id)
    root_uuid = opik_span_uuid_for(tree["root"].trace_id, tree["root"].span_id)
    spans = {s["name"]: s for s in opik_server.received_spans()}
    assert set(spans) == {"intent_classification", "llm_call", "lookup_kpi"}
    for span in spans.values():
        assert uuid.UUID(span["id"]).version == 7
        assert span["trace_id"] == trace_uuid
        assert span["project_name"] == PROJECT
    assert spans["intent_classification"]["id"] == root_uuid
    assert "parent_span_id" not in spans["intent_classification"]
    assert spans["llm_call"]["parent_span_id"] == root_uuid
    assert spans["lookup_kpi"]["parent_span_id"] == root_uuid
    llm = spans["llm_call"]
    assert llm["type"] == "llm"
    assert llm["usage"] == {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
    assert llm["model"] == "claude-sonnet-4"
    assert llm["provider"] == "anthropic"
    assert llm["start_time"] == "2026-03-01T09:30:00.100000Z"
    assert llm["end_time"] == "2026-03-01T09:30:01Z"
    assert llm["metadata"]["w3c_span_id"] == tree["llm"].span_id
    assert llm["metadata"]["w3c_parent_span_id"] == tree["root"].span_id
    assert spans["lookup_kpi"]["type"] == "tool"
    assert spans["lookup_kpi"]["error_info"]["exception_type"] == "TimeoutError"
    assert spans["lookup_kpi"]["error_info"]["message"] == "KPI store did not answer"
    assert spans["lookup_kpi"]["tags"] == ["gap_analyzer"]
    root = spans["intent_classification"]
    assert root["type"] == "general"
    assert "error_info" not in root
    assert root["metadata"]["agent_tier"] == 1
    assert root["metadata"]["thread_id"] == "thread-7"
    assert root["metadata"]["attributes"] == {"query": "why did TRx drop?"}
    [trace] = opik_server.received_traces()
    assert trace["id"] == trace_uuid
    assert trace["name"] == "intent_classification"
    assert trace["thread_id"] == "thread-7"
    assert trace["end_time"] == "2026-03-01T09:30:03Z"
    paths = [r.path for r in opik_server.requests]
    assert paths.index(TRACES_BATCH_PATH) < paths.index(SPANS_BATCH_PATH)


def test_opik_sink__one_unconvertible_span__rest_of_batch_sent(
    opik_server: OpikTestServer,
) -> None:
    tree = _tree()
    broken = ObservabilitySpan.model_construct(**{**tree["tool"].__dict__, "trace_id": "bad"})
    sink = _sink(opik_server)

    accepted = sink.write([broken, tree["root"]])

    assert accepted == 1
    assert [s["name"] for s in opik_server.received_spans()] == ["intent_classification"]
    assert sink.stats()["spans_unconvertible"] == 1


def test_opik_sink__auth_and_workspace__sent_as_headers(opik_server: OpikTestServer) -> None:
    _sink(opik_server).write([_tree()["root"]])
    for request in opik_server.requests:
        assert request.headers["authorization"] == API_KEY
        assert request.headers["comet-workspace"] == WORKSPACE


def test_opik_sink__replayed_batch__same_opik_ids_and_trace_sent_once(
    opik_server: OpikTestServer,
) -> None:
    tree = _tree()
    sink = _sink(opik_server)
    batch = [tree["llm"], tree["root"]]

    sink.write(batch)
    sink.write(batch)

    ids = [s["id"] for s in opik_server.received_spans()]
    assert len(ids) == 4
    assert ids[:2] == ids[2:]
    assert len(opik_server.received_traces()) == 1


def test_opik_sink__replay_from_a_new_sink__same_ids(opik_server: OpikTestServer) -> None:
    tree = _tree()
    _sink(opik_server).write([tree["tool"]])
    _sink(opik_server).write([tree["tool"]])
    first, second = opik_server.received_spans()
    assert first == second


def test_opik_sink__root_in_later_batch__placeholder_then_root_named_trace(
    opik_server: OpikTestServer,
) -> None:
    tree = _tree()
    sink = _sink(opik_server)

    sink.write([tree["tool"]])
    sink.write([tree["root"]])
    sink.write([tree["llm"]])

    placeholder, named = opik_server.received_traces()
    assert placeholder["id"] == named["id"] == opik_trace_uuid(tree["root"].trace_id)
    assert placeholder["name"] == "gap_analyzer"
    assert placeholder["metadata"]["root_span_in_batch"] is False
    assert named["name"] == "intent_classification"
    assert named["last_updated_at"] > placeholder["last_updated_at"]


def test_opik_sink__http_503__retryable_and_counted_by_breaker(
    opik_server: OpikTestServer,
) -> None:
    sink = _sink(opik_server)
    opik_server.fail_with(503)

    with pytest.raises(RetryableSinkError, match="503") as caught:
        sink.write([_tree()["root"]])

    assert not isinstance(caught.value, SinkUnavailableError)
    assert sink.breaker.consecutive_failures == 1
    assert sink.breaker.state == "closed"


def test_opik_sink__five_failures__breaker_opens_and_no_request_is_made(
    opik_server: OpikTestServer,
) -> None:
    sink = _sink(opik_server)
    opik_server.fail_with(503)
    for _ in range(5):
        with pytest.raises(RetryableSinkError):
            sink.write([_tree()["root"]])
    sent_before = len(opik_server.requests)

    with pytest.raises(SinkUnavailableError):
        sink.write([_tree()["root"]])

    assert sink.breaker.state == "open"
    assert sink.breaker.opens == 1
    assert len(opik_server.requests) == sent_before
    assert sink.stats()["unavailable"] == 1


def test_opik_sink__open_breaker_after_timeout__probe_succeeds_and_closes(
    opik_server: OpikTestServer,
) -> None:
    clock = FakeClock()
    sink = _sink(opik_server, clock=clock)
    opik_server.fail_with(503)
    for _ in range(5):
        with pytest.raises(RetryableSinkError):
            sink.write([_tree()["root"]])
    opik_server.recover()
    clock.now += 30.0

    assert sink.breaker.state == "half_open"
    assert sink.write([_tree()["root"]]) == 1
    assert sink.breaker.state == "closed"


def test_opik_sink__http_400__permanent_error_with_server_message(
    opik_server: OpikTestServer,
) -> None:
    sink = _sink(opik_server)
    opik_server.fail_with(400, {"errors": ["spans[0].start_time must not be null"]})

    with pytest.raises(PermanentSinkError, match="must not be null") as caught:
        sink.write([_tree()["root"]])

    assert isinstance(caught.value, OpikRejectedError)
    assert caught.value.status_code == 400
    assert caught.value.body == {"errors": ["spans[0].start_time must not be null"]}
    assert sink.breaker.consecutive_failures == 0


@pytest.mark.parametrize("status", [401, 403, 404])
def test_opik_sink__auth_or_url_refused__unavailable_so_the_batch_is_spooled(
    opik_server: OpikTestServer, status: int
) -> None:
    """A wrong key, workspace or URL is our configuration, not the payload: spool, not drop."""
    sink = _sink(opik_server)
    opik_server.fail_with(status, {"errors": ["not allowed"]})

    with pytest.raises(SinkUnavailableError, match=f"HTTP {status}.*OPIK_API_KEY"):
        sink.write([_tree()["root"]])

    assert sink.breaker.consecutive_failures == 0


def test_opik_sink__503_with_retry_after__error_carries_the_delay(
    opik_server: OpikTestServer,
) -> None:
    sink = _sink(opik_server)
    opik_server.fail_with(503, headers={"Retry-After": "7"})
    with pytest.raises(RetryableSinkError) as caught:
        sink.write([_tree()["root"]])
    assert caught.value.retry_after == 7.0  # type: ignore[attr-defined]


def test_opik_sink__http_429__retryable(opik_server: OpikTestServer) -> None:
    sink = _sink(opik_server)
    opik_server.fail_with(429, {"errors": ["slow down"]})
    with pytest.raises(RetryableSinkError, match="429"):
        sink.write([_tree()["root"]])
    assert sink.breaker.consecutive_failures == 1


def test_opik_sink__connection_refused__retryable_then_recovers(
    opik_server: OpikTestServer,
) -> None:
    sink = _sink(opik_server)
    opik_server.refuse_connections()

    with pytest.raises(RetryableSinkError, match="ConnectError"):
        sink.write([_tree()["root"]])
    assert sink.breaker.consecutive_failures == 1

    opik_server.recover()
    assert sink.write([_tree()["root"]]) == 1
    assert sink.breaker.consecutive_failures == 0


def test_opik_sink__api_key__never_logged_or_in_errors(
    opik_server: OpikTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sink = _sink(opik_server)
    messages = [repr(sink)]
    sink.write([_tree()["root"]])
    for status in (503, 400):
        opik_server.fail_with(status)
        with pytest.raises(Exception) as caught:
            sink.write([_tree()["root"]])
        messages.append(str(caught.value))
    sink.enqueue_feedback_score(FeedbackScore(new_trace_id(), "accuracy", 0.5))
    sink.flush_feedback_scores()

    assert caplog.records, "expected the HTTP client to log requests at DEBUG"
    assert API_KEY not in caplog.text
    assert all(API_KEY not in m for m in messages)


def test_opik_sink__queued_feedback_score__sent_after_spans_on_the_trace(
    opik_server: OpikTestServer,
) -> None:
    tree = _tree()
    sink = _sink(opik_server)
    sink.enqueue_feedback_score(
        FeedbackScore(tree["root"].trace_id, "routing_confidence", -0.25, reason="low")
    )

    sink.write([tree["root"]])

    [score] = opik_server.received_trace_scores()
    assert score == {
        "id": opik_trace_uuid(tree["root"].trace_id),
        "project_name": PROJECT,
        "name": "routing_confidence",
        "value": -0.25,
        "reason": "low",
        "source": "sdk",
    }
    paths = [r.path for r in opik_server.requests]
    assert paths.index(SPANS_BATCH_PATH) < paths.index(TRACE_SCORES_PATH)
    assert sink.stats()["pending_scores"] == 0


def test_opik_sink__feedback_score_during_outage__kept_queued_and_never_raises(
    opik_server: OpikTestServer,
) -> None:
    sink = _sink(opik_server)
    sink.enqueue_feedback_score(FeedbackScore(new_trace_id(), "quality", 1.0))
    opik_server.fail_with(503)

    assert sink.flush_feedback_scores() == 0
    assert sink.stats()["pending_scores"] == 1

    opik_server.recover()
    assert sink.flush_feedback_scores() == 1
    assert len(opik_server.received_trace_scores()) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"value": float("nan")}, "value"),
        ({"value": 1e12}, "value"),
        ({"name": " "}, "name"),
        ({"trace_id": "xyz"}, "trace_id"),
    ],
)
def test_feedback_score__bad_input__value_error_names_field(
    kwargs: dict[str, object], field: str
) -> None:
    args: dict[str, object] = {"trace_id": new_trace_id(), "name": "n", "value": 1.0, **kwargs}
    with pytest.raises(ValueError, match=field):
        FeedbackScore(**args)  # type: ignore[arg-type]


def _llm_with_text(prompt: str, response: str) -> ObservabilitySpan:
    span = _tree()["llm"]
    attrs = {**span.attributes, PROMPT_ATTRIBUTE: prompt, RESPONSE_ATTRIBUTE: response}
    return span.model_copy(update={"attributes": attrs})


def test_opik_sink__capture_on__prompt_and_response_as_input_output(
    opik_server: OpikTestServer,
) -> None:
    sink = _sink(opik_server, capture=CaptureSettings(prompts=True, max_chars=5))
    sink.write([_llm_with_text("What is the TRx trend?", "Down 4%")])
    [span] = opik_server.received_spans()
    assert span["input"] == {"prompt": "What "}
    assert span["output"] == {"response": "Down "}
    assert PROMPT_ATTRIBUTE not in span["metadata"]["attributes"]


def test_opik_sink__capture_off__no_text_sent(opik_server: OpikTestServer) -> None:
    sink = _sink(opik_server, capture=CaptureSettings(prompts=False))
    sink.write([_llm_with_text("secret patient note", "secret answer")])
    [request] = [r for r in opik_server.requests if r.path == SPANS_BATCH_PATH]
    assert "secret" not in str(request.body)


def test_build_opik_client__no_url_override__opik_cloud_url() -> None:
    client = build_opik_client(OpikSettings(api_key=SecretStr(API_KEY), workspace=WORKSPACE))
    wrapper = client._client_wrapper
    assert wrapper.get_base_url() == OPIK_CLOUD_URL
    headers = wrapper.get_headers()
    assert headers["Authorization"] == API_KEY
    assert headers["Comet-Workspace"] == WORKSPACE
    assert wrapper.get_timeout() == 10.0


def test_opik_sink__empty_project_name__value_error() -> None:
    with pytest.raises(ValueError, match="project_name"):
        OpikSink(object(), " ", CircuitBreaker())  # type: ignore[arg-type]


def test_opik_sink__priced_llm_span__provider_model_and_total_estimated_cost_validate(
    opik_server: OpikTestServer,
) -> None:
    """Issue 13: the fields are Span_Write's `provider`, `model` and `total_estimated_cost`
    (number >= 0); the test server validates each request against Opik's OpenAPI schema."""
    llm = _tree()["llm"].model_copy(
        update={"provider": "anthropic", "cost_usd": 0.0123456789, "attributes": {}}
    )

    assert _sink(opik_server).write([llm]) == 1

    [sent] = opik_server.received_spans()
    assert (sent["provider"], sent["model"]) == ("anthropic", "claude-sonnet-4")
    assert sent["total_estimated_cost"] == 0.0123456789
