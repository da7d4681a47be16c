"""Two `e2i-obs spool replay` processes on one spool at once (issue 11, item 9: two concurrent
replays counted 2,200 replayed for 2,000 spans, both having read files before either
acknowledged them).

20,000 spans wait in the spool in 200 files; two real processes replay it into one SQLite
file at the same time. Each process claims a file (a rename) before sending it, so together
they report exactly 20,000 replayed, every span is stored once, and nothing is left in the
spool (no file, no claim). Whether the two replays overlap is up to the scheduler; the
answer must be the same either way. (A process that finishes while the other still sends a
file it claimed reports those bytes as still waiting, exit 1: true when it looked.)
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path

import pytest

from src.agents.ml_foundation.observability_connector.spool import Spool
from tests.fixtures.processes import environment, run_python
from tests.integration.test_cli import OVERRIDES
from tests.load.support import indexed_spans, span_ids, sqlite_span_keys

pytestmark = pytest.mark.load

SPANS = 20_000
PER_FILE = 100


def test_spool_replay__two_processes_at_once__each_span_replayed_and_counted_once(
    tmp_path: Path,
) -> None:
    spool_dir, db = tmp_path / "spool", tmp_path / "obs.db"
    spool = Spool(spool_dir / "database", 2**40)
    for first in range(0, SPANS, PER_FILE):
        assert spool.append(list(indexed_spans(first, first + PER_FILE)))
    config = tmp_path / "obs.yaml"
    config.write_text(
        "opik:\n  enabled: false\n"
        f"storage:\n  sqlite_path: {db}\n  spool_dir: {spool_dir}\n  timeout_seconds: 60\n"
        "batching:\n  shutdown_timeout_seconds: 60\n",
        encoding="utf-8",
    )
    done: list = []

    def replay() -> None:
        args = ["-m", "src.cli.main", "--config", str(config), "spool", "replay"]
        done.append(run_python(args, environment(OVERRIDES), timeout=240))

    replays = [threading.Thread(target=replay) for _ in range(2)]
    for thread in replays:
        thread.start()
    for thread in replays:
        thread.join()

    for process in done:  # 1: it saw files the other one had claimed and was still sending
        assert process.returncode == 0 or (
            process.returncode == 1 and "still waiting in the spool" in process.stderr
        ), process.stderr
    counts = [re.search(r"replayed ([\d,]+) spans", p.stdout) for p in done]
    assert all(counts), [p.stdout for p in done]
    replayed = [int(m.group(1).replace(",", "")) for m in counts if m]
    assert sum(replayed) == SPANS, replayed  # counted once, whoever replayed it
    stored = Counter(sqlite_span_keys(db))
    assert set(stored) == {span_ids(i) for i in range(SPANS)}
    assert set(stored.values()) == {1}
    assert list((spool_dir / "database").iterdir()) == []  # no file, no claim left
    print(f"replayed by each process: {replayed}")
