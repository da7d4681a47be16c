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
from typing import Any

from pydantic_core import to_json

from src.agents.ml_foundation.observability_connector.models import (
    LatencyStats,
    ObservabilitySpan,
    storable,
)

__all__ = [
    "SPAN_COLUMNS",
    "STATS_COLUMNS",
    "format_utc",
    "parse_utc",
    "span_from_row",
    "span_to_json_row",
    "span_to_postgres_row",
    "span_to_sqlite_row",
    "stats_from_row",
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
)
"""Stored span columns in row order (`created_at` is set by the database and not read)."""

STATS_COLUMNS: tuple[str, ...] = tuple(LatencyStats.model_fields)
"""Columns of a statistics row, in the order the SQL of every backend returns them."""

_TIME_COLUMNS = frozenset({"start_time", "end_time"})
_JSON_COLUMNS = frozenset({"attributes", "events"})


def format_utc(value: datetime) -> str:
    """Fixed-width UTC text, e.g. `2026-01-02T03:04:05.000006+00:00` (sorts as time sorts)."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


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


def _span_values(span: ObservabilitySpan) -> dict[str, Any]:
    # NUL and lone surrogates become U+FFFD (PostgreSQL and UTF-8 reject them): `storable()`.
    values = {name: _storable_scalar(getattr(span, name)) for name in SPAN_COLUMNS}
    values["span_kind"] = span.span_kind.value
    values["status"] = span.status.value
    values["attributes"] = _storable_json(span.attributes)
    values["events"] = _storable_json([event.model_dump(mode="json") for event in span.events])
    return values


def span_to_sqlite_row(span: ObservabilitySpan) -> tuple[Any, ...]:
    values = _span_values(span)
    values["id"] = str(span.id)
    for name in _TIME_COLUMNS:
        if values[name] is not None:
            values[name] = format_utc(values[name])
    return tuple(values[name] for name in SPAN_COLUMNS)


def span_to_postgres_row(span: ObservabilitySpan) -> tuple[Any, ...]:
    values = _span_values(span)
    for name in _TIME_COLUMNS:
        if values[name] is not None:
            values[name] = values[name].astimezone(UTC)
    return tuple(values[name] for name in SPAN_COLUMNS)


def span_to_json_row(span: ObservabilitySpan) -> dict[str, Any]:
    """The span as one JSON object for PostgREST (Supabase): jsonb columns as JSON values."""
    values = _span_values(span)
    values["id"] = str(span.id)
    for name in _TIME_COLUMNS:
        if values[name] is not None:
            values[name] = format_utc(values[name])
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


def stats_from_row(row: Sequence[Any]) -> LatencyStats:
    return LatencyStats.model_validate(dict(zip(STATS_COLUMNS, row, strict=True)))
