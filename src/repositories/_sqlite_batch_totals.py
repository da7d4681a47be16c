"""The rollup totals of an inserted SQLite batch computed in Python from the batch's own rows:
the fast path of `_sqlite_rollups.add_new_rows` when the insert stored every row.

Why: the SQL upsert (`_sqlite_rollups._add_totals`) reads the new rows back and groups them
through a sorter (~17 aggregates a row): ~2.3 us a span. The rows are already in Python: one
pass builds the minute groups, a second the hour rows, and `_sqlite_rollups` upserts those few
dozen rows in one multi-row statement (same `ON CONFLICT` merge).

The rows written are IDENTICAL to the SQL path's (tests/integration/test_sqlite_batch_totals.py):
each REAL sum is plain addition in SQL's order, as SQLite's SUM before 3.43 does (so only there:
`USABLE`, as for the latency sketches): per minute group in rowid order, per hour over its minute
groups in minute order; a sum of no values is the integer 0 (the SQL's `COALESCE(SUM(x), 0)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from src.repositories._rows import SPAN_COLUMNS
from src.repositories._sqlite_batch_sketches import USABLE
from src.repositories.rollups import HOUR, MINUTE

__all__ = ["USABLE", "total_rows"]

_COLUMN = {name: index for index, name in enumerate(SPAN_COLUMNS)}
_START, _AGENT, _TIER = _COLUMN["start_time"], _COLUMN["agent_name"], _COLUMN["agent_tier"]
_MODEL, _PROVIDER = _COLUMN["llm_model"], _COLUMN["provider"]
_KIND, _STATUS, _DURATION = _COLUMN["span_kind"], _COLUMN["status"], _COLUMN["duration_ms"]
_COST = _COLUMN["cost_usd"]
_LLM_SUMS = tuple(
    (8 + offset, _COLUMN[f"{kind}_tokens"])
    for offset, kind in enumerate(
        ("input", "output", "total", "cache_read", "cache_write", "reasoning")
    )
)
"""(group index, row column) of the token counts summed over LLM spans."""
_MAXED = (0, 6)
"""Group indexes kept as a maximum (agent tier, duration max); the others are added up."""

_Group = list[Any]
"""The aggregates in `_sqlite_rollups._TOTAL_COLUMNS` order: agent tier, spans, errors,
completed, durations, duration sum, duration max, LLM calls, 6 token counts, cost, priced."""


def _minute_groups(rows: Sequence[Sequence[Any]]) -> dict[tuple[str, str, str, str], _Group]:
    """Per (minute 'YYYY-MM-DDTHH:MM', agent, model or '', provider or ''), in row order."""
    groups: dict[tuple[str, str, str, str], _Group] = {}
    for row in rows:
        key = (row[_START][:16], row[_AGENT], row[_MODEL] or "", row[_PROVIDER] or "")
        group = groups.get(key)
        if group is None:
            group = groups[key] = [None, 0, 0, 0, 0, 0, None, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        tier = row[_TIER]
        if tier is not None and (group[0] is None or tier > group[0]):
            group[0] = tier
        group[1] += 1
        status = row[_STATUS]
        if status == "error":
            group[2] += 1
        elif status == "completed":
            group[3] += 1
        duration = row[_DURATION]
        if duration is not None:
            group[4] += 1
            group[5] += duration
            if group[6] is None or duration > group[6]:
                group[6] = duration
        if row[_KIND] == "llm":
            group[7] += 1
            for index, column in _LLM_SUMS:
                value = row[column]
                if value is not None:
                    group[index] += value
            cost = row[_COST]
            if cost is not None:
                group[14] += cost
                group[15] += 1
    return groups


def total_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """The minute and hour rows (period_s, slot, agent, model, provider, then the aggregates)
    the SQL upsert computes for span rows in insertion (rowid) order."""
    minutes = _minute_groups(rows)
    result = []
    hours: dict[tuple[str, str, str, str], _Group] = {}
    for key in sorted(minutes):  # an hour adds its minutes in minute order
        group = minutes[key]
        minute, agent, model, provider = key
        result.append((MINUTE, f"{minute}:00.000000+00:00", agent, model, provider, *group))
        hour_key = (f"{minute[:13]}:00:00.000000+00:00", agent, model, provider)
        hour = hours.get(hour_key)
        if hour is None:
            hours[hour_key] = list(group)
            continue
        for index, value in enumerate(group):
            if index not in _MAXED:
                hour[index] += value
            elif value is not None and (hour[index] is None or value > hour[index]):
                hour[index] = value
    result += [(HOUR, *key, *group) for key, group in hours.items()]
    return result
