"""SQL of the SQLite trace costs: each trace's running cost and the cost sketch (traces per
cost bucket per slot), the SQLite twin of the PostgreSQL section "Trace costs" of
`database/ml/mlops_tables.sql`; `cost_rollups.py` says why and reads them back.

Each insert moves every trace it adds priced LLM calls to from bucket(old cost) to
bucket(new cost). SQLite runs it in the insert's write transaction (`BEGIN IMMEDIATE`: no
other writer), in two statements: the moves are computed from the rows as they are (old =
the stored cost, new = old + the batch's sum, the same float addition the upsert then does),
then the costs are upserted. grp '' is the whole window (every agent of the trace).
"""

from __future__ import annotations

import sqlite3

from src.repositories.rollups import HOUR, LOG_GAMMA, MINUTE, ZERO_BUCKET
from src.repositories.span_store import TABLE_NAME

__all__ = [
    "COSTS_TABLE",
    "CREATE_TRACE_COSTS",
    "DELETE_OLD_TRACE_COSTS",
    "ROLLUP_COSTS",
    "SKETCH_TABLE",
    "add_new_rows",
    "rebuild",
]

COSTS_TABLE = "ml_observability_trace_costs"
SKETCH_TABLE = "ml_observability_trace_cost_buckets"

CREATE_TRACE_COSTS = (
    f"""
CREATE TABLE IF NOT EXISTS {COSTS_TABLE} (
    trace_id TEXT NOT NULL,
    grp      TEXT NOT NULL,
    slot     TEXT NOT NULL,
    cost     REAL NOT NULL,
    PRIMARY KEY (trace_id, grp)
) WITHOUT ROWID
""",
    f"CREATE INDEX IF NOT EXISTS idx_ml_obs_trace_costs_slot ON {COSTS_TABLE} (slot)",
    f"""
CREATE TABLE IF NOT EXISTS {SKETCH_TABLE} (
    period_s INTEGER NOT NULL CHECK (period_s IN ({MINUTE}, {HOUR})),
    slot     TEXT NOT NULL,
    grp      TEXT NOT NULL,
    bucket   INTEGER NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (period_s, slot, grp, bucket)
) WITHOUT ROWID
""",
)

_MINUTE = "substr({t}, 1, 16) || ':00.000000+00:00'"
_HOUR = "substr({t}, 1, 13) || ':00:00.000000+00:00'"


def _bucket(cost: str) -> str:
    return (
        f"CASE WHEN {cost} > 0 THEN CAST(ceil(ln({cost}) / {LOG_GAMMA!r}) AS INTEGER) "
        f"ELSE {ZERO_BUCKET} END"
    )


def _added(where: str) -> str:
    """The priced LLM calls of the spans matching `where`, summed per trace and grp."""
    return f"""
added AS MATERIALIZED (
    SELECT s.trace_id AS trace_id, CASE WHEN g.whole THEN '' ELSE s.agent_name END AS grp,
           MIN(s.start_time) AS first_time, SUM(s.cost_usd) AS cost
    FROM {TABLE_NAME} AS s JOIN (SELECT 0 AS whole UNION ALL SELECT 1) AS g
    WHERE ({where}) AND s.span_kind = 'llm' AND s.cost_usd IS NOT NULL
    GROUP BY 1, 2
)"""


def _add_sketch(moves: str) -> str:
    """Add `moves` (slot, grp, bucket, d) to the minute and hour rows of the sketch."""
    return f"""
INSERT INTO {SKETCH_TABLE} (period_s, slot, grp, bucket, count)
SELECT * FROM (
    SELECT {MINUTE}, slot, grp, bucket, SUM(d) AS n FROM ({moves}) GROUP BY 2, 3, 4
    UNION ALL
    SELECT {HOUR}, {_HOUR.format(t="slot")}, grp, bucket, SUM(d) FROM ({moves}) GROUP BY 2, 3, 4
) WHERE n <> 0
ON CONFLICT (period_s, slot, grp, bucket) DO UPDATE SET count = count + excluded.count
"""


_NEW_ROWS = "s.rowid > ?1"
_OLD_NEW = f"""
SELECT COALESCE(t.slot, {_MINUTE.format(t="a.first_time")}) AS slot, a.grp AS grp,
       t.cost AS old, COALESCE(t.cost, 0.0) + a.cost AS new
FROM added AS a LEFT JOIN {COSTS_TABLE} AS t ON t.trace_id = a.trace_id AND t.grp = a.grp
"""
_MOVES = f"""
SELECT slot, grp, {_bucket("new")} AS bucket, 1 AS d FROM changes
WHERE old IS NULL OR {_bucket("old")} <> {_bucket("new")}
UNION ALL
SELECT slot, grp, {_bucket("old")}, -1 FROM changes
WHERE old IS NOT NULL AND {_bucket("old")} <> {_bucket("new")}
"""
_MOVE_NEW = f"WITH {_added(_NEW_ROWS)}, changes AS ({_OLD_NEW}){_add_sketch(_MOVES)}"
_UPSERT_NEW = f"""
WITH {_added(_NEW_ROWS)}
INSERT INTO {COSTS_TABLE} (trace_id, grp, slot, cost)
SELECT trace_id, grp, {_MINUTE.format(t="first_time")}, cost FROM added WHERE true
ON CONFLICT (trace_id, grp) DO UPDATE SET cost = cost + excluded.cost
"""


def add_new_rows(conn: sqlite3.Connection, rowid_before: int) -> None:
    """Add the priced LLM calls of the span rows with rowid > `rowid_before` (this
    transaction's) to the trace costs, moving each trace between cost buckets."""
    conn.execute(_MOVE_NEW, (rowid_before,))
    conn.execute(_UPSERT_NEW, (rowid_before,))


_INSERT_SINCE = f"""
WITH {_added("s.start_time >= ?1")}
INSERT INTO {COSTS_TABLE} (trace_id, grp, slot, cost)
SELECT trace_id, grp, {_MINUTE.format(t="first_time")}, cost FROM added WHERE true
ON CONFLICT (trace_id, grp) DO NOTHING
"""
_SKETCH_SINCE = _add_sketch(
    f"SELECT slot, grp, {_bucket('cost')} AS bucket, 1 AS d FROM {COSTS_TABLE} WHERE slot >= ?1"
)


def rebuild(conn: sqlite3.Connection, since: str | None) -> None:
    """Recompute the trace costs of the spans from `since`'s hour on (None: the oldest
    span's) and the sketch of their slots; a trace whose row has an older slot keeps it (its
    cost already holds the later calls). Runs inside the caller's write transaction."""
    if since is None:
        (since,) = conn.execute(f"SELECT MIN(start_time) FROM {TABLE_NAME}").fetchone()
        if since is None:
            return
    hour = since[:13] + ":00:00.000000+00:00"
    for table in (COSTS_TABLE, SKETCH_TABLE):
        conn.execute(f"DELETE FROM {table} WHERE slot >= ?", (hour,))
    conn.execute(_INSERT_SINCE, (hour,))
    conn.execute(_SKETCH_SINCE, (hour,))


DELETE_OLD_TRACE_COSTS = f"DELETE FROM {COSTS_TABLE} WHERE slot < ?"
"""Span retention: the running costs of traces first stored before the cutoff (UTC text)."""

_SKETCH_RANGES = " UNION ALL ".join(
    f"SELECT grp, bucket, count FROM {SKETCH_TABLE} WHERE {condition}"
    for condition in (
        f"period_s = {MINUTE} AND slot >= :trace_minute_from AND slot < :trace_hour_from",
        f"period_s = {MINUTE} AND slot >= :trace_hour_to AND slot < :trace_minute_to",
        f"period_s = {HOUR} AND slot >= :trace_hour_from AND slot < :trace_hour_to",
    )
)
_CALL_RANGES = " UNION ALL ".join(
    "SELECT agent_name, llm_model, cost_usd, priced_calls, llm_calls "
    f"FROM ml_observability_rollups WHERE {condition} AND llm_calls > 0"
    for condition in (
        f"period_s = {MINUTE} AND slot >= :minute_from AND slot < :hour_from",
        f"period_s = {MINUTE} AND slot >= :hour_to AND slot < :minute_to",
        f"period_s = {HOUR} AND slot >= :hour_from AND slot < :hour_to",
    )
)
_EDGE_CALLS = " UNION ALL ".join(
    "SELECT agent_name, COALESCE(llm_model, ''), cost_usd, cost_usd IS NOT NULL, 1 "
    f"FROM {TABLE_NAME} WHERE span_kind = 'llm' AND {condition}"
    for condition in (
        "start_time >= :start AND start_time < :minute_from",
        "start_time >= :minute_to AND start_time <= :end",
    )
)

ROLLUP_COSTS = f"""
SELECT agent_name, llm_model, COALESCE(SUM(cost_usd), 0.0), SUM(priced_calls), SUM(llm_calls),
       NULL, NULL
FROM ({_CALL_RANGES} UNION ALL {_EDGE_CALLS})
WHERE :agent IS NULL OR agent_name = :agent
GROUP BY agent_name, llm_model
UNION ALL
SELECT grp, NULL, NULL, NULL, NULL, bucket, SUM(count)
FROM ({_SKETCH_RANGES})
WHERE :agent IS NULL OR grp = :agent
GROUP BY grp, bucket
HAVING SUM(count) > 0
"""
"""The rows of `ml_rollup_costs` (PostgreSQL): per agent and model, then per grp and cost
bucket; params: the window's bounds, the trace bounds (`trace_` + minute/hour from/to) and
`agent`."""
