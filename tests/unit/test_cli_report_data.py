"""Report numbers, SVG axis ticks and secret masking of the CLI (pure logic)."""

from __future__ import annotations

import itertools
import statistics
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from src.agents.ml_foundation.observability_connector.config import load_config
from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    QualityMetrics,
    SpanKind,
    SpanStatus,
)
from src.cli.report_data import UNKNOWN_MODEL, build_report_data, percentile
from src.cli.session import describe_store, mask_url
from src.cli.svg import nice_ticks

END = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_ids = iter(range(1, 1 << 40))


def span(minutes_ago: float, duration_ms: float, agent: str = "a", **fields) -> ObservabilitySpan:
    start = END - timedelta(minutes=minutes_ago)
    return ObservabilitySpan(
        span_id=f"{next(_ids):016x}",
        trace_id=fields.pop("trace_id", f"{next(_ids):032x}"),
        operation_name="op",
        agent_name=agent,
        start_time=start,
        end_time=start + timedelta(milliseconds=duration_ms),
        **fields,
    )


def metrics(window: str = "1h", length: timedelta = timedelta(hours=1)) -> QualityMetrics:
    return QualityMetrics.from_agent_stats(window, END - length, END, [])


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=2, max_size=60))
def test_percentile__any_data__equals_statistics_quantiles_inclusive(values: list[float]):
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=100, method="inclusive")

    for index, fraction in ((49, 0.5), (94, 0.95), (98, 0.99)):
        assert percentile(ordered, fraction) == pytest.approx(q[index], rel=1e-9, abs=1e-6)


def test_percentile__single_value__that_value():
    assert percentile([42.0], 0.99) == 42.0


def test_build_report_data__spans_in_buckets__percentiles_per_bucket_and_gaps():
    spans = [span(55, 10), span(50, 30), span(5, 100), span(70, 999)]  # the last: outside

    data = build_report_data(metrics(), spans, buckets=4)

    points = data.latency["a"]
    assert [p.count for p in points] == [2, 0, 0, 1]
    assert points[0].p50_ms == pytest.approx(20.0)
    assert points[1].p50_ms is None and points[3].p99_ms == pytest.approx(100.0)
    # the axis runs from the first span's start to the last span's end inside the window
    assert data.bucket_starts[0] == END - timedelta(minutes=55)
    assert data.bucket_width == (timedelta(minutes=50) + timedelta(milliseconds=100)) / 4


def test_build_report_data__no_spans__axis_is_the_whole_window():
    data = build_report_data(metrics(), [], buckets=6)

    assert data.bucket_starts[0] == END - timedelta(hours=1)
    assert data.bucket_width == timedelta(minutes=10)
    assert data.latency == {}


def test_build_report_data__burst_shorter_than_a_second__axis_one_second():
    data = build_report_data(metrics(), [span(2, 0.5), span(2, 0.1)], buckets=10)

    assert data.bucket_width == timedelta(milliseconds=100)
    assert data.latency["a"][0].count == 2


def test_build_report_data__tokens_by_model__llm_spans_only_most_first():
    spans = [
        span(1, 5, span_kind=SpanKind.LLM, llm_model="small", input_tokens=10, output_tokens=1),
        span(2, 5, span_kind=SpanKind.LLM, llm_model="big", input_tokens=500, output_tokens=50),
        span(3, 5, span_kind=SpanKind.LLM, input_tokens=3, output_tokens=3),
        span(4, 5, span_kind=SpanKind.AGENT, llm_model="big", total_tokens=10_000),
    ]

    rows = build_report_data(metrics(), spans).tokens_by_model

    assert [(r.model, r.llm_calls, r.total_tokens) for r in rows] == [
        ("big", 1, 550),
        ("small", 1, 11),
        (UNKNOWN_MODEL, 1, 6),
    ]


def test_build_report_data__slowest_and_errors__ranked():
    slow, fast = "1" * 32, "2" * 32
    spans = [
        span(10, 500, trace_id=slow),
        span(9, 20, trace_id=fast),
        span(8, 5, status=SpanStatus.ERROR, error_type="Timeout", error_message="old"),
        span(7, 5, status=SpanStatus.ERROR, error_type="Timeout", error_message="new"),
        span(6, 5, agent="b", status=SpanStatus.ERROR),
    ]

    data = build_report_data(metrics(), spans, slowest=2, span_limit=5)

    assert [t.trace_id for t in data.slowest_traces] == [slow, fast]
    assert [(g.agent_name, g.error_type, g.count, g.last_message) for g in data.error_groups] == [
        ("a", "Timeout", 2, "new"),
        ("b", "(no error type)", 1, None),
    ]
    assert data.truncated  # as many spans as the fetch limit: maybe more in the store


@pytest.mark.parametrize("maximum", [0.0, 0.3, 1.0, 7.0, 99.0, 1234.5, 8e6])
def test_nice_ticks__any_maximum__zero_based_covering_and_evenly_spaced(maximum: float):
    ticks = nice_ticks(maximum)

    assert ticks[0] == 0 and ticks[-1] >= maximum
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1 and 2 <= len(ticks) <= 6


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://obs:s3cret@db.example:5433/e2i", "postgresql://obs:***@db.example:5433/e2i"),
        ("postgresql://token@db.example/e2i", "postgresql://***@db.example/e2i"),
        ("postgresql://obs:pw@db/e2i?password=pw", "postgresql://obs:***@db/e2i?password=***"),
        (
            "postgresql://obs:p%40ss@[::1]/e2i?sslmode=require",
            "postgresql://obs:***@[::1]/e2i?sslmode=require",
        ),
        ("host=db password=s3cret dbname=e2i", "host=db password=*** dbname=e2i"),
    ],
)
def test_mask_url__with_or_without_password__password_never_shown(url: str, shown: str):
    assert mask_url(url) == shown


def test_describe_store__postgres_url__masked():
    config = load_config(env={"E2I_OBS_DATABASE_URL": "postgresql://u:pw@h/db"})

    assert describe_store(config) == "postgresql://u:***@h/db"
