"""The report's trace waterfall, checked in headless Chromium over the DevTools protocol.

A user opens a slowest trace (a click on its summary, and a `#trace-<id>` link); its spans must
show in tree order (depth-first, children oldest first), each bar on the trace's own time axis
with a width proportional to the span's duration and placed at its offset (measured from the
laid-out page, to 1.5 px), and the page logs no console message or error.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan
from tests.fixtures.cdp import Browser
from tests.fixtures.seeded_store import SeededStore, seed_store
from tests.integration.test_report import generate

MEASURE = """
(() => {
  const details = document.getElementById(%s);
  const rows = [...details.querySelectorAll('.wf-row[data-span-id]')].map((row) => {
    const track = row.querySelector('.wf-track').getBoundingClientRect();
    const bar = row.querySelector('.wf-bar').getBoundingClientRect();
    return {id: row.dataset.spanId, trackLeft: track.left, trackWidth: track.width,
            barLeft: bar.left, barWidth: bar.width, visible: bar.height > 0};
  });
  return {open: details.open, rows: rows};
})()
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.fail("headless Chromium is required: `apt-get install -y chromium` (Debian)")
    return path


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> SeededStore:
    return seed_store(tmp_path_factory.mktemp("waterfall-store") / "spans.db")


def tree_order(spans: list[ObservabilitySpan]) -> list[str]:
    by_parent: dict[str | None, list[ObservabilitySpan]] = {}
    ids = {s.span_id for s in spans}
    for span in sorted(spans, key=lambda s: (s.start_time, s.span_id)):
        parent = span.parent_span_id if span.parent_span_id in ids else None
        by_parent.setdefault(parent, []).append(span)
    order: list[str] = []

    def visit(span: ObservabilitySpan) -> None:
        order.append(span.span_id)
        for child in by_parent.get(span.span_id, []):
            visit(child)

    for root in by_parent.get(None, []):
        visit(root)
    return order


def check_bars(measured: dict, spans: list[ObservabilitySpan]) -> None:
    start = min(s.start_time for s in spans)
    end = max(s.end_time for s in spans)
    total_ms = (end - start).total_seconds() * 1000.0
    by_id = {s.span_id: s for s in spans}
    for row in measured["rows"]:
        span = by_id[row["id"]]
        offset = (span.start_time - start).total_seconds() * 1000.0
        width = row["trackWidth"]
        assert row["visible"]
        assert width > 200
        assert row["barWidth"] == pytest.approx(
            max(span.duration_ms / total_ms * width, 1.0), abs=1.5
        ), span.operation_name
        assert row["barLeft"] - row["trackLeft"] == pytest.approx(
            offset / total_ms * width, abs=1.5
        ), span.operation_name


def test_waterfall__open_a_slowest_trace__tree_order_and_proportional_bars_no_errors(
    seeded: SeededStore,
    chromium: str,
    tmp_path: Path,
):
    page = tmp_path / "report.html"
    html = generate(seeded.url, page, "--window", "24h")
    trace_ids = re.findall(r'<details class="waterfall" id="trace-([0-9a-f]{32})"', html)
    assert len(trace_ids) == 10  # one per slowest trace
    first, other = trace_ids[0], trace_ids[3]

    browser = Browser(chromium, tmp_path / "profile")
    try:
        browser.open(page.resolve().as_uri())
        closed = browser.evaluate(MEASURE % f'"trace-{first}"')
        browser.evaluate(f'document.querySelector("#trace-{first} > summary").click()')
        opened = browser.evaluate(MEASURE % f'"trace-{first}"')
        browser.evaluate(  # the trace's link in the slowest-traces table
            f"document.querySelector('td.id a[href=\"#trace-{other}\"]').click();"
            "new Promise((done) => setTimeout(done, 100))"
        )
        linked = browser.evaluate(MEASURE % f'"trace-{other}"')
        render = browser.evaluate('document.body.getAttribute("data-render")')
        problems = browser.problems()
    finally:
        browser.close()

    assert closed["open"] is False
    assert opened["open"] is True and linked["open"] is True
    for trace_id, measured in ((first, opened), (other, linked)):
        spans = [s for s in seeded.recent if s.trace_id == trace_id]
        assert [r["id"] for r in measured["rows"]] == tree_order(spans)
        check_bars(measured, spans)
    assert render == "report-ok"
    assert problems == []
