"""The handler driven flat out on the embedded default (issue 15's "0 spans spilled" target).

    python -m benchmarks.flat_out [SECONDS]     # default 30

One thread calls a langchain-core fake chat model (real `usage_metadata`) with our callback
handler attached, as fast as it can for SECONDS, through the connector `build_opik_connector`
makes from the default configuration (SQLite, Opik off) in a temporary folder. Then one
`flush()`. Prints the calls, spans per second, and per sink what was emitted, spooled and
dropped, read from the pipeline's counters; the SQLite row count is read back as a check.
Writes nothing else.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from src.agents.ml_foundation.observability_connector.callback import (
    ObservabilityCallbackHandler,
)
from src.agents.ml_foundation.observability_connector.config import load_config
from src.mlops.opik_default import build_opik_connector
from src.repositories.span_store import TABLE_NAME

from .bench_callback import make_llm_call


def main(argv: list[str]) -> None:
    seconds = float(argv[0]) if argv else 30.0
    with tempfile.TemporaryDirectory(prefix="e2i-flat-out-") as tmp:
        work = Path(tmp)
        config = load_config(
            env={},
            overrides={
                "storage": {"sqlite_path": str(work / "obs.db"), "spool_dir": str(work / "spool")},
                "opik": {"enabled": False},
            },
        )
        connector = build_opik_connector(config)
        handler = ObservabilityCallbackHandler(agent_name="gap_analyzer", connector=connector)
        call = make_llm_call()
        run_config = {"callbacks": [handler]}
        try:
            calls, started = 0, time.perf_counter()
            deadline = started + seconds
            while time.perf_counter() < deadline:
                for _ in range(100):
                    call(run_config)
                calls += 100
            elapsed = time.perf_counter() - started
            flushed = connector.flush(300)
        finally:
            connector.close(300)  # replays what the run spilled, so the rows below are all
        stats = connector.processor.stats()
        with sqlite3.connect(work / "obs.db") as conn:
            (stored,) = conn.execute(f"SELECT count(*) FROM {TABLE_NAME}").fetchone()
    rate = calls / elapsed
    print(f"{calls:,} LLM calls in {elapsed:.1f} s ({rate:,.0f} calls/s); flush() -> {flushed}")
    for name, sink in stats.sinks.items():
        print(
            f"  {name}: emitted {sink.emitted:,}, spooled {sink.spooled:,}, replayed "
            f"{sink.replayed:,}, dropped {sink.dropped:,}, rejected {sink.rejected:,}"
        )
    print(f"  rows in SQLite: {stored:,}")


if __name__ == "__main__":
    main(sys.argv[1:])
