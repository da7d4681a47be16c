"""How an `ObservabilitySpan` becomes Opik's `Span_Write` and `Trace_Write` (created complete).

Ids (see `nodes/context_manager.py`):
- trace: `opik_trace_uuid(trace_id)` (our UUIDv7 trace ids re-dashed; foreign ones forced to v7);
- span and parent: `opik_span_uuid_for(trace_id, span_id)`: UUIDv7 time bits from the trace id,
  the rest from sha256(trace_id + span_id). It needs no start time, so a child computes its
  parent's Opik id, and a replayed span lands on the same id.

Spans are created complete in one POST (no later PATCH that could overtake the create).
`last_updated_at` is the span's end (or start): deterministic, so a replay is byte-identical.
Prompt/response text travels in the attributes `llm.prompt` / `llm.response` and becomes Opik
`input`/`output` only when capture is on; otherwise it is not sent at all.

What a caller gives explicitly (E2I's `input_data=`, `set_output`, `tags=`, `set_cost`) travels
in the attributes `input`, `output`, `tags` and `llm.cost_usd` and becomes Opik's `input`,
`output`, `tags` (after the agent name, each tag once) and `total_estimated_cost`; the root
span's become the trace's. A value that is not an object is sent as `{"value": ...}` (Opik's
schema wants an object). These attributes are not repeated in Opik's `metadata`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from src.agents.ml_foundation.observability_connector.config import CaptureSettings
from src.agents.ml_foundation.observability_connector.models import (
    DEPTH_MARKER,
    MAX_ATTRIBUTE_DEPTH,
    MAX_TOKEN_COUNT,
    ObservabilitySpan,
    SpanKind,
)
from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    opik_span_uuid_for,
    opik_trace_uuid,
)
from src.agents.ml_foundation.observability_connector.usage import sanitize_text

__all__ = [
    "COST_ATTRIBUTE",
    "FEEDBACK_SPAN_PREFIX",
    "INPUT_ATTRIBUTE",
    "METRIC_SPAN_PREFIX",
    "OUTPUT_ATTRIBUTE",
    "PROMPT_ATTRIBUTE",
    "PROMPT_TRUNCATED_ATTRIBUTE",
    "PROVIDER_ATTRIBUTES",
    "RESPONSE_ATTRIBUTE",
    "RESPONSE_TRUNCATED_ATTRIBUTE",
    "TAGS_ATTRIBUTE",
    "TRACEBACK_ATTRIBUTE",
    "SpanType",
    "json_safe",
    "opik_span_fields",
    "opik_trace_fields",
]

PROMPT_ATTRIBUTE = "llm.prompt"
RESPONSE_ATTRIBUTE = "llm.response"
PROMPT_TRUNCATED_ATTRIBUTE = f"{PROMPT_ATTRIBUTE}_truncated"  # as `text_attributes` names it
RESPONSE_TRUNCATED_ATTRIBUTE = f"{RESPONSE_ATTRIBUTE}_truncated"
TRACEBACK_ATTRIBUTE = "error.traceback"
PROVIDER_ATTRIBUTES = ("llm.provider", "provider", "ls_provider")
TTFT_ATTRIBUTE = "ttft_ms"
INPUT_ATTRIBUTE = "input"
OUTPUT_ATTRIBUTE = "output"
TAGS_ATTRIBUTE = "tags"
COST_ATTRIBUTE = "llm.cost_usd"
"""USD cost of an LLM call as the caller set it (`LLMSpanContext.set_cost`)."""
METRIC_SPAN_PREFIX = "metric."
"""Operation-name prefix of `log_metric`'s stand-alone spans: never preferred as a trace root."""
FEEDBACK_SPAN_PREFIX = "feedback."
"""Operation-name prefix of `log_feedback`'s stand-alone spans: never preferred as a root."""


class SpanType(StrEnum):
    """Opik's span types (E2I imports them from the connector)."""

    GENERAL = "general"
    TOOL = "tool"
    LLM = "llm"
    GUARDRAIL = "guardrail"


_SPAN_TYPE = {SpanKind.LLM: SpanType.LLM, SpanKind.TOOL: SpanType.TOOL}  # else GENERAL
_INT32_MAX = MAX_TOKEN_COUNT
_MAX_DEPTH = MAX_ATTRIBUTE_DEPTH


def json_safe(value: Any, _depth: int = 0) -> Any:
    """A JSON-encodable copy: str keys, finite numbers, anything else as its str()."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping | list | tuple | set | frozenset) and _depth >= _MAX_DEPTH:
        return DEPTH_MARKER  # not str(value): that recurses all the way down, and may fail
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v, _depth + 1) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _tags(agent_name: str, extra: Any) -> list[str]:
    """The agent name, then the caller's tags; each once (Opik wants unique items)."""
    tags = [agent_name]
    if isinstance(extra, list | tuple):
        tags.extend(t for t in extra if isinstance(t, str) and t and t not in tags)
    return list(dict.fromkeys(tags))


def _object(value: Any) -> dict[str, Any]:
    """An explicit input/output as the JSON object Opik accepts ({} when absent)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(json_safe(value))
    return {"value": json_safe(value)}


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _usage(span: ObservabilitySpan) -> dict[str, int]:
    counts = {
        "prompt_tokens": span.input_tokens,
        "completion_tokens": span.output_tokens,
        "total_tokens": span.total_tokens,
    }
    return {k: v for k, v in counts.items() if v is not None and 0 <= v <= _INT32_MAX}


def _error_info(span: ObservabilitySpan, attributes: Mapping[str, Any]) -> dict[str, str]:
    exception_type = span.error_type or "Error"
    message = span.error_message
    traceback = attributes.get(TRACEBACK_ATTRIBUTE)
    if not isinstance(traceback, str) or not traceback:
        # Opik requires a non-empty traceback; we keep none, so the best summary stands in.
        traceback = f"{exception_type}: {message}" if message else exception_type
    info = {"exception_type": exception_type, "traceback": traceback}
    if message is not None:
        info["message"] = message
    return info


def _metadata(span: ObservabilitySpan, attributes: Mapping[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "agent_name": span.agent_name,
        "span_kind": span.span_kind.value,
        "status": span.status.value,
        "w3c_trace_id": span.trace_id,
        "w3c_span_id": span.span_id,
    }
    optional = {
        "agent_tier": span.agent_tier,
        "w3c_parent_span_id": span.parent_span_id,
        "thread_id": span.thread_id,
        "tracestate": span.tracestate,
        "duration_ms": span.duration_ms,
    }
    metadata.update({k: v for k, v in optional.items() if v is not None})
    if attributes:
        metadata["attributes"] = json_safe(attributes)
    if span.events:
        metadata["events"] = [json_safe(e.model_dump(mode="json")) for e in span.events]
    return metadata


def opik_span_fields(
    span: ObservabilitySpan, project_name: str, capture: CaptureSettings
) -> dict[str, Any]:
    """Keyword arguments of `opik.rest_api.SpanWrite` for one finished span (no None values)."""
    attributes = dict(span.attributes)
    prompt = attributes.pop(PROMPT_ATTRIBUTE, None)
    response = attributes.pop(RESPONSE_ATTRIBUTE, None)
    fields: dict[str, Any] = {
        "id": opik_span_uuid_for(span.trace_id, span.span_id),
        "project_name": project_name,
        "trace_id": opik_trace_uuid(span.trace_id),
        "name": span.operation_name,
        "type": _SPAN_TYPE.get(span.span_kind, SpanType.GENERAL).value,
        "start_time": _utc(span.start_time),
        "tags": _tags(span.agent_name, attributes.pop(TAGS_ATTRIBUTE, None)),
        "last_updated_at": _utc(span.end_time or span.start_time),
    }
    if span.parent_span_id is not None:
        fields["parent_span_id"] = opik_span_uuid_for(span.trace_id, span.parent_span_id)
    if span.end_time is not None:
        fields["end_time"] = _utc(span.end_time)
    given_input = _object(attributes.pop(INPUT_ATTRIBUTE, None))
    given_output = _object(attributes.pop(OUTPUT_ATTRIBUTE, None))
    if capture.prompts and prompt is not None:
        given_input = {"prompt": sanitize_text(prompt, capture.max_chars)[0], **given_input}
    if capture.prompts and response is not None:
        given_output = {"response": sanitize_text(response, capture.max_chars)[0], **given_output}
    if given_input:
        fields["input"] = given_input
    if given_output:
        fields["output"] = given_output
    cost = attributes.pop(COST_ATTRIBUTE, None)
    if _is_number(cost) and cost >= 0:
        fields["total_estimated_cost"] = float(cost)
    usage = _usage(span)
    if usage:
        fields["usage"] = usage
    if span.llm_model:
        fields["model"] = span.llm_model
    provider = span.provider or next(
        (attributes[k] for k in PROVIDER_ATTRIBUTES if attributes.get(k)), None
    )
    if isinstance(provider, str):
        fields["provider"] = provider
    if span.cost_usd is not None:  # priced on the worker before any sink, or the caller's
        fields["total_estimated_cost"] = span.cost_usd
    ttft = attributes.get(TTFT_ATTRIBUTE)
    if _is_number(ttft):
        fields["ttft"] = float(ttft)
    if span.is_error:
        fields["error_info"] = _error_info(span, attributes)
    fields["metadata"] = _metadata(span, attributes)
    return fields


def opik_trace_fields(
    spans: Sequence[ObservabilitySpan], project_name: str
) -> tuple[dict[str, Any], bool]:
    """`TraceWrite` keyword arguments for the spans of one trace, and whether a root was there.

    Named after the root span (no parent) when the batch holds it. Otherwise a placeholder named
    after the first span's agent, spanning the batch's spans; its `last_updated_at` is the
    earliest start, so the root-named trace sent later (stamped with the root's end) wins in
    Opik. The database keeps the full truth either way.

    A parentless `metric.<name>` / `feedback.<type>` span (`log_metric` / `log_feedback` with
    a `trace_id` outside that trace's block) is not taken as the root: with no other parentless
    span it only names the placeholder, so the real root, in this batch or a later one, still
    names the trace. Such a score may come after the root ended, so a placeholder's
    `last_updated_at` is the trace id's own time (a UUIDv7 trace id carries the trace's start)
    when that is earlier.
    """
    if not spans:
        raise ValueError("opik_trace_fields needs at least one span")
    trace_id = spans[0].trace_id
    parentless = [s for s in spans if s.parent_span_id is None]
    root = next((s for s in parentless if not _is_metric_span(s)), None)
    if root is not None:
        fields: dict[str, Any] = {
            "name": root.operation_name,
            "start_time": _utc(root.start_time),
            "tags": _tags(root.agent_name, root.attributes.get(TAGS_ATTRIBUTE)),
            "last_updated_at": _utc(root.end_time or root.start_time),
            "metadata": {
                "agent_name": root.agent_name,
                "w3c_trace_id": trace_id,
                "root_span_id": root.span_id,
                "status": root.status.value,
                **({"agent_tier": root.agent_tier} if root.agent_tier is not None else {}),
            },
        }
        if root.end_time is not None:
            fields["end_time"] = _utc(root.end_time)
        for field, key in (("input", INPUT_ATTRIBUTE), ("output", OUTPUT_ATTRIBUTE)):
            given = _object(root.attributes.get(key))
            if given:
                fields[field] = given
        if root.thread_id:
            fields["thread_id"] = root.thread_id
        if root.is_error:
            fields["error_info"] = _error_info(root, root.attributes)
    else:
        first = spans[0]
        ends = [s.end_time for s in spans if s.end_time is not None]
        start = min(s.start_time for s in spans)
        metric = parentless[0] if parentless else None  # a metric span, when there is one
        fields = {
            "name": metric.operation_name if metric is not None else first.agent_name,
            "start_time": _utc(start),
            "tags": [first.agent_name],
            "last_updated_at": min(_utc(start), _trace_id_time(trace_id)),
            "metadata": {
                "agent_name": first.agent_name,
                "w3c_trace_id": trace_id,
                "root_span_in_batch": False,
            },
        }
        if ends:
            fields["end_time"] = _utc(max(ends))
        thread = next((s.thread_id for s in spans if s.thread_id), None)
        if thread:
            fields["thread_id"] = thread
    fields["id"] = opik_trace_uuid(trace_id)
    fields["project_name"] = project_name
    return fields, root is not None


def _is_metric_span(span: ObservabilitySpan) -> bool:
    return span.operation_name.startswith((METRIC_SPAN_PREFIX, FEEDBACK_SPAN_PREFIX))


def _trace_id_time(trace_id: str) -> datetime:
    """The 48-bit unix-ms time of the trace's Opik UUIDv7 (its start, for our own trace ids)."""
    unix_ms = uuid.UUID(opik_trace_uuid(trace_id)).int >> 80
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=unix_ms)
