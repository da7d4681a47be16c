"""The OTLP sink against a real OpenTelemetry backend: Arize Phoenix on loopback.

A LangGraph graph (two nodes, a tool, two LLM calls, the second failing) runs with the callback
handler; the default connector writes to SQLite and exports over OTLP to Phoenix. The trace read
back through Phoenix's API has the same tree, names, models, token counts and error status as
the database. Outage: Phoenix stopped mid-run, spans spooled, Phoenix restarted, replayed, each
span there exactly once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from src.agents.ml_foundation.observability_connector.callback import (
    ObservabilityCallbackHandler,
)
from src.agents.ml_foundation.observability_connector.config import load_config
from src.agents.ml_foundation.observability_connector.models import SpanKind, SpanStatus
from src.mlops.opik_default import build_opik_connector
from src.repositories.observability_span import create_span_repository
from tests.fixtures.phoenix import PhoenixServer

PROJECT_ATTRIBUTE = "openinference.project.name"  # how Phoenix files spans into projects
READ_BACK_SECONDS = 120.0  # Phoenix ingests asynchronously: poll until it has them all


class ProviderDown(RuntimeError):
    pass


class FailingChatModel(BaseChatModel):
    @property
    def _llm_type(self) -> str:
        return "failing-chat"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise ProviderDown("provider down")


@tool
def lookup_brand(brand: str) -> str:
    """Market facts for a brand."""
    return f"{brand}: share 12%"


class State(TypedDict):
    question: str
    answer: str


def _graph(planner: BaseChatModel, writer: BaseChatModel):
    def plan(state: State, config: RunnableConfig) -> dict[str, str]:
        reply = planner.invoke(state["question"], config)
        facts = lookup_brand.invoke({"brand": "Kisqali"}, config)
        return {"answer": f"{reply.content} / {facts}"}

    def write(state: State, config: RunnableConfig) -> dict[str, str]:
        return {"answer": writer.invoke(state["answer"], config).content}

    builder = StateGraph(State)
    builder.add_node("plan", plan)
    builder.add_node("write", write)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "write")
    builder.add_edge("write", END)
    return builder.compile()


def _planner() -> GenericFakeChatModel:
    message = AIMessage(
        "plan ready",
        usage_metadata={"input_tokens": 21, "output_tokens": 8, "total_tokens": 29},
        response_metadata={"model_name": "gpt-4o-mini"},
    )
    return GenericFakeChatModel(messages=iter([message]))


def _connector(tmp_path, phoenix: PhoenixServer, project: str):
    config = load_config(
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": phoenix.url},
        overrides={
            "opik": {"enabled": False},
            "storage": {
                "sqlite_path": str(tmp_path / "spans.db"),
                "spool_dir": str(tmp_path / "spool"),
            },
            "otlp": {"resource_attributes": {PROJECT_ATTRIBUTE: project}},
            "circuit_breaker": {"failure_threshold": 1, "reset_timeout_seconds": 1},
        },
    )
    return config, build_opik_connector(config)


def _attributes(span: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for pair in span.get("attributes") or []:
        value = pair.get("value") or {}  # one field of the AnyValue is set, the rest are None
        out[pair["key"]] = next((v for v in value.values() if v is not None), None)
    return out


def _phoenix_spans(phoenix: PhoenixServer, project: str, expected: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + READ_BACK_SECONDS
    while True:  # polling an asynchronous ingester, not a timed assertion
        spans = phoenix.spans(project)
        if len(spans) >= expected or time.monotonic() > deadline:
            return spans
        time.sleep(0.5)


def _stored(config) -> list:
    async def read():
        repository = create_span_repository(config)
        try:
            return await repository.get_spans_by_time_window("1h", limit=10_000)
        finally:
            await repository.close()

    return asyncio.run(read())


def test_phoenix__graph_with_tool_and_failing_llm__same_tree_models_tokens_errors(
    tmp_path, phoenix_server
):
    project = f"e2i-roundtrip-{uuid.uuid4().hex[:8]}"
    config, connector = _connector(tmp_path, phoenix_server, project)
    handler = ObservabilityCallbackHandler(agent_name="gap_analyzer", connector=connector)
    graph = _graph(_planner(), FailingChatModel())
    try:
        with pytest.raises(ProviderDown):
            graph.invoke({"question": "why did share drop?"}, config={"callbacks": [handler]})
        assert connector.flush(60)
    finally:
        connector.close(60)
    stored = _stored(config)
    kinds = Counter(s.span_kind for s in stored)
    assert kinds[SpanKind.LLM] == 2 and kinds[SpanKind.TOOL] == 1
    exported = _phoenix_spans(phoenix_server, project, len(stored))
    by_id = {s["span_id"]: s for s in exported}
    assert set(by_id) == {s.span_id for s in stored}
    for span in stored:
        remote = by_id[span.span_id]
        attributes = _attributes(remote)
        assert remote["trace_id"] == span.trace_id
        assert (remote.get("parent_span_id") or None) == span.parent_span_id
        assert remote["name"] == span.operation_name
        assert attributes.get("gen_ai.request.model") == span.llm_model
        assert _int(attributes.get("gen_ai.usage.input_tokens")) == span.input_tokens
        assert _int(attributes.get("gen_ai.usage.output_tokens")) == span.output_tokens
        is_error = span.status is SpanStatus.ERROR
        assert (_status_code(remote) == 2) == is_error, (span.operation_name, remote["status"])
        if is_error:
            assert attributes["error.type"] == span.error_type
    assert {s.llm_model for s in stored if s.span_kind is SpanKind.LLM} >= {"gpt-4o-mini"}


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _status_code(span: dict[str, Any]) -> int:
    code = (span.get("status") or {}).get("code", 0)
    names = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
    return names.get(code, code) if isinstance(code, str) else int(code)


def _llm_calls(handler: ObservabilityCallbackHandler, count: int) -> None:
    for n in range(count):
        message = AIMessage(
            f"answer {n}",
            usage_metadata={"input_tokens": n + 1, "output_tokens": 1, "total_tokens": n + 2},
            response_metadata={"model_name": "gpt-4o-mini"},
        )
        GenericFakeChatModel(messages=iter([message])).invoke(
            f"q{n}", config={"callbacks": [handler]}
        )


def _replay_until_empty(connector, attempts: int = 60) -> int:
    """Replay the OTLP spool until it is empty; return how many spans the OTLP lane replayed
    meanwhile, whoever started it (the lane also replays on its own once the sink answers, so
    our `replay_spool()` may find the spool already drained). A freshly started Phoenix can
    refuse the first probe on a loaded machine, and the breaker then waits its reset timeout
    (1 s) again."""
    before = connector.processor.stats().sinks["otlp"].replayed
    for _ in range(attempts):
        time.sleep(1.5)  # the breaker's reset timeout (1 s) before its half-open probe
        connector.processor.replay_spool(timeout=60)
        if connector.processor.stats().sinks["otlp"].spool_bytes == 0:
            break
    return connector.processor.stats().sinks["otlp"].replayed - before


def test_phoenix__stopped_mid_run__spooled_then_replayed_exactly_once(tmp_path, phoenix_server):
    project = f"e2i-outage-{uuid.uuid4().hex[:8]}"
    config, connector = _connector(tmp_path, phoenix_server, project)
    handler = ObservabilityCallbackHandler(agent_name="drift_monitor", connector=connector)
    try:
        _llm_calls(handler, 5)
        assert connector.flush(60)
        phoenix_server.stop()
        _llm_calls(handler, 7)
        assert connector.flush(60)  # delivered to the database, spooled for OTLP
        otlp_counters = connector.processor.stats().sinks["otlp"]
        assert otlp_counters.spooled >= 7
        phoenix_server.start()
        replayed = _replay_until_empty(connector)
        assert replayed >= 7
    finally:
        connector.close(60)
        if not phoenix_server.is_running():
            phoenix_server.start()
    stored = _stored(config)
    assert len(stored) == 12
    exported = _phoenix_spans(phoenix_server, project, 12)
    ids = Counter(s["span_id"] for s in exported)
    assert set(ids) == {s.span_id for s in stored}
    assert set(ids.values()) == {1}
