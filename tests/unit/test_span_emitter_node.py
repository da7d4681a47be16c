"""The span_emitter node with a tiny real emitter: validation, context filling, counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from src.agents.ml_foundation.observability_connector.models import (
    EmissionResult,
    ObservabilitySpan,
    SpanStatus,
)
from src.agents.ml_foundation.observability_connector.nodes.span_emitter import (
    fill_from_context,
    make_span_emitter_node,
)
from src.agents.ml_foundation.observability_connector.state import RemoveSpans, span_key

START = datetime(2025, 1, 1, 8, tzinfo=UTC)
REMOTE = {
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "span_id": "00f067aa0ba902b7",
    "trace_flags": 1,
    "tracestate": "vendor=1",
    "remote": True,
}


class KeepErrorsOnly:
    def should_keep(self, span: ObservabilitySpan) -> bool:
        return span.is_error


@dataclass
class ListEmitter:
    """Collects submitted spans; `flush` answers as told."""

    flush_answer: bool = True
    sampler: Any = None
    circuit_state: str = "open"
    submitted: list[ObservabilitySpan] = field(default_factory=list)
    flush_calls: list[float | None] = field(default_factory=list)

    def submit(self, span: ObservabilitySpan) -> None:
        self.submitted.append(span)

    def flush(self, timeout: float | None = None) -> bool:
        self.flush_calls.append(timeout)
        return self.flush_answer


def span_dict(**overrides: Any) -> dict[str, Any]:
    base = {
        "operation_name": "step",
        "agent_name": "orchestrator",
        "start_time": START,
        "end_time": START + timedelta(milliseconds=5),
    }
    return {**base, **overrides}


def test_span_emitter__mixed_valid_and_invalid__emits_valid_reports_each_invalid() -> None:
    emitter = ListEmitter()
    node = make_span_emitter_node(emitter, flush_timeout_seconds=3.0)
    items: list[Any] = [
        span_dict(span_id="1" * 16, trace_id="a" * 32),
        span_dict(trace_id="not-hex", span_id="2" * 16),
        42,
        span_dict(span_id="3" * 16, trace_id="a" * 32, end_time=START - timedelta(seconds=1)),
    ]
    update = node({"spans": items, "trace_context": None})
    assert [s.span_id for s in emitter.submitted] == ["1" * 16]
    assert emitter.flush_calls == [3.0]
    assert update == {
        "emission_result": EmissionResult(
            submitted=1, rejected=3, circuit_state="open", flushed=True
        ),
        "spans": RemoveSpans(frozenset(span_key(i) for i in items)),
        "errors": [
            "span_emitter: spans[1] rejected: trace_id: Value error, trace_id must be 32 "
            "lowercase hex characters, got 'not-hex'",
            "span_emitter: spans[2] rejected: expected an ObservabilitySpan or a dict, got int",
            "span_emitter: spans[3] rejected: span: Value error, end_time "
            "(2025-01-01T07:59:59+00:00) is before start_time (2025-01-01T08:00:00+00:00)",
        ],
    }


def test_span_emitter__flush_false_in_state__does_not_wait() -> None:
    emitter = ListEmitter()
    update = make_span_emitter_node(emitter)(
        {"spans": [span_dict(span_id="1" * 16, trace_id="a" * 32)], "flush": False}
    )
    assert emitter.flush_calls == []
    assert update["emission_result"].flushed is False


def test_span_emitter__flush_times_out__reported_not_raised() -> None:
    emitter = ListEmitter(flush_answer=False)
    update = make_span_emitter_node(emitter)(
        {"spans": [span_dict(span_id="1" * 16, trace_id="a" * 32)]}
    )
    assert update["emission_result"] == EmissionResult(
        submitted=1, circuit_state="open", flushed=False
    )
    assert "errors" not in update


def test_span_emitter__public_sampler__sampled_out_counted_not_submitted() -> None:
    emitter = ListEmitter(sampler=KeepErrorsOnly())
    update = make_span_emitter_node(emitter)(
        {
            "spans": [
                span_dict(span_id="1" * 16, trace_id="a" * 32),
                span_dict(span_id="2" * 16, trace_id="a" * 32, status=SpanStatus.ERROR),
            ]
        }
    )
    assert [s.span_id for s in emitter.submitted] == ["2" * 16]
    assert (update["emission_result"].submitted, update["emission_result"].sampled_out) == (1, 1)


def test_fill_from_context__dict_without_ids__joins_remote_trace_under_its_parent() -> None:
    filled = fill_from_context(span_dict(), REMOTE)
    assert isinstance(filled, dict)
    span = ObservabilitySpan.model_validate(filled)
    assert (span.trace_id, span.parent_span_id, span.tracestate) == (
        REMOTE["trace_id"],
        REMOTE["span_id"],
        "vendor=1",
    )


def test_fill_from_context__own_parent_or_other_trace__left_alone() -> None:
    own_parent = span_dict(span_id="1" * 16, parent_span_id="9" * 16)
    assert fill_from_context(own_parent, REMOTE)["parent_span_id"] == "9" * 16  # type: ignore[index]
    other_trace = span_dict(span_id="1" * 16, trace_id="b" * 32)
    assert fill_from_context(other_trace, REMOTE) == other_trace


def test_fill_from_context__local_new_trace__roots_get_no_parent() -> None:
    local = {**REMOTE, "remote": False, "tracestate": None}
    filled = fill_from_context(span_dict(), local)
    assert filled["trace_id"] == REMOTE["trace_id"]  # type: ignore[index]
    assert filled.get("parent_span_id") is None  # type: ignore[union-attr]


def test_fill_from_context__model_root_span_of_remote_trace__gets_remote_parent() -> None:
    span = ObservabilitySpan.model_validate(
        span_dict(span_id="1" * 16, trace_id=REMOTE["trace_id"])
    )
    filled = fill_from_context(span, REMOTE)
    assert isinstance(filled, ObservabilitySpan)
    assert filled.parent_span_id == REMOTE["span_id"]
    assert span.parent_span_id is None  # the input is not mutated


def test_span_emitter__same_span_in_a_later_run__not_submitted_again() -> None:
    emitter = ListEmitter()
    node = make_span_emitter_node(emitter)
    first = span_dict(span_id="1" * 16, trace_id="a" * 32)
    second = span_dict(span_id="2" * 16, trace_id="a" * 32)
    node({"spans": [first]})
    update = node({"spans": [first, second]})
    assert [s.span_id for s in emitter.submitted] == ["1" * 16, "2" * 16]
    assert update == {
        "emission_result": EmissionResult(submitted=1, circuit_state="open", flushed=True),
        "spans": RemoveSpans(frozenset({span_key(first), span_key(second)})),
    }


def test_span_emitter__remembered_spans_bounded__oldest_forgotten() -> None:
    emitter = ListEmitter()
    node = make_span_emitter_node(emitter, max_remembered_spans=2)
    spans = [span_dict(span_id=f"{n}" * 16, trace_id="a" * 32) for n in (1, 2, 3)]
    node({"spans": spans})
    node({"spans": [spans[0]]})  # 1 was forgotten (LRU of 2): submitted again
    node({"spans": [spans[2]]})  # 3 is still remembered: skipped
    assert [s.span_id for s in emitter.submitted] == ["1" * 16, "2" * 16, "3" * 16, "1" * 16]


class BrokenEmitter:
    """Stands for a default connector that cannot be built (every use raises)."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("no connector")

    def submit(self, span: ObservabilitySpan) -> None:
        raise RuntimeError("no connector")

    def flush(self, timeout: float | None = None) -> bool:
        raise RuntimeError("no connector")


def test_span_emitter__emitter_raises__unsent_count_in_errors_spans_kept() -> None:
    good = span_dict(span_id="1" * 16, trace_id="a" * 32)
    update = make_span_emitter_node(BrokenEmitter())({"spans": [good, 42]})
    assert update == {
        "emission_result": EmissionResult(rejected=1, circuit_state="unknown"),
        "spans": RemoveSpans(frozenset({span_key(42)})),
        "errors": [
            "span_emitter: spans[1] rejected: expected an ObservabilitySpan or a dict, got int",
            "span_emitter: 1 of 1 valid span(s) not submitted (kept in state): the emitter "
            "failed (RuntimeError: no connector)",
        ],
    }
