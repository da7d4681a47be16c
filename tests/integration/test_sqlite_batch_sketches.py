"""The SQLite latency sketches built in Python from an inserted batch
(src/repositories/_sqlite_batch_sketches.py) against the SQL upsert they replace
(`_sqlite_sketches.ADD_NEW`): the same rows, byte for byte and float for float, on real SQLite
files, after several batches merged into stored sketches."""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from src.repositories import _sqlite_batch_sketches as batch_sketches
from src.repositories import _sqlite_rollups as rollup_sql
from src.repositories import _sqlite_sql
from src.repositories._rows import span_to_sqlite_row
from src.repositories._sqlite_sketches import SKETCHES_TABLE
from src.repositories.rollups import GAMMA, LOG_GAMMA
from src.repositories.sqlite_repository import SqliteSpanRepository
from tests.integration.test_rollups import traffic

pytestmark = pytest.mark.skipif(
    not batch_sketches.USABLE, reason="SQLite 3.43+ sums REAL compensated: SQL path only"
)


def _connect(path: Path) -> sqlite3.Connection:
    asyncio.run(SqliteSpanRepository(path).setup())
    conn = sqlite3.connect(path, isolation_level=None)
    rollup_sql.ensure_math(conn)
    return conn


def _write(conn: sqlite3.Connection, rows: list[tuple[object, ...]], *, python: bool) -> None:
    conn.execute("BEGIN IMMEDIATE")
    (before,) = conn.execute(rollup_sql.MAX_ROWID).fetchone()
    inserted = conn.executemany(_sqlite_sql.INSERT_SPAN, rows).rowcount
    assert inserted == len(rows)
    rollup_sql.add_new_rows(conn, before, rows if python else None)
    conn.execute("COMMIT")


def stored(conn: sqlite3.Connection, table: str, keys: int = 3) -> list[tuple[object, ...]]:
    """`table`'s rows in key order, each value with its type (0 is not 0.0 here)."""
    order = ", ".join(str(column) for column in range(1, keys + 1))
    rows = conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
    return [tuple((type(v).__name__, v) for v in row) for row in rows]


@contextmanager
def both_paths(
    tmp_path: Path, rows: list[tuple[object, ...]], rng: random.Random, sizes: list[int]
) -> Iterator[tuple[sqlite3.Connection, sqlite3.Connection]]:
    """Two databases holding `rows`, written in the same batches of random `sizes`: the first
    rolled up by the SQL statements, the second from the batches' rows in Python."""
    by_sql, by_python = _connect(tmp_path / "sql.db"), _connect(tmp_path / "python.db")
    try:
        start = 0
        while start < len(rows):
            size = rng.choice(sizes)
            for conn, python in ((by_sql, False), (by_python, True)):
                _write(conn, rows[start : start + size], python=python)
            start += size
        yield by_sql, by_python
    finally:
        by_sql.close()
        by_python.close()


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_batch_sketches__random_batches__identical_to_sql_upsert(tmp_path, seed):
    """Several agents, hours (6-hour slots cross), minutes; zero, None and long durations;
    errors, open spans, LLM tokens; batches of different sizes merged into stored rows."""
    rng = random.Random(seed)
    spans = traffic(seed, hours=rng.choice([2.0, 9.0]), n=1200)
    rows = [span_to_sqlite_row(span) for span in spans]
    with both_paths(tmp_path, rows, rng, [1, 7, 150, 500]) as (by_sql, by_python):
        expected = stored(by_sql, SKETCHES_TABLE)
        assert len(expected) > 20
        assert stored(by_python, SKETCHES_TABLE) == expected


def test_batch_sketches__one_batch__rows_equal_sql_select(tmp_path):
    """`sketch_rows` alone against the SQL's tier rows of the same fresh rows."""
    rows = [span_to_sqlite_row(span) for span in traffic(11, hours=7.0, n=800)]
    conn = _connect(tmp_path / "one.db")
    try:
        _write(conn, rows, python=False)
        expected = stored(conn, SKETCHES_TABLE)
    finally:
        conn.close()
    built = sorted(batch_sketches.sketch_rows(rows), key=lambda r: (r[0], r[1], r[2]))
    as_stored = [(*row[:8], float(row[8]), *row[9:]) for row in built]  # duration_sum is REAL
    assert [tuple((type(v).__name__, v) for v in row) for row in as_stored] == expected


def test_bucket__boundary_durations__python_equals_sql():
    """ceil(ln(d) / ln(gamma)) in SQLite and in Python on powers of gamma and their neighbours,
    where a last-bit difference would move a duration to the next bucket."""
    values = []
    for k in range(-700, 1500, 7):
        exact = GAMMA**k
        values += [exact, math.nextafter(exact, 0), math.nextafter(exact, math.inf)]
    values += [1e-300, 5e-324, 1.0, 1.7e308, 0.001, 250.0, 3.6e6]
    conn = sqlite3.connect(":memory:")
    rollup_sql.ensure_math(conn)
    try:
        sql = f"SELECT CAST(ceil(ln(?) / {LOG_GAMMA!r}) AS INTEGER)"
        for value in values:
            (bucket,) = conn.execute(sql, (value,)).fetchone()
            assert bucket == math.ceil(math.log(value) / LOG_GAMMA), value
    finally:
        conn.close()
