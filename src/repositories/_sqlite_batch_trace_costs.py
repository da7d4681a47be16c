"""The trace costs of an inserted SQLite batch computed in Python from the batch's own rows: the
fast path of `_sqlite_rollups.add_new_rows` when the insert stored every row.

Why: the SQL path (`_sqlite_trace_costs.add_new_rows`) reads the new rows back twice, once for
the cost sketch's moves and once for the running costs, each time doubling them (a trace's grp
and '') and grouping them through a sorter: ~5 us a span, a tenth of the write. The rows are
already in Python: one pass sums each (trace, grp)'s priced LLM calls, one indexed read fetches
the stored costs of those traces, and two multi-row upserts add the moves and the costs.

The rows written are IDENTICAL to the SQL path's
(tests/integration/test_sqlite_batch_trace_costs.py): a (trace, grp)'s batch cost is summed
from 0.0 in rowid order, as SQLite's SUM before 3.43 does (so only there: `USABLE`, as for the
latency sketches); its new cost is the stored one plus that sum, the addition the upsert then
does; buckets by `sketch.bucket_of` (the SQL's formula); the moves are integer counts, so their
order cannot matter.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from src.repositories._rows import SPAN_COLUMNS
from src.repositories._sqlite_batch_sketches import USABLE, packed_counts, tier_slots
from src.repositories._sqlite_trace_costs import ADD_COSTS, ADD_SKETCH_ROWS, COSTS_TABLE
from src.repositories._sqlite_values import execute_rows, select_in
from src.repositories.sketch import ZERO_BUCKET, bucket_of

__all__ = ["USABLE", "add_batch"]

_COLUMN = {name: index for index, name in enumerate(SPAN_COLUMNS)}
_TRACE, _START, _AGENT = _COLUMN["trace_id"], _COLUMN["start_time"], _COLUMN["agent_name"]
_KIND, _COST = _COLUMN["span_kind"], _COLUMN["cost_usd"]
_MINUTE_TAIL = ":00.000000+00:00"
_STORED = f"SELECT trace_id, grp, slot, cost FROM {COSTS_TABLE} WHERE trace_id"

_Moves = dict[tuple[str, str, int], int]
"""(minute 'YYYY-MM-DDTHH:MM', grp, bucket) -> traces moved into it (negative: out of it)."""


_Key = tuple[str, str]
"""(trace_id, grp)."""


def _added(rows: Sequence[Sequence[Any]]) -> tuple[dict[_Key, str], dict[_Key, float]]:
    """Per (trace, grp) of the rows' priced LLM calls (grp '': every agent of the trace): the
    first start_time, and the cost summed in row order from 0.0 (SQL: `SUM(REAL)`). Two flat
    dicts, not a list per key: fewer live objects for the garbage collector to count."""
    firsts: dict[_Key, str] = {}
    costs: dict[_Key, float] = {}
    for row in rows:
        cost = row[_COST]
        if cost is None or row[_KIND] != "llm":
            continue
        trace, start = row[_TRACE], row[_START]
        for key in ((trace, row[_AGENT]), (trace, "")):
            first = firsts.get(key)
            if first is None:
                firsts[key] = start
                costs[key] = 0.0 + cost
            else:
                if start < first:
                    firsts[key] = start
                costs[key] += cost
    return firsts, costs


def _move(moves: _Moves, key: tuple[str, str, int], traces: int) -> None:
    moves[key] = moves.get(key, 0) + traces


def _moves(
    firsts: dict[_Key, str], costs: dict[_Key, float], stored: dict[_Key, tuple[str, float]]
) -> _Moves:
    """Each trace's move from bucket(stored cost) to bucket(stored + added) in its stored slot
    (a new trace: into its first call's minute)."""
    moves: _Moves = {}
    for key, cost in costs.items():
        grp = key[1]
        old = stored.get(key)
        if old is None:
            _move(moves, (firsts[key][:16], grp, bucket_of(0.0 + cost)), 1)
            continue
        slot, was = old
        into, out = bucket_of(was + cost), bucket_of(was)
        if into != out:
            _move(moves, (slot[:16], grp, into), 1)
            _move(moves, (slot[:16], grp, out), -1)
    return moves


def sketch_rows(moves: _Moves) -> list[tuple[Any, ...]]:
    """The moves added up per tier slot and grp: (period_s, slot, grp, trace_count, zero_count,
    low, high, packed), as the SQL's `ml_sketch` over its nonzero (minute, grp, bucket) moves."""
    tiers: dict[tuple[int, str, str], list[Any]] = {}  # [traces, zero-cost traces, buckets]
    for (minute, grp, bucket), traces in moves.items():
        if not traces:
            continue
        for period, slot in tier_slots(minute):
            tier = tiers.get((period, slot, grp))
            if tier is None:
                tier = tiers[period, slot, grp] = [0, 0, {}]
            tier[0] += traces
            if bucket == ZERO_BUCKET:
                tier[1] += traces
            else:
                tier[2][bucket] = tier[2].get(bucket, 0) + traces
    return [
        (*key, count, zeros, *packed_counts(buckets))
        for key, (count, zeros, buckets) in tiers.items()
    ]


def add_batch(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Add the priced LLM calls of `rows`, every one of them just inserted in this transaction,
    to the trace costs and the cost sketch."""
    firsts, costs = _added(rows)
    if not costs:
        return
    traces = list({trace for trace, _ in costs})
    found = select_in(conn, _STORED, traces)
    stored = {(trace, grp): (slot, cost) for trace, grp, slot, cost in found}
    insert, on_conflict = ADD_SKETCH_ROWS
    execute_rows(conn, insert, sketch_rows(_moves(firsts, costs, stored)), on_conflict)
    insert, on_conflict = ADD_COSTS
    cost_rows = (
        (trace, grp, firsts[trace, grp][:16] + _MINUTE_TAIL, cost)
        for (trace, grp), cost in costs.items()
    )
    execute_rows(conn, insert, cost_rows, on_conflict)
