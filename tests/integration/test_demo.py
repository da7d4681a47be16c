"""`run_demo`: a small run on a temporary SQLite file, its printed report checked against what
an independent repository reads back from that file; Opik against the loopback server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from src.agents.ml_foundation.observability_connector.config import (
    ObservabilityConfig,
    load_config,
)
from src.agents.ml_foundation.observability_connector.models import LatencyStats, ObservabilitySpan
from src.cli.demo import run_demo
from src.cli.units import fmt_count, fmt_ms, fmt_percent, fmt_tokens
from src.repositories.sqlite_repository import SqliteSpanRepository


def make_config(tmp_path: Path, **opik: Any) -> ObservabilityConfig:
    return load_config(
        env={},
        overrides={
            "storage": {
                "backend": "sqlite",
                "sqlite_path": str(tmp_path / "demo.db"),
                "spool_dir": str(tmp_path / "spool"),
            },
            "opik": opik,
            "batching": {"max_batch_wait_seconds": 0.05},
        },
    )


def read_back(
    path: Path, trace_ids: list[str]
) -> tuple[list[LatencyStats], dict[str, list[ObservabilitySpan]]]:
    async def read() -> tuple[list[LatencyStats], dict[str, list[ObservabilitySpan]]]:
        repository = SqliteSpanRepository(path)
        try:
            stats = await repository.get_latency_stats("1h")
            traces = {t: await repository.get_spans_by_trace(t) for t in trace_ids}
        finally:
            await repository.close()
        return stats, traces

    return asyncio.run(read())


def table_rows(text: str, agents: list[str]) -> dict[str, list[str]]:
    """Cells of the table lines whose first cell is an agent name."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if cells and cells[0] in agents:
            rows[cells[0]] = cells[1:]
    return rows


def test_run_demo__small_run_without_opik_settings__prints_store_metrics_and_where_data_lives(
    tmp_path: Path,
) -> None:
    console = Console(record=True, width=120)
    result = run_demo(
        requests=5,
        concurrency=2,
        failure_rate=0.2,
        seed=3,
        config=make_config(tmp_path, enabled=True),
        console=console,
    )
    text = console.export_text()

    db_path = (tmp_path / "demo.db").resolve()
    assert result.sqlite_path == db_path
    assert not result.opik_enabled
    assert "Opik: disabled for this demo" in text
    assert len(result.report.results) == 5
    stats, traces = read_back(db_path, result.report.trace_ids)
    for trace_id, spans in traces.items():
        roots = [s for s in spans if s.parent_span_id is None]
        assert [(r.agent_name, r.operation_name) for r in roots] == [
            ("orchestrator", "handle_request")
        ], trace_id
    assert sum(s.count for s in stats) == sum(len(spans) for spans in traces.values())

    rows = table_rows(text, [s.agent_name for s in stats])
    assert rows == {
        s.agent_name: [
            "–" if s.agent_tier is None else str(s.agent_tier),
            fmt_count(s.count),
            fmt_count(s.error_count),
            fmt_percent(s.error_rate),
            fmt_ms(s.p50_ms),
            fmt_ms(s.p95_ms),
            fmt_ms(s.p99_ms),
            fmt_count(s.llm_calls),
            fmt_tokens(s.total_tokens),
        ]
        for s in stats
    }
    assert {"orchestrator", "observability_connector"} <= rows.keys()
    assert f"SQLite database {db_path}" in text
    for variable in (
        "E2I_OBS_DATABASE_URL=postgresql://",
        "SUPABASE_URL=",
        "SUPABASE_KEY=",
        "OPIK_URL_OVERRIDE=",
        "OPIK_API_KEY=",
        "OPIK_WORKSPACE=",
    ):
        assert variable in text
    counts = f"{result.report.count('ok')} ok, {result.report.degraded} degraded"
    assert counts in text


def test_run_demo__opik_url_configured__keeps_the_opik_sink_and_spans_arrive(
    tmp_path: Path, opik_server: Any
) -> None:
    console = Console(record=True, width=120)
    config = make_config(tmp_path, enabled=True, url_override=opik_server.base_url)
    result = run_demo(requests=2, concurrency=2, failure_rate=0.0, config=config, console=console)

    assert result.opik_enabled
    assert f"Opik: sending spans to {opik_server.base_url}" in console.export_text()
    _, traces = read_back(tmp_path / "demo.db", result.report.trace_ids)
    stored = sum(len(spans) for spans in traces.values())
    assert len({s["id"] for s in opik_server.received_spans()}) == stored > 0


def test_run_demo__opik_url_with_password__printed_masked(tmp_path: Path, opik_server: Any) -> None:
    console = Console(record=True, width=120)
    url = opik_server.base_url.replace("http://", "http://demo:pw-not-for-print@", 1)
    config = make_config(tmp_path, enabled=True, url_override=url)
    run_demo(requests=1, concurrency=1, failure_rate=0.0, config=config, console=console)

    text = console.export_text()
    assert "pw-not-for-print" not in text
    assert "Opik: sending spans to http://demo:***@" in text


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"requests": 0}, "requests must be an integer >= 1, got 0"),
        ({"concurrency": 2.5}, "concurrency must be an integer >= 1, got 2.5"),
        ({"failure_rate": 1.5}, "failure_rate must be a number between 0 and 1, got 1.5"),
    ],
)
def test_run_demo__bad_argument__value_error_naming_it(
    arguments: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        run_demo(config=make_config(tmp_path, enabled=False), **arguments)
    assert not (tmp_path / "demo.db").exists()  # rejected before anything was opened
