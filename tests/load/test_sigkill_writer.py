"""A writer process killed with SIGKILL mid-run loses at most what it held only in memory, and
everything it had spooled is replayed by the next process.

Spans held only in memory at any instant: the queue (<= max_queue_size), the batch the worker is
writing (<= max_backlog_batch_size while a backlog exists) and an overflow batch being written to
the spool (<= max_batch_size).
Spool files are fsync'd and renamed into place, SQLite commits are atomic: neither is lost.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from src.agents.ml_foundation.observability_connector.spool import Spool
from tests.load.sigkill_writer import SETTINGS
from tests.load.support import WAIT, SqlitePipeline, span_ids, sqlite_span_keys

pytestmark = pytest.mark.load

ROOT = Path(__file__).resolve().parents[2]
SPANS = 8000
BACKLOG_BATCH = max(SETTINGS.max_batch_size, SETTINGS.max_backlog_batch_size)
IN_FLIGHT = min(SETTINGS.max_queue_size, BACKLOG_BATCH)
LOSS_BOUND = SETTINGS.max_queue_size + SETTINGS.max_batch_size + IN_FLIGHT


def test_writer__sigkill_mid_run__loss_within_in_memory_bound_and_spool_replayed(
    tmp_path: Path,
) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.load.sigkill_writer", str(tmp_path), str(SPANS)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    acknowledged = -1
    try:
        for line in writer.stdout:
            if line.strip() == "submitted":
                writer.send_signal(signal.SIGKILL)  # the worker is still draining the queue
                break
            acknowledged = int(line)
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    assert acknowledged == SPANS - 1

    spool = Spool(tmp_path / "spool" / "database", SETTINGS.spool_max_bytes)
    spooled = {(s.trace_id, s.span_id) for batch in spool.pending_batches() for s in batch.spans}
    assert spooled, "the preloaded overflow must be in the spool at the kill"
    in_db_at_kill = set(sqlite_span_keys(tmp_path / "obs.db"))

    restarted = SqlitePipeline.build(tmp_path, SETTINGS)
    try:
        restarted.processor.replay_spool(WAIT)
        replayed = restarted.processor.stats().replayed  # the worker may have started alone
    finally:
        restarted.close()

    stored = Counter(sqlite_span_keys(tmp_path / "obs.db"))
    submitted = {span_ids(i) for i in range(SPANS)}
    assert set(stored.values()) == {1}
    assert set(stored) <= submitted
    assert spooled <= set(stored)  # everything spooled was replayed
    assert replayed == len(spooled)
    assert in_db_at_kill <= set(stored)
    lost = submitted - set(stored)
    assert len(lost) <= LOSS_BOUND, f"lost {len(lost)} spans, bound {LOSS_BOUND}"
