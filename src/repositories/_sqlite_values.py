"""Many rows in one SQLite statement (`INSERT ... VALUES (...), (...)`, `... IN (?, ?)`) instead
of `executemany` or a statement per value.

Why: CPython's sqlite3 gives the GIL up around each statement's step and must win it back; beside
a busy agent thread each step can wait up to a switch interval (5 ms). `executemany` steps once
a row: 5,000 span rows took 11-37 s there instead of ~50 ms (BENCHMARKS.md, session 6). A
statement of many rows steps once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from itertools import chain, islice
from typing import Any

__all__ = ["ROWS_PER_STATEMENT", "execute_rows", "select_in"]

ROWS_PER_STATEMENT = 500


def _per_statement(conn: sqlite3.Connection, width: int) -> int:
    """Rows of `width` bound variables a statement may take: up to ROWS_PER_STATEMENT, fewer
    when the connection's variable limit says so."""
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width
    return max(1, min(ROWS_PER_STATEMENT, limit))


def execute_rows(
    conn: sqlite3.Connection, head: str, rows: Iterable[Sequence[Any]], tail: str = ""
) -> int:
    """`{head} VALUES (?, ...), ... {tail}` over `rows` (all of one width; none: nothing runs);
    returns the rows the statements changed. `rows` may be a generator, taken a statement's
    rows at a time (fewer live objects, so fewer garbage collections on a big batch)."""
    remaining = iter(rows)
    first = next(remaining, None)
    if first is None:
        return 0
    marks = f"({', '.join('?' * len(first))})"
    per = _per_statement(conn, len(first))
    remaining = chain((first,), remaining)
    changed = 0
    while chunk := list(islice(remaining, per)):
        statement = f"{head} VALUES {', '.join([marks] * len(chunk))} {tail}"
        changed += conn.execute(statement, [value for row in chunk for value in row]).rowcount
    return changed


def select_in(conn: sqlite3.Connection, head: str, values: Sequence[Any]) -> list[Any]:
    """The rows of `{head} IN (?, ...)` over `values` (a query ending in a column, e.g.
    `SELECT ... WHERE key`), in as many statements as the variable limit needs."""
    per = _per_statement(conn, 1)
    found: list[Any] = []
    for first in range(0, len(values), per):
        chunk = values[first : first + per]
        found += conn.execute(f"{head} IN ({', '.join('?' * len(chunk))})", chunk).fetchall()
    return found
