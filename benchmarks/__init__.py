"""Benchmarks of the observability connector against its peers and the physical limit.

Run with `make bench` (full) or `python -m benchmarks.run --mode smoke`. Each benchmark module
measures one thing and returns `BenchResult`s (`benchmarks.report`); `run` prints the ratios,
writes `benchmarks/results.json` and regenerates the table in `BENCHMARKS.md`. Nothing here
asserts on time: machines are shared, so figures are ratios against a baseline of the same run.
"""
