"""SQL of the SQLite backend: the append-only migration list and the queries.

The table mirrors `database/ml/mlops_tables.sql` (same table, column and index names), with
SQLite types: uuid/timestamps/JSON as TEXT (timestamps fixed-width UTC ISO-8601, so comparing
text compares time), REAL durations. Never edit a released migration; append a new one.

Percentiles are computed in SQL, per agent, with window functions: rank the durations
(ROW_NUMBER over PARTITION BY agent) and interpolate between the two closest ranks exactly as
`statistics.quantiles(data, n=100, method="inclusive")` does (integer position arithmetic),
which is PostgreSQL's `percentile_cont`. Only one row per agent leaves SQLite.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from src.repositories import _sqlite_rollups as rollups
from src.repositories import _sqlite_sketches as sketches
from src.repositories import _sqlite_trace_costs as trace_costs
from src.repositories._rows import SPAN_COLUMNS
from src.repositories._sqlite_values import execute_rows
from src.repositories.span_store import TABLE_NAME

__all__ = [
    "ADDED_COLUMNS",
    "COST_STATS",
    "COUNT_OLD",
    "DELETE_OLD_BATCH",
    "INSERT_SPAN",
    "LATENCY_STATS",
    "MIGRATIONS",
    "SELECT_BY_TRACE",
    "SELECT_BY_WINDOW",
    "TRACE_SUMMARY",
    "WINDOW_SUMMARY",
    "add_missing_columns",
    "cost_breakdown",
    "insert_spans",
]

_HEX16 = "length({c}) = 16 AND {c} NOT GLOB '*[^0-9a-f]*' AND {c} <> '0000000000000000'"
_HEX32 = f"length(trace_id) = 32 AND trace_id NOT GLOB '*[^0-9a-f]*' AND trace_id <> '{'0' * 32}'"

_CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE_NAME} (
    id              TEXT PRIMARY KEY NOT NULL,
    span_id         TEXT NOT NULL CHECK ({_HEX16.format(c="span_id")}),
    trace_id        TEXT NOT NULL CHECK ({_HEX32}),
    parent_span_id  TEXT CHECK ({_HEX16.format(c="parent_span_id")}),
    operation_name  TEXT NOT NULL,
    agent_name      TEXT NOT NULL,
    agent_tier      INTEGER CHECK (agent_tier BETWEEN 0 AND 5),
    span_kind       TEXT NOT NULL DEFAULT 'agent'
                    CHECK (span_kind IN ('agent', 'llm', 'tool', 'chain')),
    start_time      TEXT NOT NULL,
    end_time        TEXT CHECK (end_time >= start_time),
    duration_ms     REAL CHECK (duration_ms >= 0),
    status          TEXT NOT NULL DEFAULT 'completed'
                    CHECK (status IN ('started', 'completed', 'error')),
    error_type      TEXT,
    error_message   TEXT,
    attributes      TEXT NOT NULL DEFAULT '{{}}' CHECK (json_type(attributes) = 'object'),
    llm_model       TEXT,
    input_tokens    INTEGER CHECK (input_tokens >= 0),
    output_tokens   INTEGER CHECK (output_tokens >= 0),
    total_tokens    INTEGER CHECK (total_tokens >= 0),
    events          TEXT NOT NULL DEFAULT '[]' CHECK (json_type(events) = 'array'),
    thread_id       TEXT,
    tracestate      TEXT,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    CONSTRAINT ml_observability_spans_trace_span_key UNIQUE (trace_id, span_id)
)
"""

ADDED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("provider", "TEXT"),
    ("cache_read_tokens", "INTEGER CHECK (cache_read_tokens >= 0)"),
    ("cache_write_tokens", "INTEGER CHECK (cache_write_tokens >= 0)"),
    ("reasoning_tokens", "INTEGER CHECK (reasoning_tokens >= 0)"),
    ("cost_usd", "REAL CHECK (cost_usd >= 0)"),
)
"""Columns added after migration 1 (issue 13, cost), with their SQLite types."""


def add_missing_columns(conn: sqlite3.Connection) -> None:
    """Migration 2: add each of `ADDED_COLUMNS` the table lacks. SQLite has no
    `ADD COLUMN IF NOT EXISTS`, so the table's `PRAGMA table_info` decides (a file whose
    user_version was reset, or whose table someone else altered, migrates all the same)."""
    present = {row[1] for row in conn.execute(f"PRAGMA table_info({TABLE_NAME})")}
    for name, definition in ADDED_COLUMNS:
        if name not in present:
            conn.execute(f"ALTER TABLE {TABLE_NAME} ADD COLUMN {name} {definition}")


def add_rollups(conn: sqlite3.Connection) -> None:
    """Migration 3: the rollup tables, then the rollups of every span already stored (into
    the sketch table, which `rebuild` now fills; migration 4 finds it filled)."""
    for statement in (*rollups.CREATE_ROLLUPS, sketches.CREATE_SKETCHES):
        conn.execute(statement)
    rollups.rebuild(conn, None)


def pack_buckets(conn: sqlite3.Connection) -> None:
    """Migration 4: the latency histograms as one packed sketch per slot and agent. A file of
    migration 3 has a row per slot, agent and bucket: converted (with the totals rows) while
    the sketch table is still empty, then dropped."""
    conn.execute(sketches.CREATE_SKETCHES)
    _convert_and_drop(
        conn, sketches.SKETCHES_TABLE, sketches.OLD_BUCKETS_TABLE, sketches.CONVERT_BUCKETS
    )
    if conn.execute(f"SELECT 1 FROM {sketches.SKETCHES_TABLE} LIMIT 1").fetchone() is None:
        rollups.rebuild(conn, None)  # spans without rollups (none: nothing happens)


def add_trace_costs(conn: sqlite3.Connection) -> None:
    """Migration 5: the trace cost tables, then the costs of every priced LLM call stored."""
    for statement in trace_costs.CREATE_TRACE_COSTS:
        conn.execute(statement)
    trace_costs.rebuild(conn, None)


def pack_trace_cost_buckets(conn: sqlite3.Connection) -> None:
    """Migration 6: the cost sketch packed per slot and grp, in 1-minute to 6-hour slots. A
    file of migration 5 has a row per minute or hour slot, grp and bucket: converted while the
    packed table is still empty (the sketch outlives the spans), then dropped."""
    for statement in trace_costs.CREATE_TRACE_COSTS:
        conn.execute(statement)
    _convert_and_drop(
        conn, trace_costs.SKETCH_TABLE, trace_costs.OLD_SKETCH_TABLE, trace_costs.CONVERT_BUCKETS
    )


def _convert_and_drop(conn: sqlite3.Connection, table: str, old_table: str, convert: str) -> None:
    """If `old_table` exists: run `convert` (old rows into `table`) while `table` is still
    empty, so a half-applied upgrade never converts twice; then drop `old_table`."""
    old = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (old_table,)
    ).fetchone()
    if old is None:
        return
    if conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is None:
        conn.execute(convert)
    conn.execute(f"DROP TABLE {old_table}")


Migration = tuple[str, ...] | Callable[[sqlite3.Connection], None]

MIGRATIONS: tuple[Migration, ...] = (
    # 1: the table and the PostgreSQL schema's indexes.
    (
        _CREATE_TABLE,
        f"CREATE INDEX IF NOT EXISTS idx_ml_obs_spans_trace_id ON {TABLE_NAME} (trace_id)",
        f"CREATE INDEX IF NOT EXISTS idx_ml_obs_spans_start_time ON {TABLE_NAME} (start_time DESC)",
        f"CREATE INDEX IF NOT EXISTS idx_ml_obs_spans_agent_name ON {TABLE_NAME} (agent_name)",
        f"CREATE INDEX IF NOT EXISTS idx_ml_obs_spans_status ON {TABLE_NAME} (status)",
        f"CREATE INDEX IF NOT EXISTS idx_ml_obs_spans_agent_start "
        f"ON {TABLE_NAME} (agent_name, start_time DESC)",
    ),
    # 2: cost columns (issue 13).
    add_missing_columns,
    # 3: rollup tables (issue 15), filled from the spans already stored.
    add_rollups,
    # 4: packed latency sketches instead of a row per latency bucket (issue 15).
    pack_buckets,
    # 5: trace costs and the cost sketch (issue 15), filled from the spans already stored.
    add_trace_costs,
    # 6: the cost sketch packed per slot and grp, 10-minute and 6-hour slots too (issue 15).
    pack_trace_cost_buckets,
)
"""Append-only; migration i (1-based) is applied when `PRAGMA user_version` < i: a tuple of
statements, or a function of the connection."""

_COLUMNS = ", ".join(SPAN_COLUMNS)

_ROW = f"({', '.join('?' for _ in SPAN_COLUMNS)})"
INSERT_SPAN = f"INSERT INTO {TABLE_NAME} ({_COLUMNS}) VALUES {_ROW} ON CONFLICT DO NOTHING"


def insert_spans(conn: sqlite3.Connection, rows: Sequence[Sequence[object]]) -> int:
    """Insert `rows` (conflicts skipped); returns how many were stored. Many rows a statement,
    not `executemany` (`_sqlite_values.py` says why)."""
    insert = f"INSERT INTO {TABLE_NAME} ({_COLUMNS})"
    return execute_rows(conn, insert, rows, "ON CONFLICT DO NOTHING")


SELECT_BY_WINDOW = (
    f"SELECT {_COLUMNS} FROM {TABLE_NAME} "
    "WHERE start_time >= :start AND start_time <= :end "
    "AND (:agent IS NULL OR agent_name = :agent) "
    "AND (:status IS NULL OR status = :status) "
    "AND (:tier IS NULL OR agent_tier = :tier) "
    "ORDER BY start_time DESC, trace_id DESC, span_id DESC LIMIT :limit"
)

SELECT_BY_TRACE = (
    f"SELECT {_COLUMNS} FROM {TABLE_NAME} WHERE trace_id = ? ORDER BY start_time, span_id"
)

TRACE_SUMMARY = f"""
SELECT COUNT(*), COUNT(DISTINCT agent_name), COALESCE(SUM(status = 'error'), 0),
       MIN(start_time), MAX(COALESCE(end_time, start_time)),
       COALESCE(SUM(span_kind = 'llm'), 0),
       COALESCE(SUM(CASE WHEN span_kind = 'llm' THEN input_tokens END), 0),
       COALESCE(SUM(CASE WHEN span_kind = 'llm' THEN output_tokens END), 0),
       COALESCE(SUM(CASE WHEN span_kind = 'llm' THEN total_tokens END), 0)
FROM {TABLE_NAME} WHERE trace_id = ?
"""
"""Columns in `_rows.SUMMARY_COLUMNS` order; text timestamps compare as times (fixed width)."""

DELETE_OLD_BATCH = (
    f"DELETE FROM {TABLE_NAME} WHERE rowid IN ("
    f"SELECT rowid FROM {TABLE_NAME} WHERE start_time < ? ORDER BY start_time LIMIT ?)"
)


COUNT_OLD = f"SELECT COUNT(*) FROM {TABLE_NAME} WHERE start_time < ?"


def _percentile(percent: int, column: str = "duration_ms", alias: str = "p{}_ms") -> str:
    """Inclusive-method quantile `percent` of `column` over ranks i = 0..m (m = n - 1)."""
    j = f"({percent} * m / 100)"
    delta = f"({percent} * m % 100)"
    return (
        f"SUM(CASE i WHEN {j} THEN {column} * (100 - {delta}) "
        f"WHEN {j} + 1 THEN {column} * {delta} END) / 100.0 AS {alias.format(percent)}"
    )


LATENCY_STATS = f"""
WITH scoped AS (
    SELECT agent_name, agent_tier, span_kind, status, duration_ms,
           input_tokens, output_tokens, total_tokens
    FROM {TABLE_NAME}
    WHERE start_time >= :start AND start_time <= :end
      AND (:agent IS NULL OR agent_name = :agent)
),
ranked AS (
    SELECT agent_name, duration_ms,
           ROW_NUMBER() OVER (PARTITION BY agent_name ORDER BY duration_ms) - 1 AS i,
           COUNT(*) OVER (PARTITION BY agent_name) - 1 AS m
    FROM scoped
    WHERE duration_ms IS NOT NULL
),
percentiles AS (
    SELECT agent_name, {_percentile(50)}, {_percentile(95)}, {_percentile(99)}
    FROM ranked
    GROUP BY agent_name
),
totals AS (
    SELECT agent_name,
           MAX(agent_tier) AS agent_tier,
           COUNT(*) AS count,
           SUM(status = 'error') AS error_count,
           AVG(duration_ms) AS avg_ms,
           MAX(duration_ms) AS max_ms,
           SUM(span_kind = 'llm') AS llm_calls,
           COALESCE(SUM(CASE WHEN span_kind = 'llm' THEN input_tokens END), 0) AS input_tokens,
           COALESCE(SUM(CASE WHEN span_kind = 'llm' THEN output_tokens END), 0) AS output_tokens,
           COALESCE(SUM(CASE WHEN span_kind = 'llm' THEN total_tokens END), 0) AS total_tokens
    FROM scoped
    GROUP BY agent_name
)
SELECT t.agent_name, t.agent_tier, t.count, t.error_count,
       CAST(t.error_count AS REAL) / t.count AS error_rate,
       t.avg_ms, p.p50_ms, p.p95_ms, p.p99_ms, t.max_ms,
       t.llm_calls, t.input_tokens, t.output_tokens, t.total_tokens,
       t.count / :minutes AS spans_per_minute
FROM totals AS t LEFT JOIN percentiles AS p ON p.agent_name = t.agent_name
ORDER BY t.agent_name
"""

WINDOW_SUMMARY = f"""
WITH scoped AS (
    SELECT status, duration_ms
    FROM {TABLE_NAME}
    WHERE start_time >= :start AND start_time <= :end
      AND (:agent IS NULL OR agent_name = :agent)
),
ranked AS (
    SELECT duration_ms,
           ROW_NUMBER() OVER (ORDER BY duration_ms) - 1 AS i,
           COUNT(*) OVER () - 1 AS m
    FROM scoped
    WHERE duration_ms IS NOT NULL
),
percentile AS (
    SELECT {_percentile(95)} FROM ranked
)
SELECT COUNT(*),
       SUM(status = 'completed'),
       SUM(status = 'error'),
       AVG(duration_ms),
       (SELECT p95_ms FROM percentile)
FROM scoped
"""
"""`ml_window_summary` of the PostgreSQL schema: one row, the p95 over every duration."""

NO_MODEL = "(no model)"
NO_PROVIDER = "(no provider)"

_LLM_IN_WINDOW = f"""
    FROM {TABLE_NAME}
    WHERE span_kind = 'llm' AND start_time >= :start AND start_time <= :end
      AND (:agent IS NULL OR agent_name = :agent)
"""

# Same rows and definitions as ml_agent_cost_stats in database/ml/mlops_tables.sql.
COST_STATS = f"""
WITH llm AS (
    SELECT agent_name, trace_id, COALESCE(llm_model, '{NO_MODEL}') AS model, cost_usd
    {_LLM_IN_WINDOW}
),
scoped AS (
    SELECT agent_name AS grp, trace_id, model, cost_usd FROM llm
    UNION ALL
    SELECT NULL, trace_id, model, cost_usd FROM llm
),
totals AS (
    SELECT grp, COALESCE(SUM(cost_usd), 0.0) AS cost, COUNT(cost_usd) AS priced,
           COUNT(*) - COUNT(cost_usd) AS unpriced
    FROM scoped GROUP BY grp
),
models AS (
    SELECT grp, json_group_object(model, cost) AS by_model
    FROM (SELECT grp, model, SUM(cost_usd) AS cost FROM scoped
          WHERE cost_usd IS NOT NULL GROUP BY grp, model)
    GROUP BY grp
),
per_trace AS (
    SELECT grp, trace_id, SUM(cost_usd) AS cost FROM scoped
    WHERE cost_usd IS NOT NULL GROUP BY grp, trace_id
),
ranked AS (
    SELECT grp, cost,
           ROW_NUMBER() OVER (PARTITION BY grp ORDER BY cost) - 1 AS i,
           COUNT(*) OVER (PARTITION BY grp) - 1 AS m
    FROM per_trace
),
quantiles AS (
    SELECT grp, COUNT(*) AS traces,
           {_percentile(50, "cost", "q{}")},
           {_percentile(95, "cost", "q{}")}
    FROM ranked GROUP BY grp
)
SELECT t.grp, t.cost, t.priced, t.unpriced, COALESCE(q.traces, 0), q.q50, q.q95,
       COALESCE(m.by_model, '{{}}')
FROM totals AS t
LEFT JOIN models AS m ON m.grp IS t.grp
LEFT JOIN quantiles AS q ON q.grp IS t.grp
ORDER BY t.grp
"""

_BREAKDOWN_KEY = {
    "agent": "agent_name",
    "model": f"COALESCE(llm_model, '{NO_MODEL}')",
    "provider": f"COALESCE(provider, '{NO_PROVIDER}')",
    "day": "substr(start_time, 1, 10)",  # fixed-width UTC text: the UTC date
}


def cost_breakdown(by: str) -> str:
    """Same rows as ml_cost_breakdown(p_by => by); `by` checked by the caller."""
    return f"""
SELECT {_BREAKDOWN_KEY[by]} AS k, COUNT(*), COUNT(cost_usd), COUNT(DISTINCT trace_id),
       COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),
       COALESCE(SUM(cache_read_tokens), 0), COALESCE(SUM(cache_write_tokens), 0),
       COALESCE(SUM(reasoning_tokens), 0), COALESCE(SUM(cost_usd), 0.0)
{_LLM_IN_WINDOW}
GROUP BY k
ORDER BY k
"""
