"""SQL of the SQLite latency sketches: the table, the upsert run with each insert, the window
read, rebuild, retention and the conversion from the row-per-bucket table (migration 4). Same
columns and bucket formula as PostgreSQL's `ml_observability_rollup_sketches`
(`database/ml/mlops_tables.sql`); see `rollups.py` and `sketch.py` for why.

The packed counts are built and added by Python functions on the connection
(`sketch.register`: the aggregate `ml_sketch(bucket, count)` and `ml_sketch_add`), once per
upserted row: a batch touches a few rows per agent, not a row per latency bucket.
"""

from __future__ import annotations

import sqlite3

from src.repositories import sketch
from src.repositories.rollups import BOUND_NAMES, HOUR, LOG_GAMMA, MINUTE, SIX_HOURS, TEN_MINUTES
from src.repositories.span_store import TABLE_NAME

__all__ = [
    "CONVERT_BUCKETS",
    "CREATE_SKETCHES",
    "DELETE_OLD_SKETCHES",
    "OLD_BUCKETS_TABLE",
    "ROLLUP_WINDOW",
    "SKETCHES_TABLE",
    "UPSERT_ROWS",
    "add_sketches",
    "register",
]

SKETCHES_TABLE = "ml_observability_rollup_sketches"
OLD_BUCKETS_TABLE = "ml_observability_rollup_buckets"
"""Migration 3's table (a row per slot, agent and bucket); migration 4 converts and drops it."""

register = sketch.register

CREATE_SKETCHES = f"""
CREATE TABLE IF NOT EXISTS {SKETCHES_TABLE} (
    period_s        INTEGER NOT NULL CHECK (period_s IN ({MINUTE}, {TEN_MINUTES}, {HOUR},
                                                         {SIX_HOURS})),
    slot            TEXT NOT NULL,
    agent_name      TEXT NOT NULL,
    agent_tier      INTEGER,
    span_count      INTEGER NOT NULL DEFAULT 0,
    error_count     INTEGER NOT NULL DEFAULT 0,
    completed_count INTEGER NOT NULL DEFAULT 0,
    duration_count  INTEGER NOT NULL DEFAULT 0,
    duration_sum    REAL NOT NULL DEFAULT 0,
    duration_max    REAL,
    llm_calls       INTEGER NOT NULL DEFAULT 0,
    input_tokens    INTEGER NOT NULL DEFAULT 0,
    output_tokens   INTEGER NOT NULL DEFAULT 0,
    total_tokens    INTEGER NOT NULL DEFAULT 0,
    zero_count      INTEGER NOT NULL DEFAULT 0,
    low             INTEGER,
    high            INTEGER,
    packed          BLOB,
    PRIMARY KEY (period_s, slot, agent_name)
) WITHOUT ROWID
"""

_BUCKET = f"CASE WHEN {{d}} > 0 THEN CAST(ceil(ln({{d}}) / {LOG_GAMMA!r}) AS INTEGER) END"
_LLM = "CASE WHEN {k} = 'llm' THEN {c} END"
_SLOTS = {  # from `minute`, the span's 'YYYY-MM-DDTHH:MM'
    MINUTE: "minute || ':00.000000+00:00'",
    TEN_MINUTES: "substr(minute, 1, 15) || '0:00.000000+00:00'",
    HOUR: "substr(minute, 1, 13) || ':00:00.000000+00:00'",
    SIX_HOURS: (
        "substr(minute, 1, 11) || printf('%02d', CAST(substr(minute, 12, 2) AS INTEGER) / 6 * 6)"
        " || ':00:00.000000+00:00'"
    ),
}
_SUMMED = (
    *("span_count", "error_count", "completed_count", "duration_count", "duration_sum"),
    *("llm_calls", "input_tokens", "output_tokens", "total_tokens", "zero_count"),
)


def _greatest(column: str) -> str:
    """PostgreSQL's greatest(a, b) (NULLs ignored); SQLite's MAX(a, b) is NULL with a NULL."""
    return f"MAX(COALESCE({column}, excluded.{column}), COALESCE(excluded.{column}, {column}))"


def _least(column: str) -> str:
    return f"MIN(COALESCE({column}, excluded.{column}), COALESCE(excluded.{column}, {column}))"


def _upsert(groups: str, periods: dict[int, str]) -> str:
    """Add `groups` (a CTE body of rows per minute, agent and bucket: the totals columns,
    `bucket`, `counted`, `period_s` of its source or 0) to the sketches of each of `periods`
    (period -> the source period_s it takes: 0 for spans)."""
    tiers = " UNION ALL ".join(
        f"SELECT {period}, {_SLOTS[period]}, agent_name, MAX(agent_tier), "
        + ", ".join(f"SUM({c})" for c in _SUMMED[:5])
        + ", MAX(duration_max), "
        + ", ".join(f"SUM({c})" for c in _SUMMED[5:])
        + f", MIN(bucket), MAX(bucket), ml_sketch(bucket, counted) FROM g WHERE source = {source}"
        " GROUP BY 2, 3"
        for period, source in periods.items()
    )
    return f"""
WITH g AS MATERIALIZED ({groups})
{_INSERT}
SELECT * FROM ({tiers}) WHERE true
{_ON_CONFLICT}"""


_INSERT = f"""INSERT INTO {SKETCHES_TABLE} (
    period_s, slot, agent_name, agent_tier, {", ".join(_SUMMED[:5])}, duration_max,
    {", ".join(_SUMMED[5:])}, low, high, packed)"""
_ON_CONFLICT = f"""ON CONFLICT (period_s, slot, agent_name) DO UPDATE SET
    agent_tier = {_greatest("agent_tier")}, duration_max = {_greatest("duration_max")},
    {", ".join(f"{c} = {c} + excluded.{c}" for c in _SUMMED)},
    packed = ml_sketch_add(low, high, packed, excluded.low, excluded.high, excluded.packed),
    low = {_least("low")}, high = {_greatest("high")}
"""
UPSERT_ROWS = (_INSERT, _ON_CONFLICT)
"""Sketch rows (table order: period_s, slot, agent_name, agent_tier, the summed columns with
duration_max after duration_sum, low, high, packed) added like `ADD_NEW`'s rows: the head and
tail of a multi-row `VALUES` statement (`_sqlite_values.execute_rows`, from
`_sqlite_batch_sketches.py`)."""


def _span_groups(where: str) -> str:
    tokens = ", ".join(
        f"COALESCE(SUM({_LLM.format(k='s.span_kind', c='s.' + c)}), 0) AS {c}"
        for c in ("input_tokens", "output_tokens", "total_tokens")
    )
    return f"""
    SELECT 0 AS source, substr(s.start_time, 1, 16) AS minute, s.agent_name AS agent_name,
           {_BUCKET.format(d="s.duration_ms")} AS bucket, MAX(s.agent_tier) AS agent_tier,
           COUNT(*) AS span_count, SUM(s.status = 'error') AS error_count,
           SUM(s.status = 'completed') AS completed_count,
           COUNT(s.duration_ms) AS duration_count,
           COALESCE(SUM(s.duration_ms), 0) AS duration_sum, MAX(s.duration_ms) AS duration_max,
           SUM(s.span_kind = 'llm') AS llm_calls, {tokens},
           COUNT(CASE WHEN s.duration_ms <= 0 THEN 1 END) AS zero_count,
           COUNT(CASE WHEN s.duration_ms > 0 THEN 1 END) AS counted
    FROM {TABLE_NAME} AS s WHERE {where}
    GROUP BY 2, 3, 4"""


_FROM_SPANS = dict.fromkeys((MINUTE, TEN_MINUTES, HOUR, SIX_HOURS), 0)
ADD_NEW = _upsert(_span_groups("s.rowid > ?"), _FROM_SPANS)
"""Parameter: the largest rowid before this transaction's insert."""
ADD_SINCE = _upsert(_span_groups("s.start_time >= ?"), _FROM_SPANS)
"""Parameter: the first slot to recompute (UTC text)."""


def add_sketches(conn: sqlite3.Connection, since: str | None) -> None:
    """Recompute the sketches from `since`'s 6-hour slot on (the largest sketch slot; None:
    nothing to do), inside the caller's write transaction."""
    if since is None:
        return
    hour = int(since[11:13]) // 6 * 6
    six = f"{since[:11]}{hour:02d}:00:00.000000+00:00"
    conn.execute(f"DELETE FROM {SKETCHES_TABLE} WHERE slot >= ?", (six,))
    conn.execute(ADD_SINCE, (six,))


_OLD_TOTALS = f"""
    SELECT period_s AS source, substr(slot, 1, 16) AS minute, agent_name, NULL AS bucket,
           agent_tier, span_count, error_count, completed_count, duration_count, duration_sum,
           duration_max, llm_calls, input_tokens, output_tokens, total_tokens,
           0 AS zero_count, 0 AS counted
    FROM ml_observability_rollups
    UNION ALL
    SELECT period_s, substr(slot, 1, 16), agent_name, NULLIF(bucket, {sketch.ZERO_BUCKET}),
           NULL, 0, 0, 0, 0, 0, NULL, 0, 0, 0, 0,
           CASE WHEN bucket = {sketch.ZERO_BUCKET} THEN count ELSE 0 END,
           CASE WHEN bucket = {sketch.ZERO_BUCKET} THEN 0 ELSE count END
    FROM {OLD_BUCKETS_TABLE}"""
CONVERT_BUCKETS = _upsert(
    _OLD_TOTALS, {MINUTE: MINUTE, TEN_MINUTES: MINUTE, HOUR: HOUR, SIX_HOURS: HOUR}
)
"""Migration 4: the old minute rows become minute and 10-minute sketches, the hour rows hour
and 6-hour ones (the rollups may outlive the spans, so they are converted, not recomputed)."""

DELETE_OLD_SKETCHES = (
    f"DELETE FROM {SKETCHES_TABLE} WHERE slot < ?1 OR (period_s < {HOUR} AND slot < ?2)"
)
"""Parameters: the cutoff of every slot, the cutoff of minute and 10-minute slots."""

_AGENT = "(:agent IS NULL OR agent_name = :agent)"
_RANGES = (
    (MINUTE, "minute_from", "ten_from"),
    (TEN_MINUTES, "ten_from", "hour_from"),
    (HOUR, "hour_from", "six_from"),
    (SIX_HOURS, "six_from", "six_to"),
    (HOUR, "six_to", "hour_to"),
    (TEN_MINUTES, "hour_to", "ten_to"),
    (MINUTE, "ten_to", "minute_to"),
)
assert {name for _, low, high in _RANGES for name in (low, high)} <= set(BOUND_NAMES)
_FRAGMENT = (
    "agent_name, agent_tier, span_count, error_count, completed_count, duration_count, "
    "duration_sum, duration_max, llm_calls, input_tokens, output_tokens, total_tokens, "
    "zero_count, low, high, packed"
)
_EDGE_TOKENS = ", ".join(
    f"COALESCE(SUM({_LLM.format(k='span_kind', c=c)}), 0)"
    for c in ("input_tokens", "output_tokens", "total_tokens")
)

ROLLUP_WINDOW = (
    " UNION ALL ".join(
        f"SELECT {_FRAGMENT} FROM {SKETCHES_TABLE} WHERE period_s = {period} "
        f"AND slot >= :{low} AND slot < :{high} AND {_AGENT}"
        for period, low, high in _RANGES
    )
    + f"""
UNION ALL
SELECT agent_name, MAX(agent_tier), COUNT(*), SUM(status = 'error'), SUM(status = 'completed'),
       COUNT(duration_ms), COALESCE(SUM(duration_ms), 0), MAX(duration_ms),
       SUM(span_kind = 'llm'), {_EDGE_TOKENS},
       COUNT(CASE WHEN duration_ms <= 0 THEN 1 END), bucket, bucket,
       CASE WHEN bucket IS NOT NULL THEN COUNT(*) END
FROM (
    SELECT agent_name, agent_tier, status, span_kind, duration_ms, input_tokens, output_tokens,
           total_tokens, {_BUCKET.format(d="duration_ms")} AS bucket
    FROM {TABLE_NAME}
    WHERE ((start_time >= :start AND start_time < :minute_from)
           OR (start_time >= :minute_to AND start_time <= :end)) AND {_AGENT}
)
GROUP BY agent_name, bucket
"""
)
"""The window's sketch rows and raw edge groups (`rollups.FRAGMENT_COLUMNS`); params: the
bounds (`rollups.BOUND_NAMES`) and `agent`. An edge group's `packed` is its plain count: packing
it with `ml_sketch` (a Python aggregate, ~10 us a group) was half of the edge read at 1M spans."""
