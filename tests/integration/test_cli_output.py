"""What `e2i-obs` writes to a pipe or a terminal (issue 11, item 6): full-width tables when piped,
long names capped while ids and numbers show in full, stored control characters escaped, and
`NO_COLOR` turning off every style.

Commands run as real processes with stdout a pipe (what `e2i-obs metrics | tail` sees), against
a seeded SQLite store plus two spans whose names a careless or hostile caller chose: a
300-character agent name and names holding terminal escape sequences.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanKind,
    SpanStatus,
)
from src.cli.render import NAME_MAX_CHARS
from src.repositories.observability_span import SqliteSpanRepository
from tests.fixtures.processes import environment, run_python
from tests.fixtures.seeded_store import SeededStore, seed_store

LONG_AGENT = "agent_" + "x" * 294
EVIL_AGENT = "evil\x1b[2J\x1b]0;pwned\x07name"
EVIL_AGENT_SHOWN = "evil\\x1b[2J\\x1b]0;pwned\\x07name"
EVIL_ERROR = "bad\x1b[31mthing\x9b2J"
LONG_TRACE, EVIL_TRACE = "ab" * 16, "ef" * 16
ENV_DROPPED = ("E2I_OBS_CONFIG", "E2I_OBS_DATABASE_URL", "COLUMNS", "NO_COLOR", "FORCE_COLOR")


@pytest.fixture(scope="module")
def odd_store(tmp_path_factory: pytest.TempPathFactory) -> SeededStore:
    store = seed_store(tmp_path_factory.mktemp("cli-output") / "spans.db", traces=4)
    now = datetime.now(UTC)
    odd = [
        ObservabilitySpan(
            trace_id=LONG_TRACE,
            span_id="cd" * 8,
            agent_name=LONG_AGENT,
            operation_name="op_" + "y" * 200,
            span_kind=SpanKind.AGENT,
            start_time=now - timedelta(minutes=1),
            end_time=now,
            status=SpanStatus.COMPLETED,
        ),
        ObservabilitySpan(
            trace_id=EVIL_TRACE,
            span_id="12" * 8,
            agent_name=EVIL_AGENT,
            operation_name="boom\x1b[5m",
            span_kind=SpanKind.AGENT,
            start_time=now - timedelta(minutes=2),
            end_time=now - timedelta(minutes=1),
            status=SpanStatus.ERROR,
            error_type="Crash\x1b[8m",
            error_message=EVIL_ERROR,
        ),
    ]

    async def insert() -> None:
        repository = SqliteSpanRepository(store.path)
        try:
            await repository.insert_spans_batch(odd)
        finally:
            await repository.close()

    asyncio.run(insert())
    store.recent.extend(odd)
    return store


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a process, stdout and stderr pipes (not terminals)."""
    return run_python(["-m", "src.cli.main", *args], environment(ENV_DROPPED, **env))


def table_rows(stdout: str) -> dict[str, list[str]]:
    """Body rows of a box table, keyed by their first (name) cell."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.split("│")[1:-1]]
            rows[cells[0]] = cells
    return rows


def expected_counts(store: SeededStore) -> dict[str, tuple[str, str]]:
    spans = Counter(s.agent_name for s in store.recent)
    errors = Counter(s.agent_name for s in store.recent if s.is_error)
    return {name: (f"{spans[name]:,}", f"{errors[name]:,}") for name in spans}


@pytest.mark.parametrize("columns", [None, "80", "120"])
def test_metrics__piped_or_narrow__numbers_whole_and_long_names_capped(
    odd_store: SeededStore, columns: str | None
):
    """Issue 11 (6): one 300-character agent name collapsed every numeric column to `…`."""
    env = {"COLUMNS": columns} if columns else {}

    done = run_cli("--database-url", odd_store.url, "metrics", **env)

    assert done.returncode == 0, done.stderr
    rows = table_rows(done.stdout)
    expected = expected_counts(odd_store)
    assert len(rows) == len(expected) + 1  # one row per agent and the totals
    by_prefix = {}
    for cells in rows.values():
        if cells[0] == "all agents":
            continue
        assert all("…" not in cell for cell in cells[1:]), cells
        by_prefix[cells[0].rstrip("…")] = cells
    long_cell = next(name for name in by_prefix if name.startswith("agent_x"))
    assert len(long_cell) + 1 <= NAME_MAX_CHARS  # capped, with the ellipsis
    for name, (count, errors) in expected.items():
        name_shown = EVIL_AGENT_SHOWN if name == EVIL_AGENT else name
        shown = next(cells for prefix, cells in by_prefix.items() if name_shown.startswith(prefix))
        assert shown[2:4] == [count, errors]
    assert re.search(r"\d+(\.\d)? m?s", done.stdout)


def test_traces__piped__trace_ids_whole_beside_long_root_names(odd_store: SeededStore):
    """Issue 11 (6): a long root name hid trace ids."""
    done = run_cli("--database-url", odd_store.url, "traces", "--window", "24h", "--limit", "50")

    assert done.returncode == 0, done.stderr
    ids = {cells[0] for cells in table_rows(done.stdout).values()}
    assert {LONG_TRACE, EVIL_TRACE} <= ids
    assert ids == {s.trace_id for s in odd_store.recent}
    assert "op_" + "y" * (NAME_MAX_CHARS - 4) + "…" in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["metrics"],
        ["traces", "--window", "24h", "--limit", "50"],
        ["trace", EVIL_TRACE],
        ["metrics", "--agent", "no\x1b[2Jbody"],
    ],
)
def test_cli__stored_control_characters__escaped_never_raw(odd_store: SeededStore, args):
    """Issue 11 (6): escape sequences in agent names and error messages went to the terminal."""
    done = run_cli("--database-url", odd_store.url, *args)

    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "\x1b" not in output and "\x07" not in output and "\x9b" not in output
    assert "\\x1b[2J" in output


def test_trace__error_message_with_escapes__shown_escaped(odd_store: SeededStore):
    done = run_cli("--database-url", odd_store.url, "trace", EVIL_TRACE)

    assert EVIL_AGENT_SHOWN in done.stdout
    assert "✗ error (Crash\\x1b[8m: bad\\x1b[31mthing\\x9b2J)" in done.stdout


@pytest.mark.parametrize("args", [["metrics"], ["trace", EVIL_TRACE], ["health"], ["--help"]])
def test_cli__no_color__no_styling_at_all(odd_store: SeededStore, tmp_path: Path, args):
    """Issue 11 (6): NO_COLOR still printed bold and italic (rich drops colours only)."""
    config = tmp_path / "obs.yaml"
    config.write_text(
        f"opik:\n  enabled: false\nstorage:\n  sqlite_path: {odd_store.path}\n"
        f"  spool_dir: {tmp_path / 'spool'}\n",
        encoding="utf-8",
    )
    common = ("--config", str(config), *args)

    styled = run_cli(*common, FORCE_COLOR="1")
    plain = run_cli(*common, FORCE_COLOR="1", NO_COLOR="1")

    assert "\x1b[" in styled.stdout + styled.stderr  # the check below can fail
    assert plain.returncode == styled.returncode
    assert "\x1b" not in plain.stdout + plain.stderr


def test_demo__piped__metrics_table_not_cut_to_80_columns(tmp_path: Path):
    """Issue 11 (6): `e2i-obs demo | tail` printed `32… ms` (rich's 80-column default)."""
    url = f"sqlite:///{tmp_path / 'demo.db'}"

    done = run_cli("--database-url", url, "demo", "--requests", "6", "--concurrency", "2")

    assert done.returncode == 0, done.stderr
    rows = [cells for cells in table_rows(done.stdout).values() if cells[0] != "all agents"]
    assert len(rows) >= 4
    for cells in rows:
        assert all("…" not in cell for cell in cells), cells
        assert all(re.fullmatch(r"\d[\d,.]* m?s", cell) for cell in cells[5:8]), cells


def test_cli__opik_url_with_password__never_printed(tmp_path: Path):
    """Issue 11 (7): a user:password inside OPIK_URL_OVERRIDE must not reach any output: the
    demo's banner, the sink's failure warnings (Opik is down here), health's JSON."""
    from tests.fixtures.postgres import free_port

    url = f"http://opik-user:url-pw-4242@127.0.0.1:{free_port()}/api"
    store = f"sqlite:///{tmp_path / 'demo.db'}"
    env = {"OPIK_URL_OVERRIDE": url, "E2I_OBS_CONFIG": str(tmp_path / "obs.yaml")}
    (tmp_path / "obs.yaml").write_text(
        f"storage:\n  spool_dir: {tmp_path / 'spool'}\n"
        "batching:\n  retry_max_attempts: 1\n  shutdown_timeout_seconds: 5\n",
        encoding="utf-8",
    )

    demo = run_cli("--database-url", store, "demo", "--requests", "2", **env)
    health = run_cli("--database-url", store, "health", "--json", **env)

    assert demo.returncode == 0, demo.stderr
    assert "Opik: sending spans to http://opik-user:***@127.0.0.1:" in demo.stdout
    assert health.returncode in (0, 3), health.stderr  # the opik spool may be waiting
    for output in (demo.stdout, demo.stderr, health.stdout, health.stderr):
        assert "url-pw-4242" not in output
