"""100,000 spans in bursts larger than the queue. `submit()` is a queue put (no I/O on the
caller's thread, issue 11 item 3): the worker drains and, when the sink is busy, spills to the
spool; what neither can take in time is dropped and counted. The counters add up for the sink,

    submitted == emitted + spooled + dropped (+ invalid + sampled_out + rejected, all 0 here)

`flush()` reports the drops, and after replay the database holds every span that was not
counted as dropped, exactly once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from src.agents.ml_foundation.observability_connector.config import BatchingSettings
from tests.load.support import (
    WAIT,
    SqlitePipeline,
    indexed_span,
    indexed_spans,
    span_ids,
    sqlite_locked,
    sqlite_span_keys,
)

pytestmark = pytest.mark.load

SPANS = 100_000
QUEUE = 1_000
BURST = 5 * QUEUE


def _settings(**extra: object) -> BatchingSettings:
    return BatchingSettings(
        max_batch_size=100, max_queue_size=QUEUE, max_batch_wait_seconds=1.0, **extra
    )


def test_batch_processor__100k_spans_in_bursts_over_the_queue__each_stored_once_or_counted(
    tmp_path: Path,
) -> None:
    pipeline = SqlitePipeline.build(tmp_path, _settings(), autostart=False)
    processor = pipeline.processor
    spans = [indexed_span(i) for i in range(SPANS)]
    try:
        for span in spans[:BURST]:  # no worker yet: the caller never spills, it drops
            processor.submit(span)
        first = processor.stats()
        processor.start()
        for start in range(BURST, SPANS, BURST):
            for span in spans[start : start + BURST]:
                processor.submit(span)
        result = processor.flush(WAIT)
        processor.replay_spool(WAIT)  # the worker may have replayed part already, on its own
        after = processor.stats()
    finally:
        pipeline.close()

    assert (first.sinks["database"].dropped, first.spooled) == (BURST - QUEUE, 0)
    assert not list((tmp_path / "spool").glob("*/*.jsonl"))  # nothing written by the caller
    database = result.stats.sinks["database"]
    assert result.stats.submitted == SPANS == result.stats.accounted("database")
    assert result.timed_out is False
    assert result.dropped == {"database": database.dropped}
    assert bool(result) is (database.dropped == 0)
    assert after.sinks["database"].replayed == database.spooled
    assert after.spool_bytes["database"] == 0
    stored = Counter(sqlite_span_keys(pipeline.db))
    assert set(stored.values()) == {1}
    assert set(stored) <= {span_ids(i) for i in range(SPANS)}
    assert len(stored) == SPANS - database.dropped  # what was not counted as dropped arrived


def test_batch_processor__store_down_spool_cap_reached__drops_counted_and_counters_add_up(
    tmp_path: Path,
) -> None:
    cap = 200_000  # bytes: room for a few hundred spans
    pipeline = SqlitePipeline.build(
        tmp_path, _settings(spool_max_bytes=cap), busy_timeout_seconds=0.2
    )
    processor = pipeline.processor
    spans = 4 * BURST
    reported = 0
    try:
        with sqlite_locked(pipeline.db):
            for first in range(0, spans, QUEUE // 2):  # paced by flush: never a full queue
                for span in indexed_spans(first, first + QUEUE // 2):
                    processor.submit(span)
                full = processor.flush(WAIT)
                assert bool(full) is not full.dropped
                reported += full.dropped.get("database", 0)  # each drop told once
        processor.replay_spool(WAIT)
        settled = processor.flush(WAIT)
    finally:
        pipeline.close()

    database = full.stats.sinks["database"]
    assert reported == database.dropped > 0  # the spool filled up ...
    assert 0 < full.stats.spool_bytes["database"] <= cap  # ... and never grew past its cap
    assert database.emitted == 0 and database.spooled + database.dropped == spans
    assert settled.stats.accounted("database") == settled.stats.submitted == spans
    stored = set(sqlite_span_keys(pipeline.db))
    assert len(stored) == spans - database.dropped  # what was not counted as dropped arrived
