"""ObservabilityCallbackHandler against the real langchain-core and langgraph runtimes.

Token totals are checked against langchain-core's own `UsageMetadataCallbackHandler` attached
to the same runs, and the span tree against langchain-core's `RunCollectorCallbackHandler`.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import uuid4

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun, UsageMetadataCallbackHandler
from langchain_core.language_models import BaseChatModel, BaseLLM
from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, BaseMessage, HumanMessage
from langchain_core.outputs import (
    ChatGeneration,
    ChatGenerationChunk,
    ChatResult,
    Generation,
    LLMResult,
)
from langchain_core.tools import tool
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph, add_messages
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command, Send, interrupt
from pydantic import PrivateAttr
from typing_extensions import TypedDict

from src.agents.ml_foundation.observability_connector.batch_processor import BatchProcessor
from src.agents.ml_foundation.observability_connector.callback import (
    ObservabilityCallbackHandler,
)
from src.agents.ml_foundation.observability_connector.config import BatchingSettings
from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanKind,
    SpanStatus,
)
from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    TraceContext,
    use_context,
)
from src.mlops.opik_connector import OpikConnector

# --- real collaborators ------------------------------------------------------------------------


class ListSink:
    """A sink of the real batch processor that keeps every batch it is given."""

    name = "list"

    def __init__(self) -> None:
        self.batches: list[list[ObservabilitySpan]] = []

    def write(self, batch: Any) -> int:
        self.batches.append(list(batch))
        return len(batch)


class CollectingConnector:
    """Stands in for the batch processor: keeps submitted spans in a list."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ObservabilitySpan] = []
        self.flush_calls: list[float | None] = []

    def submit(self, span: ObservabilitySpan) -> None:
        with self._lock:
            self._spans.append(span)

    def flush(self, timeout: float | None) -> bool:
        self.flush_calls.append(timeout)
        return True

    @property
    def spans(self) -> list[ObservabilitySpan]:
        with self._lock:
            return list(self._spans)


class DeferringConnector(CollectingConnector):
    """A connector with a worker (like the OpikConnector over a BatchProcessor): it takes the
    calls that build spans (`submit_later`) and makes them only when `build_all` asks, on a
    thread of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.builds: list[Any] = []
        self.failures: list[BaseException] = []

    def submit_later(self, build: Any) -> None:
        self.builds.append(build)

    def build_all(self) -> None:
        def work() -> None:
            for build in self.builds:
                try:
                    self.submit(build())
                except Exception as exc:  # the batch processor counts these as invalid
                    self.failures.append(exc)

        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
        self.builds.clear()


class FailingConnector:
    def __init__(self) -> None:
        self.attempts = 0

    def submit(self, span: ObservabilitySpan) -> None:
        self.attempts += 1
        raise ConnectionError("sink is down")

    def flush(self, timeout: float | None) -> bool:
        raise ConnectionError("sink is down")


class ScriptedChatModel(BaseChatModel):
    """A real chat model whose replies carry usage_metadata and a model name, also streamed.

    `stream_usage` mirrors the provider option: when False, streamed chunks carry no usage.
    """

    replies: list[AIMessage]
    model_name: str = "scripted-1"
    stream_usage: bool = True
    _next: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "scripted-chat-model"

    def _reply(self) -> AIMessage:
        with self._lock:
            reply = self.replies[self._next % len(self.replies)]
            self._next += 1
        meta = {**reply.response_metadata, "model_name": self.model_name}
        return reply.model_copy(update={"response_metadata": meta})

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if any("FAIL" in str(m.content) for m in messages):
            raise RuntimeError("provider exploded")
        return ChatResult(generations=[ChatGeneration(message=self._reply())])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        reply = self._reply()
        words = str(reply.content).split(" ")
        for i, word in enumerate(words):
            last = i == len(words) - 1
            chunk = AIMessageChunk(
                content=word if last else word + " ",
                tool_call_chunks=[],
                usage_metadata=reply.usage_metadata if last and self.stream_usage else None,
                response_metadata=reply.response_metadata if last else {},
            )
            generation = ChatGenerationChunk(message=chunk)
            if run_manager:
                run_manager.on_llm_new_token(str(chunk.content), chunk=generation)
            yield generation

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        return self


class ScriptedLLM(BaseLLM):
    """A legacy text-completion model that reports usage only in `llm_output` (OpenAI style)."""

    @property
    def _llm_type(self) -> str:
        return "scripted-llm"

    def _generate(self, prompts: list[str], stop: Any = None, run_manager: Any = None, **kw: Any):
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        generations = []
        for prompt in prompts:
            generations.append([Generation(text=prompt.upper())])
            usage["prompt_tokens"] += len(prompt)
            usage["completion_tokens"] += 2 * len(prompt)
            usage["total_tokens"] += 3 * len(prompt)
        return LLMResult(
            generations=generations, llm_output={"token_usage": usage, "model_name": "legacy-1"}
        )


def reply(content: str, input_tokens: int, output_tokens: int, **kwargs: Any) -> AIMessage:
    usage = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }
    return AIMessage(content=content, usage_metadata=usage, **kwargs)


class ListState(TypedDict):
    log: Annotated[list[str], operator.add]


class ChatState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


# --- helpers -----------------------------------------------------------------------------------


def span_tokens(spans: list[ObservabilitySpan]) -> dict[str, tuple[int, int, int]]:
    totals: dict[str, tuple[int, int, int]] = {}
    for span in spans:
        if span.total_tokens is None:
            continue
        assert span.span_kind is SpanKind.LLM, f"{span.operation_name} carries tokens"
        i, o, t = totals.get(span.llm_model or "?", (0, 0, 0))
        totals[span.llm_model or "?"] = (
            i + (span.input_tokens or 0),
            o + (span.output_tokens or 0),
            t + span.total_tokens,
        )
    return totals


def reference_tokens(usage: UsageMetadataCallbackHandler) -> dict[str, tuple[int, int, int]]:
    return {
        model: (u["input_tokens"], u["output_tokens"], u["total_tokens"])
        for model, u in usage.usage_metadata.items()
    }


def handler_and_reference(**options: Any):
    connector = CollectingConnector()
    handler = ObservabilityCallbackHandler(connector=connector, **options)
    return connector, handler, UsageMetadataCallbackHandler()


def by_name(spans: list[ObservabilitySpan], name: str) -> list[ObservabilitySpan]:
    return [s for s in spans if s.operation_name == name]


def parent_of(spans: list[ObservabilitySpan], span: ObservabilitySpan) -> ObservabilitySpan | None:
    return next((s for s in spans if s.span_id == span.parent_span_id), None)


def three_node_graph(model: ScriptedChatModel):
    def plan(state: ListState) -> dict:
        return {"log": [str(model.invoke("plan").content)]}

    def act(state: ListState) -> dict:
        return {"log": [str(model.invoke("act").content)]}

    def review(state: ListState) -> dict:
        return {"log": ["reviewed"]}

    graph = StateGraph(ListState)
    for name, fn in (("plan", plan), ("act", act), ("review", review)):
        graph.add_node(name, fn)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "act")
    graph.add_edge("act", "review")
    graph.add_edge("review", END)
    return graph.compile(name="three_step_agent")


def nested_graph(model: ScriptedChatModel):
    """root: fan_out -(Send x3)-> branch -> summarize (a compiled subgraph: draft -> polish)."""

    def fan_out(state: ListState) -> dict:
        return {"log": ["fan"]}

    def route(state: ListState) -> list[Send]:
        return [Send("branch", {"log": [f"b{i}"]}) for i in range(3)]

    def branch(state: ListState) -> dict:
        return {"log": [str(model.invoke(state["log"][-1]).content)]}

    def draft(state: ListState) -> dict:
        return {"log": [str(model.invoke("draft").content)]}

    inner = StateGraph(ListState)
    inner.add_node("draft", draft)
    inner.add_node("polish", lambda state: {"log": ["polished"]})
    inner.add_edge(START, "draft")
    inner.add_edge("draft", "polish")
    outer = StateGraph(ListState)
    outer.add_node("fan_out", fan_out)
    outer.add_node("branch", branch)
    outer.add_node("summarize", inner.compile(name="summarizer"))
    outer.add_edge(START, "fan_out")
    outer.add_conditional_edges("fan_out", route, ["branch"])
    outer.add_edge("branch", "summarize")
    outer.add_edge("summarize", END)
    return outer.compile(name="research_agent")


def replies(n: int = 4) -> list[AIMessage]:
    return [reply(f"answer number {i}", 10 + i, 3 + 2 * i) for i in range(n)]


# --- token usage equals langchain-core's own accounting ----------------------------------------


def test_handler__single_invoke__tokens_and_model_match_usage_callback():
    connector, handler, reference = handler_and_reference()
    model = ScriptedChatModel(replies=replies(), model_name="gpt-test")
    model.invoke("hi", config={"callbacks": [handler, reference]})
    model.invoke("again", config={"callbacks": [handler, reference]})
    (llm, _) = connector.spans
    assert llm.span_kind is SpanKind.LLM and llm.llm_model == "gpt-test"
    assert llm.status is SpanStatus.COMPLETED and llm.parent_span_id is None
    assert llm.operation_name == "ScriptedChatModel"
    assert span_tokens(connector.spans) == reference_tokens(reference)
    assert "ttft_ms" not in llm.attributes


def test_handler__batch__tokens_match_usage_callback():
    connector, handler, reference = handler_and_reference()
    model = ScriptedChatModel(replies=replies(5))
    model.batch(["a", "b", "c", "d", "e"], config={"callbacks": [handler, reference]})
    assert len(connector.spans) == 5
    assert len({s.trace_id for s in connector.spans}) == 5
    assert span_tokens(connector.spans) == reference_tokens(reference)


def test_handler__stream_with_usage_on_last_chunk__tokens_match_and_ttft_recorded():
    clock = StepClock()
    connector, handler, reference = handler_and_reference(clock=clock)
    model = ScriptedChatModel(replies=[reply("one two three", 7, 5)], stream_usage=True)
    chunks = list(model.stream("go", config={"callbacks": [handler, reference]}))
    assert len(chunks) >= 3
    (llm,) = connector.spans
    assert span_tokens([llm]) == reference_tokens(reference) == {"scripted-1": (7, 5, 12)}
    # the clock ticks 1s per reading: start, first token, then one reading per later chunk
    assert llm.attributes["ttft_ms"] == 1000.0 and llm.attributes["streaming"] is True
    assert [e.name for e in llm.events] == ["first_token"]


def test_handler__stream_without_stream_usage__no_token_counts_invented():
    connector, handler, reference = handler_and_reference()
    model = ScriptedChatModel(replies=[reply("one two", 7, 5)], stream_usage=False)
    list(model.stream("go", config={"callbacks": [handler, reference]}))
    (llm,) = connector.spans
    assert reference.usage_metadata == {}
    assert (llm.input_tokens, llm.output_tokens, llm.total_tokens) == (None, None, None)
    assert llm.llm_model == "scripted-1" and "ttft_ms" in llm.attributes


async def test_handler__ainvoke_and_astream__tokens_match_usage_callback():
    connector, handler, reference = handler_and_reference()
    model = ScriptedChatModel(replies=replies())
    await model.ainvoke("hi", config={"callbacks": [handler, reference]})
    async for _ in model.astream("hi", config={"callbacks": [handler, reference]}):
        pass
    assert len(connector.spans) == 2
    assert span_tokens(connector.spans) == reference_tokens(reference)
    assert sum("ttft_ms" in s.attributes for s in connector.spans) == 1


async def test_handler__async_graph_with_parallel_sends__tokens_match_one_trace():
    connector, handler, reference = handler_and_reference()
    graph = nested_graph(ScriptedChatModel(replies=replies()))
    await graph.ainvoke({"log": []}, config={"callbacks": [handler, reference]})
    spans = connector.spans
    assert len(by_name(spans, "branch")) == 3 and len({s.trace_id for s in spans}) == 1
    assert span_tokens(spans) == reference_tokens(reference)
    assert handler.stats["open_runs"] == 0


def test_handler__legacy_llm_with_llm_output_usage__tokens_from_fallback():
    connector, handler, _ = handler_and_reference()
    ScriptedLLM().invoke("abcd", config={"callbacks": [handler]})
    (llm,) = connector.spans
    assert (llm.input_tokens, llm.output_tokens, llm.total_tokens) == (4, 8, 12)
    assert llm.llm_model == "legacy-1" and llm.span_kind is SpanKind.LLM


# --- graphs ------------------------------------------------------------------------------------


def test_handler__three_node_graph__agent_span_node_spans_and_tokens_match():
    connector, handler, reference = handler_and_reference()
    graph = three_node_graph(ScriptedChatModel(replies=replies()))
    graph.invoke({"log": []}, config={"callbacks": [handler, reference]})
    spans = connector.spans
    (root,) = [s for s in spans if s.parent_span_id is None]
    assert (root.span_kind, root.operation_name, root.agent_name) == (
        SpanKind.AGENT,
        "three_step_agent",
        "three_step_agent",
    )
    nodes = sorted(
        (s for s in spans if "langgraph.node" in s.attributes), key=lambda s: s.start_time
    )
    assert [(n.operation_name, n.span_kind, n.parent_span_id) for n in nodes] == [
        ("plan", SpanKind.CHAIN, root.span_id),
        ("act", SpanKind.CHAIN, root.span_id),
        ("review", SpanKind.CHAIN, root.span_id),
    ]
    llms = [s for s in spans if s.span_kind is SpanKind.LLM]
    assert sorted(parent_of(spans, s).operation_name for s in llms) == ["act", "plan"]
    assert sorted(s.agent_name for s in llms) == ["act", "plan"]  # nearest node names the agent
    assert {s.trace_id for s in spans} == {root.trace_id}
    assert span_tokens(spans) == reference_tokens(reference)
    assert handler.stats["open_runs"] == 0 and handler.stats["submitted"] == len(spans)


def test_handler__subgraph_and_parallel_sends__span_tree_matches_run_tree():
    connector, handler, reference = handler_and_reference()
    runs = RunCollectorCallbackHandler()
    graph = nested_graph(ScriptedChatModel(replies=replies()))
    graph.invoke({"log": []}, config={"callbacks": [handler, reference, runs]})
    spans = connector.spans
    span_of_run = {s.attributes["langchain.run_id"]: s for s in spans}
    kinds = {"chain": SpanKind.CHAIN, "llm": SpanKind.LLM, "tool": SpanKind.TOOL}
    (root_run,) = runs.traced_runs
    pending, seen = [(root_run, None)], 0
    while pending:
        run, parent_run = pending.pop()
        span = span_of_run[str(run.id)]
        seen += 1
        assert span.operation_name == run.name
        expected_kind = SpanKind.AGENT if parent_run is None else kinds[run.run_type]
        assert span.span_kind is expected_kind, run.name
        expected_parent = None if parent_run is None else span_of_run[str(parent_run.id)].span_id
        assert span.parent_span_id == expected_parent, run.name
        pending += [(child, run) for child in run.child_runs]
    assert seen == len(spans)
    root = span_of_run[str(root_run.id)]
    branches = by_name(spans, "branch")
    assert len(branches) == 3 and {b.parent_span_id for b in branches} == {root.span_id}
    (summarize,) = by_name(spans, "summarize")
    (inner_graph,) = by_name(spans, "summarizer")
    assert inner_graph.parent_span_id == summarize.span_id
    assert {s.parent_span_id for s in by_name(spans, "draft") + by_name(spans, "polish")} == {
        inner_graph.span_id
    }
    assert len([s for s in spans if s.span_kind is SpanKind.LLM]) == 4
    assert span_tokens(spans) == reference_tokens(reference)


def test_handler__tool_calling_loop__tool_span_under_tools_node_and_tokens_match():
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    call = {"name": "add", "args": {"a": 2, "b": 3}, "id": "call-1", "type": "tool_call"}
    model = ScriptedChatModel(replies=[reply("", 20, 6, tool_calls=[call]), reply("5", 31, 2)])

    def agent(state: ChatState) -> dict:
        return {"messages": [model.bind_tools([add]).invoke(state["messages"])]}

    graph = StateGraph(ChatState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([add]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    connector, handler, reference = handler_and_reference(agent_name="calculator")
    result = graph.compile().invoke(
        {"messages": [HumanMessage("2+3?")]}, config={"callbacks": [handler, reference]}
    )
    assert result["messages"][-1].content == "5"
    spans = connector.spans
    (tool_span,) = [s for s in spans if s.span_kind is SpanKind.TOOL]
    assert tool_span.operation_name == "add" and tool_span.attributes["tool_call_id"] == "call-1"
    assert parent_of(spans, tool_span).operation_name == "tools"
    assert {s.agent_name for s in spans} == {"calculator"}
    assert len([s for s in spans if s.span_kind is SpanKind.LLM]) == 2
    assert span_tokens(spans) == reference_tokens(reference) == {"scripted-1": (51, 8, 59)}


def test_handler__tool_raises_inside_tool_node__tool_span_error_graph_continues():
    @tool
    def lookup(account: str) -> str:
        """Look an account up."""
        raise LookupError(f"no account {account}")

    call = {"name": "lookup", "args": {"account": "A-1"}, "id": "call-9", "type": "tool_call"}
    model = ScriptedChatModel(replies=[reply("", 5, 5, tool_calls=[call]), reply("sorry", 8, 1)])
    graph = StateGraph(ChatState)
    graph.add_node("agent", lambda state: {"messages": [model.invoke(state["messages"])]})
    graph.add_node("tools", ToolNode([lookup], handle_tool_errors=True))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    connector, handler, _ = handler_and_reference()
    result = graph.compile().invoke(
        {"messages": [HumanMessage("find A-1")]}, config={"callbacks": [handler]}
    )
    assert result["messages"][-1].content == "sorry"
    (tool_span,) = [s for s in connector.spans if s.span_kind is SpanKind.TOOL]
    assert (tool_span.status, tool_span.error_type) == (SpanStatus.ERROR, "LookupError")
    assert "no account A-1" in tool_span.error_message
    (tools_node,) = by_name(connector.spans, "tools")
    assert tools_node.status is SpanStatus.COMPLETED


def test_handler__graph_streamed_in_messages_mode__ttft_on_llm_spans():
    connector, handler, reference = handler_and_reference()
    graph = three_node_graph(ScriptedChatModel(replies=replies()))
    list(
        graph.stream(
            {"log": []}, stream_mode="messages", config={"callbacks": [handler, reference]}
        )
    )
    llms = [s for s in connector.spans if s.span_kind is SpanKind.LLM]
    assert len(llms) == 2 and all(s.attributes["ttft_ms"] >= 0 for s in llms)
    assert span_tokens(connector.spans) == reference_tokens(reference)


def test_handler__node_raises__error_span_and_exception_reaches_caller():
    def explode(state: ListState) -> dict:
        raise KeyError("missing field 'account_id'")

    graph = StateGraph(ListState)
    graph.add_node("explode", explode)
    graph.add_edge(START, "explode")
    connector, handler, _ = handler_and_reference()
    with pytest.raises(KeyError, match="account_id"):
        graph.compile().invoke({"log": []}, config={"callbacks": [handler]})
    (node,) = by_name(connector.spans, "explode")
    assert (node.status, node.error_type) == (SpanStatus.ERROR, "KeyError")
    assert "account_id" in node.error_message
    (root,) = [s for s in connector.spans if s.parent_span_id is None]
    assert root.status is SpanStatus.ERROR and handler.stats["open_runs"] == 0


def test_handler__llm_raises__llm_span_error_and_exception_reaches_caller():
    connector, handler, _ = handler_and_reference()
    with pytest.raises(RuntimeError, match="provider exploded"):
        ScriptedChatModel(replies=replies()).invoke("FAIL", config={"callbacks": [handler]})
    (llm,) = connector.spans
    assert (llm.status, llm.error_type, llm.error_message) == (
        SpanStatus.ERROR,
        "RuntimeError",
        "provider exploded",
    )


def test_handler__interrupt_then_resume__completed_spans_marked_interrupted():
    def approve(state: ChatState) -> dict:
        answer = interrupt("approve the plan?")
        return {"messages": [AIMessage(str(answer))]}

    graph = StateGraph(ChatState)
    graph.add_node("approve", approve)
    graph.add_edge(START, "approve")
    app = graph.compile(checkpointer=InMemorySaver())
    connector, handler, _ = handler_and_reference()
    config = {"callbacks": [handler], "configurable": {"thread_id": "thread-7"}}
    first = app.invoke({"messages": [HumanMessage("plan")]}, config=config)
    assert "__interrupt__" in first
    paused = connector.spans
    assert all(s.status is SpanStatus.COMPLETED for s in paused)
    (node,) = by_name(paused, "approve")
    assert node.attributes["interrupted"] is True and node.thread_id == "thread-7"
    (root,) = [s for s in paused if s.parent_span_id is None]
    assert root.attributes["interrupted"] is True
    app.invoke(Command(resume="yes"), config=config)
    resumed = connector.spans[len(paused) :]
    assert all(s.status is SpanStatus.COMPLETED for s in resumed)
    assert not any(s.attributes.get("interrupted") for s in resumed)


# --- context, names, capture -------------------------------------------------------------------


def test_handler__inside_w3c_context__root_joins_trace_and_keeps_tracestate():
    outer = TraceContext(
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1, (("e2i", "x1"),)
    )
    connector, handler, _ = handler_and_reference()
    with use_context(outer):
        three_node_graph(ScriptedChatModel(replies=replies())).invoke(
            {"log": []}, config={"callbacks": [handler]}
        )
    spans = connector.spans
    (root,) = [s for s in spans if s.span_kind is SpanKind.AGENT]
    assert root.parent_span_id == outer.span_id
    assert {s.trace_id for s in spans} == {outer.trace_id}
    assert {s.tracestate for s in spans} == {"e2i=x1"}


def test_handler__agent_name_from_run_metadata__wins_over_node_names():
    connector, handler, _ = handler_and_reference()
    three_node_graph(ScriptedChatModel(replies=replies())).invoke(
        {"log": []}, config={"callbacks": [handler], "metadata": {"agent_name": "gap_analyzer"}}
    )
    assert {s.agent_name for s in connector.spans} == {"gap_analyzer"}


def test_handler__capture_prompts__input_and_output_recorded_and_truncated():
    connector, handler, _ = handler_and_reference(capture_prompts=True, max_chars=12)
    model = ScriptedChatModel(replies=[reply("a fairly long answer", 1, 1)])
    model.invoke("short", config={"callbacks": [handler]})
    (llm,) = connector.spans
    assert llm.attributes["input"] == "human: short"
    assert llm.attributes["output"] == "a fairly lon" and llm.attributes["output_truncated"]
    quiet_connector, quiet, _ = handler_and_reference()
    model.invoke("short", config={"callbacks": [quiet]})
    assert "input" not in quiet_connector.spans[0].attributes


def test_handler__trace_inner_chains_off__routers_dropped_tools_reparented():
    connector, handler, _ = handler_and_reference(trace_inner_chains=False)
    nested_graph(ScriptedChatModel(replies=replies())).invoke(
        {"log": []}, config={"callbacks": [handler]}
    )
    spans = connector.spans
    assert by_name(spans, "route") == [] and by_name(spans, "summarizer") == []
    (summarize,) = by_name(spans, "summarize")
    (draft,) = by_name(spans, "draft")
    assert draft.parent_span_id == summarize.span_id  # skipped inner graph run is bridged
    # the root run is never dropped: it is the agent span every graph node hangs from
    (root,) = by_name(spans, "research_agent")
    assert root.span_kind is SpanKind.AGENT and root.parent_span_id is None
    nodes = by_name(spans, "fan_out") + by_name(spans, "branch") + [summarize]
    assert len(nodes) == 5
    assert {n.parent_span_id for n in nodes} == {root.span_id}
    assert {s.trace_id for s in spans} == {root.trace_id}


# --- spans built on the connector's worker ------------------------------------------------------


def comparable(span: ObservabilitySpan) -> tuple[Any, ...]:
    """A span without what differs between two runs of the same graph: ids and times."""
    attributes = {k: v for k, v in span.attributes.items() if k not in ("langchain.run_id",)}
    attributes.pop("ttft_ms", None)
    return (
        span.operation_name,
        span.span_kind,
        span.agent_name,
        span.agent_tier,
        span.status,
        span.llm_model,
        span.provider,
        (span.input_tokens, span.output_tokens, span.total_tokens),
        (span.cache_read_tokens, span.cache_write_tokens, span.reasoning_tokens),
        attributes,
        [event.name for event in span.events],
    )


def test_handler__connector_with_a_worker__spans_built_there_equal_those_built_inline():
    """Through the OpikConnector and a real BatchProcessor the handler hands over calls that
    build the spans on the processor's worker; the sink gets the spans built inline."""
    sink = ListSink()
    processor = BatchProcessor([sink], BatchingSettings(), None)
    registry = {"three_step_agent": 2, "plan": 3}
    deferred = ObservabilityCallbackHandler(
        connector=OpikConnector(processor, registry=registry), capture_prompts=True
    )
    inline_connector = CollectingConnector()  # no worker: the OpikConnector builds at once
    inline = ObservabilityCallbackHandler(
        connector=OpikConnector(inline_connector, registry=registry), capture_prompts=True
    )
    try:
        for handler in (deferred, inline):
            model = ScriptedChatModel(replies=replies())
            three_node_graph(model).invoke({"log": []}, config={"callbacks": [handler]})
            with pytest.raises(RuntimeError):
                model.invoke("FAIL", config={"callbacks": [handler]})
        assert deferred.flush(timeout=10.0)
    finally:
        processor.close(timeout=10.0)
    built_there = [comparable(s) for batch in sink.batches for s in batch]
    assert sorted(built_there, key=repr) == sorted(
        map(comparable, inline_connector.spans), key=repr
    )
    assert len(built_there) == 7 and {s[3] for s in built_there} == {2, 3, None}
    assert [s[4] for s in built_there].count(SpanStatus.ERROR) == 1
    assert deferred.stats["submitted"] == 7 and deferred.stats["internal_errors"] == 0


def test_handler__connector_with_a_worker__usage_read_when_the_worker_builds_the_span():
    connector = DeferringConnector()
    handler = ObservabilityCallbackHandler(connector=connector)
    garbled = AIMessage(
        content="ok", usage_metadata={"input_tokens": -5, "output_tokens": 2, "total_tokens": 2}
    )
    ScriptedChatModel(replies=[garbled]).invoke("hi", config={"callbacks": [handler]})
    assert connector.spans == [] and len(connector.builds) == 1
    assert handler.stats["invalid_token_counts"] == 0  # not read on the agent's thread

    connector.build_all()

    (llm,) = connector.spans
    assert (llm.input_tokens, llm.output_tokens) == (None, 2)
    assert handler.stats["invalid_token_counts"] == 1 and handler.stats["submitted"] == 1


def test_handler__span_build_fails_on_the_worker__counted_internal_and_not_submitted():
    class Unreadable:
        @property
        def generations(self) -> Any:
            raise RuntimeError("provider object changed under us")

    connector = DeferringConnector()
    handler = ObservabilityCallbackHandler(connector=connector, capture_prompts=True)
    run_id = uuid4()
    handler.on_llm_start({"name": "m"}, ["prompt"], run_id=run_id)
    handler.on_llm_end(Unreadable(), run_id=run_id)
    assert handler.stats["submitted"] == 1 and handler.stats["internal_errors"] == 0

    connector.build_all()

    assert [type(e) for e in connector.failures] == [RuntimeError] and connector.spans == []
    assert handler.stats["submitted"] == 0 and handler.stats["internal_errors"] == 1


# --- robustness --------------------------------------------------------------------------------


def test_handler__connector_submit_raises__agent_result_unaffected_and_counted():
    connector = FailingConnector()
    handler = ObservabilityCallbackHandler(connector=connector)
    graph = three_node_graph(ScriptedChatModel(replies=replies()))
    result = graph.invoke({"log": []}, config={"callbacks": [handler]})
    assert result["log"][-1] == "reviewed"
    assert handler.stats["submit_failures"] == connector.attempts == 6
    assert handler.stats["submitted"] == 0  # counted when handed over, taken back on failure
    assert handler.flush(timeout=1.0) is False


def test_handler__clock_returns_naive_datetime__internal_error_counted_agent_unaffected():
    handler = ObservabilityCallbackHandler(
        connector=CollectingConnector(), clock=lambda: datetime(2025, 1, 1)
    )
    out = ScriptedChatModel(replies=replies()).invoke("hi", config={"callbacks": [handler]})
    assert out.content == "answer number 0"
    assert handler.stats["internal_errors"] == 1 and handler.stats["submitted"] == 0


def test_handler__more_open_runs_than_max_runs__oldest_evicted_and_counted():
    connector, handler, _ = handler_and_reference(max_runs=2)
    three_node_graph(ScriptedChatModel(replies=replies())).invoke(
        {"log": []}, config={"callbacks": [handler]}
    )
    # root + node + llm are open together twice: the root is evicted at the first llm start
    assert handler.stats["evicted_runs"] >= 1 and handler.stats["open_runs"] == 0
    spans = connector.spans
    assert by_name(spans, "three_step_agent") == []
    assert {s.operation_name for s in spans} >= {"review", "ScriptedChatModel"}
    (act,) = by_name(spans, "act")  # its parent is gone: kept as a chain, marked as orphan
    assert act.span_kind is SpanKind.CHAIN and "orphan_parent_run_id" in act.attributes


def test_handler__concurrent_invocations_from_threads__one_trace_each_tokens_match():
    connector, handler, reference = handler_and_reference()
    graph = three_node_graph(ScriptedChatModel(replies=replies()))
    start = threading.Barrier(4)

    def run() -> None:
        start.wait()
        graph.invoke({"log": []}, config={"callbacks": [handler, reference]})

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = connector.spans
    roots = [s for s in spans if s.span_kind is SpanKind.AGENT]
    assert len(roots) == 4 and len({r.trace_id for r in roots}) == 4
    for root in roots:
        assert len([s for s in spans if s.trace_id == root.trace_id]) == 6
    assert span_tokens(spans) == reference_tokens(reference)


def test_handler__flush__delegates_to_connector():
    connector, handler, _ = handler_and_reference()
    assert handler.flush(timeout=2.5) is True and connector.flush_calls == [2.5]


@pytest.mark.parametrize(
    ("option", "value"), [("max_runs", 0), ("max_chars", -1), ("agent_name", "")]
)
def test_handler__bad_constructor_option__value_error_names_it(option: str, value: Any):
    with pytest.raises(ValueError, match=option):
        ObservabilityCallbackHandler(connector=CollectingConnector(), **{option: value})


class StepClock:
    """Wall clock that advances one second per reading."""

    def __init__(self) -> None:
        self._now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self._now += timedelta(seconds=1)
        return self._now
