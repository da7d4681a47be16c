"""Many rows in one SQLite statement (`INSERT ... VALUES (...), (...)`, `... IN (?, ?)`) instead
of `executemany` or a statement per value.

Why: CPython's sqlite3 gives the GIL up around each statement's step and must win it back; beside
a busy agent thread each step can wait up to a switch interval (5 ms). `executemany` steps once
a row: 5,000 span rows took 11-37 s there instead of ~50 ms (BENCHMARKS.md, session 6). A
statement of many rows steps once.

Each statement of a new length is compiled and kept in the connection's statement cache (128
statements by default; one of 500 span rows binds ~17,000 variables and holds ~1 MB). Batches
come in every size, so a statement takes `ROWS_PER_STATEMENT` rows and the rest is cut in
powers of two (`statement_sizes`): at most 10 lengths per statement head, not one per size of
remainder (those grew a process by ~80 MB over 1M spans: BENCHMARKS.md, session 7).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, islice
from typing import Any

__all__ = ["ROWS_PER_STATEMENT", "execute_rows", "select_in", "statement_sizes"]

ROWS_PER_STATEMENT = 500


def _per_statement(conn: sqlite3.Connection, width: int) -> int:
    """Rows of `width` bound variables a statement may take: up to ROWS_PER_STATEMENT, fewer
    when the connection's variable limit says so."""
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width
    return max(1, min(ROWS_PER_STATEMENT, limit))


def statement_sizes(rows: int, per: int) -> list[int]:
    """Rows per statement for `rows` rows: `per` while that many are left, then the rest as
    falling powers of two (its binary digits), so only a few statement lengths ever occur."""
    sizes = [per] * (rows // per)
    rest = rows % per
    while rest:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    return sizes


def _statements(rows: list[Any], per: int) -> Iterator[list[Any]]:
    """`rows` in statements of `statement_sizes`."""
    first = 0
    for size in statement_sizes(len(rows), per):
        yield rows[first : first + size]
        first += size


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
    while taken := list(islice(remaining, per)):
        for chunk in _statements(taken, per):
            statement = f"{head} VALUES {', '.join([marks] * len(chunk))} {tail}"
            changed += conn.execute(statement, [value for row in chunk for value in row]).rowcount
    return changed


def select_in(conn: sqlite3.Connection, head: str, values: Sequence[Any]) -> list[Any]:
    """The rows of `{head} IN (?, ...)` over `values` (a query ending in a column, e.g.
    `SELECT ... WHERE key`), in as many statements as the variable limit needs."""
    per = _per_statement(conn, 1)
    found: list[Any] = []
    for chunk in _statements(list(values), per):
        found += conn.execute(f"{head} IN ({', '.join('?' * len(chunk))})", chunk).fetchall()
    return found
