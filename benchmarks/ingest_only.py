"""The ingestion benchmark alone (SQLite and PostgreSQL), for a machine too busy for `make bench`.

    python -m benchmarks.ingest_only [N] [REPS]     # defaults: 100000 2 (the full-mode sizes)

Prints each row (floor, ours, ratio, adaptive-off variant); writes nothing.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from .bench_ingest import database_results
from .data import make_spans
from .servers import postgres_server


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else 100_000
    reps = int(argv[1]) if len(argv) > 1 else 2
    spans = make_spans(n)
    with tempfile.TemporaryDirectory(prefix="e2i-bench-ingest-") as tmp, postgres_server() as pg:
        results = database_results(spans, reps, Path(tmp), pg)
    for r in results:
        ratio = r.ratios["ours/floor"]
        head = f"{r.backend}: floor {r.baseline:,.0f}/s, ours {r.ours:,.0f}/s ({ratio:.2f})"
        print(f"{head}; {r.notes}")


if __name__ == "__main__":
    main(sys.argv[1:])
