"""SQL of the SQLite rollups: tables, the upserts run with each insert, rebuild and
retention (the latency sketches and the window read: `_sqlite_sketches.py`). Same tables,
columns and bucket formula as the PostgreSQL schema (`database/ml/mlops_tables.sql`, section
"Rollups"); see `rollups.py` for why.

Slots are fixed-width UTC text like the span times (`2026-01-02T03:04:00.000000+00:00`), cut
from `start_time` with `substr`, so slot and span comparisons stay text comparisons.

Which spans an insert really added: the span table is a rowid table and an insert runs under
`BEGIN IMMEDIATE` (no other writer), so the new rows are exactly those with a rowid above the
largest one before the insert (SQLite gives a new row max(rowid) + 1). A replayed span is
skipped by `ON CONFLICT DO NOTHING`, gets no rowid, and never counts twice.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from typing import Any

from src.repositories import _sqlite_batch_sketches as batch_sketches
from src.repositories import _sqlite_batch_totals as batch_totals
from src.repositories import _sqlite_batch_trace_costs as batch_trace_costs
from src.repositories import _sqlite_sketches as sketches
from src.repositories import _sqlite_trace_costs as trace_costs
from src.repositories._sqlite_values import execute_rows
from src.repositories.rollups import HOUR, LOG_GAMMA, MINUTE, ZERO_BUCKET
from src.repositories.span_store import TABLE_NAME

__all__ = [
    "CREATE_ROLLUPS",
    "DELETE_OLD_ROLLUPS",
    "MAX_ROWID",
    "ROLLUPS_TABLE",
    "add_new_rows",
    "ensure_math",
    "rebuild",
]

ROLLUPS_TABLE = "ml_observability_rollups"

CREATE_ROLLUPS = (
    f"""
CREATE TABLE IF NOT EXISTS {ROLLUPS_TABLE} (
    period_s           INTEGER NOT NULL CHECK (period_s IN ({MINUTE}, {HOUR})),
    slot               TEXT NOT NULL,
    agent_name         TEXT NOT NULL,
    llm_model          TEXT NOT NULL DEFAULT '',
    provider           TEXT NOT NULL DEFAULT '',
    agent_tier         INTEGER,
    span_count         INTEGER NOT NULL DEFAULT 0,
    error_count        INTEGER NOT NULL DEFAULT 0,
    completed_count    INTEGER NOT NULL DEFAULT 0,
    duration_count     INTEGER NOT NULL DEFAULT 0,
    duration_sum       REAL NOT NULL DEFAULT 0,
    duration_max       REAL,
    llm_calls          INTEGER NOT NULL DEFAULT 0,
    input_tokens       INTEGER NOT NULL DEFAULT 0,
    output_tokens      INTEGER NOT NULL DEFAULT 0,
    total_tokens       INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
    cost_usd           REAL NOT NULL DEFAULT 0,
    priced_calls       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (period_s, slot, agent_name, llm_model, provider)
) WITHOUT ROWID
""",
    f"""
CREATE TABLE IF NOT EXISTS {sketches.OLD_BUCKETS_TABLE} (
    period_s   INTEGER NOT NULL CHECK (period_s IN ({MINUTE}, {HOUR})),
    slot       TEXT NOT NULL,
    agent_name TEXT NOT NULL,
    bucket     INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (period_s, slot, agent_name, bucket)
) WITHOUT ROWID
""",
)
"""Migration 3 (issue 15) as it was; migration 4 replaces the bucket table by sketches."""

MAX_ROWID = f"SELECT COALESCE(MAX(rowid), 0) FROM {TABLE_NAME}"

_MINUTE_TAIL = "':00.000000+00:00'"
_HOUR_SLOT = "substr(minute, 1, 13) || ':00:00.000000+00:00'"
_BUCKET = (
    f"CASE WHEN {{d}} > 0 THEN CAST(ceil(ln({{d}}) / {LOG_GAMMA!r}) AS INTEGER) "
    f"ELSE {ZERO_BUCKET} END"
)
_LLM = "CASE WHEN s.span_kind = 'llm' THEN {} END"


def _greatest(column: str) -> str:
    """PostgreSQL's greatest(a, b) (NULLs ignored); SQLite's MAX(a, b) is NULL with a NULL."""
    return f"MAX(COALESCE({column}, excluded.{column}), COALESCE(excluded.{column}, {column}))"


_TOKENS = tuple(
    f"{kind}_tokens"
    for kind in ("input", "output", "total", "cache_read", "cache_write", "reasoning")
)
"""Summed over llm spans only."""
_SUMMED = (
    *("span_count", "error_count", "completed_count", "duration_count", "duration_sum"),
    *("llm_calls", *_TOKENS, "cost_usd", "priced_calls"),
)
_TOTAL_COLUMNS = ("agent_tier", *_SUMMED[:5], "duration_max", *_SUMMED[5:])
"""The aggregate columns in table order."""
_MAXED = frozenset({"agent_tier", "duration_max"})


_ADD_TOTALS = (
    f"INSERT INTO {ROLLUPS_TABLE} (period_s, slot, agent_name, llm_model, provider, "
    f"{', '.join(_TOTAL_COLUMNS)})",
    f"""ON CONFLICT (period_s, slot, agent_name, llm_model, provider) DO UPDATE SET
    agent_tier = {_greatest("agent_tier")}, duration_max = {_greatest("duration_max")},
    {", ".join(f"{c} = {c} + excluded.{c}" for c in _SUMMED)}
""",
)
"""Head and tail of a statement adding rollup rows (period_s, slot, agent_name, llm_model,
provider, the aggregates in `_TOTAL_COLUMNS` order) to the stored ones."""


def _add_totals(where: str) -> str:
    """One pass over the spans groups them by minute (a materialized CTE); the minute rows
    are written as they are and, grouped again, as the hour rows: the spans are read and
    grouped once, not once per period."""
    tokens = ", ".join(f"COALESCE(SUM({_LLM.format('s.' + c)}), 0) AS {c}" for c in _TOKENS)
    columns = ", ".join(_TOTAL_COLUMNS)
    hourly = ", ".join(f"{'MAX' if c in _MAXED else 'SUM'}({c})" for c in _TOTAL_COLUMNS)
    return f"""
WITH m AS MATERIALIZED (
    SELECT substr(s.start_time, 1, 16) AS minute, s.agent_name AS agent_name,
           COALESCE(s.llm_model, '') AS llm_model, COALESCE(s.provider, '') AS provider,
           MAX(s.agent_tier) AS agent_tier, COUNT(*) AS span_count,
           SUM(s.status = 'error') AS error_count, SUM(s.status = 'completed') AS completed_count,
           COUNT(s.duration_ms) AS duration_count,
           COALESCE(SUM(s.duration_ms), 0) AS duration_sum, MAX(s.duration_ms) AS duration_max,
           SUM(s.span_kind = 'llm') AS llm_calls, {tokens},
           COALESCE(SUM({_LLM.format("s.cost_usd")}), 0) AS cost_usd,
           COUNT({_LLM.format("s.cost_usd")}) AS priced_calls
    FROM {TABLE_NAME} AS s WHERE {where}
    GROUP BY 1, 2, 3, 4
)
{_ADD_TOTALS[0]}
SELECT * FROM (
    SELECT {MINUTE}, minute || {_MINUTE_TAIL}, agent_name, llm_model, provider, {columns}
    FROM m
    UNION ALL
    SELECT {HOUR}, {_HOUR_SLOT}, agent_name, llm_model, provider, {hourly}
    FROM m GROUP BY 2, 3, 4, 5
) WHERE true
{_ADD_TOTALS[1]}"""


_NEW_ROWS = "s.rowid > ?"
_ADD_NEW = (_add_totals(_NEW_ROWS), sketches.ADD_NEW)
_ADD_SINCE = _add_totals("s.start_time >= ?")


def add_new_rows(
    conn: sqlite3.Connection, rowid_before: int, rows: Sequence[Sequence[Any]] | None = None
) -> None:
    """Add the span rows with rowid > `rowid_before` (this transaction's) to the rollups and
    the trace costs. `rows`: those rows in insertion order, when the insert stored every row
    of the batch (the totals, latency sketches and trace costs are then computed from them in
    Python, same result)."""
    if rows is not None and batch_sketches.USABLE:
        insert, on_conflict = _ADD_TOTALS
        execute_rows(conn, insert, batch_totals.total_rows(rows), on_conflict)
        batch_sketches.add_batch(conn, rows)
        batch_trace_costs.add_batch(conn, rows)
    else:
        for statement in _ADD_NEW:
            conn.execute(statement, (rowid_before,))
        trace_costs.add_new_rows(conn, rowid_before)


def rebuild(conn: sqlite3.Connection, since: str | None) -> int:
    """Recompute the rollups of the spans from `since`'s hour on (None: the oldest span's;
    sketches: from that 6-hour slot on); older rollups stay. Runs inside the caller's write
    transaction; returns spans rolled up."""
    if since is None:
        (since,) = conn.execute(f"SELECT MIN(start_time) FROM {TABLE_NAME}").fetchone()
        if since is None:
            return 0
    hour = since[:13] + ":00:00.000000+00:00"
    conn.execute(f"DELETE FROM {ROLLUPS_TABLE} WHERE slot >= ?", (hour,))
    conn.execute(_ADD_SINCE, (hour,))
    sketches.add_sketches(conn, hour)
    (count,) = conn.execute(
        f"SELECT COUNT(*) FROM {TABLE_NAME} WHERE start_time >= ?", (hour,)
    ).fetchone()
    return int(count)


def ensure_math(conn: sqlite3.Connection) -> None:
    """SQLite builds without SQLITE_ENABLE_MATH_FUNCTIONS lack ln/ceil: supply Python's; and
    the sketch functions (Python everywhere)."""
    try:
        conn.execute("SELECT ln(2.0), ceil(0.5)")
    except sqlite3.OperationalError:
        conn.create_function("ln", 1, math.log, deterministic=True)
        conn.create_function("ceil", 1, math.ceil, deterministic=True)
    sketches.register(conn)


DELETE_OLD_ROLLUPS = (
    f"DELETE FROM {ROLLUPS_TABLE} WHERE slot < ?1 OR (period_s = 60 AND slot < ?2)",
    sketches.DELETE_OLD_SKETCHES,
    trace_costs.DELETE_OLD_SKETCHES,
)
"""Parameters: the cutoff of every slot, the cutoff of minute slots (UTC text)."""
