"""`e2i-obs report` end to end: generated from a seeded SQLite store, then opened in headless
Chromium (Debian's `chromium`) with networking off.

The page's own script marks `<body data-render="report-ok">` once it has run and found every
chart the generator promised (`data-charts`); an uncaught error sets `report-error: ...`.
`--dump-dom` shows the DOM after the script ran, and Chromium's stderr (`--enable-logging`)
carries every console message, so any JavaScript error fails the test. The screenshot stays in
the test's tmp directory (a CI artifact).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from src.agents.ml_foundation.observability_connector.nodes.metrics_aggregator import (
    MetricsService,
)
from src.cli.main import app
from src.cli.report_data import build_report_data
from src.cli.units import fmt_usd
from src.repositories.observability_span import SqliteSpanRepository
from tests.fixtures.seeded_store import SeededStore, seed_store

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.fail(
            "headless Chromium is required for the report tests and was not found; "
            "install it with `apt-get install -y chromium` (Debian)"
        )
    return path


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> SeededStore:
    return seed_store(tmp_path_factory.mktemp("report-store") / "spans.db")


def generate(url: str, out: Path, *extra: str) -> str:
    result = CliRunner().invoke(
        app, ["--database-url", url, "report", "--out", str(out), *extra], catch_exceptions=False
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out}")
    return out.read_text(encoding="utf-8")


def open_in_chromium(chromium: str, page: Path, work: Path, *mode: str) -> tuple[str, str]:
    """Run Chromium once on `page`; (stdout, stderr)."""
    done = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={work / 'chromium-profile'}",
            *mode,
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, done.stderr


def console_problems(stderr: str) -> list[str]:
    """Console messages and uncaught errors Chromium logged for the page."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def expected_chart_count(html: str) -> int:
    match = re.search(r'<body data-charts="(\d+)"', html)
    assert match, "the page must promise its chart count"
    return int(match.group(1))


def assert_self_contained(html: str) -> None:
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {SVG_NAMESPACE}, f"the report must not reference the network: {urls}"
    assert not re.search(r"<(link|img|iframe|object|embed)\b", html)
    assert "@import" not in html
    assert not re.search(r"<script[^>]+src=", html)


def test_report__seeded_store__self_contained_page_renders_in_chromium(
    seeded: SeededStore, chromium: str, tmp_path: Path
):
    page = tmp_path / "report.html"
    html = generate(seeded.url, page, "--window", "24h")

    assert_self_contained(html)
    charts = expected_chart_count(html)
    assert charts == 5 + 1 + 2 + 3  # latency per agent, error rate, tokens x2, cost x3
    dom, dom_log = open_in_chromium(chromium, page, tmp_path, "--dump-dom")
    shot = tmp_path / "report.png"
    _, shot_log = open_in_chromium(
        chromium, page, tmp_path, f"--screenshot={shot}", "--window-size=1400,2000"
    )

    assert 'data-render="report-ok"' in dom
    assert len(re.findall(r'<svg class="chart ', dom)) == charts
    assert console_problems(dom_log + shot_log) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_report__contents__agree_with_the_seeded_spans(seeded: SeededStore, tmp_path: Path):
    html = generate(seeded.url, tmp_path / "report.html")

    durations: dict[str, tuple] = {}
    for span in seeded.recent:
        first, last = durations.get(span.trace_id, (span.start_time, span.end_time))
        durations[span.trace_id] = (min(first, span.start_time), max(last, span.end_time))
    slowest = sorted(durations, key=lambda t: durations[t][0] - durations[t][1])[:10]
    ids = re.findall(r'<td class="id"><a href="#trace-[0-9a-f]{32}">([0-9a-f]{32})</a>', html)
    assert ids == slowest
    assert f'<div class="value">{len(seeded.recent):,}</div>' in html
    for agent in {s.agent_name for s in seeded.recent}:
        assert f"<h3>{agent}</h3>" in html
    for model in {s.llm_model for s in seeded.recent if s.llm_model}:
        assert f"{model}</text>" in html
    priced = [s.cost_usd for s in seeded.recent if s.cost_usd is not None]
    assert priced and f'<div class="value">{fmt_usd(sum(priced))}</div>' in html
    unpriced = sum(s.span_kind == "llm" and s.cost_usd is None for s in seeded.recent)
    assert f"{unpriced:,} LLM calls had no known price" in html
    errors = sum(s.error_type == "TimeoutError" for s in seeded.recent)
    row = re.search(r'class="etype">TimeoutError</div>.*?<td class="num err">(\d+)</td>', html)
    assert row and int(row.group(1)) == errors


def test_report__one_bucket__percentiles_equal_the_store(seeded: SeededStore):
    async def fetch():
        repository = SqliteSpanRepository(seeded.path)
        try:
            metrics = await MetricsService(repository).get_quality_metrics("24h")
            spans = await repository.get_spans_by_time_window("24h", limit=100_000)
            return metrics, spans
        finally:
            await repository.close()

    metrics, spans = asyncio.run(fetch())
    data = build_report_data(metrics, spans, buckets=1)

    assert sorted(data.latency) == sorted(metrics.agents)
    for agent, (bucket,) in data.latency.items():
        stats = metrics.agents[agent]
        assert bucket.count == stats.count
        # the report's buckets are exact; the metrics' percentiles come from rollups (1%)
        assert bucket.p50_ms == pytest.approx(stats.p50_ms, rel=0.01)
        assert bucket.p95_ms == pytest.approx(stats.p95_ms, rel=0.01)
        assert bucket.p99_ms == pytest.approx(stats.p99_ms, rel=0.01)


def test_report__empty_store__renders_placeholders_without_errors(chromium: str, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    init = CliRunner().invoke(app, ["--database-url", url, "db", "init"])
    assert init.exit_code == 0, init.stderr
    page = tmp_path / "empty.html"

    html = generate(url, page, "--window", "1h")
    dom, log = open_in_chromium(chromium, page, tmp_path, "--dump-dom")

    assert expected_chart_count(html) == 0
    assert "no finished spans" in html and "no errors in this window" in html
    assert 'data-render="report-ok"' in dom
    assert console_problems(log) == []


def test_report__hostile_names__escaped_and_still_renders(chromium: str, tmp_path: Path):
    from datetime import UTC, datetime, timedelta

    from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan

    now = datetime.now(UTC)
    evil = '<script>document.body.dataset.render="pwned"</script>'
    span = ObservabilitySpan(
        span_id="1" * 16,
        trace_id="2" * 32,
        operation_name=evil,
        agent_name='agent"><img src=x onerror=alert(1)>',
        start_time=now - timedelta(minutes=3),
        end_time=now - timedelta(minutes=2),
        status="error",
        error_type=evil,
        error_message=evil,
    )

    async def store() -> None:
        repository = SqliteSpanRepository(tmp_path / "evil.db")
        await repository.setup()
        await repository.insert_span(span)
        await repository.close()

    asyncio.run(store())
    page = tmp_path / "evil.html"
    html = generate(f"sqlite:///{tmp_path / 'evil.db'}", page, "--window", "1h")
    dom, log = open_in_chromium(chromium, page, tmp_path, "--dump-dom")

    assert "<script>document.body" not in html
    assert "<img src=x" not in html
    assert 'data-render="report-ok"' in dom
    assert console_problems(log) == []
