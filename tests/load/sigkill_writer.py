"""The writer process of the SIGKILL test: `python -m tests.load.sigkill_writer DIR N`.

Submits spans 0..N-1 (ids from `support.indexed_span`) to a BatchProcessor writing to
DIR/obs.db and spooling to DIR/spool, printing each index on stdout after its `submit()`
returned, so the parent knows exactly which spans were handed over. The first `PRELOAD` spans
are submitted before the worker starts, so the overflow past the queue is certainly in the spool.
After the last span it prints `submitted` and waits on stdin (the parent never answers: it sends
SIGKILL while the worker is still writing the queue), so the kill always lands mid-run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from src.agents.ml_foundation.observability_connector.config import BatchingSettings
from tests.load.support import SqlitePipeline, indexed_span

SETTINGS = BatchingSettings(max_batch_size=50, max_queue_size=500, max_batch_wait_seconds=3600.0)
PRELOAD = 2000


def main(db_dir: Path, count: int) -> None:
    pipeline = SqlitePipeline.build(db_dir, SETTINGS, autostart=False)
    spans = [indexed_span(i) for i in range(count)]
    out = sys.stdout
    for i, span in enumerate(spans):
        if i == PRELOAD:
            pipeline.processor.start()
        pipeline.processor.submit(span)
        out.write(f"{i}\n")
        out.flush()
    out.write("submitted\n")
    out.flush()
    sys.stdin.readline()  # the parent kills us here; if it does not, shut down cleanly
    pipeline.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
