"""The `spans` reducer: de-duplication by (trace_id, span_id), removal markers, leniency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan
from src.agents.ml_foundation.observability_connector.state import (
    CLEAR_SPANS,
    RemoveSpans,
    merge_spans,
    span_key,
)

START = datetime(2025, 1, 1, tzinfo=UTC)


def span(span_id: str, duration_ms: float = 10.0, trace_id: str = "a" * 32) -> ObservabilitySpan:
    return ObservabilitySpan(
        span_id=span_id,
        trace_id=trace_id,
        operation_name="op",
        agent_name="agent",
        start_time=START,
        end_time=START + timedelta(milliseconds=duration_ms),
    )


def test_merge_spans__new_spans__appended_in_order() -> None:
    a, b, c = span("1" * 16), span("2" * 16), span("3" * 16)
    assert merge_spans([a], [b, c]) == [a, b, c]


def test_merge_spans__same_ids_again__replaced_in_place_not_duplicated() -> None:
    a, b = span("1" * 16), span("2" * 16)
    a_again = span("1" * 16, duration_ms=99.0)
    assert merge_spans([a, b], [a_again]) == [a_again, b]


def test_merge_spans__dict_with_same_ids_as_a_span__counts_as_the_same_span() -> None:
    a = span("1" * 16)
    as_dict = {"trace_id": a.trace_id, "span_id": a.span_id, "agent_name": "agent"}
    assert merge_spans([a], [as_dict]) == [as_dict]


def test_merge_spans__identical_malformed_dicts__kept_once_different_ones_kept_both() -> None:
    bad = {"agent_name": "x"}
    assert merge_spans([bad], [{"agent_name": "x"}, {"agent_name": "y"}]) == [
        bad,
        {"agent_name": "y"},
    ]


def test_merge_spans__remove_by_key__drops_only_those() -> None:
    a, b, c = span("1" * 16), span("2" * 16), span("3" * 16)
    assert merge_spans([a, b, c], RemoveSpans(frozenset({span_key(a), span_key(c)}))) == [b]


def test_merge_spans__clear_sentinel__empties_the_list() -> None:
    assert merge_spans([span("1" * 16), {"x": 1}], CLEAR_SPANS) == []


def test_merge_spans__lone_item_or_none__tolerated() -> None:
    a = span("1" * 16)
    assert merge_spans([], a) == [a]
    assert merge_spans([a], None) == [a]
    assert merge_spans(None, "garbage") == ["garbage"]


def test_span_key__unhashable_or_odd_items__still_get_a_key() -> None:
    circular: list[object] = []
    circular.append(circular)
    assert span_key(circular)[0] == "raw"
    assert span_key({1: "non-string key"}) != span_key({2: "non-string key"})
