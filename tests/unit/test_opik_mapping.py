"""Span -> Opik field mapping and the Opik span id scheme (pure logic)."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from src.agents.ml_foundation.observability_connector.config import CaptureSettings
from src.agents.ml_foundation.observability_connector.models import (
    DEPTH_MARKER,
    MAX_ATTRIBUTE_DEPTH,
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
from src.mlops.opik_mapping import json_safe, opik_span_fields, opik_trace_fields

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


def _span(**overrides: object) -> ObservabilitySpan:
    fields: dict[str, object] = {
        "span_id": new_span_id(),
        "trace_id": new_trace_id(),
        "operation_name": "op",
        "agent_name": "orchestrator",
        "start_time": T0,
        "end_time": T0 + timedelta(seconds=1),
        **overrides,
    }
    return ObservabilitySpan(**fields)  # type: ignore[arg-type]


def test_opik_span_uuid_for__same_ids__same_uuidv7_with_trace_time() -> None:
    trace_id, span_id = new_trace_id(), new_span_id()
    first = opik_span_uuid_for(trace_id, span_id)
    assert first == opik_span_uuid_for(trace_id, span_id)
    parsed = uuid.UUID(first)
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert parsed.int >> 80 == uuid.UUID(opik_trace_uuid(trace_id)).int >> 80


def test_opik_span_uuid_for__different_spans__different_ids() -> None:
    trace_id = new_trace_id()
    ids = {opik_span_uuid_for(trace_id, new_span_id()) for _ in range(200)}
    assert len(ids) == 200


def test_opik_span_uuid_for__foreign_trace_id__still_uuidv7() -> None:
    foreign = "4bf92f3577b34da6a3ce929d0e0e4736"  # W3C example, not a UUIDv7
    assert uuid.UUID(opik_span_uuid_for(foreign, "00f067aa0ba902b7")).version == 7


def test_opik_span_fields__child__parent_id_computed_without_parent_start() -> None:
    parent = _span(start_time=T0 - timedelta(hours=3))
    child = _span(trace_id=parent.trace_id, parent_span_id=parent.span_id)
    fields = opik_span_fields(child, "p", CaptureSettings())
    assert fields["parent_span_id"] == opik_span_fields(parent, "p", CaptureSettings())["id"]


def test_opik_span_fields__non_utc_times__sent_in_utc() -> None:
    cet = timezone(timedelta(hours=1))
    span = _span(
        start_time=T0.astimezone(cet), end_time=(T0 + timedelta(seconds=2)).astimezone(cet)
    )
    fields = opik_span_fields(span, "p", CaptureSettings())
    assert fields["start_time"] == T0
    assert fields["start_time"].tzinfo is UTC


def test_opik_span_fields__error_without_message__traceback_never_empty() -> None:
    span = _span(status=SpanStatus.ERROR, error_type=None, error_message=None)
    info = opik_span_fields(span, "p", CaptureSettings())["error_info"]
    assert info == {"exception_type": "Error", "traceback": "Error"}


def test_opik_span_fields__kinds__map_to_opik_types() -> None:
    types = {
        kind: opik_span_fields(_span(span_kind=kind), "p", CaptureSettings())["type"]
        for kind in SpanKind
    }
    assert types == {
        SpanKind.AGENT: "general",
        SpanKind.CHAIN: "general",
        SpanKind.LLM: "llm",
        SpanKind.TOOL: "tool",
    }


def test_opik_span_fields__usage_beyond_int32__left_out() -> None:
    # the model refuses 2**31 at entry; a span built without validation is still mapped safely
    span = _span(span_kind=SpanKind.LLM, output_tokens=5).model_copy(
        update={"input_tokens": 2**31, "total_tokens": 2**31 + 5}
    )
    assert opik_span_fields(span, "p", CaptureSettings())["usage"] == {"completion_tokens": 5}


def test_opik_trace_fields__root_present__named_after_root() -> None:
    root = _span(operation_name="intent_classification", thread_id="t1")
    child = _span(trace_id=root.trace_id, parent_span_id=root.span_id, agent_name="gap_analyzer")
    fields, rooted = opik_trace_fields([child, root], "p")
    assert rooted is True
    assert (fields["name"], fields["thread_id"]) == ("intent_classification", "t1")
    assert fields["id"] == opik_trace_uuid(root.trace_id)


def test_opik_trace_fields__no_root__placeholder_after_first_agent() -> None:
    trace_id = new_trace_id()
    a = _span(trace_id=trace_id, parent_span_id=new_span_id(), agent_name="explainer")
    b = _span(
        trace_id=trace_id,
        parent_span_id=new_span_id(),
        start_time=T0 - timedelta(seconds=5),
        end_time=T0 + timedelta(seconds=9),
    )
    fields, rooted = opik_trace_fields([a, b], "p")
    assert rooted is False
    assert fields["name"] == "explainer"
    assert fields["start_time"] == fields["last_updated_at"] == T0 - timedelta(seconds=5)
    assert fields["end_time"] == T0 + timedelta(seconds=9)


def test_opik_trace_fields__parentless_metric_span_before_root__named_after_root() -> None:
    trace_id = new_trace_id()
    late = T0 + timedelta(minutes=5)  # log_metric(trace_id=T) after T's block ended
    metric = _span(
        trace_id=trace_id,
        operation_name="metric.routing_confidence",
        start_time=late,
        end_time=late,
        span_kind=SpanKind.CHAIN,
    )
    root = _span(
        trace_id=trace_id, operation_name="intent_classification", span_kind=SpanKind.AGENT
    )
    fields, rooted = opik_trace_fields([metric, root], "p")
    assert rooted is True
    assert fields["name"] == "intent_classification"
    assert fields["metadata"]["root_span_id"] == root.span_id
    assert fields["last_updated_at"] == root.end_time


def _trace_id_started_at(when: datetime) -> str:
    """A UUIDv7 trace id as `new_trace_id` makes it when a trace starts at `when`."""
    unix_ms = (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    return f"{unix_ms << 80 | 0x7 << 76 | 0b10 << 62 | 0x1234:032x}"


def test_opik_trace_fields__only_metric_span_parentless__placeholder_a_later_root_replaces() -> (
    None
):
    trace_id = _trace_id_started_at(T0)
    late = T0 + timedelta(minutes=5)  # log_metric(trace_id=T) after T's root ended
    metric = _span(
        trace_id=trace_id,
        operation_name="metric.routing_confidence",
        start_time=late,
        end_time=late + timedelta(milliseconds=1),
    )
    fields, rooted = opik_trace_fields([metric], "p")
    assert rooted is False  # so the sink still sends the real root's trace when it arrives
    assert fields["name"] == "metric.routing_confidence"  # nothing else to name it after
    root = _span(trace_id=trace_id, operation_name="intent_classification")  # T0 .. T0+1s
    later_fields, later_rooted = opik_trace_fields([root], "p")
    assert later_rooted is True and later_fields["name"] == "intent_classification"
    assert later_fields["last_updated_at"] > fields["last_updated_at"]  # the root wins in Opik


def test_json_safe__odd_values__encodable() -> None:
    value = {1: [math.nan, (2, {3})], "when": T0, "obj": object}
    safe = json_safe(value)
    assert safe["1"][0] == "nan"
    assert safe["1"][1] == [2, [3]]
    assert safe["when"] == T0.isoformat()
    assert safe["obj"].startswith("<class")


@pytest.mark.parametrize("bad", ["", "x" * 31, "0" * 32])
def test_opik_span_uuid_for__bad_trace_id__value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="trace_id"):
        opik_span_uuid_for(bad, new_span_id())


def test_json_safe__metadata_5000_deep__cut_with_the_marker_not_str() -> None:
    """Issue 11 item 9: str() of the part past the depth limit recursed 5,000 levels and
    failed, so the span of `trace_agent(metadata=...)` vanished."""
    root: dict = {}
    node = root
    for _ in range(5000):
        node["child"] = {}
        node = node["child"]
    safe = json_safe({"meta": root})
    for _ in range(MAX_ATTRIBUTE_DEPTH):
        safe = safe["meta"] if "meta" in safe else safe["child"]
    assert safe == DEPTH_MARKER


def test_opik_span_fields__tags_input_output_cost__opik_fields_not_metadata() -> None:
    span = _span(
        attributes={
            "tags": ["orchestrator", "tier_2", "tier_2"],
            "input": {"q": "x"},
            "output": ["not", "an", "object"],
            "llm.cost_usd": 0.01,
            "brand": "Kisqali",
        }
    )
    fields = opik_span_fields(span, "p", CaptureSettings())
    assert fields["tags"] == ["orchestrator", "tier_2"]
    assert fields["input"] == {"q": "x"}
    assert fields["output"] == {"value": ["not", "an", "object"]}
    assert fields["total_estimated_cost"] == 0.01
    assert fields["metadata"]["attributes"] == {"brand": "Kisqali"}


def test_opik_span_fields__captured_prompt_and_given_input__both_sent() -> None:
    span = _span(attributes={"input": {"q": "x"}, "llm.prompt": "Why?"})
    fields = opik_span_fields(span, "p", CaptureSettings(prompts=True))
    assert fields["input"] == {"prompt": "Why?", "q": "x"}


def test_opik_trace_fields__root_input_output_tags__on_the_trace() -> None:
    root = _span(attributes={"tags": ["x"], "input": {"a": 1}, "output": {"b": 2}})
    feedback = _span(trace_id=root.trace_id, operation_name="feedback.quality")
    fields, rooted = opik_trace_fields([feedback, root], "p")
    assert rooted and fields["name"] == "op"
    assert (fields["tags"], fields["input"], fields["output"]) == (
        ["orchestrator", "x"],
        {"a": 1},
        {"b": 2},
    )
