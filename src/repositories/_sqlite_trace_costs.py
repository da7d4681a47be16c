"""SQL of the SQLite trace costs: each trace's running cost and the cost sketch (traces per
cost bucket, packed per slot and grp), the SQLite twin of the PostgreSQL section "Trace costs"
of `database/ml/mlops_tables.sql`; `cost_rollups.py` says why and reads them back.

Each insert moves every trace it adds priced LLM calls to from bucket(old cost) to
bucket(new cost). SQLite runs it in the insert's write transaction (`BEGIN IMMEDIATE`: no
other writer), in two statements: the moves are computed from the rows as they are (old =
the stored cost, new = old + the batch's sum, the same float addition the upsert then does)
and added to the sketches, then the costs are upserted. grp '' is the whole window (every
agent of the trace).

The sketch has the latency sketches' layout and tiers (`_sqlite_sketches.py`): one row per
1-minute, 10-minute, 1-hour and 6-hour slot and grp, its traces per cost bucket packed
(`sketch.pack`: counts of buckets `low`..`high`), zero costs in `zero_count`, all its traces in
`trace_count`. A batch's moves are packed by the same aggregate (`ml_sketch`; -1 counts make
it 64-bit) and added by `ml_sketch_add`; a stored count never goes negative, since a trace
leaves only the bucket it was counted in, in its own slot.
"""

from __future__ import annotations

import sqlite3

from src.repositories._sqlite_sketches import _RANGES as RANGES
from src.repositories._sqlite_sketches import _SLOTS as SLOTS
from src.repositories._sqlite_sketches import _greatest, _least
from src.repositories.rollups import HOUR, LOG_GAMMA, MINUTE, SIX_HOURS, TEN_MINUTES, ZERO_BUCKET
from src.repositories.span_store import TABLE_NAME

__all__ = [
    "ADD_COSTS",
    "ADD_SKETCH_ROWS",
    "CONVERT_BUCKETS",
    "COSTS_TABLE",
    "CREATE_TRACE_COSTS",
    "DELETE_OLD_SKETCHES",
    "DELETE_OLD_TRACE_COSTS",
    "OLD_SKETCH_TABLE",
    "ROLLUP_COSTS",
    "SKETCH_TABLE",
    "add_new_rows",
    "rebuild",
]

COSTS_TABLE = "ml_observability_trace_costs"
SKETCH_TABLE = "ml_observability_trace_cost_sketches"
OLD_SKETCH_TABLE = "ml_observability_trace_cost_buckets"
"""Migration 5's sketch (a row per minute or hour slot, grp and bucket); migration 6 converts
and drops it."""

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
    period_s    INTEGER NOT NULL CHECK (period_s IN ({MINUTE}, {TEN_MINUTES}, {HOUR},
                                                     {SIX_HOURS})),
    slot        TEXT NOT NULL,
    grp         TEXT NOT NULL,
    trace_count INTEGER NOT NULL DEFAULT 0,
    zero_count  INTEGER NOT NULL DEFAULT 0,
    low         INTEGER,
    high        INTEGER,
    packed      BLOB,
    PRIMARY KEY (period_s, slot, grp)
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


ADD_SKETCH_ROWS = (
    f"INSERT INTO {SKETCH_TABLE} (period_s, slot, grp, trace_count, zero_count, low, high, packed)",
    f"""ON CONFLICT (period_s, slot, grp) DO UPDATE SET
    trace_count = trace_count + excluded.trace_count,
    zero_count = zero_count + excluded.zero_count,
    packed = ml_sketch_add(low, high, packed, excluded.low, excluded.high, excluded.packed),
    low = {_least("low")}, high = {_greatest("high")}
""",
)
"""Head and tail of a statement adding sketch rows (moves of a tier slot and grp, packed) to
the stored ones."""
ADD_COSTS = (
    f"INSERT INTO {COSTS_TABLE} (trace_id, grp, slot, cost)",
    "ON CONFLICT (trace_id, grp) DO UPDATE SET cost = cost + excluded.cost",
)
"""Head and tail of a statement adding (trace_id, grp, slot, cost) to the running costs (a
stored trace keeps its slot)."""


def _add_sketch(moves: str, sources: dict[int, int] | None = None) -> str:
    """The tail of a WITH clause adding `moves` (source, slot, grp, bucket, d: a trace into
    (+1) or out of (-1) a bucket of its minute slot) to the sketch rows of every tier.
    `sources`: tier -> the `source` of the moves it takes (a conversion from the old table's
    minute or hour rows; None: every tier from every move, source 0)."""
    sources = sources or dict.fromkeys(SLOTS, 0)
    tiers = " UNION ALL ".join(
        f"SELECT {period}, {SLOTS[period]}, grp, SUM(d), "
        f"SUM(CASE WHEN bucket = {ZERO_BUCKET} THEN d ELSE 0 END), "
        f"MIN(NULLIF(bucket, {ZERO_BUCKET})), MAX(NULLIF(bucket, {ZERO_BUCKET})), "
        f"ml_sketch(NULLIF(bucket, {ZERO_BUCKET}), d) FROM m WHERE source = {source} GROUP BY 2, 3"
        for period, source in sources.items()
    )
    return f"""
m AS MATERIALIZED (
    SELECT source, substr(slot, 1, 16) AS minute, grp, bucket, SUM(d) AS d FROM ({moves})
    GROUP BY 1, 2, 3, 4 HAVING SUM(d) <> 0
)
{ADD_SKETCH_ROWS[0]}
SELECT * FROM ({tiers}) WHERE true
{ADD_SKETCH_ROWS[1]}"""


_NEW_ROWS = "s.rowid > ?1"
_OLD_NEW = f"""
SELECT COALESCE(t.slot, {_MINUTE.format(t="a.first_time")}) AS slot, a.grp AS grp,
       t.cost AS old, COALESCE(t.cost, 0.0) + a.cost AS new
FROM added AS a LEFT JOIN {COSTS_TABLE} AS t ON t.trace_id = a.trace_id AND t.grp = a.grp
"""
_MOVES = f"""
SELECT 0 AS source, slot, grp, {_bucket("new")} AS bucket, 1 AS d FROM changes
WHERE old IS NULL OR {_bucket("old")} <> {_bucket("new")}
UNION ALL
SELECT 0, slot, grp, {_bucket("old")}, -1 FROM changes
WHERE old IS NOT NULL AND {_bucket("old")} <> {_bucket("new")}
"""
_MOVE_NEW = f"WITH {_added(_NEW_ROWS)}, changes AS ({_OLD_NEW}), {_add_sketch(_MOVES)}"
_UPSERT_NEW = f"""
WITH {_added(_NEW_ROWS)}
{ADD_COSTS[0]}
SELECT trace_id, grp, {_MINUTE.format(t="first_time")}, cost FROM added WHERE true
{ADD_COSTS[1]}
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
_SKETCH_SINCE = "WITH " + _add_sketch(
    f"SELECT 0 AS source, slot, grp, {_bucket('cost')} AS bucket, 1 AS d "
    f"FROM {COSTS_TABLE} WHERE slot >= ?1"
)


def rebuild(conn: sqlite3.Connection, since: str | None) -> None:
    """Recompute the trace costs of the spans from `since`'s hour on (None: the oldest
    span's), and the sketch from that hour's 6-hour slot on (the largest sketch slot) from the
    trace costs; a trace whose row has an older slot keeps it (its cost already holds the
    later calls). Runs inside the caller's write transaction."""
    if since is None:
        (since,) = conn.execute(f"SELECT MIN(start_time) FROM {TABLE_NAME}").fetchone()
        if since is None:
            return
    hour = since[:13] + ":00:00.000000+00:00"
    six = f"{since[:11]}{int(since[11:13]) // 6 * 6:02d}:00:00.000000+00:00"
    conn.execute(f"DELETE FROM {COSTS_TABLE} WHERE slot >= ?", (hour,))
    conn.execute(f"DELETE FROM {SKETCH_TABLE} WHERE slot >= ?", (six,))
    conn.execute(_INSERT_SINCE, (hour,))
    conn.execute(_SKETCH_SINCE, (six,))


DELETE_OLD_TRACE_COSTS = f"DELETE FROM {COSTS_TABLE} WHERE slot < ?"
"""Span retention: the running costs of traces first stored before the cutoff (UTC text)."""

DELETE_OLD_SKETCHES = (
    f"DELETE FROM {SKETCH_TABLE} WHERE slot < ?1 OR (period_s < {HOUR} AND slot < ?2)"
)
"""Rollup retention; parameters: the cutoff of every slot, of minute and 10-minute slots."""

CONVERT_BUCKETS = "WITH " + _add_sketch(
    f"SELECT period_s AS source, slot, grp, bucket, count AS d FROM {OLD_SKETCH_TABLE}",
    {MINUTE: MINUTE, TEN_MINUTES: MINUTE, HOUR: HOUR, SIX_HOURS: HOUR},
)
"""Migration 6: the old minute rows become minute and 10-minute sketches, the hour rows hour
and 6-hour ones (the sketch outlives the spans and trace costs, so it is converted)."""

_SKETCH_RANGES = tuple(
    (period, f"trace_{low}", f"trace_{high}") for period, low, high in RANGES
)  # the latency sketches' tier ranges, over the trace bounds (`cost_rollups.trace_bounds`)
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
       NULL, NULL, NULL, NULL, NULL
FROM ({_CALL_RANGES} UNION ALL {_EDGE_CALLS})
WHERE :agent IS NULL OR agent_name = :agent
GROUP BY agent_name, llm_model
UNION ALL
""" + " UNION ALL ".join(
    f"SELECT grp, NULL, NULL, NULL, NULL, trace_count, zero_count, low, high, packed "
    f"FROM {SKETCH_TABLE} WHERE period_s = {period} AND slot >= :{low} AND slot < :{high} "
    "AND trace_count > 0 AND (:agent IS NULL OR grp = :agent)"
    for period, low, high in _SKETCH_RANGES
)
"""The rows of `ml_rollup_costs` (PostgreSQL): per agent and model, then one per sketch row
(grp and slot); params: `cost_rollups.COST_BOUND_NAMES` and `agent`."""
