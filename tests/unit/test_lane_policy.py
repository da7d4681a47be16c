"""Issue 15's lane policy: a busy but healthy sink's backlog waits in memory (nothing spooled
for a burst of a whole `max_queue_size`), a failing sink's batches are spooled at once, and a
healthy lane's spool drains, a file between live batches, while live load continues."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan
from src.agents.ml_foundation.observability_connector.spool import Spool
from tests.unit.test_batch_processor import (
    WAIT,
    DownSink,
    GateSink,
    ListSink,
    assert_balanced,
    ids,
    make_span,
    processors,  # noqa: F401  (fixture)
    settings,
)


def _wait_until(check, timeout: float = WAIT) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.005)
    return check()


def test_burst_of_max_queue_size__sink_busy_but_healthy__nothing_spooled(
    processors,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The sink is inside its first write during the whole burst (it waits on a gate): the
    worker holds one backlog batch for it and the rest waits in the queue; nothing is spooled,
    nothing dropped, every span is written once."""
    slow = GateSink("db")
    queue = 1000
    processor = processors(
        [slow],
        settings(max_queue_size=queue, max_batch_size=10, max_backlog_batch_size=500),
        tmp_path,
    )
    spans = [make_span(i) for i in range(queue)]
    processor.submit(spans[0])
    processor.flush(timeout=0.0)  # ask for a batch now: the first span goes alone
    assert slow.entered.wait(WAIT)
    for span in spans[1:]:
        processor.submit(span)
    busy = processor.stats()
    slow.gate.set()
    result = processor.flush(timeout=WAIT)

    assert busy.sinks["db"].spooled == 0 and busy.dropped == 0
    assert result.ok and result.dropped == {}
    db = result.stats.sinks["db"]
    assert (db.emitted, db.spooled, db.dropped) == (queue, 0, 0)
    assert sorted(slow.span_ids) == sorted(ids(queue))
    assert not (tmp_path / "db").exists() or Spool(tmp_path / "db", 10**9).count() == 0
    assert_balanced(result.stats)


def test_failing_sink__batches_spooled_at_once__no_backlog_in_memory(
    processors,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A failing sink gets nothing held for it: each full batch is spooled as soon as it is
    taken, without waiting for the queue to fill or for a flush."""
    down = DownSink("db")
    processor = processors(
        [down], settings(max_queue_size=1000, max_batch_size=5, retry_max_attempts=1), tmp_path
    )
    for i in range(5):
        processor.submit(make_span(i))
    assert down.failed.wait(WAIT)  # the first batch failed: the sink is failing now
    for i in range(5, 25):
        processor.submit(make_span(i))

    assert _wait_until(lambda: processor.stats().sinks["db"].spooled == 25)
    assert processor.stats().queue_depth == 0


class SlowListSink(ListSink):
    """Takes a little time per write (so the lane is busy and live batches wait for it)."""

    def write(self, batch: Sequence[ObservabilitySpan]) -> int:
        time.sleep(0.002)
        return super().write(batch)


def test_spool_pending__live_load_continues__spool_drains_between_live_batches(
    processors,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A spool left from before (40 files) is replayed while a producer keeps live batches
    waiting for the lane all the time: the spool empties before the producer stops, and every
    span, live or spooled, is written exactly once."""
    spooled = [make_span(i) for i in range(400)]
    spool = Spool(tmp_path / "db", 10**9)
    for first in range(0, 400, 10):
        assert spool.append(spooled[first : first + 10])
    sink = SlowListSink("db")
    processor = processors(
        [sink],
        settings(max_queue_size=1000, max_batch_size=5, max_backlog_batch_size=500),
        tmp_path,
    )
    stop = threading.Event()
    live: list[int] = []

    def produce() -> None:
        i = 400
        while not stop.is_set() and i < 400 + 200_000:
            if processor.stats().queue_depth < 15:  # always more than a batch waiting
                processor.submit(make_span(i))
                live.append(i)
                i += 1
            else:
                time.sleep(0.0005)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        drained = _wait_until(lambda: spool.count() == 0 and len(sink.span_ids) > 400)
        still_live = producer.is_alive()
        written_live_before_stop = len(live)
    finally:
        stop.set()
        producer.join(WAIT)
    result = processor.flush(timeout=WAIT)

    assert drained and still_live
    assert written_live_before_stop > 0
    assert result.ok
    db = result.stats.sinks["db"]
    assert db.replayed == 400 and db.spooled == 0
    assert sorted(sink.span_ids) == sorted(ids(400 + len(live)))
