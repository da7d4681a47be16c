"""100,000 spans in bursts larger than the queue: the overflow goes to the disk spool, nothing is
dropped while the spool has room, and the counters add up for the sink:

    submitted == emitted + spooled + dropped (+ invalid + sampled_out + rejected, all 0 here)

The first burst is submitted before the worker starts, so the spill is certain, not a race.
Then the worker drains concurrently with the remaining bursts; `flush()` and `replay_spool()`
synchronise, and the database must end up with every span exactly once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from src.agents.ml_foundation.observability_connector.config import BatchingSettings
from tests.load.support import WAIT, SqlitePipeline, indexed_spans, span_ids, sqlite_span_keys

pytestmark = pytest.mark.load

SPANS = 100_000
QUEUE = 1_000
BURST = 5 * QUEUE


def _settings(**extra: object) -> BatchingSettings:
    return BatchingSettings(
        max_batch_size=100, max_queue_size=QUEUE, max_batch_wait_seconds=3600.0, **extra
    )


def test_batch_processor__100k_spans_in_bursts_over_the_queue__none_dropped_counters_add_up(
    tmp_path: Path,
) -> None:
    pipeline = SqlitePipeline.build(tmp_path, _settings(), autostart=False)
    processor = pipeline.processor
    try:
        for span in indexed_spans(0, BURST):
            processor.submit(span)
        assert processor.stats().spooled == BURST - QUEUE  # the first burst spilled for sure
        processor.start()
        for first in range(BURST, SPANS, BURST):
            for span in indexed_spans(first, first + BURST):
                processor.submit(span)
        assert processor.flush(WAIT)
        before_replay = processor.stats()
        processor.replay_spool(WAIT)  # the worker may have replayed part already, on its own
        after = processor.stats()
    finally:
        pipeline.close()

    database = before_replay.sinks["database"]
    assert before_replay.submitted == SPANS
    assert database.dropped == 0 and before_replay.dropped == 0
    assert database.emitted + database.spooled == SPANS
    assert before_replay.accounted("database") == SPANS
    assert after.sinks["database"].replayed == database.spooled
    assert after.spool_bytes["database"] == 0
    stored = Counter(sqlite_span_keys(pipeline.db))
    assert set(stored) == {span_ids(i) for i in range(SPANS)}
    assert set(stored.values()) == {1}


def test_batch_processor__spool_cap_reached__drops_counted_and_counters_add_up(
    tmp_path: Path,
) -> None:
    cap = 200_000  # bytes: room for a few hundred spans
    pipeline = SqlitePipeline.build(tmp_path, _settings(spool_max_bytes=cap), autostart=False)
    processor = pipeline.processor
    spans = 4 * BURST
    try:
        for span in indexed_spans(0, spans):  # worker not started: everything past QUEUE spills
            processor.submit(span)
        full = processor.stats()
        processor.start()
        assert processor.flush(WAIT)
        settled = processor.stats()
        processor.replay_spool(WAIT)
    finally:
        pipeline.close()

    database = full.sinks["database"]
    assert database.dropped > 0  # the spool filled up ...
    assert 0 < full.spool_bytes["database"] <= cap  # ... and never grew past its cap
    assert database.spooled + database.dropped == spans - QUEUE
    assert settled.accounted("database") == settled.submitted == spans
    stored = set(sqlite_span_keys(pipeline.db))
    assert len(stored) == spans - database.dropped  # what was not counted as dropped arrived
