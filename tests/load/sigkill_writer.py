"""The writer process of the SIGKILL tests.

    python -m tests.load.sigkill_writer DIR COUNT [--dsn DSN] [--rate SPANS_PER_SECOND]

Builds the pipeline as the default connector does (`build_opik_connector`: the database sink
sets itself up on its own thread, spool in DIR/spool, Opik off): SQLite at DIR/obs.db, or the
PostgreSQL database `--dsn` names. Prints `ready`, then submits spans 0..COUNT-1 (ids from
`support.indexed_span`), printing each index after its `submit()` returned, so the parent knows
exactly which spans were handed over; `--rate` paces the load (a load generator's pacing, not
something a test waits on). After the last span it prints `dropped <n>` (spans dropped, each
counted, so far) and `submitted`, then waits on stdin: the parent sends SIGKILL before that.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pydantic import SecretStr

from src.agents.ml_foundation.observability_connector.config import (
    BatchingSettings,
    ObservabilityConfig,
    OpikSettings,
    StorageSettings,
)
from src.mlops.opik_default import build_opik_connector
from tests.load.support import indexed_span

SETTINGS = BatchingSettings(
    max_batch_size=50, max_backlog_batch_size=50, max_queue_size=500, max_batch_wait_seconds=1.0
)
"""Small on purpose: the README's bound (queue + 3 batches = 650 spans) is tight enough to mean
something."""


def config_for(directory: Path, dsn: str | None, settings: BatchingSettings) -> ObservabilityConfig:
    spool = directory / "spool"
    if dsn is None:
        storage = StorageSettings(
            backend="sqlite", sqlite_path=directory / "obs.db", spool_dir=spool
        )
    else:
        storage = StorageSettings(
            backend="postgres",
            url=SecretStr(dsn),
            spool_dir=spool,
            timeout_seconds=1.0,
            pool_timeout_seconds=1.0,
        )
    return ObservabilityConfig(storage=storage, opik=OpikSettings(enabled=False), batching=settings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("count", type=int)
    parser.add_argument("--dsn")
    parser.add_argument("--rate", type=float)
    args = parser.parse_args()
    connector = build_opik_connector(config_for(args.directory, args.dsn, SETTINGS))
    processor = connector.processor
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    started = time.monotonic()
    for i in range(args.count):
        processor.submit(indexed_span(i))
        out.write(f"{i}\n")
        out.flush()
        if args.rate:
            ahead = (i + 1) / args.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    out.write(f"dropped {processor.stats().dropped}\n")
    out.write("submitted\n")
    out.flush()
    sys.stdin.readline()  # the parent kills us here; if it does not, shut down cleanly
    connector.close()


if __name__ == "__main__":
    main()
