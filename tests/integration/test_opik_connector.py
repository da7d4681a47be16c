"""OpikConnector: explicit spans, LLM calls with real langchain-core fake models, metrics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from langchain_core.language_models.fake_chat_models import (
    FakeMessagesListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, HumanMessage

from src.agents.ml_foundation.observability_connector.callback import (
    ObservabilityCallbackHandler,
)
from src.agents.ml_foundation.observability_connector.config import (
    CaptureSettings,
    ObservabilityConfig,
)
from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanKind,
    SpanStatus,
)
from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    TraceContext,
    current_context,
    new_trace_id,
    use_context,
)
from src.mlops.live_span import SPAN_PROBLEMS, current_live_span
from src.mlops.opik_connector import OpikConnector
from src.mlops.opik_mapping import (
    PROMPT_ATTRIBUTE,
    PROMPT_TRUNCATED_ATTRIBUTE,
    RESPONSE_ATTRIBUTE,
    TRACEBACK_ATTRIBUTE,
)
from src.mlops.span_parents import ORPHAN_PARENT_ATTRIBUTE


class ListProcessor:
    """A processor that keeps submitted spans in a list (the processor is not under test)."""

    def __init__(self) -> None:
        self.spans: list[ObservabilitySpan] = []
        self.flushes = 0
        self.closed = False

    def submit(self, span: ObservabilitySpan) -> None:
        self.spans.append(span)

    def flush(self, timeout: float | None = None) -> bool:
        self.flushes += 1
        return True

    def close(self, timeout: float | None = None) -> bool:
        self.closed = True
        return True

    def by_name(self) -> dict[str, ObservabilitySpan]:
        return {s.operation_name: s for s in self.spans}


class StepClock:
    """Wall clock advancing 10 ms per reading, so durations are exact."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=10)
        return self.now


class AgentFailedError(RuntimeError):
    pass


def _connector(
    capture: CaptureSettings | None = None, registry: object = None
) -> tuple[OpikConnector, ListProcessor]:
    processor = ListProcessor()
    config = ObservabilityConfig(capture=capture or CaptureSettings())
    return (
        OpikConnector(processor, config=config, clock=StepClock(), registry=registry),
        processor,
    )


def _usage_message(content: str = "Down 4% in Q3") -> AIMessage:
    return AIMessage(
        content=content,
        usage_metadata={"input_tokens": 12, "output_tokens": 5, "total_tokens": 17},
        response_metadata={"model_name": "claude-sonnet-4-20250514"},
    )


async def test_trace_agent__nested_async__children_point_at_parents() -> None:
    connector, processor = _connector()

    async with connector.trace_agent("orchestrator", "dispatch") as outer:
        assert current_context() is not None
        assert current_context().span_id == outer.span_id
        async with connector.trace_agent("gap_analyzer", "analyze") as inner:
            inner.set_attribute("region", "EU")
            inner.add_event("cache_miss", {"key": "gap:eu"})

    assert current_context() is None
    spans = processor.by_name()
    assert spans["dispatch"].parent_span_id is None
    assert spans["analyze"].parent_span_id == outer.span_id
    assert spans["analyze"].trace_id == outer.trace_id == inner.trace_id
    assert spans["analyze"].attributes == {"region": "EU"}
    assert [e.name for e in spans["analyze"].events] == ["cache_miss"]
    assert spans["analyze"].status is SpanStatus.COMPLETED
    assert spans["dispatch"].duration_ms == pytest.approx(40.0)
    assert [s.operation_name for s in processor.spans] == ["analyze", "dispatch"]


def test_trace_agent__sync_with__same_nesting() -> None:
    connector, processor = _connector()

    with (
        connector.trace_agent("orchestrator", "dispatch") as outer,
        connector.trace_agent_sync("tool_composer", "compose") as inner,
    ):
        assert inner.trace_id == outer.trace_id

    spans = processor.by_name()
    assert spans["compose"].parent_span_id == outer.span_id
    assert current_context() is None


async def test_trace_agent__exception__propagates_unchanged_and_span_is_error() -> None:
    connector, processor = _connector()
    error = AgentFailedError("KPI store unreachable")

    with pytest.raises(AgentFailedError) as caught:
        async with connector.trace_agent("drift_monitor", "check_drift"):
            raise error

    assert caught.value is error
    [span] = processor.spans
    assert span.status is SpanStatus.ERROR
    assert span.error_type == "AgentFailedError"
    assert span.error_message == "KPI store unreachable"
    assert "KPI store unreachable" in span.attributes[TRACEBACK_ATTRIBUTE]
    assert current_context() is None


async def test_trace_agent__concurrent_tasks__each_task_keeps_its_own_parent() -> None:
    connector, processor = _connector()

    async def agent(name: str) -> str:
        async with connector.trace_agent(name, "run") as parent:
            await asyncio.sleep(0)
            async with connector.trace_agent(name, "step"):
                await asyncio.sleep(0)
            return parent.span_id

    parents = await asyncio.gather(agent("explainer"), agent("feedback_learner"))

    steps = [s for s in processor.spans if s.operation_name == "step"]
    assert sorted(s.parent_span_id for s in steps) == sorted(parents)
    for step in steps:
        run = next(s for s in processor.spans if s.span_id == step.parent_span_id)
        assert run.agent_name == step.agent_name


def test_trace_agent__explicit_trace_id__local_root_in_that_trace() -> None:
    connector, processor = _connector()
    trace_id = new_trace_id()
    with connector.trace_agent("orchestrator", "resume", trace_id=trace_id):
        pass
    [span] = processor.spans
    assert span.trace_id == trace_id
    assert span.parent_span_id is None


def test_trace_agent__registry__fills_agent_tier() -> None:
    connector, processor = _connector(registry={"gap_analyzer": 2})
    with connector.trace_agent("gap_analyzer", "analyze"):
        pass
    with connector.trace_agent("not_registered", "x"):
        pass
    assert processor.by_name()["analyze"].agent_tier == 2
    assert processor.by_name()["x"].agent_tier is None


def test_callback_handler__over_the_connector__tier_of_each_agent_as_submit_gives_it() -> None:
    """The handler asks the connector's `tier_of` once per agent and sets the tier itself;
    the spans carry what `submit` would have filled in (registry, else the default)."""
    connector, processor = _connector(registry={"gap_analyzer": 2})
    named = ObservabilityCallbackHandler("gap_analyzer", connector)
    unnamed = ObservabilityCallbackHandler(None, connector)
    for handler in (named, named, unnamed):
        model = GenericFakeChatModel(messages=iter([_usage_message()]))
        model.invoke("q", config={"callbacks": [handler]})
    tiers = [(s.agent_name, s.agent_tier) for s in processor.spans]
    assert tiers == [("gap_analyzer", 2), ("gap_analyzer", 2), ("GenericFakeChatModel", None)]
    assert connector.tier_of("not_registered") is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"agent_name": ""}, "agent_name"),
        ({"operation": "  "}, "operation"),
        ({"tags": "tier_2"}, "tags"),
        ({"tags": ["ok", 3]}, "tag"),
    ],
)
def test_trace_agent__bad_arguments__value_error_names_field(
    kwargs: dict[str, str], field: str
) -> None:
    connector, _ = _connector()
    args = {"agent_name": "orchestrator", "operation": "op", **kwargs}
    with pytest.raises(ValueError, match=field):
        connector.trace_agent(**args)


def test_trace_agent__unknown_parent_without_trace__new_trace_orphan_marked_and_counted() -> None:
    connector, processor = _connector()
    problems_before = SPAN_PROBLEMS.count
    with connector.trace_agent("orchestrator", "op", parent_span_id="1234567890abcdef") as span:
        pass
    [recorded] = processor.spans
    assert recorded.trace_id == span.trace_id and recorded.parent_span_id is None
    assert recorded.attributes[ORPHAN_PARENT_ATTRIBUTE] == "1234567890abcdef"
    assert SPAN_PROBLEMS.count == problems_before + 1


def test_trace_agent__parent_in_another_trace__current_flags_and_tracestate_not_carried() -> None:
    """The current span's `random` flag and tracestate describe its own trace: a span placed
    in another trace (explicit trace_id + parent_span_id) gets only `sampled`."""
    connector, processor = _connector()
    current = TraceContext(new_trace_id(), "00f067aa0ba902b7", 0x03, (("congo", "t61"),))
    other_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    with use_context(current):
        with connector.trace_agent("a", "op", other_trace, "1234567890abcdef"):
            inside = current_context()
        with connector.trace_agent("a", "same", current.trace_id, "1234567890abcdef"):
            same_trace = current_context()
    assert inside is not None and same_trace is not None
    assert (inside.trace_id, inside.trace_flags, inside.tracestate) == (other_trace, 0x01, ())
    assert (same_trace.trace_flags, same_trace.tracestate) == (0x03, current.tracestate)
    assert [s.tracestate for s in processor.spans] == [None, "congo=t61"]


async def test_trace_llm_call__unknown_parent_without_trace__llm_call_runs_in_new_trace() -> None:
    connector, processor = _connector()
    model = GenericFakeChatModel(messages=iter([_usage_message("still answered")]))
    problems_before = SPAN_PROBLEMS.count

    response = await connector.trace_llm_call(
        "m", "p", lambda: model.ainvoke("p"), parent_span_id="00f067aa0ba902b7"
    )

    assert response.content == "still answered"
    [llm] = processor.spans
    assert llm.parent_span_id is None and llm.total_tokens == 17
    assert llm.attributes[ORPHAN_PARENT_ATTRIBUTE] == "00f067aa0ba902b7"
    assert SPAN_PROBLEMS.count == problems_before + 1


async def test_trace_llm_call__unknown_parent_inside_current_trace__joins_that_trace() -> None:
    connector, processor = _connector()
    model = GenericFakeChatModel(messages=iter([_usage_message()]))
    problems_before = SPAN_PROBLEMS.count
    async with connector.trace_agent("orchestrator", "plan") as outer:
        await connector.trace_llm_call(
            "m", "p", lambda: model.ainvoke("p"), parent_span_id="00f067aa0ba902b7"
        )

    llm = processor.by_name()["llm_call"]
    assert (llm.trace_id, llm.parent_span_id) == (outer.trace_id, "00f067aa0ba902b7")
    assert ORPHAN_PARENT_ATTRIBUTE not in llm.attributes
    assert SPAN_PROBLEMS.count == problems_before


def test_trace_llm_call_sync__empty_model__value_error_before_call() -> None:
    connector, processor = _connector()
    calls: list[int] = []
    with pytest.raises(ValueError, match="model"):
        connector.trace_llm_call_sync("", "p", lambda: calls.append(1))
    assert calls == [] and processor.spans == []


async def test_trace_llm_call__generic_fake_model__tokens_model_and_unchanged_response() -> None:
    connector, processor = _connector()
    model = GenericFakeChatModel(messages=iter([_usage_message()]))
    returned: list[AIMessage] = []

    async def call() -> AIMessage:
        message = await model.ainvoke("Why did TRx drop?")
        returned.append(message)
        return message

    async with connector.trace_agent("orchestrator", "intent_classification") as span:
        response = await connector.trace_llm_call(
            model="claude-sonnet-4",
            prompt="Why did TRx drop?",
            llm_call=call,
            parent_span_id=span.span_id,
        )

    assert response is returned[0]
    llm = processor.by_name()["llm_call"]
    assert llm.span_kind is SpanKind.LLM
    assert llm.parent_span_id == span.span_id
    assert llm.agent_name == "orchestrator"
    assert (llm.input_tokens, llm.output_tokens, llm.total_tokens) == (12, 5, 17)
    assert llm.llm_model == "claude-sonnet-4-20250514"
    assert llm.duration_ms == pytest.approx(10.0)
    assert PROMPT_ATTRIBUTE not in llm.attributes  # capture is off by default


def test_trace_llm_call_sync__messages_list_model__tokens_recorded() -> None:
    connector, processor = _connector()
    model = FakeMessagesListChatModel(responses=[_usage_message("ok")])

    response = connector.trace_llm_call_sync(
        model="fake-model",
        prompt=[HumanMessage("hi")],
        llm_call=lambda: model.invoke([HumanMessage("hi")]),
        agent_name="explainer",
    )

    assert response.content == "ok"
    [llm] = processor.spans
    assert llm.agent_name == "explainer"
    assert llm.parent_span_id is None
    assert llm.total_tokens == 17


async def test_trace_llm_call__after_parent_block__still_parented_by_id() -> None:
    connector, processor = _connector()
    model = GenericFakeChatModel(messages=iter([_usage_message()]))
    async with connector.trace_agent("orchestrator", "plan") as span:
        pass

    await connector.trace_llm_call(
        "m", "p", lambda: model.ainvoke("p"), parent_span_id=span.span_id
    )

    llm = processor.by_name()["llm_call"]
    assert (llm.trace_id, llm.parent_span_id) == (span.trace_id, span.span_id)


async def test_trace_llm_call__capture_on__text_truncated_and_marked() -> None:
    connector, processor = _connector(capture=CaptureSettings(prompts=True, max_chars=10))
    model = GenericFakeChatModel(messages=iter([_usage_message("short")]))
    prompt = "Summarise the quarterly TRx drop for the EU region"

    await connector.trace_llm_call("m", prompt, lambda: model.ainvoke(prompt))

    attrs = processor.spans[0].attributes
    assert attrs[PROMPT_ATTRIBUTE] == prompt[:10]
    assert attrs[PROMPT_TRUNCATED_ATTRIBUTE] is True
    assert attrs[f"{PROMPT_ATTRIBUTE}_original_chars"] == len(prompt)
    assert attrs[RESPONSE_ATTRIBUTE] == "short"
    assert "llm.response_truncated" not in attrs


async def test_trace_llm_call__llm_raises__span_error_and_same_exception() -> None:
    connector, processor = _connector()
    error = TimeoutError("provider timed out")

    async def call() -> AIMessage:
        raise error

    with pytest.raises(TimeoutError) as caught:
        await connector.trace_llm_call("m", "p", call)

    assert caught.value is error
    [llm] = processor.spans
    assert (llm.status, llm.error_type) == (SpanStatus.ERROR, "TimeoutError")


def test_trace_llm_call_sync__awaitable_returned__type_error() -> None:
    connector, processor = _connector()
    model = GenericFakeChatModel(messages=iter([_usage_message()]))
    with pytest.raises(TypeError, match="await trace_llm_call"):
        connector.trace_llm_call_sync("m", "p", lambda: model.ainvoke("p"))
    assert processor.spans[0].status is SpanStatus.ERROR


def test_log_metric__inside_trace_agent__event_on_the_live_span() -> None:
    connector, processor = _connector()
    with connector.trace_agent("orchestrator", "route") as span:
        connector.log_metric("routing_confidence", 0.92, metadata={"intent": "gap"})
        assert current_live_span() is span

    [route] = processor.spans
    [event] = route.events
    assert event.name == "metric.routing_confidence"
    assert event.attributes == {
        "metric.name": "routing_confidence",
        "metric.value": 0.92,
        "intent": "gap",
    }


def test_log_metric__outside_any_span__zero_duration_chain_span() -> None:
    connector, processor = _connector()
    trace_id = new_trace_id()

    connector.log_metric("nightly_accuracy", 0.81, trace_id=trace_id)

    [span] = processor.spans
    assert span.operation_name == "metric.nightly_accuracy"
    assert span.span_kind is SpanKind.CHAIN
    assert span.trace_id == trace_id
    assert span.duration_ms == 0.0
    assert span.attributes["metric.value"] == 0.81


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "0.5", True])
def test_log_metric__bad_value__value_error(value: object) -> None:
    connector, processor = _connector()
    with pytest.raises(ValueError, match="value"):
        connector.log_metric("m", value)  # type: ignore[arg-type]
    assert processor.spans == []


def test_connector__flush_and_close__delegate_and_close_once() -> None:
    closed: list[bool] = []
    processor = ListProcessor()
    connector = OpikConnector(processor, on_close=lambda: closed.append(True))
    assert connector.flush(1.0) is True
    assert connector.close(1.0) is True
    assert connector.close(1.0) is True
    assert (processor.flushes, processor.closed, closed) == (1, True, [True])
    assert connector.circuit_state == "disabled"


def test_connector__processor_raises__submit_never_raises() -> None:
    class BrokenProcessor(ListProcessor):
        def submit(self, span: ObservabilitySpan) -> None:
            raise RuntimeError("queue exploded")

    connector = OpikConnector(BrokenProcessor())
    problems_before = SPAN_PROBLEMS.count
    with connector.trace_agent("orchestrator", "op"):
        pass
    assert SPAN_PROBLEMS.count == problems_before + 1
