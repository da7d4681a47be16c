"""Benchmark 4: resident memory while N spans pass through the pipeline into SQLite.

Runs in its own process (`python -m benchmarks.bench_memory`), so the peak is the pipeline's,
not the leftovers of other benchmarks. Spans arrive in bursts of `max_queue_size` (what one
busy agent process produces between two flushes), each burst followed by `flush()`; every
span is distinct (ids from its index). RSS is sampled after each burst. "Flat" means the peak
stays near the RSS after the first tenth of the run: nothing grows with the number of spans
(queue, run maps, counters, caches, SQLite page cache are all bounded).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from uuid import UUID

from src.agents.ml_foundation.observability_connector.batch_processor import BatchProcessor
from src.agents.ml_foundation.observability_connector.config import BatchingSettings
from src.agents.ml_foundation.observability_connector.db_sink import DatabaseSink
from src.repositories.sqlite_repository import SqliteSpanRepository

from .data import make_spans
from .report import BenchResult, Target

__all__ = ["run_memory_benchmark"]

FLAT_TARGET = Target("peak/warm", "<=", 1.1, "peak <= 1.1x warm RSS (flat)")


def _status_mb(field: str) -> float:
    """`VmRSS` (now) or `VmHWM` (peak of this process image; ru_maxrss would include the
    parent's memory at fork) from /proc/self/status, in MB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"/proc/self/status has no {field}")


def _measure(n: int, work_dir: Path) -> dict[str, float]:
    settings = BatchingSettings()
    burst = settings.max_queue_size
    sink = DatabaseSink(SqliteSpanRepository(work_dir / "memory.db"))
    sink.setup()
    processor = BatchProcessor([sink], settings, work_dir / "spool")
    template = make_spans(2)[1]
    samples: list[float] = []
    warm = None
    try:
        for first in range(0, n, burst):
            for i in range(first, min(first + burst, n)):
                processor.submit(
                    template.model_copy(
                        update={
                            "id": UUID(int=i + 1),
                            "span_id": f"{i + 1:016x}",
                            "trace_id": f"{i // 4 + 1:032x}",
                            "parent_span_id": None,
                        }
                    )
                )
            if not processor.flush(600):
                raise RuntimeError("the batch processor did not flush in time")
            samples.append(_status_mb("VmRSS"))
            if warm is None and first + burst >= n // 10:
                warm = samples[-1]
        stats = processor.stats()
    finally:
        processor.close(60)
        sink.close()
    database = stats.sinks["database"]
    if database.emitted + database.spooled != n or stats.dropped:  # a burst may spill: counted
        raise RuntimeError(f"not every span reached the database or its spool: {stats}")
    peak = _status_mb("VmHWM")
    return {"warm_mb": warm or samples[0], "peak_mb": peak, "final_mb": samples[-1], "n": n}


def run_memory_benchmark(*, n: int, work_dir: Path) -> list[BenchResult]:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_memory", "--spans", str(n), "--dir", work_dir],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"memory benchmark failed:\n{completed.stderr[-4000:]}")
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    warm, peak = figures["warm_mb"], figures["peak_mb"]
    print(f"  memory: warm {warm:.1f} MB, peak {peak:.1f} MB", flush=True)
    return [
        BenchResult(
            name="memory: peak RSS while spans pass through the pipeline",
            backend="sqlite",
            n=n,
            unit="mb",
            baseline_label="RSS after the first tenth",
            baseline=warm,
            ours=peak,
            ratios={"peak/warm": peak / warm},
            targets=[FLAT_TARGET],
            notes=f"final RSS {figures['final_mb']:.1f} MB; bursts of max_queue_size, "
            "flush after each",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, required=True)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    if args.spans < 1:
        parser.error(f"--spans must be >= 1, got {args.spans}")
    with tempfile.TemporaryDirectory(prefix="e2i-bench-memory-", dir=args.dir) as work:
        print(json.dumps(_measure(args.spans, Path(work))), flush=True)


if __name__ == "__main__":
    main()
