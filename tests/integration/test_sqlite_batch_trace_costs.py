"""The SQLite trace costs computed in Python from an inserted batch
(src/repositories/_sqlite_batch_trace_costs.py) against the SQL statements they replace
(`_sqlite_trace_costs.add_new_rows`): the same running costs and cost sketch rows, float for
float and byte for byte, on real SQLite files, with traces spread over many batches (so their
costs move between buckets)."""

from __future__ import annotations

import random

import pytest

from src.repositories import _sqlite_batch_trace_costs as batch_trace_costs
from src.repositories._rows import span_to_sqlite_row
from src.repositories._sqlite_trace_costs import COSTS_TABLE, SKETCH_TABLE
from tests.integration.test_sqlite_batch_sketches import _connect, _write, both_paths, stored
from tests.integration.test_trace_costs import trace_traffic

pytestmark = pytest.mark.skipif(
    not batch_trace_costs.USABLE, reason="SQLite 3.43+ sums REAL compensated: SQL path only"
)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_batch_trace_costs__random_batches__identical_to_sql(tmp_path, seed):
    """Traces of 1-8 priced, unpriced and zero-cost calls over several agents, shuffled into
    batches of different sizes (the largest hold more traces than one lookup statement)."""
    rng = random.Random(seed)
    spans = trace_traffic(seed, traces=rng.choice([300, 900]), hours=rng.choice([2.0, 9.0]))
    rows = [span_to_sqlite_row(span) for span in spans]
    with both_paths(tmp_path, rows, rng, [1, 7, 150, 1500]) as (by_sql, by_python):
        for table in (COSTS_TABLE, SKETCH_TABLE):
            expected = stored(by_sql, table)
            assert len(expected) > 50
            assert stored(by_python, table) == expected, table
        priced = {s.trace_id for s in spans if s.cost_usd is not None and s.span_kind == "llm"}
        (counted,) = by_python.execute(
            f"SELECT sum(trace_count) FROM {SKETCH_TABLE} WHERE period_s = 60 AND grp = ''"
        ).fetchone()
        assert counted == len(priced)  # each trace once, whatever buckets it moved through


def test_batch_trace_costs__no_priced_call__nothing_written(tmp_path):
    spans = [s for s in trace_traffic(7, traces=40) if s.cost_usd is None]
    conn = _connect(tmp_path / "none.db")
    try:
        _write(conn, [span_to_sqlite_row(span) for span in spans], python=True)
        assert stored(conn, COSTS_TABLE) == stored(conn, SKETCH_TABLE) == []
    finally:
        conn.close()
