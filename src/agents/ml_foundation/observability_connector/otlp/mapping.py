"""ObservabilitySpan -> OTLP protobuf, with the OpenTelemetry GenAI semantic conventions.

Pinned to semantic conventions 1.44.0 (the names come from `opentelemetry-semantic-conventions`,
pinned in constraints.txt; `SCHEMA_URL` says which version a backend should read them as).
The GenAI conventions are still experimental; following their transition rule,
`OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental` emits only the latest names, and
without it the provider is also sent under its pre-1.37 name `gen_ai.system`.

What maps where:
- ids, parent and tracestate unchanged (hex -> bytes); start/end in exact nanoseconds.
- span name = the stored `operation_name` (what the database and Opik show); span kind CLIENT
  for LLM calls (a call to a remote model), INTERNAL otherwise.
- status ERROR with the message, `error.type`, and an `exception` event; otherwise UNSET.
- `gen_ai.operation.name`: `chat` (LLM), `invoke_agent` (agent), `execute_tool` (tool);
  `gen_ai.agent.name`, `gen_ai.provider.name`, `gen_ai.request.model` / `response.model`,
  `gen_ai.usage.*` (input, output, cache read, cache creation, reasoning), `gen_ai.tool.name`,
  `gen_ai.conversation.id` (the thread id).
- captured prompt / response text (present only when capture is on, already redacted where the
  span entered the pipeline) -> `gen_ai.input.messages` / `gen_ai.output.messages`.
- everything else: `e2i.*` (tier, kind, cost in USD, total tokens, the span's own attributes).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes import error_attributes, exception_attributes
from opentelemetry.semconv.schemas import Schemas

from ..models import ObservabilitySpan, SpanKind, SpanStatus

__all__ = ["SCHEMA_URL", "SCOPE_NAME", "encode_request", "span_attributes", "to_otlp_span"]

SCHEMA_URL = Schemas.V1_44_0.value
SCOPE_NAME = "e2i.observability_connector"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS = timedelta(microseconds=1)

OPERATION_BY_KIND = {
    SpanKind.LLM: gen_ai.GenAiOperationNameValues.CHAT.value,
    SpanKind.AGENT: gen_ai.GenAiOperationNameValues.INVOKE_AGENT.value,
    SpanKind.TOOL: gen_ai.GenAiOperationNameValues.EXECUTE_TOOL.value,
}
PROVIDER_NAMES = {  # LangChain's `ls_provider` -> the conventions' well-known values
    "google_genai": "gcp.gen_ai",
    "google_vertexai": "gcp.vertex_ai",
    "google": "gcp.gemini",
    "gemini": "gcp.gemini",
    "bedrock": "aws.bedrock",
    "amazon_bedrock": "aws.bedrock",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "mistralai": "mistral_ai",
    "mistral": "mistral_ai",
    "xai": "x_ai",
}
PROVIDER_ATTRIBUTES = ("llm.provider", "provider", "ls_provider")
PROMPT_ATTRIBUTE, RESPONSE_ATTRIBUTE = "llm.prompt", "llm.response"
RESPONSE_MODEL_ATTRIBUTE = "llm.response_model"


def unix_nanos(moment: datetime) -> int:
    """Exact nanoseconds since the epoch (no float rounding)."""
    return (moment - _EPOCH) // _NS * 1000


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, list | tuple) and all(
        isinstance(v, str | bool | int | float) for v in value
    ):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    return AnyValue(string_value=json.dumps(value, default=str, ensure_ascii=False))


def key_values(attributes: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attributes.items() if v is not None]


def provider_of(span: ObservabilitySpan) -> str | None:
    provider = getattr(span, "provider", None)
    for key in PROVIDER_ATTRIBUTES:
        if provider:
            break
        provider = span.attributes.get(key)
    if not isinstance(provider, str) or not provider.strip():
        return None
    name = provider.strip().lower()
    return PROVIDER_NAMES.get(name, name)


def _messages(role: str, text: Any) -> str:
    return json.dumps(
        [{"role": role, "parts": [{"type": "text", "content": str(text)}]}], ensure_ascii=False
    )


def span_attributes(span: ObservabilitySpan, *, latest_only: bool = False) -> dict[str, Any]:
    """The OTLP attributes of one span (see the module docstring)."""
    out: dict[str, Any] = {}
    operation = OPERATION_BY_KIND.get(span.span_kind)
    if operation:
        out[gen_ai.GEN_AI_OPERATION_NAME] = operation
    out[gen_ai.GEN_AI_AGENT_NAME] = span.agent_name
    if span.thread_id:
        out[gen_ai.GEN_AI_CONVERSATION_ID] = span.thread_id
    if span.span_kind is SpanKind.TOOL:
        out[gen_ai.GEN_AI_TOOL_NAME] = span.operation_name
    provider = provider_of(span)
    if provider:
        out[gen_ai.GEN_AI_PROVIDER_NAME] = provider
        if not latest_only:
            out[gen_ai.GEN_AI_SYSTEM] = provider
    if span.llm_model:
        out[gen_ai.GEN_AI_REQUEST_MODEL] = span.llm_model
        response_model = span.attributes.get(RESPONSE_MODEL_ATTRIBUTE)
        out[gen_ai.GEN_AI_RESPONSE_MODEL] = (
            response_model if isinstance(response_model, str) else span.llm_model
        )
    usage = {
        gen_ai.GEN_AI_USAGE_INPUT_TOKENS: span.input_tokens,
        gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS: span.output_tokens,
        gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: getattr(span, "cache_read_tokens", None),
        gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: getattr(span, "cache_write_tokens", None),
        gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: getattr(span, "reasoning_tokens", None),
    }
    out.update({k: v for k, v in usage.items() if v is not None})
    if PROMPT_ATTRIBUTE in span.attributes:
        out[gen_ai.GEN_AI_INPUT_MESSAGES] = _messages("user", span.attributes[PROMPT_ATTRIBUTE])
    if RESPONSE_ATTRIBUTE in span.attributes:
        out[gen_ai.GEN_AI_OUTPUT_MESSAGES] = _messages(
            "assistant", span.attributes[RESPONSE_ATTRIBUTE]
        )
    if span.status is SpanStatus.ERROR:
        out[error_attributes.ERROR_TYPE] = span.error_type or "_OTHER"
    cost = getattr(span, "cost_usd", None)
    own = {
        "e2i.span_kind": span.span_kind.value,
        "e2i.agent_tier": span.agent_tier,
        "e2i.total_tokens": span.total_tokens,
        "e2i.cost_usd": float(cost) if cost is not None else None,
    }
    out.update({k: v for k, v in own.items() if v is not None})
    consumed = {PROMPT_ATTRIBUTE, RESPONSE_ATTRIBUTE, RESPONSE_MODEL_ATTRIBUTE}
    for key, value in span.attributes.items():
        if key not in consumed and value is not None:
            out[f"e2i.{key}"] = value
    return out


def _events(span: ObservabilitySpan) -> list[Span.Event]:
    events = [
        Span.Event(
            time_unix_nano=unix_nanos(event.timestamp),
            name=event.name,
            attributes=key_values(event.attributes),
        )
        for event in span.events
    ]
    if span.status is SpanStatus.ERROR and not any(e.name == "exception" for e in span.events):
        exception = {
            exception_attributes.EXCEPTION_TYPE: span.error_type or "_OTHER",
            exception_attributes.EXCEPTION_MESSAGE: span.error_message,
        }
        events.append(
            Span.Event(
                time_unix_nano=unix_nanos(span.end_time or span.start_time),
                name="exception",
                attributes=key_values(exception),
            )
        )
    return events


def to_otlp_span(span: ObservabilitySpan, *, latest_only: bool = False) -> Span:
    end = span.end_time or span.start_time
    status = (
        Status(code=Status.STATUS_CODE_ERROR, message=span.error_message or "")
        if span.status is SpanStatus.ERROR
        else Status(code=Status.STATUS_CODE_UNSET)
    )
    return Span(
        trace_id=bytes.fromhex(span.trace_id),
        span_id=bytes.fromhex(span.span_id),
        parent_span_id=bytes.fromhex(span.parent_span_id) if span.parent_span_id else b"",
        trace_state=span.tracestate or "",
        name=span.operation_name,
        kind=Span.SPAN_KIND_CLIENT if span.span_kind is SpanKind.LLM else Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=unix_nanos(span.start_time),
        end_time_unix_nano=unix_nanos(end),
        attributes=key_values(span_attributes(span, latest_only=latest_only)),
        events=_events(span),
        status=status,
    )


def encode_request(
    spans: Sequence[ObservabilitySpan],
    resource: Mapping[str, Any],
    *,
    scope_version: str = "",
    latest_only: bool = False,
) -> ExportTraceServiceRequest:
    """One export request: one resource, one instrumentation scope, every span of the batch."""
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=key_values(resource)),
                scope_spans=[
                    ScopeSpans(
                        scope=InstrumentationScope(name=SCOPE_NAME, version=scope_version),
                        spans=[to_otlp_span(s, latest_only=latest_only) for s in spans],
                        schema_url=SCHEMA_URL,
                    )
                ],
                schema_url=SCHEMA_URL,
            )
        ]
    )


def decoded_attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    """KeyValues back to Python values (what a backend decodes; used by tests and tools)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        value = pair.value
        kind = value.WhichOneof("value")
        if kind == "array_value":
            out[pair.key] = [getattr(v, v.WhichOneof("value")) for v in value.array_value.values]
        else:
            out[pair.key] = getattr(value, kind) if kind else None
    return out
