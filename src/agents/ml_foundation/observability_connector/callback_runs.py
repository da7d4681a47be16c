"""Pure helpers of the callback handler: classify LangChain runs and build finished spans.

Which chain runs become spans (checked against langgraph 1.2 / langchain-core 1.8):
- the root run (no parent we know of) -> an `agent` span named after the graph;
- a LangGraph node (a chain run whose tags carry `graph:step:<n>` and whose metadata names it
  in `langgraph_node`) -> a `chain` span named after the node;
- any other chain (a nested subgraph's own run, conditional-edge routers such as
  `tools_condition`, `prompt | llm` sequences inside a node) -> a `chain` span, unless the
  handler was built with `trace_inner_chains=False`;
- skipped always: runs tagged `langsmith:hidden` and LangGraph plumbing (`ChannelWrite*`,
  `ChannelRead*`, `__start__`, `__end__`). langgraph 1.2 no longer emits the channel writers
  (they are built with `trace=False`), the check stays for older or future versions.
A skipped run is still remembered, so its children attach to the nearest kept ancestor.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, SafeUUID

from langgraph.errors import GraphBubbleUp, GraphInterrupt

from .models import ObservabilitySpan, SpanEvent, SpanKind, SpanStatus
from .nodes.context_manager import format_tracestate
from .otlp.join import ambient_context
from .usage import TokenUsage, sanitize_text

__all__ = [
    "RunRecord",
    "build_span",
    "error_outcome",
    "is_graph_node",
    "is_plumbing",
    "model_name_at_start",
    "open_record",
    "prompt_text",
    "provider_at_start",
    "run_name",
    "text_attributes",
]

HIDDEN_TAG = "langsmith:hidden"
_PLUMBING_PREFIXES = ("ChannelWrite", "ChannelRead", "__start__", "__end__")
_STEP_TAG_PREFIX = "graph:step:"
_INTERNAL_TAG_PREFIXES = ("seq:step:", _STEP_TAG_PREFIX)
_MODEL_KEYS = ("model", "model_name", "model_id", "deployment_name")
UNKNOWN_AGENT = "unknown"
_RUN_ID_KEY = "langchain.run_id"

# Ids drawn on every call come from `random.getrandbits` (reseeded after fork), not from one
# `os.urandom` syscall each, as OpenTelemetry's RandomIdGenerator does: they must be unique,
# not secret. Same formats as `context_manager.new_trace_id` / `new_span_id` and `uuid4`.
_getrandbits = random.getrandbits
_LOW_62_BITS = (1 << 62) - 1
_UUID4_KEEP = ((1 << 128) - 1) ^ (0xF000 << 64) ^ (0xC000 << 48)
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


def _new_trace_id() -> str:
    """A UUIDv7 as 32 lowercase hex: 48-bit unix ms | ver 7 | 74 random bits around var 10."""
    r = _getrandbits(74)
    unix_ms = time.time_ns() // 1_000_000
    return f"{unix_ms << 80 | 0x7 << 76 | (r >> 62) << 64 | 0b10 << 62 | r & _LOW_62_BITS:032x}"


def _new_span_id() -> str:
    """16 random lowercase hex, never all zeros (W3C)."""
    while True:
        bits = _getrandbits(64)
        if bits:
            return f"{bits:016x}"


_new_object = object.__new__
_set_attribute = object.__setattr__
_UNKNOWN_SAFETY = SafeUUID.unknown


def _new_uuid4() -> UUID:
    """`UUID(int=...)` without its argument checks (the value is a version-4 int by
    construction): UUID's own __init__ was a quarter of `build_span`."""
    value = _new_object(UUID)
    _set_attribute(value, "int", _getrandbits(128) & _UUID4_KEEP | _UUID4_SET)
    _set_attribute(value, "is_safe", _UNKNOWN_SAFETY)
    return value


@dataclass(slots=True)
class RunRecord:
    """What the handler remembers about an open run until it ends."""

    run_id: UUID
    parent_run_id: UUID | None
    kind: SpanKind | None
    """None for a skipped run: it has no span of its own."""
    trace_id: str
    span_id: str | None
    parent_span_id: str | None
    anchor_span_id: str | None
    """The span id children attach to: this run's span, or a skipped run's nearest kept one."""
    name: str
    node: str | None
    """The nearest enclosing LangGraph node (this run's own name if it is a node)."""
    root_name: str
    """Name of the root run of this trace (the last resort for `agent_name`)."""
    agent_name: str
    start_time: datetime
    tracestate: str | None = None
    thread_id: str | None = None
    llm_model: str | None = None
    model_sources: tuple[Any, Any, Any] | None = None
    """An LLM run's (serialized, invocation_params, metadata): the provider is looked up there
    first and the model name if the response names none (`build_span`), once per run."""
    first_token_at: datetime | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)


def open_record(
    run_id: UUID,
    parent_run_id: UUID | None,
    parent: RunRecord | None,
    kind: SpanKind | None,
    name: str,
    tags: Sequence[str] | None,
    metadata: Mapping[str, Any],
    attributes: dict[str, Any],
    *,
    is_node: bool,
    model: str | None,
    agent_name: str | None,
    start_time: datetime,
    model_sources: tuple[Any, Any, Any] | None = None,
) -> RunRecord:
    """The record of a starting run: a child inherits its trace from the parent's record; a
    root (or a run whose parent we never saw or evicted) joins the current W3C context, if
    any, else starts a new trace; a true root chain (no parent_run_id) is the `agent` span."""
    if parent is None:
        ctx = ambient_context()
        trace_id = ctx.trace_id if ctx else _new_trace_id()
        anchor = ctx.span_id if ctx else None
        tracestate = format_tracestate(ctx.tracestate) if ctx and ctx.tracestate else None
        root_name, thread_id, enclosing_node = name, None, None
        if parent_run_id is not None:  # its parent ran untraced or was evicted
            attributes["orphan_parent_run_id"] = str(parent_run_id)
        elif kind is SpanKind.CHAIN:
            kind = SpanKind.AGENT
    else:
        trace_id, anchor, tracestate = parent.trace_id, parent.anchor_span_id, parent.tracestate
        root_name, thread_id, enclosing_node = parent.root_name, parent.thread_id, parent.node
    node = name if is_node else metadata.get("langgraph_node") or enclosing_node
    node = node if isinstance(node, str) else None
    agent = agent_name or metadata.get("agent_name") or node or root_name
    if tags:
        user_tags = [t for t in tags if not str(t).startswith(_INTERNAL_TAG_PREFIXES)]
        if user_tags:
            attributes["tags"] = user_tags
    attributes[_RUN_ID_KEY] = run_id  # made a string in `build_span`, in the same place
    span_id = _new_span_id() if kind is not None else None
    thread = metadata.get("thread_id")
    return RunRecord(  # positional, in field order: this runs on every call
        run_id,
        parent_run_id,
        kind,
        trace_id,
        span_id,
        anchor,
        span_id or anchor,
        name,
        node,
        root_name,
        (agent if type(agent) is str else str(agent) if agent else "") or UNKNOWN_AGENT,
        start_time,
        tracestate,
        str(thread) if thread else thread_id,
        model,
        model_sources,
        None,
        attributes,
    )


def text_attributes(max_chars: int, key: str, text: Any) -> dict[str, Any]:
    """`{key: text}` made safe and cut to `max_chars`, plus `{key}_truncated` when cut."""
    value, truncated = sanitize_text(text, max_chars)
    return {key: value, f"{key}_truncated": True} if truncated else {key: value}


def run_name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
    """The run's display name: the `name` kwarg, else serialized name or class id."""
    name = kwargs.get("name")
    if isinstance(name, str) and name:
        return name
    if isinstance(serialized, Mapping):
        if isinstance(serialized.get("name"), str) and serialized["name"]:
            return serialized["name"]
        ident = serialized.get("id")
        if isinstance(ident, list) and ident and isinstance(ident[-1], str):
            return ident[-1]
    return default


def is_plumbing(name: str, tags: Sequence[str] | None) -> bool:
    """LangGraph internals that are not work anyone asked for."""
    return (tags is not None and HIDDEN_TAG in tags) or name.startswith(_PLUMBING_PREFIXES)


def is_graph_node(
    name: str, tags: Sequence[str] | None, metadata: Mapping[str, Any] | None
) -> bool:
    """True for the run LangGraph starts for one node task (not for runs nested inside it)."""
    node = (metadata or {}).get("langgraph_node")
    if not isinstance(node, str):
        return False
    if name != node:  # the cheap test first: most runs are not a node's own run
        return False
    return any(isinstance(t, str) and t.startswith(_STEP_TAG_PREFIX) for t in tags or ())


def model_name_at_start(
    serialized: Mapping[str, Any] | None,
    invocation_params: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
) -> str | None:
    """Best model name known before the call: invocation params, `ls_model_name`, kwargs."""
    kwargs = serialized.get("kwargs") if isinstance(serialized, Mapping) else None
    for source in (invocation_params, kwargs):
        if source is not None and isinstance(source, Mapping):
            for key in _MODEL_KEYS:
                value = source.get(key)
                if isinstance(value, str) and value:
                    return value
    ls_name = (metadata or {}).get("ls_model_name")
    return ls_name if isinstance(ls_name, str) and ls_name else None


def provider_at_start(
    serialized: Mapping[str, Any] | None, metadata: Mapping[str, Any] | None
) -> str | None:
    """Who serves the model, before the call: LangChain's `ls_provider` run metadata (every
    chat model sets it; `openai`, `anthropic`, `google_genai`, ...), else the integration
    package in the serialized class id (`["langchain", "chat_models", "openai", "ChatOpenAI"]`).
    """
    provider = (metadata or {}).get("ls_provider")
    if isinstance(provider, str) and provider:
        return provider
    ident = serialized.get("id") if isinstance(serialized, Mapping) else None
    if (
        isinstance(ident, list)
        and len(ident) >= 4
        and ident[1] in ("chat_models", "llms")
        and isinstance(ident[2], str)
        and ident[2]
    ):
        return ident[2]
    return None


def prompt_text(prompts: Sequence[Any]) -> str:
    """Prompts (strings or lists of messages) as one readable text."""
    parts: list[str] = []
    for prompt in prompts:
        if isinstance(prompt, list):
            for message in prompt:
                role = getattr(message, "type", "message")
                parts.append(f"{role}: {getattr(message, 'content', message)}")
        else:
            parts.append(str(prompt))
    return "\n".join(parts)


def error_outcome(error: BaseException, max_chars: int) -> dict[str, Any]:
    """Span fields for a run that ended with `error`.

    LangGraph's control-flow exceptions (`GraphInterrupt` from `interrupt()`, `ParentCommand`)
    are how a graph pauses or hands over, not failures: the span completes, marked as such.
    """
    if isinstance(error, GraphInterrupt):
        return {"status": SpanStatus.COMPLETED, "attributes": {"interrupted": True}}
    if isinstance(error, GraphBubbleUp):
        attrs = {"interrupted": True, "bubble_up": type(error).__name__}
        return {"status": SpanStatus.COMPLETED, "attributes": attrs}
    message, _ = sanitize_text(str(error), max_chars)
    return {
        "status": SpanStatus.ERROR,
        "error_type": type(error).__name__,
        "error_message": message,
        "attributes": {},
    }


def build_span(
    record: RunRecord,
    end_time: datetime,
    *,
    status: SpanStatus = SpanStatus.COMPLETED,
    error_type: str | None = None,
    error_message: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    usage: TokenUsage | None = None,
    agent_tier: int | None = None,
) -> ObservabilitySpan:
    """The complete span of a finished run (tokens only on `llm` spans). The record is
    consumed: the span takes over its attributes and events (no copies on the hot path).

    Built without pydantic validation (`_trusted_span`): this runs on every call in the
    agent's thread, and validating the 22 fields cost more than the rest of the handler. Every
    value is already what the validators accept: ids come from our generators or a validated
    `TraceContext`, the handler checks that its clock is timezone-aware, counts come from
    `extract_usage`; `duration_ms` and the default `total_tokens` are derived here the way
    `ObservabilitySpan` derives them.
    """
    if record.kind is None or record.span_id is None:
        raise ValueError(f"run {record.run_id} was skipped and has no span")
    attrs = record.attributes
    if attributes:
        attrs.update(attributes)
    attrs[_RUN_ID_KEY] = str(record.run_id)
    start = record.start_time
    end = end_time if end_time > start else start
    model, provider, sources = record.llm_model, None, record.model_sources
    input_tokens = output_tokens = total_tokens = None
    cache_read = cache_write = reasoning = None
    if record.kind is SpanKind.LLM:
        if sources is not None:
            provider = provider_at_start(sources[0], sources[2])
        if record.first_token_at is not None:
            ttft = (record.first_token_at - start).total_seconds() * 1000.0
            attrs["ttft_ms"] = max(ttft, 0.0)
        if usage is not None:
            input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
            total_tokens = usage.total_tokens
            if total_tokens is None and (input_tokens is not None or output_tokens is not None):
                total_tokens = (input_tokens or 0) + (output_tokens or 0)
            model = usage.model or model
            provider = provider or usage.provider
            cache_read, cache_write = usage.cache_read_tokens, usage.cache_write_tokens
            reasoning = usage.reasoning_tokens
        if model is None and sources is not None:
            model = model_name_at_start(*sources)
    return _trusted_span(
        {
            "id": _new_uuid4(),
            "span_id": record.span_id,
            "trace_id": record.trace_id,
            "parent_span_id": record.parent_span_id,
            "operation_name": record.name or record.kind.value,
            "agent_name": record.agent_name,
            "span_kind": record.kind,
            "start_time": start,
            "end_time": end,
            "duration_ms": (end - start).total_seconds() * 1000.0,
            "status": status,
            "error_type": error_type,
            "error_message": error_message,
            "attributes": attrs,
            "events": record.events,
            "llm_model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": total_tokens,
            "thread_id": record.thread_id,
            "tracestate": record.tracestate,
            "agent_tier": agent_tier,
            "provider": provider,
            "cache_read_tokens": cache_read,
            "cache_write_tokens": cache_write,
            "reasoning_tokens": reasoning,
            "cost_usd": None,  # priced on the batch worker, never on the agent's thread
        }
    )


_SPAN_FIELDS = frozenset(
    {"id", "span_id", "trace_id", "parent_span_id", "operation_name", "agent_name", "agent_tier"}
    | {"span_kind", "start_time", "end_time", "duration_ms", "status", "error_type"}
    | {"error_message", "attributes", "events", "llm_model", "input_tokens", "output_tokens"}
    | {"total_tokens", "thread_id", "tracestate", "provider", "cache_read_tokens"}
    | {"cache_write_tokens", "reasoning_tokens", "cost_usd"}
)


@functools.cache
def _model_is_plain() -> bool:
    """True while `ObservabilitySpan` is the model `_trusted_span` was written for: exactly
    these fields, no private attributes, no post-init hook, no extra fields."""
    model = ObservabilitySpan
    return (
        frozenset(model.model_fields) == _SPAN_FIELDS
        and not model.__private_attributes__
        and model.__pydantic_post_init__ is None
        and model.model_config.get("extra") != "allow"
    )


def _trusted_span(values: dict[str, Any]) -> ObservabilitySpan:
    """A span from already-valid values for every field: what `model_construct` does, minus
    its per-field Python loop (slower than validating, for this model). Should the model
    change shape, spans are validated again instead."""
    if not _model_is_plain():
        return ObservabilitySpan.model_validate(values)
    span = _new_object(ObservabilitySpan)
    _set_attribute(span, "__dict__", values)
    _set_attribute(span, "__pydantic_fields_set__", set(values))
    _set_attribute(span, "__pydantic_extra__", None)
    _set_attribute(span, "__pydantic_private__", None)
    return span
