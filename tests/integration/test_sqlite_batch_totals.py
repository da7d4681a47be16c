"""The SQLite rollup totals computed in Python from an inserted batch
(src/repositories/_sqlite_batch_totals.py) against the SQL upsert they replace
(`_sqlite_rollups._add_totals`): the same minute and hour rows, float for float and with their
types, on real SQLite files, after several batches merged into stored rows."""

from __future__ import annotations

import random

import pytest

from src.repositories import _sqlite_batch_totals as batch_totals
from src.repositories._rows import SPAN_COLUMNS, span_to_sqlite_row
from src.repositories._sqlite_rollups import ROLLUPS_TABLE
from tests.integration.test_rollups import traffic
from tests.integration.test_sqlite_batch_sketches import _connect, _write, both_paths, stored

pytestmark = pytest.mark.skipif(
    not batch_totals.USABLE, reason="SQLite 3.43+ sums REAL compensated: SQL path only"
)

_PROVIDER = SPAN_COLUMNS.index("provider")
_CACHE_READ = SPAN_COLUMNS.index("cache_read_tokens")


def _varied(row: tuple[object, ...], rng: random.Random) -> tuple[object, ...]:
    """A provider (or none) and cache-read tokens on some rows, which `traffic` leaves out."""
    values = list(row)
    values[_PROVIDER] = rng.choice([None, "openai", "anthropic"])
    values[_CACHE_READ] = rng.choice([None, rng.randint(0, 300)])
    return tuple(values)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_batch_totals__random_batches__identical_to_sql_upsert(tmp_path, seed):
    """Several agents, models, providers, hours and minutes; zero, None and long durations;
    errors, open spans, tokens and costs; batches of different sizes merged into stored rows."""
    rng = random.Random(seed)
    spans = traffic(seed, hours=rng.choice([0.5, 2.0, 9.0]), n=1200)
    rows = [_varied(span_to_sqlite_row(span), rng) for span in spans]
    with both_paths(tmp_path, rows, rng, [1, 7, 150, 500]) as (by_sql, by_python):
        expected = stored(by_sql, ROLLUPS_TABLE, keys=5)
        assert len(expected) > 100
        assert stored(by_python, ROLLUPS_TABLE, keys=5) == expected


def test_batch_totals__one_batch__rows_equal_sql_select(tmp_path):
    """`total_rows` alone against the rows the SQL upsert stores for the same fresh rows: the
    values before column affinity (an empty sum is the integer 0, as SQL's COALESCE gives)."""
    rows = [span_to_sqlite_row(span) for span in traffic(11, hours=3.0, n=800)]
    conn = _connect(tmp_path / "one.db")
    try:
        _write(conn, rows, python=False)
        stored = conn.execute(f"SELECT * FROM {ROLLUPS_TABLE} ORDER BY 1, 2, 3, 4, 5").fetchall()
    finally:
        conn.close()
    built = sorted(batch_totals.total_rows(rows), key=lambda r: r[:5])
    assert built == [tuple(row) for row in stored]
