"""Span <-> row mapping shared by the storage backends.

Every backend stores the same columns under the same names (`SPAN_COLUMNS`), so plain SQL can
read any of them. Differences are only in encoding: SQLite keeps timestamps as fixed-width
UTC ISO-8601 text (so text order is time order) and JSON as text; PostgreSQL gets timezone-aware
datetimes and JSON text cast to jsonb. Reading back always yields UTC datetimes and the same
`ObservabilitySpan` (model equality) that was written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

from pydantic_core import to_json

from src.agents.ml_foundation.observability_connector.cost_models import (
    CostBreakdownRow,
    CostSummary,
)
from src.agents.ml_foundation.observability_connector.models import (
    LatencyStats,
    ObservabilitySpan,
    TraceSummary,
    WindowSummary,
    storable,
)

__all__ = [
    "BREAKDOWN_COLUMNS",
    "COST_COLUMNS",
    "SPAN_COLUMNS",
    "STATS_COLUMNS",
    "SUMMARY_COLUMNS",
    "WINDOW_SUMMARY_COLUMNS",
    "breakdown_from_row",
    "cost_from_row",
    "format_utc",
    "parse_utc",
    "span_from_row",
    "span_to_json_row",
    "span_to_postgres_row",
    "span_to_sqlite_row",
    "stats_from_row",
    "summary_from_row",
    "window_summary_from_row",
]

SPAN_COLUMNS: tuple[str, ...] = (
    "id",
    "span_id",
    "trace_id",
    "parent_span_id",
    "operation_name",
    "agent_name",
    "agent_tier",
    "span_kind",
    "start_time",
    "end_time",
    "duration_ms",
    "status",
    "error_type",
    "error_message",
    "attributes",
    "llm_model",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "events",
    "thread_id",
    "tracestate",
    "provider",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",
)
"""Stored span columns in row order (`created_at` is set by the database and not read)."""

STATS_COLUMNS: tuple[str, ...] = (
    "agent_name",
    "agent_tier",
    "count",
    "error_count",
    "error_rate",
    "avg_ms",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "llm_calls",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "spans_per_minute",
)
"""Columns of a latency statistics row, in the order the SQL of every backend returns them
(the cost fields of `LatencyStats` come from the cost statistics, `COST_COLUMNS`)."""

COST_COLUMNS: tuple[str, ...] = (
    "agent_name",
    "cost_usd",
    "priced_llm_calls",
    "unpriced_llm_calls",
    "traces_with_cost",
    "cost_per_trace_p50",
    "cost_per_trace_p95",
    "cost_by_model",
)
"""Columns of a cost statistics row (`ml_agent_cost_stats`); agent_name NULL is the window."""

BREAKDOWN_COLUMNS: tuple[str, ...] = tuple(CostBreakdownRow.model_fields)
"""Columns of a cost breakdown row (`ml_cost_breakdown`), in `CostBreakdownRow` order."""

WINDOW_SUMMARY_COLUMNS: tuple[str, ...] = tuple(
    f for f in WindowSummary.model_fields if f != "time_window"
)
"""Columns of the window summary row (`ml_window_summary`), in order."""

SUMMARY_COLUMNS: tuple[str, ...] = tuple(
    name for name in TraceSummary.model_fields if name != "trace_id"
)
"""Columns of a trace-summary row, in the order the SQL of every backend returns them."""

_TIME_COLUMNS = frozenset({"start_time", "end_time"})
_JSON_COLUMNS = frozenset({"attributes", "events"})


def format_utc(value: datetime) -> str:
    """Fixed-width UTC text, e.g. `2026-01-02T03:04:05.000006+00:00` (sorts as time sorts)."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # Plain isoformat() is cheaper, but drops the fraction when it is zero (not fixed width).
    return value.isoformat() if value.microsecond else value.isoformat(timespec="microseconds")


def parse_utc(value: str | datetime) -> datetime:
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    if parsed.tzinfo is None:  # written by someone else's plain SQL without an offset
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _json_text(value: Any) -> str:
    # fallback=str: an attribute value JSON cannot hold is stored as its text, not rejected.
    return to_json(value, fallback=str).decode("utf-8")


def _storable_scalar(value: Any) -> Any:
    # Fast path: plain ASCII text without NUL (nearly every value) is returned as it is.
    if type(value) is not str or (value.isascii() and "\x00" not in value):
        return value
    return storable(value)


def _storable_json(value: Any) -> str:
    """JSON text storable everywhere: `storable()` is applied only when the text needs it
    (a lone surrogate makes encoding fail; a NUL shows as the escape \\u0000)."""
    try:
        text = _json_text(value)
    except ValueError:  # PydanticSerializationError: a lone surrogate
        return _json_text(storable(value))
    return _json_text(storable(value)) if "\\u0000" in text else text


# Row conversion runs once per stored span (on the sink's thread, for every span the worker
# writes), so it avoids per-column Python work: the span's field dict is read once by one
# C-level itemgetter per group of columns, the rare value that needs `storable()` is found by
# one check over all the text, and the row is built in one tuple display, no helper calls.
_PLAIN_COLUMNS = (
    "span_id",
    "trace_id",
    "parent_span_id",
    "operation_name",
    "agent_name",
    "agent_tier",
    "duration_ms",
    "error_type",
    "error_message",
    "llm_model",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "thread_id",
    "tracestate",
    "provider",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
_TEXT_COLUMNS = (
    "operation_name",
    "agent_name",
    "error_type",
    "error_message",
    "llm_model",
    "thread_id",
    "tracestate",
    "span_id",
    "trace_id",
    "parent_span_id",
    "provider",
)
_plain_values = itemgetter(*_PLAIN_COLUMNS)
_text_values = itemgetter(*_TEXT_COLUMNS)
_EMPTY_EVENTS = "[]"
_EMPTY_ATTRIBUTES = "{}"


def _plain(fields: dict[str, Any]) -> tuple[Any, ...]:
    """The plain columns in `_PLAIN_COLUMNS` order from a span's field dict, storable (NUL and
    lone surrogates become U+FFFD, which PostgreSQL and UTF-8 need: `storable()`)."""
    values: tuple[Any, ...] = _plain_values(fields)
    try:
        text = "".join(filter(None, _text_values(fields)))
        if text.isascii() and "\x00" not in text:
            return values
    except TypeError:  # a non-text value (a model_construct()ed span): check one by one
        pass
    return tuple(_storable_scalar(value) for value in values)


def _row(span: ObservabilitySpan, id_: Any, start: Any, end: Any, cost: Any) -> tuple[Any, ...]:
    """One row in `SPAN_COLUMNS` order, from backend-encoded id, times and cost."""
    fields = span.__dict__
    (
        span_id,
        trace_id,
        parent_span_id,
        operation_name,
        agent_name,
        agent_tier,
        duration_ms,
        error_type,
        error_message,
        llm_model,
        input_tokens,
        output_tokens,
        total_tokens,
        thread_id,
        tracestate,
        provider,
        cache_read_tokens,
        cache_write_tokens,
        reasoning_tokens,
    ) = _plain(fields)
    attributes, events = fields["attributes"], fields["events"]
    return (
        id_,
        span_id,
        trace_id,
        parent_span_id,
        operation_name,
        agent_name,
        agent_tier,
        fields["span_kind"].value,
        start,
        end,
        duration_ms,
        fields["status"].value,
        error_type,
        error_message,
        _storable_json(attributes) if attributes else _EMPTY_ATTRIBUTES,
        llm_model,
        input_tokens,
        output_tokens,
        total_tokens,
        _storable_json([e.model_dump(mode="json") for e in events]) if events else _EMPTY_EVENTS,
        thread_id,
        tracestate,
        provider,
        cache_read_tokens,
        cache_write_tokens,
        reasoning_tokens,
        cost,
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


def span_to_sqlite_row(span: ObservabilitySpan) -> tuple[Any, ...]:
    fields = span.__dict__
    end = fields["end_time"]
    return _row(
        span,
        str(fields["id"]),
        format_utc(fields["start_time"]),
        None if end is None else format_utc(end),
        fields["cost_usd"],
    )


def _exact_decimal(value: float | None) -> Decimal | None:
    """The float's shortest repr as a Decimal: PostgreSQL's float8 -> numeric cast would keep
    only 15 significant digits, this keeps the value that reads back as the same float."""
    return None if value is None else Decimal(repr(value))


def span_to_postgres_row(span: ObservabilitySpan) -> tuple[Any, ...]:
    return _row(
        span, span.id, _utc(span.start_time), _utc(span.end_time), _exact_decimal(span.cost_usd)
    )


def span_to_json_row(span: ObservabilitySpan) -> dict[str, Any]:
    """The span as one JSON object for PostgREST (Supabase): jsonb columns as JSON values."""
    values = dict(zip(SPAN_COLUMNS, span_to_sqlite_row(span), strict=True))
    for name in _JSON_COLUMNS:
        values[name] = json.loads(values[name])
    return values


def span_from_row(row: Sequence[Any]) -> ObservabilitySpan:
    """Rebuild a span from a row in `SPAN_COLUMNS` order (either backend's encoding)."""
    values = dict(zip(SPAN_COLUMNS, row, strict=True))
    for name in _TIME_COLUMNS:
        if values[name] is not None:
            values[name] = parse_utc(values[name])
    for name in _JSON_COLUMNS:
        if isinstance(values[name], str | bytes):
            values[name] = json.loads(values[name])
    return ObservabilitySpan.model_validate(values)


def stats_from_row(row: Sequence[Any], time_window: str | None = None) -> LatencyStats:
    values = dict(zip(STATS_COLUMNS, row, strict=True))
    return LatencyStats.model_validate({**values, "time_window": time_window})


def window_summary_from_row(row: Sequence[Any], time_window: str) -> WindowSummary:
    values = dict(zip(WINDOW_SUMMARY_COLUMNS, row, strict=True))
    for column in ("successful_spans", "failed_spans"):
        values[column] = values[column] or 0  # SQLite's SUM over no rows is NULL
    return WindowSummary.model_validate({**values, "time_window": time_window})


def summary_from_row(trace_id: str, row: Sequence[Any]) -> TraceSummary:
    """A trace summary from a row in `SUMMARY_COLUMNS` order (either backend's encoding)."""
    values: dict[str, Any] = dict(zip(SUMMARY_COLUMNS, row, strict=True))
    for name in _TIME_COLUMNS:
        if values[name] is not None:
            values[name] = parse_utc(values[name])
    return TraceSummary(trace_id=trace_id, **values)


def _usd(value: Any) -> float | None:
    return None if value is None else float(value)  # numeric arrives as Decimal or text


def cost_from_row(row: Sequence[Any]) -> CostSummary:
    """A cost statistics row (`COST_COLUMNS` order; by-model costs as JSON text or a dict)."""
    values = dict(zip(COST_COLUMNS, row, strict=True))
    by_model = values["cost_by_model"]
    if isinstance(by_model, str | bytes):
        by_model = json.loads(by_model)
    values["cost_by_model"] = {str(k): float(v) for k, v in sorted((by_model or {}).items())}
    for name in ("cost_usd", "cost_per_trace_p50", "cost_per_trace_p95"):
        values[name] = _usd(values[name])
    values["cost_usd"] = values["cost_usd"] or 0.0
    return CostSummary.model_validate(values)


def breakdown_from_row(row: Sequence[Any]) -> CostBreakdownRow:
    values = dict(zip(BREAKDOWN_COLUMNS, row, strict=True))
    values["key"] = str(values["key"])  # a day arrives as a date on PostgreSQL
    values["cost_usd"] = _usd(values["cost_usd"]) or 0.0
    return CostBreakdownRow.model_validate(values)
