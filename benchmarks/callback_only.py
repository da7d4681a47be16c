"""The callback benchmark alone, for a machine too busy for `make bench`.

    python -m benchmarks.callback_only [N] [GRAPH_N] [ROUNDS] [P99_RUNS]
    # defaults: 5000 3000 5 5 (the full-mode sizes)

Prints each row's ratio line (verdicts included) and its notes; writes nothing.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from .bench_callback import run_callback_benchmarks


def main(argv: list[str]) -> None:
    n, graph_n, rounds, p99_runs = _sizes(argv)
    with tempfile.TemporaryDirectory(prefix="e2i-bench-callback-") as tmp:
        results = run_callback_benchmarks(
            n=n, graph_n=graph_n, rounds=rounds, warmup=300, work_dir=Path(tmp), p99_runs=p99_runs
        )
    for r in results:
        print(r.ratio_line())
        print(f"    ours {r.ours:.1f}, baseline {r.baseline:.1f} {r.unit}; {r.notes}")


def _sizes(argv: list[str]) -> tuple[int, int, int, int]:
    defaults = (5000, 3000, 5, 5)
    values = [int(a) for a in argv[:4]]
    return tuple(values + list(defaults[len(values) :]))  # type: ignore[return-value]


if __name__ == "__main__":
    main(sys.argv[1:])
