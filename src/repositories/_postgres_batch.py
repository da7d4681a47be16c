"""Writing a batch of spans to PostgreSQL: `COPY` straight into the table, idempotently.

Why this shape (measured with `benchmarks/ingest_only.py` and side by side on the test
server, 2026-12-01): the per-row cost on the server dominates, not the round trips. A plain
`COPY` into the span table is the raw floor; `INSERT ... SELECT FROM unnest($1::text[], ...)`
costs the server about twice as much per row (it parses one array literal per column), and
the former staging table (`COPY` into a temp table, then `INSERT ... SELECT ... ON CONFLICT`)
paid the rows twice plus a truncation of the temp table at every commit (`ON COMMIT DELETE
ROWS`, ~5 ms a batch on a loaded machine).

So a batch is first `COPY`'d straight into the table in one transaction. New spans (the
common case: every span the agent just finished) all go in at the floor's speed. Replays stay
idempotent because the table's unique keys refuse a span already stored: such a batch fails
with SQLSTATE 23505 (unique_violation), its transaction is rolled back, and the batch is
written again by `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING RETURNING id`,
which stores only the new spans. Any other refusal (a check constraint, 23514; a bad value,
class 22) is raised as before and classified by `_postgres_pools` as permanent.

Either way `write_batch` knows which rows went in (`StoredRows`): all of them after a `COPY`,
the returned ids after the fallback. Writes that must commit together with the spans (e.g.
rollups of the stored rows) belong inside `_in_one_transaction`, after the spans.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import AsyncConnection

from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan
from src.repositories._rows import SPAN_COLUMNS, span_to_postgres_row
from src.repositories.span_store import TABLE_NAME

__all__ = ["write_batch"]

Connection = AsyncConnection[Any]
Row = tuple[Any, ...]

_TABLE = f"public.{TABLE_NAME}"
_COLUMNS = ", ".join(SPAN_COLUMNS)

# Each column's PostgreSQL type (database/ml/mlops_tables.sql), for the fallback's typed arrays.
_COLUMN_TYPES: dict[str, str] = {
    "id": "uuid",
    "agent_tier": "smallint",
    "start_time": "timestamptz",
    "end_time": "timestamptz",
    "duration_ms": "double precision",
    "attributes": "jsonb",
    "input_tokens": "integer",
    "output_tokens": "integer",
    "total_tokens": "integer",
    "events": "jsonb",
    "cache_read_tokens": "integer",
    "cache_write_tokens": "integer",
    "reasoning_tokens": "integer",
    "cost_usd": "numeric",
}
_ID = SPAN_COLUMNS.index("id")

_COPY = f"COPY {_TABLE} ({_COLUMNS}) FROM STDIN"
_INSERT_NEW = (
    f"INSERT INTO {_TABLE} ({_COLUMNS}) SELECT * FROM unnest("
    + ", ".join(f"%s::{_COLUMN_TYPES.get(column, 'text')}[]" for column in SPAN_COLUMNS)
    + ") ON CONFLICT DO NOTHING RETURNING id"
)


async def write_batch(conn: Connection, spans: Sequence[ObservabilitySpan]) -> int:
    """Store `spans` in one transaction; the number of new spans.

    `COPY` first; only a batch refused for a span already stored (a replay, or the same span
    twice in one batch) is written again, skipping the stored ones."""
    try:
        return await _in_one_transaction(conn, spans, copy=True)
    except psycopg.errors.UniqueViolation:
        return await _in_one_transaction(conn, spans, copy=False)


async def _in_one_transaction(
    conn: Connection, spans: Sequence[ObservabilitySpan], *, copy: bool
) -> int:
    async with conn.transaction():
        stored = await _copy_rows(conn, spans) if copy else await _insert_new_rows(conn, spans)
        # Writes that must commit with the spans (derived from `stored`) go here.
        return len(stored)


async def _copy_rows(conn: Connection, spans: Sequence[ObservabilitySpan]) -> Sequence[Row]:
    """All rows, `COPY`'d; a unique violation aborts the whole statement (nothing stored).

    Each span is converted as it is written: psycopg sends the rows every ~32 KiB, so the
    server stores the first rows while the client converts the next ones (converted first,
    the whole batch's conversion, ~6-8 us a span, was time the server sat idle)."""
    rows: list[Row] = []
    async with conn.cursor() as cursor, cursor.copy(_COPY) as copy:
        for span in spans:
            row = span_to_postgres_row(span)
            rows.append(row)
            await copy.write_row(row)
    return rows


async def _insert_new_rows(conn: Connection, spans: Sequence[ObservabilitySpan]) -> list[Row]:
    """The rows not stored yet, inserted with one statement; those rows, in batch order."""
    rows = [span_to_postgres_row(span) for span in spans]
    columns = [list(column) for column in zip(*rows, strict=True)]
    cursor = await conn.execute(_INSERT_NEW, columns)
    new_ids = {row[0] for row in await cursor.fetchall()}
    stored = []
    for row in rows:
        if row[_ID] in new_ids:
            new_ids.discard(row[_ID])  # the same span twice in a batch went in once
            stored.append(row)
    return stored
