"""ObservabilitySpan validation and the QualityMetrics window roll-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from src.agents.ml_foundation.observability_connector.models import (
    CORRECTED_SPAN_VALUES,
    DEPTH_MARKER,
    MAX_ATTRIBUTE_DEPTH,
    MAX_TOKEN_COUNT,
    LatencyStats,
    ObservabilitySpan,
    QualityMetrics,
    SpanEvent,
    SpanKind,
    SpanStatus,
    WindowSummary,
    check_span_id,
    check_trace_id,
    limit_depth,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
START = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
END = START + timedelta(milliseconds=1250)


def _span(**overrides):
    fields = {
        "span_id": SPAN_ID,
        "trace_id": TRACE_ID,
        "operation_name": "intent_classification",
        "agent_name": "orchestrator",
        "start_time": START,
        "end_time": END,
    } | overrides
    return ObservabilitySpan(**fields)


def test_observability_span__minimal_valid__defaults_and_duration_derived():
    span = _span()
    assert span.status is SpanStatus.COMPLETED
    assert span.span_kind is SpanKind.AGENT
    assert span.duration_ms == 1250.0
    assert span.total_tokens is None
    assert span.is_error is False


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("trace_id", TRACE_ID.upper(), "32 lowercase hex"),
        ("trace_id", TRACE_ID[:-1], "32 lowercase hex"),
        ("trace_id", "0" * 32, "all zeros"),
        ("trace_id", TRACE_ID + "\n", "32 lowercase hex"),
        ("span_id", SPAN_ID.upper(), "16 lowercase hex"),
        ("span_id", SPAN_ID[:8], "16 lowercase hex"),
        ("span_id", "0" * 16, "all zeros"),
        ("span_id", SPAN_ID + "\n", "16 lowercase hex"),
        ("parent_span_id", "ABCDEF0123456789", "16 lowercase hex"),
        ("parent_span_id", "0" * 16, "all zeros"),
    ],
)
def test_observability_span__malformed_id__error_names_field_value_and_form(field, value, expected):
    with pytest.raises(ValidationError) as excinfo:
        _span(**{field: value})
    text = str(excinfo.value)
    assert field in text and repr(value) in text and expected in text


def test_check_ids__valid__returned_unchanged():
    assert check_trace_id(TRACE_ID) == TRACE_ID
    assert check_span_id(SPAN_ID) == SPAN_ID


@pytest.mark.parametrize("field", ["start_time", "end_time"])
def test_observability_span__naive_datetime__rejected_with_clear_message(field):
    naive = (START if field == "start_time" else END).replace(tzinfo=None)
    with pytest.raises(ValidationError) as excinfo:
        _span(**{field: naive})
    text = str(excinfo.value)
    assert f"{field} must be timezone-aware" in text
    assert "datetime.now(timezone.utc)" in text


def test_observability_span__other_time_zone__duration_from_instants():
    plus_two = timezone(timedelta(hours=2))
    span = _span(end_time=(START + timedelta(seconds=2)).astimezone(plus_two))
    assert span.duration_ms == 2000.0


def test_observability_span__end_before_start__rejected_naming_both():
    with pytest.raises(ValidationError) as excinfo:
        _span(end_time=START - timedelta(milliseconds=1))
    text = str(excinfo.value)
    assert "end_time" in text and "before" in text and "start_time" in text


def test_observability_span__explicit_duration_of_a_started_span__kept():
    span = _span(status=SpanStatus.STARTED, end_time=None, duration_ms=99.5)
    assert span.duration_ms == 99.5


@pytest.mark.parametrize("given", [float("inf"), 1e300, 99.5])
def test_observability_span__duration_disagreeing_with_end_minus_start__derived_and_counted(given):
    """Issue 11 item 9: duration_ms=inf (p95 "inf s") and 1e300 for a 1.25 s span."""
    before = CORRECTED_SPAN_VALUES.count
    span = _span(duration_ms=given)
    assert span.duration_ms == 1250.0
    assert CORRECTED_SPAN_VALUES.count == before + 1


def test_observability_span__duration_within_a_millisecond__derived_silently():
    before = CORRECTED_SPAN_VALUES.count
    assert _span(duration_ms=1250.4).duration_ms == 1250.0
    assert CORRECTED_SPAN_VALUES.count == before


def test_observability_span__started_span_with_infinite_duration__rejected_naming_it():
    with pytest.raises(ValidationError, match="duration_ms must be a finite number"):
        _span(status=SpanStatus.STARTED, end_time=None, duration_ms=float("inf"))


def test_observability_span__negative_duration__rejected():
    with pytest.raises(ValidationError, match="duration_ms"):
        _span(duration_ms=-1.0)


@pytest.mark.parametrize("field", ["input_tokens", "output_tokens", "total_tokens"])
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-1, "whole number in 0..2147483647"),
        (2**31, "whole number in 0..2147483647"),
        (10**30, "whole number in 0..2147483647"),
        (float("nan"), "whole number in 0..2147483647"),
        (float("inf"), "whole number in 0..2147483647"),
        (True, "whole number in 0..2147483647"),
        (1.5, "whole number in 0..2147483647"),
        ("12", "whole number in 0..2147483647"),
    ],
)
def test_observability_span__bad_token_count__rejected(field, value, expected):
    with pytest.raises(ValidationError) as excinfo:
        _span(**{field: value})
    text = str(excinfo.value)
    assert field in text and expected in text


def test_observability_span__whole_float_tokens__stored_as_int():
    span = _span(input_tokens=10.0, output_tokens=5)
    assert span.input_tokens == 10 and isinstance(span.input_tokens, int)


@pytest.mark.parametrize(
    ("inputs", "outputs", "total"),
    [(100, 20, 120), (100, None, 100), (None, 7, 7), (None, None, None)],
)
def test_observability_span__token_parts__total_derived(inputs, outputs, total):
    assert _span(input_tokens=inputs, output_tokens=outputs).total_tokens == total


def test_observability_span__explicit_total__kept():
    assert _span(input_tokens=1, output_tokens=2, total_tokens=10).total_tokens == 10


def test_observability_span__total_below_input_plus_output__recomputed_and_counted():
    """Issue 11 item 9: total_tokens=1 with 5 in + 5 out was stored as 1."""
    before = CORRECTED_SPAN_VALUES.count
    span = _span(input_tokens=5, output_tokens=5, total_tokens=1)
    assert (span.input_tokens, span.output_tokens, span.total_tokens) == (5, 5, 10)
    assert CORRECTED_SPAN_VALUES.count == before + 1


def test_observability_span__parts_summing_past_int32__total_none():
    span = _span(input_tokens=MAX_TOKEN_COUNT, output_tokens=1)
    assert (span.input_tokens, span.total_tokens) == (MAX_TOKEN_COUNT, None)


def _nested(depth: int) -> dict:
    root: dict = {}
    node = root
    for _ in range(depth):
        node["child"] = {}
        node = node["child"]
    return root


def test_observability_span__metadata_5000_deep__cut_with_a_marker_and_storable():
    """Issue 11 item 9: metadata nested 5,000 deep made the span vanish (no encoder takes it)."""
    before = CORRECTED_SPAN_VALUES.count
    span = _span(attributes={"meta": _nested(5000), "flat": 1})

    node = span.attributes["meta"]
    for _ in range(MAX_ATTRIBUTE_DEPTH - 1):
        node = node["child"]
    assert node == DEPTH_MARKER
    assert span.attributes["flat"] == 1
    assert CORRECTED_SPAN_VALUES.count == before + 1
    assert ObservabilitySpan.model_validate_json(span.model_dump_json()) == span


def test_observability_span__event_attributes_too_deep__cut():
    event = SpanEvent(name="e", timestamp=START, attributes={"m": [_nested(100)]})
    assert DEPTH_MARKER in event.model_dump_json()


def test_limit_depth__shallow_value__same_object_returned():
    value = {"a": [1, {"b": (2, 3)}], "c": "d"}
    assert limit_depth(value) is value
    assert limit_depth(_nested(3), max_depth=2) == {"child": {"child": DEPTH_MARKER}}


@pytest.mark.parametrize("status", ["started", "completed", "error"])
def test_observability_span__each_status__accepted(status):
    span = _span(status=status)
    assert span.status is SpanStatus(status)
    assert span.is_error is (status == "error")


def test_observability_span__unknown_status__rejected_listing_accepted():
    with pytest.raises(ValidationError) as excinfo:
        _span(status="done")
    text = str(excinfo.value)
    assert "status" in text and "'started'" in text and "'error'" in text


def test_observability_span__started_without_end__accepted_without_duration():
    span = _span(status=SpanStatus.STARTED, end_time=None)
    assert span.end_time is None and span.duration_ms is None


@pytest.mark.parametrize("status", [SpanStatus.COMPLETED, SpanStatus.ERROR])
def test_observability_span__finished_without_end__rejected(status):
    with pytest.raises(ValidationError) as excinfo:
        _span(status=status, end_time=None)
    assert f"status {status.value!r} needs an end_time" in str(excinfo.value)


@pytest.mark.parametrize("field", ["operation_name", "agent_name"])
def test_observability_span__empty_name__rejected(field):
    with pytest.raises(ValidationError, match=field):
        _span(**{field: ""})


def test_observability_span__unknown_field__rejected():
    with pytest.raises(ValidationError, match="colour"):
        _span(colour="blue")


def test_observability_span__tier_out_of_range__rejected():
    with pytest.raises(ValidationError, match="agent_tier"):
        _span(agent_tier=6)


# --- QualityMetrics.from_agent_stats ------------------------------------------------------


def test_quality_metrics__with_window_summary__seed_fields_from_it():
    summary = WindowSummary(
        time_window="1h",
        total_spans=3,
        successful_spans=1,
        failed_spans=1,
        avg_latency_ms=20.0,
        p95_latency_ms=29.0,
    )
    stats = [_stats("a", 3, 1, (0, 0))]
    metrics = QualityMetrics.from_agent_stats("1h", WINDOW_START, WINDOW_END, stats, None, summary)
    seed = (metrics.successful_spans, metrics.failed_spans)
    assert (*seed, metrics.avg_latency_ms, metrics.p95_latency_ms) == (1, 1, 20.0, 29.0)


WINDOW_END = datetime(2025, 1, 2, 12, 0, tzinfo=UTC)
WINDOW_START = WINDOW_END - timedelta(hours=1)


def _stats(name: str, count: int, errors: int, tokens: tuple[int, int]) -> LatencyStats:
    return LatencyStats(
        agent_name=name,
        count=count,
        error_count=errors,
        error_rate=errors / count if count else 0.0,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        total_tokens=sum(tokens),
    )


def test_quality_metrics__from_agent_stats__totals_rates_and_agents_rolled_up():
    gap = _stats("gap_analyzer", 90, 9, (1000, 200))
    orch = _stats("orchestrator", 30, 3, (500, 50))
    metrics = QualityMetrics.from_agent_stats("1h", WINDOW_START, WINDOW_END, [gap, orch])
    assert metrics == QualityMetrics(
        time_window="1h",
        window_start=WINDOW_START,
        window_end=WINDOW_END,
        agent_name=None,
        total_spans=120,
        successful_spans=108,  # without a window summary: total minus errors
        failed_spans=12,
        error_count=12,
        error_rate=0.1,
        spans_per_minute=2.0,
        input_tokens=1500,
        output_tokens=250,
        total_tokens=1750,
        agents={"gap_analyzer": gap, "orchestrator": orch},
    )


def test_quality_metrics__from_no_stats__zeros_without_division_error():
    metrics = QualityMetrics.from_agent_stats(
        "24h", WINDOW_START, WINDOW_END, [], agent_name="gap_analyzer"
    )
    assert (metrics.total_spans, metrics.error_rate, metrics.spans_per_minute) == (0, 0.0, 0.0)
    assert metrics.agents == {} and metrics.agent_name == "gap_analyzer"


def test_quality_metrics__empty_window__no_division_by_zero():
    stats = [_stats("a", 5, 0, (0, 0))]
    metrics = QualityMetrics.from_agent_stats("1h", WINDOW_END, WINDOW_END, stats)
    assert metrics.total_spans == 5 and metrics.spans_per_minute > 0


def test_storable__surrogates_and_nul_anywhere__replaced_and_utf8_encodable():
    from src.agents.ml_foundation.observability_connector.models import storable

    value = {"f\udcffile": ["ok", "nul\x00", ("é", 3)], "n": None, "x": 1.5}
    clean = storable(value)
    assert clean == {"f\ufffdile": ["ok", "nul\ufffd", ["é", 3]], "n": None, "x": 1.5}
    assert storable("plain ascii") == "plain ascii"
    str(clean).encode("utf-8")
