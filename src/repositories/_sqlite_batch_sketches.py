"""The latency sketch rows of an inserted SQLite batch built in Python from the batch's own
rows: the fast path of `_sqlite_rollups.add_new_rows` when the insert stored every row.

Why: the SQL upsert (`_sqlite_sketches.ADD_NEW`) reads the new rows back, groups them by
minute, agent and bucket (~15 aggregates a row), groups those four times more (one per tier)
and steps the Python aggregate `ml_sketch` for each group: ~20 us a span, a third of the
insert. The rows are already in Python, so one pass builds the same groups, a second the
~70 tier rows, and one multi-row statement upserts them (merged with stored sketches by
`ml_sketch_add` as before).

The rows written are IDENTICAL to the SQL path's (tests/integration/test_sqlite_batch_sketches.py):
same bucket formula (`sketch.bucket_of`: C `log`, like SQLite's `ln`), and `duration_sum`
added in SQLite's order (3.40: plain double addition; per group in rowid order, then each
tier over the groups sorted by minute, agent and bucket, NULL first). Newer SQLite (3.43+)
sums with Kahan-Babuska-Neumaier compensation: there this module is not used (`USABLE`), so
the result never depends on a summation this code does not reproduce.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from typing import Any

from src.repositories import sketch
from src.repositories._rows import SPAN_COLUMNS
from src.repositories._sqlite_sketches import UPSERT_ROWS
from src.repositories._sqlite_values import execute_rows
from src.repositories.rollups import HOUR, MINUTE, SIX_HOURS, TEN_MINUTES

__all__ = ["USABLE", "add_batch", "packed_counts", "sketch_rows", "tier_slots"]

USABLE = sqlite3.sqlite_version_info < (3, 43, 0)
"""SQLite's SUM(REAL) is plain addition before 3.43 (compensated from 3.43 on)."""

_COLUMN = {name: index for index, name in enumerate(SPAN_COLUMNS)}
_START, _AGENT, _TIER = _COLUMN["start_time"], _COLUMN["agent_name"], _COLUMN["agent_tier"]
_KIND, _STATUS, _DURATION = _COLUMN["span_kind"], _COLUMN["status"], _COLUMN["duration_ms"]
_IN, _OUT, _TOTAL = _COLUMN["input_tokens"], _COLUMN["output_tokens"], _COLUMN["total_tokens"]
_LOG, _CEIL, _LOG_GAMMA = math.log, math.ceil, sketch.LOG_GAMMA


def tier_slots(minute: str) -> tuple[tuple[int, str], ...]:
    """The four tier slots of a 'YYYY-MM-DDTHH:MM' minute (as `_sqlite_sketches._SLOTS`)."""
    six = int(minute[11:13]) // 6 * 6
    return (
        (MINUTE, f"{minute}:00.000000+00:00"),
        (TEN_MINUTES, f"{minute[:15]}0:00.000000+00:00"),
        (HOUR, f"{minute[:13]}:00:00.000000+00:00"),
        (SIX_HOURS, f"{minute[:11]}{six:02d}:00:00.000000+00:00"),
    )


_Cell = list[Any]
"""Per (minute, agent): [tier, spans, errors, completed, durations, None (the duration sum, see
`_fold`), duration max, llm calls, input, output, total tokens, zero durations, groups: per
bucket of `_span_groups` (None: no or zero duration) [duration sum in row order (0 without
durations), durations > 0]]."""


def _scan(rows: Sequence[Sequence[Any]]) -> dict[tuple[str, str], _Cell]:
    """One pass over the rows: their (minute, agent) cells."""
    cells: dict[tuple[str, str], _Cell] = {}
    for row in rows:
        minute, agent, duration = row[_START][:16], row[_AGENT], row[_DURATION]
        cell = cells.get((minute, agent))
        if cell is None:
            cell = cells[minute, agent] = [None, 0, 0, 0, 0, None, None, 0, 0, 0, 0, 0, {}]
        tier = row[_TIER]
        if tier is not None and (cell[0] is None or tier > cell[0]):
            cell[0] = tier
        cell[1] += 1
        status = row[_STATUS]
        if status == "error":
            cell[2] += 1
        elif status == "completed":
            cell[3] += 1
        if row[_KIND] == "llm":
            cell[7] += 1
            for index, column in ((8, _IN), (9, _OUT), (10, _TOTAL)):
                value = row[column]
                if value is not None:
                    cell[index] += value
        if duration is None:
            if None not in cell[12]:
                cell[12][None] = [0, 0]
            continue
        cell[4] += 1
        if cell[6] is None or duration > cell[6]:
            cell[6] = duration
        if duration > 0:
            bucket = _CEIL(_LOG(duration) / _LOG_GAMMA)
        else:
            bucket = None
            cell[11] += 1
        group = cell[12].get(bucket)
        if group is None:
            cell[12][bucket] = [0.0 + duration, 1 if bucket is not None else 0]  # SQL: from 0.0
        else:
            group[0] += duration
            if bucket is not None:
                group[1] += 1
    return cells


def _fold(total: Any, values: Sequence[Any]) -> Any:
    """SQLite's SUM before 3.43: plain addition in input order (0 stays an integer)."""
    for value in values:
        total += value
    return total


def _order(groups: dict[int | None, list[Any]]) -> tuple[list[Any], dict[int, int]]:
    """A cell's group duration sums in SQL's bucket order (NULL first) and its bucket counts
    (in bucket order)."""
    buckets = sorted(bucket for bucket in groups if bucket is not None)
    sums = [groups[bucket][0] for bucket in buckets]
    if None in groups:
        sums.insert(0, groups[None][0])
    return sums, {bucket: groups[bucket][1] for bucket in buckets}


def packed_counts(counts: dict[int, int]) -> tuple[int | None, int | None, bytes | None]:
    """(low, high, packed) of bucket counts."""
    if not counts:
        return None, None, None
    low, high = min(counts), max(counts)
    dense = [0] * (high - low + 1)
    for bucket, count in counts.items():
        dense[bucket - low] = count
    return low, high, sketch.pack(dense)


def sketch_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """The tier rows `UPSERT_ROWS` takes for span rows in insertion (rowid) order, equal to
    those `_sqlite_sketches.ADD_NEW` computes for them: `_span_groups` in SQL order (minute,
    agent, bucket; NULL first), each tier summing its groups in that order."""
    cells = _scan(rows)
    tiers: dict[tuple[int, str, str], list[Any]] = {}
    for key in sorted(cells):
        cell = cells[key]
        sums, counts = _order(cell[12])
        for period, slot in tier_slots(key[0]):
            tier = tiers.get((period, slot, key[1]))
            if tier is None:  # [..., the cell's counts, whether they are the tier's own copy]
                tiers[period, slot, key[1]] = [*cell[:5], _fold(0, sums), *cell[6:12], counts, 0]
                continue
            if cell[0] is not None and (tier[0] is None or cell[0] > tier[0]):
                tier[0] = cell[0]
            if cell[6] is not None and (tier[6] is None or cell[6] > tier[6]):
                tier[6] = cell[6]
            for index in (1, 2, 3, 4, 7, 8, 9, 10, 11):
                tier[index] += cell[index]
            tier[5] = _fold(tier[5], sums)
            if not tier[13]:
                tier[12], tier[13] = dict(tier[12]), 1
            merged = tier[12]
            for bucket, counted in counts.items():
                merged[bucket] = merged.get(bucket, 0) + counted
    packs: dict[int, tuple[int | None, int | None, bytes | None]] = {}
    result = []
    for tier_key, tier in tiers.items():
        packed = packs.get(id(tier[12]))  # a one-cell tier shares its cell's counts
        if packed is None:
            packed = packs[id(tier[12])] = packed_counts(tier[12])
        result.append((*tier_key, *tier[:12], *packed))
    return result


def add_batch(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Add the sketches of `rows`, every one of them just inserted in this transaction."""
    insert, on_conflict = UPSERT_ROWS
    execute_rows(conn, insert, sketch_rows(rows), on_conflict)
