"""`e2i-obs` against real stores: a seeded SQLite file (the real SqliteSpanRepository) and the
PostgreSQL server of the fixtures. Commands run in-process (`typer.testing.CliRunner`) and as
real processes (the console script and `python -m src.cli.main`), so exit codes, stderr and
the absence of tracebacks are what a user would see.

Expected values come from the seeded spans themselves (counts, errors, tokens, tree shape) or
from the repository queried directly, never from the CLI's own helpers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from src.agents.ml_foundation.observability_connector.models import (
    LatencyStats,
    QualityMetrics,
    SpanKind,
)
from src.agents.ml_foundation.observability_connector.spool import Spool
from src.cli.main import app
from src.cli.units import fmt_usd
from src.repositories.observability_span import SqliteSpanRepository
from tests.fixtures.postgres import free_port
from tests.fixtures.seeded_store import SeededStore, build_spans, seed_store

REPO_ROOT = Path(__file__).resolve().parents[2]
AGENTS = ("causal_impact", "drift_monitor", "explainer", "gap_analyzer", "orchestrator")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> SeededStore:
    """Read-only store shared by the module's tests (about 1000 spans)."""
    return seed_store(tmp_path_factory.mktemp("cli-store") / "spans.db")


@pytest.fixture
def fresh(tmp_path: Path) -> SeededStore:
    """A store of this test's own (for tests that delete)."""
    return seed_store(tmp_path / "own" / "spans.db", traces=16)


OVERRIDES = (
    "E2I_OBS_CONFIG",
    "E2I_OBS_DATABASE_URL",
    "SUPABASE_URL",
    "SUPABASE_KEY",
    "REDIS_URL",
    "OPIK_URL_OVERRIDE",
    "OPIK_API_KEY",
)
"""Environment variables that would redirect the commands; unset while a command runs."""


def invoke(*args: str, clean_env: bool = True) -> object:
    """Run the app in-process with stdout and stderr apart."""
    env = dict.fromkeys(OVERRIDES) if clean_env else None
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def store_stats(path: Path, window: str = "24h") -> dict[str, LatencyStats]:
    async def query() -> list[LatencyStats]:
        repository = SqliteSpanRepository(path)
        try:
            return await repository.get_latency_stats(window)
        finally:
            await repository.close()

    return {s.agent_name: s for s in asyncio.run(query())}


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]


# --------------------------------------------------------------------------- metrics


def test_metrics__json__parses_into_quality_metrics_matching_the_store(seeded: SeededStore):
    result = invoke("--database-url", seeded.url, "metrics", "--window", "24h", "--json")

    assert result.exit_code == 0, result.stderr
    metrics = QualityMetrics.model_validate_json(result.stdout)
    assert metrics.time_window == "24h"
    assert sorted(metrics.agents) == sorted(AGENTS)
    spans_per_agent = Counter(s.agent_name for s in seeded.recent)
    errors_per_agent = Counter(s.agent_name for s in seeded.recent if s.is_error)
    llm_tokens = Counter()
    for span in seeded.recent:
        if span.span_kind is SpanKind.LLM:
            llm_tokens[span.agent_name] += span.total_tokens or 0
    store = store_stats(seeded.path)
    for name, stats in metrics.agents.items():
        assert stats.count == spans_per_agent[name]
        assert stats.error_count == errors_per_agent[name]
        assert stats.total_tokens == llm_tokens[name]
        for field in ("p50_ms", "p95_ms", "p99_ms", "avg_ms", "max_ms"):
            assert getattr(stats, field) == pytest.approx(getattr(store[name], field))
    assert metrics.total_spans == len(seeded.recent)
    assert metrics.error_count == sum(errors_per_agent.values())


def test_metrics__agent_option__reports_only_that_agent(seeded: SeededStore):
    result = invoke("--database-url", seeded.url, "metrics", "--agent", "gap_analyzer", "--json")

    assert result.exit_code == 0, result.stderr
    metrics = QualityMetrics.model_validate_json(result.stdout)
    assert metrics.agent_name == "gap_analyzer"
    assert list(metrics.agents) == ["gap_analyzer"]
    assert metrics.total_spans == sum(s.agent_name == "gap_analyzer" for s in seeded.recent)


def test_metrics__table__one_row_per_agent_with_counts(seeded: SeededStore):
    result = invoke("--database-url", seeded.url, "metrics")

    assert result.exit_code == 0, result.stderr
    counts = Counter(s.agent_name for s in seeded.recent)
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    for agent in AGENTS:
        cells = [c.strip() for c in rows[agent].split("│")]
        assert cells[3] == f"{counts[agent]:,}"
    assert "tokens: LLM spans only" in result.stdout


def test_metrics__json__cost_fields_match_the_priced_spans(seeded: SeededStore):
    result = invoke("--database-url", seeded.url, "metrics", "--window", "24h", "--json")

    assert result.exit_code == 0, result.stderr
    metrics = QualityMetrics.model_validate_json(result.stdout)
    llm = [s for s in seeded.recent if s.span_kind is SpanKind.LLM]
    priced = [s for s in llm if s.cost_usd is not None]
    assert metrics.cost_usd == pytest.approx(sum(s.cost_usd for s in priced), rel=1e-12)
    assert (metrics.priced_llm_calls, metrics.unpriced_llm_calls) == (
        len(priced),
        len(llm) - len(priced),
    )
    by_model: dict[str, float] = {}
    for s in priced:
        by_model[s.llm_model] = by_model.get(s.llm_model, 0.0) + s.cost_usd
    assert metrics.cost_by_model == pytest.approx(by_model, rel=1e-12)
    explainer = metrics.agents["explainer"]
    assert explainer.cost_usd == pytest.approx(
        sum(s.cost_usd for s in priced if s.agent_name == "explainer"), rel=1e-12
    )
    assert explainer.cost_per_trace_p50 is not None


@pytest.mark.parametrize("by", ["agent", "model", "day", "provider"])
def test_cost__json_by_each_key__equals_the_store_breakdown(seeded: SeededStore, by: str):
    result = invoke("--database-url", seeded.url, "cost", "--window", "7d", "--by", by, "--json")

    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    llm = [s for s in seeded.recent if s.span_kind is SpanKind.LLM]
    assert document["by"] == by and document["window"] == "7d"
    assert document["llm_calls"] == len(llm)
    assert document["unpriced_llm_calls"] == sum(s.cost_usd is None for s in llm)
    total = sum(s.cost_usd or 0.0 for s in llm)
    assert document["cost_usd"] == pytest.approx(total, rel=1e-12)
    assert sum(r["cost_usd"] for r in document["rows"]) == pytest.approx(total, rel=1e-12)
    if by != "day":
        costs = [r["cost_usd"] for r in document["rows"]]
        assert costs == sorted(costs, reverse=True)


def test_cost__table_by_model__rows_totals_and_unpriced(seeded: SeededStore):
    result = invoke("--database-url", seeded.url, "cost", "--by", "model")

    assert result.exit_code == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert {"claude-sonnet-4", "gpt-4o-mini", "claude-haiku-4", "total"} <= set(rows)
    haiku = [c.strip() for c in rows["claude-haiku-4"].split("│")]
    calls = sum(s.llm_model == "claude-haiku-4" for s in seeded.recent)
    assert haiku[2:4] == [f"{calls:,}", f"{calls:,}"]  # every haiku call is unpriced
    assert haiku[-3] == "–"  # no price is not a price of zero


def test_cost__bad_by__one_line_error_exit_2(seeded: SeededStore):
    result = invoke("--database-url", seeded.url, "cost", "--by", "week")

    assert result.exit_code == 2
    assert "agent, model, day, provider" in result.stderr


# --------------------------------------------------------------------------- traces


def trace_order(seeded: SeededStore) -> list[str]:
    starts: dict[str, object] = {}
    for span in seeded.recent:
        first = starts.get(span.trace_id)
        starts[span.trace_id] = span.start_time if first is None else min(first, span.start_time)
    return sorted(starts, key=lambda t: (starts[t], t), reverse=True)


def test_traces__limit__newest_traces_one_line_each(seeded: SeededStore):
    result = invoke("--database-url", seeded.url, "traces", "--window", "24h", "--limit", "5")

    assert result.exit_code == 0, result.stderr
    listed = re.findall(r"\b[0-9a-f]{32}\b", result.stdout)
    assert listed == trace_order(seeded)[:5]
    assert listed[0] == seeded.tree_trace_id
    tree_line = next(line for line in result.stdout.splitlines() if seeded.tree_trace_id in line)
    cells = [c.strip() for c in tree_line.split("│")[1:-1]]
    tree = seeded.tree
    tokens = sum(s.total_tokens or 0 for s in tree if s.span_kind is SpanKind.LLM)
    assert cells[1:3] == ["handle_request", "orchestrator"]
    assert cells[5:8] == [str(len(tree)), str(sum(s.is_error for s in tree)), f"{tokens:,}"]
    cost = sum(s.cost_usd for s in tree if s.cost_usd is not None)
    assert cells[8] == fmt_usd(cost)
    assert f"{len(trace_order(seeded)) - 5} older traces not shown" in result.stdout


def test_trace__seeded_trace__tree_shows_nesting_status_model_and_tokens(seeded: SeededStore):
    result = invoke("--database-url", seeded.url, "trace", seeded.tree_trace_id)

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()

    def line_of(operation: str) -> tuple[int, str]:
        index = next(i for i, line in enumerate(lines) if f" {operation} " in line)
        return index, lines[index]

    def depth(line: str) -> int:
        return re.search(r"[a-z_]+ ", line.replace("─", " ")).start()  # type: ignore[union-attr]

    root_i, root = line_of("handle_request")
    gap_i, gap = line_of("analyze_gaps")
    summarize_i, summarize = line_of("summarize_gaps")
    causal_i, causal = line_of("estimate_effect")
    explain_i, explain = line_of("explain_estimate")
    assert root_i < gap_i < summarize_i < causal_i < explain_i
    assert depth(root) < depth(gap) < depth(summarize)
    assert depth(gap) == depth(causal) and depth(summarize) == depth(explain)
    assert "✗ error (TimeoutError: estimator timed out after 30 s)" in causal
    assert "✗ error (AgentError" in root
    assert "✓ ok" in summarize
    llm = next(s for s in seeded.tree if s.operation_name == "explain_estimate")
    assert f"model {llm.llm_model}" in explain
    assert f"tokens {llm.input_tokens:,} in / {llm.output_tokens:,} out" in explain
    assert "cost – (no known price)" in explain  # claude-haiku-4 is not in the price list
    priced = next(s for s in seeded.tree if s.operation_name == "summarize_gaps")
    assert f"cost {fmt_usd(priced.cost_usd)}" in summarize
    total = sum(s.cost_usd for s in seeded.tree if s.cost_usd is not None)
    assert f"cost {fmt_usd(total)} (1 LLM calls without a known price)" in lines[0]


def test_trace__dashed_upper_case_id__same_trace(seeded: SeededStore):
    t = seeded.tree_trace_id.upper()
    dashed = f"{t[:8]}-{t[8:12]}-{t[12:16]}-{t[16:20]}-{t[20:]}"

    result = invoke("--database-url", seeded.url, "trace", dashed)

    assert result.exit_code == 0, result.stderr
    assert f"trace {seeded.tree_trace_id}" in result.stdout


def test_trace__unknown_trace__exit_1_naming_it(seeded: SeededStore):
    result = invoke("--database-url", seeded.url, "trace", "ab" * 16)

    assert result.exit_code == 1
    assert "no spans of trace " + "ab" * 16 in one_line_error(result.stderr)


# --------------------------------------------------------------------------- db


def span_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM ml_observability_spans").fetchone()[0]


def test_db_cleanup__days__deletes_exactly_the_older_spans(fresh: SeededStore):
    total = len(fresh.recent) + len(fresh.old)
    over_60, over_30 = len(fresh.older_than(60)), len(fresh.older_than(30))
    assert 0 < over_60 < over_30 < total

    first = invoke("--database-url", fresh.url, "db", "cleanup", "--days", "60", "--yes")
    second = invoke("--database-url", fresh.url, "db", "cleanup", "--days", "30", "-y")
    again = invoke("--database-url", fresh.url, "db", "cleanup", "--days", "30", "--yes")

    assert [r.exit_code for r in (first, second, again)] == [0, 0, 0]
    assert first.stdout.startswith(f"deleted {over_60} spans older than 60 days")
    assert second.stdout.startswith(f"deleted {over_30 - over_60} spans older than 30 days")
    assert again.stdout.startswith("deleted 0 spans")
    assert span_count(fresh.path) == total - over_30


def test_db_cleanup__no_days__uses_configured_retention(fresh: SeededStore, tmp_path: Path):
    config = write_config(tmp_path / "obs.yaml", "retention:\n  days: 50\n  batch_size: 1\n")

    result = invoke("--config", str(config), "--database-url", fresh.url, "db", "cleanup", "-y")

    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"deleted {len(fresh.older_than(50))} spans older than 50")


def test_db_cleanup__days_zero__refused_nothing_deleted(fresh: SeededStore):
    """Issue 11 (5): `db cleanup --days 0` deleted every span without asking."""
    total = span_count(fresh.path)

    result = invoke("--database-url", fresh.url, "db", "cleanup", "--days", "0", "--yes")

    assert result.exit_code == 2
    assert "must be a positive integer, got 0" in one_line_error(result.stderr)
    assert span_count(fresh.path) == total


def test_db_cleanup__no_yes_and_no_terminal__refused_nothing_deleted(fresh: SeededStore):
    """Issue 11 (5): without --yes, cleanup asks; with no terminal to ask on it refuses."""
    total = span_count(fresh.path)

    result = invoke("--database-url", fresh.url, "db", "cleanup", "--days", "30")

    assert result.exit_code == 2
    line = one_line_error(result.stderr)
    assert "older than 30 days" in line and "pass --yes" in line
    assert span_count(fresh.path) == total


def run_on_terminal(args: list[str], answer: str) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdin, answer its prompt, return (code, output)."""
    import pty

    primary, secondary = pty.openpty()
    env = {key: value for key, value in os.environ.items() if key not in OVERRIDES}
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "src.cli.main", *args],
            cwd=REPO_ROOT,
            env=env,
            stdin=secondary,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        os.write(primary, answer.encode())
        output, _ = process.communicate(timeout=120)
    finally:
        os.close(primary)
        os.close(secondary)
    return process.returncode, output


@pytest.mark.parametrize(("answer", "deleted"), [("n\n", False), ("y\n", True)])
def test_db_cleanup__terminal__asks_and_obeys_the_answer(fresh: SeededStore, answer, deleted):
    total, older = span_count(fresh.path), len(fresh.older_than(30))

    code, output = run_on_terminal(
        ["--database-url", fresh.url, "db", "cleanup", "--days", "30"], answer
    )

    assert f"Delete every span older than 30 days from {fresh.url}? [y/N]" in output
    if deleted:
        assert code == 0 and f"deleted {older} spans older than 30 days" in output
        assert span_count(fresh.path) == total - older
    else:
        assert code == 1 and "Aborted." in output
        assert span_count(fresh.path) == total


def test_db_init__new_sqlite_file__schema_then_empty_metrics(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'new' / 'spans.db'}"

    first = invoke("--database-url", url, "db", "init")
    second = invoke("--database-url", url, "db", "init")
    metrics = invoke("--database-url", url, "metrics", "--json")

    assert (first.exit_code, second.exit_code) == (0, 0)
    assert first.stdout.strip() == f"schema ready in {url}"
    assert QualityMetrics.model_validate_json(metrics.stdout).total_spans == 0


@pytest.mark.postgres
def test_db_init__postgres__applies_schema_and_metrics_work(pg_dsn: str):
    result = invoke("--database-url", pg_dsn, "db", "init")
    metrics = invoke("--database-url", pg_dsn, "metrics", "--json")

    assert result.exit_code == 0, result.stderr
    with psycopg.connect(pg_dsn) as conn:
        table = conn.execute("SELECT to_regclass('public.ml_observability_spans')").fetchone()[0]
        functions = conn.execute(
            "SELECT count(*) FROM pg_proc WHERE proname = 'ml_agent_latency_stats'"
        ).fetchone()[0]
    assert table == "ml_observability_spans"
    assert functions >= 1
    assert metrics.exit_code == 0, metrics.stderr
    assert QualityMetrics.model_validate_json(metrics.stdout).total_spans == 0


def test_cli__unreachable_postgres__masked_hint_exit_1(tmp_path: Path):
    config = write_config(tmp_path / "obs.yaml", "storage:\n  timeout_seconds: 1\n")
    url = f"postgresql://obs:s3cr3t-pw@127.0.0.1:{free_port()}/e2i"

    result = invoke("--config", str(config), "--database-url", url, "metrics")

    assert result.exit_code == 1
    line = one_line_error(result.stderr)
    assert line.startswith("Error: cannot connect to postgresql://obs:***@127.0.0.1:")
    assert "s3cr3t-pw" not in result.stdout + result.stderr


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["metrics", "--window", "1w"], "'--window'"),
        (["report", "--window", "0h"], "'--window'"),
        (["traces", "--limit", "0"], "'--limit'"),
        (["db", "cleanup", "--days", "-1"], "'--days'"),
        (["db", "cleanup", "--days", "0", "--yes"], "'--days'"),
        (["db", "cleanup", "--days", "ninety"], "'--days'"),
        (["trace", "not-a-trace-id"], "trace_id"),
        (["trace", "0" * 32], "all zeros"),
        (["demo", "--failure-rate", "1.5"], "'--failure-rate'"),
        (["demo", "--requests", "0"], "'--requests'"),
        (["metrics", "--bogus"], "--bogus"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_cli__bad_argument__one_line_error_exit_2(seeded: SeededStore, args: list[str], names):
    result = invoke("--database-url", seeded.url, *args)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert names in one_line_error(result.stderr)


def test_cli__bad_window__message_lists_accepted_forms(seeded: SeededStore):
    result = invoke("--database-url", seeded.url, "metrics", "--window", "1w")

    assert "'1w'" in result.stderr and "15m, 1h, 24h, 7d" in result.stderr


def test_cli__invalid_config_file__exit_2_naming_the_key(seeded: SeededStore, tmp_path: Path):
    config = write_config(tmp_path / "bad.yaml", "batching:\n  max_batch_size: 0\n")

    result = invoke("--config", str(config), "--database-url", seeded.url, "metrics")

    assert result.exit_code == 2
    assert result.stderr.startswith("Error: invalid configuration")
    assert "batching.max_batch_size" in result.stderr


def test_cli__unsupported_database_url__exit_2_password_masked(tmp_path: Path):
    result = invoke("--database-url", "mysql://root:hunter2@db/e2i", "metrics")

    assert result.exit_code == 2
    assert "unsupported URL scheme" in result.stderr
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["metrics"],
        ["traces"],
        ["trace", "ab" * 16],
        ["report", "--out", "{tmp}/r.html"],
        ["db", "cleanup"],
    ],
)
def test_cli__missing_sqlite_store__hint_exit_1_and_nothing_created(tmp_path: Path, args):
    path = tmp_path / "absent" / "spans.db"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]

    result = invoke("--database-url", f"sqlite:///{path}", *args)

    assert result.exit_code == 1
    line = one_line_error(result.stderr)
    assert f"no span database at {path} yet" in line
    assert "`e2i-obs demo` or `e2i-obs db init`" in line
    assert not path.exists() and not path.parent.exists()


def test_cli__sqlite_file_without_schema__hint_db_init(tmp_path: Path):
    path = tmp_path / "empty.db"
    path.touch()

    result = invoke("--database-url", f"sqlite:///{path}", "metrics")

    assert result.exit_code == 1
    assert "has no schema yet: run `e2i-obs db init`" in one_line_error(result.stderr)


# --------------------------------------------------------------------------- spool, health


def connector_config(tmp_path: Path, store: Path) -> Path:
    return write_config(
        tmp_path / "obs.yaml",
        "opik:\n  enabled: false\n"
        f"storage:\n  sqlite_path: {store}\n  spool_dir: {tmp_path / 'spool'}\n"
        "batching:\n  shutdown_timeout_seconds: 5\n",
    )


def test_spool_replay__spooled_spans__land_in_the_store(tmp_path: Path):
    spans = build_spans(datetime.now(UTC), traces=2).recent
    Spool(tmp_path / "spool" / "database", 10_000_000).append(spans)
    store = tmp_path / "store" / "spans.db"
    config = connector_config(tmp_path, store)

    result = invoke("--config", str(config), "spool", "replay")

    assert result.exit_code == 0, result.stderr
    assert f"replayed {len(spans)} spans" in result.stdout
    assert span_count(store) == len(spans)
    assert list((tmp_path / "spool" / "database").glob("*.jsonl")) == []


def test_spool_replay__database_still_unwritable__exit_1_spans_kept(tmp_path: Path):
    spans = build_spans(datetime.now(UTC), traces=1).recent
    Spool(tmp_path / "spool" / "database", 10_000_000).append(spans)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory should be")
    config = connector_config(tmp_path, blocker / "spans.db")

    result = invoke("--config", str(config), "spool", "replay")

    assert result.exit_code == 1
    assert "still waiting in the spool for database" in result.stderr
    assert len(list((tmp_path / "spool" / "database").glob("*.jsonl"))) == 1


def test_health__json__snapshot_of_a_fresh_connector(tmp_path: Path):
    config = connector_config(tmp_path, tmp_path / "spans.db")

    as_json = invoke("--config", str(config), "health", "--json")
    table = invoke("--config", str(config), "health")

    assert as_json.exit_code == 0, as_json.stderr
    snapshot = json.loads(as_json.stdout)
    assert snapshot["status"] == "healthy"
    assert snapshot["circuit_state"] == "disabled"
    assert snapshot["queue_capacity"] == 10_000
    assert snapshot["dropped"] == 0
    assert table.exit_code == 0
    assert re.search(r"status\s*│\s*healthy", table.stdout)


# --------------------------------------------------------------------------- demo


def test_demo__small_run__fills_the_store_read_back_by_metrics(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    before = {k: os.environ.get(k) for k in ("E2I_OBS_DATABASE_URL", "E2I_OBS_CONFIG")}

    demo = invoke(
        "--database-url", url, "demo", "--requests", "3", "--concurrency", "2", clean_env=False
    )
    metrics = invoke("--database-url", url, "metrics", "--window", "1h", "--json")

    assert demo.exit_code == 0, demo.stderr
    assert QualityMetrics.model_validate_json(metrics.stdout).total_spans > 0
    assert {k: os.environ.get(k) for k in before} == before  # the override did not leak


# --------------------------------------------------------------------------- processes


def run_process(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in OVERRIDES}
    return subprocess.run(
        list(args), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_console_script__metrics_json__matches_the_store(seeded: SeededStore):
    script = Path(sys.executable).with_name("e2i-obs")
    assert script.is_file(), f"{script} missing: run `pip install -e .` in the venv"

    done = run_process(str(script), "--database-url", seeded.url, "metrics", "--json")

    assert done.returncode == 0, done.stderr
    metrics = QualityMetrics.model_validate_json(done.stdout)
    assert metrics.total_spans == len(seeded.recent)


def test_python_m__bad_window__one_line_exit_2(seeded: SeededStore):
    done = run_process(
        sys.executable, "-m", "src.cli.main", "--database-url", seeded.url, "metrics", "-w", "1w"
    )

    assert done.returncode == 2
    assert "'--window'" in one_line_error(done.stderr)
    assert done.stdout == ""


def test_python_m__missing_store__hint_exit_1_without_traceback(tmp_path: Path):
    path = tmp_path / "nowhere.db"

    done = run_process(
        sys.executable, "-m", "src.cli.main", "--database-url", f"sqlite:///{path}", "traces"
    )

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"no span database at {path} yet" in one_line_error(done.stderr)


def test_python_m__trace__prints_the_tree(seeded: SeededStore):
    done = run_process(
        sys.executable,
        "-m",
        "src.cli.main",
        "--database-url",
        seeded.url,
        "trace",
        seeded.tree_trace_id,
    )

    assert done.returncode == 0, done.stderr
    for span in seeded.tree:
        assert span.operation_name in done.stdout


@pytest.mark.parametrize("port", ["abc", "99999"])
def test_cli__postgres_url_with_bad_port__exit_2_password_masked(port: str):
    result = invoke("--database-url", f"postgresql://u:hunter2@127.0.0.1:{port}/db", "metrics")

    assert result.exit_code == 2
    assert "invalid port" in one_line_error(result.stderr)
    assert "hunter2" not in result.stderr


# --------------------------------------------------------------------------- rollups (issue 15)


def rollup_counts(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT period_s, slot, agent_name, llm_model, span_count, error_count, total_tokens "
            "FROM ml_observability_rollups ORDER BY 1, 2, 3, 4"
        ).fetchall()


def test_db_cleanup__old_spans_deleted__hour_rollups_kept(fresh: SeededStore):
    """Hour slots stay for retention.rollup_days; minute slots go with the spans (by default
    retention.rollup_minute_days is the spans' days), so the trend still counts every span."""
    rollups = rollup_counts(fresh.path)
    assert sum(row[4] for row in rollups if row[0] == 60) == span_count(fresh.path)

    result = invoke("--database-url", fresh.url, "db", "cleanup", "--days", "30", "--yes")

    assert result.exit_code == 0, result.stderr
    deleted = re.search(
        r"deleted ([\d,]+) rollup rows older than 400 days \(minute slots: older than 30 days\)",
        result.stdout,
    )
    assert deleted is not None, result.stdout
    after = rollup_counts(fresh.path)
    assert [r for r in after if r[0] == 3600] == [r for r in rollups if r[0] == 3600]
    old_minutes = [r for r in rollups if r[0] == 60 and r not in after]
    assert sum(r[4] for r in old_minutes) == len(fresh.older_than(30))
    assert int(deleted.group(1).replace(",", "")) >= len(old_minutes)
    trend = invoke("--database-url", fresh.url, "metrics", "--window", "400d", "--json")
    exact = invoke("--database-url", fresh.url, "metrics", "-w", "400d", "--json", "--exact")
    total = len(fresh.recent) + len(fresh.old)
    assert QualityMetrics.model_validate_json(trend.stdout).total_spans == total
    remaining = total - len(fresh.older_than(30))
    assert QualityMetrics.model_validate_json(exact.stdout).total_spans == remaining


def test_db_rollup__rebuild__same_rollups_from_the_spans(fresh: SeededStore):
    rollups = rollup_counts(fresh.path)
    with sqlite3.connect(fresh.path) as conn:
        conn.execute("DELETE FROM ml_observability_rollups")

    result = invoke("--database-url", fresh.url, "db", "rollup", "--rebuild")
    since = invoke("--database-url", fresh.url, "db", "rollup", "--rebuild", "--since", "3d")

    assert result.exit_code == 0, result.stderr
    total = len(fresh.recent) + len(fresh.old)
    assert result.stdout.startswith(f"rebuilt rollups of {total:,} spans (every span)")
    assert since.exit_code == 0, since.stderr
    assert "spans from " in since.stdout
    assert rollup_counts(fresh.path) == rollups


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "nothing to do; pass --rebuild"),
        (("--rebuild", "--since", "yesterday"), "--since 'yesterday' is neither an ISO-8601"),
    ],
)
def test_db_rollup__bad_arguments__one_line_error_exit_2(fresh: SeededStore, args, message):
    result = invoke("--database-url", fresh.url, "db", "rollup", *args)

    assert result.exit_code == 2
    assert message in one_line_error(result.stderr)


def test_config__rollup_retention_shorter_than_spans__clear_error(fresh: SeededStore, tmp_path):
    config = write_config(tmp_path / "obs.yaml", "retention:\n  days: 90\n  rollup_days: 30\n")

    result = invoke("--config", str(config), "--database-url", fresh.url, "db", "cleanup", "-y")

    assert result.exit_code != 0
    assert "retention.rollup_days must be >= retention.days (90)" in result.stderr
    assert "got 30" in result.stderr


def test_config__minute_rollup_retention_out_of_range__clear_error(fresh: SeededStore, tmp_path):
    config = write_config(
        tmp_path / "obs.yaml", "retention:\n  days: 90\n  rollup_minute_days: 30\n"
    )

    result = invoke("--config", str(config), "--database-url", fresh.url, "db", "cleanup", "-y")

    assert result.exit_code != 0
    assert "retention.rollup_minute_days must be between retention.days (90)" in result.stderr
    assert "got 30" in result.stderr
