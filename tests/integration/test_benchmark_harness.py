"""The benchmark harness in smoke mode (tiny N), so it cannot rot: CI runs `make test` only,
and this test is the smoke run. It runs `python -m benchmarks.run --mode smoke` as a separate
process (clean environment, its own PostgreSQL and loopback server) and checks the shape of
what it writes, never the timings (no timed assertions: figures go to BENCHMARKS.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from benchmarks.report import BEGIN_MARKER, END_MARKER, update_markdown
from benchmarks.run import SIZES

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    ("callback/llm_call: added median", "sqlite"),
    ("callback/llm_call: added CPU incl. background + flush", "sqlite"),
    ("callback/llm_call: p99 of a traced call", "sqlite"),
    ("callback/graph_3_nodes: added median", "sqlite"),
    ("ingest: submit -> durable in the database", "sqlite"),
    ("ingest: submit -> durable in the database", "postgres"),
    ("metrics query 24h: cold (cache invalidated)", "postgres"),
    ("metrics query 24h: cached", "postgres"),
    ("metrics query 24h: cold (cache invalidated)", "sqlite"),
    ("memory: peak RSS while spans pass through the pipeline", "sqlite"),
}


def _run_module(module: str, *args: str) -> str:
    """Run a benchmark module as its own process (no Opik or Langfuse settings from this
    environment); its stdout, once it exited 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPIK_", "LANGFUSE_"))}
    completed = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed.stdout


def test_benchmark_run__smoke_mode__writes_results_json_and_table(tmp_path: Path) -> None:
    out = _run_module("benchmarks.run", "--mode", "smoke", "--out", str(tmp_path))
    assert out.index("Ratios (ours over reference):") < out.index("wrote ")

    document = json.loads((tmp_path / "results.json").read_text())
    assert document["meta"]["mode"] == "smoke"
    assert document["meta"]["command"] == f"python -m benchmarks.run --mode smoke --out {tmp_path}"
    results = document["results"]
    assert {(r["name"], r["backend"]) for r in results} >= EXPECTED
    for result in results:
        units = [key.removeprefix("ours_") for key in result if key.startswith("ours_")]
        assert len(units) == 1, result
        assert isinstance(result[f"ours_{units[0]}"], float), result
        assert f"baseline_{units[0]}" in result and isinstance(result["ratios"], dict)
    callback = next(r for r in results if r["name"] == "callback/llm_call: added median")
    assert callback["n"] == SIZES["smoke"].llm_calls
    for peer in ("opik", "langfuse"):
        figure = callback[f"{peer}_us_per_call"]
        installed = importlib.util.find_spec(peer) is not None
        assert isinstance(figure, float) if installed else figure is None, (peer, figure)

    # issue 15: the p99 verdict comes from several runs (>= 5 in full mode), as a range
    p99 = next(r for r in results if r["name"] == "callback/llm_call: p99 of a traced call")
    assert {"ours/bare", "ours/bare min", "ours/bare max"} <= set(p99["ratios"])
    assert f"over {SIZES['smoke'].p99_runs} runs" in p99["notes"] and SIZES["full"].p99_runs >= 5
    assert list(p99["targets"]) == ["traced p99 <= 2x bare p99 in every run"]

    table = (tmp_path / "BENCHMARKS.md").read_text()
    assert BEGIN_MARKER in table and END_MARKER in table
    assert "| Benchmark | Backend | N |" in table
    assert "python -m benchmarks.run --mode smoke" in table


def test_update_markdown__existing_notes__kept_and_generated_section_replaced(
    tmp_path: Path,
) -> None:
    path = tmp_path / "BENCHMARKS.md"
    update_markdown(path, "first table")
    path.write_text("# Title\n\nintro\n\n" + path.read_text().split("\n\n", 1)[1] + "\nclosing\n")

    update_markdown(path, "second table")

    text = path.read_text()
    assert text.startswith("# Title\n\nintro\n")
    assert text.rstrip().endswith("closing")
    assert "second table" in text and "first table" not in text
    assert text.count(BEGIN_MARKER) == text.count(END_MARKER) == 1


def test_scale_on_paper__small_run__prints_each_figure_behind_the_section() -> None:
    out = _run_module("benchmarks.scale_on_paper", "2000", "20000")
    figures = {
        "ingest": r"ingest: 2,000 spans, [\d,]+ spans/s wall, [\d,]+ spans per",
        "disk": r"disk: [\d,]+ B/span table\+TOAST, [\d,]+ B/span indexes",
        "retention": r"retention, oldest of \d+ days \([\d,]+ rows\): DELETE [\d.]+ s",
        "rollups": r"rollups for a day of [\d,]+ spans: figures [\d,]+ minute \+ [\d,]+ hour rows",
        "arithmetic": r"cores at peak: [\d.]+; disk/day: [\d,]+ GB",
    }
    for name, pattern in figures.items():
        assert re.search(pattern, out), (name, out)


def test_ingest_profile__small_sqlite_run__every_phase_timed_next_to_the_floor() -> None:
    """The replay checks itself (every span stored and rolled up, or it raises)."""
    out = _run_module("benchmarks.ingest_profile", "1200", "500", "sqlite")
    assert re.search(r"^sqlite, batches of 500: floor [\d.]+ s \([\d.]+ us/span\)", out, re.M), out
    for phase in ("convert", "insert", "rollups", "commit"):
        assert re.search(rf"^  {phase} +[\d.]+ s +[\d.]+ us/span \(first quarter", out, re.M), out


def test_flat_out__one_second__every_call_accounted_for_in_the_counters_and_sqlite() -> None:
    out = _run_module("benchmarks.flat_out", "1")
    calls = re.search(r"^([\d,]+) LLM calls in [\d.]+ s .*flush\(\) -> True$", out, re.M)
    emitted = re.search(r"database: emitted ([\d,]+), spooled ([\d,]+), replayed ([\d,]+)", out)
    stored = re.search(r"rows in SQLite: ([\d,]+)", out)
    assert calls and emitted and stored, out
    number = lambda text: int(text.replace(",", ""))  # noqa: E731
    assert number(calls[1]) > 0
    assert number(emitted[1]) + number(emitted[2]) == number(calls[1]), out
    assert number(stored[1]) == number(emitted[1]) + number(emitted[3]), out


def test_bench_query__postgres_seeding_itself__checked_against_percentile_cont() -> None:
    """The server-side seed (`--server-seed`, the 10M-span PostgreSQL run): the rollups built
    after the bulk load agree with percentile_cont (the benchmark stops otherwise)."""
    out = _run_module(
        "benchmarks.bench_query",
        *("--spans", "3000", "--reps", "1", "--cached-reps", "5"),
        *("--backend", "postgres", "--server-seed"),
    )
    assert re.search(r"query/postgres: bare [\d.]+ ms, exact [\d.]+ ms, cold", out), out
    assert "seeded in" in out and "rollup rebuild" in out, out
