"""`e2i-obs demo`: the reference orchestrator on an offline chat model, traced end to end.

Runs `requests` requests through the orchestrator (`src/reference_orchestrator`) with a seeded
fake chat model (latency jitter, injected failures), stores every span in the configured
database (the embedded SQLite file by default), then prints per-agent metrics read back from
that store and says where the data lives and how to point it at Postgres, Supabase and Opik.

Opik: `opik.enabled` is honoured, except that without `OPIK_URL_OVERRIDE` or `OPIK_API_KEY`
(nor their config keys) there is nowhere to send to but the Opik Cloud default, which would
fail without a key; the demo then runs database-only and says so.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from src.agents.ml_foundation.observability_connector.agent import ObservabilityConnectorAgent
from src.agents.ml_foundation.observability_connector.config import (
    ENV_DATABASE_URL,
    ENV_OPIK_API_KEY,
    ENV_OPIK_URL,
    ENV_OPIK_WORKSPACE,
    ENV_SUPABASE_KEY,
    ENV_SUPABASE_URL,
    ObservabilityConfig,
    load_config,
)
from src.agents.ml_foundation.observability_connector.models import QualityMetrics
from src.reference_orchestrator.fake_llm import build_demo_chat_model
from src.reference_orchestrator.health import OrchestratorSettings
from src.reference_orchestrator.runner import OrchestratorReport, RequestResult, run_orchestrator

from .render import metrics_table
from .session import mask_url
from .terminal import make_console, printable

__all__ = ["DemoResult", "demo_requests", "run_demo"]

DEMO_MODEL = "demo-gpt-4o-mini"
DEMO_LATENCY_S = 0.04
_TOPICS = (
    "Why did NRx for Kisqali drop in the West region last quarter?",
    "Which territories have the largest gap to target for Fabhalta?",
    "What was the causal impact of the speaker program on new prescribers?",
    "Explain the uplift of the email campaign to the brand team.",
    "Which HCP segments respond least to rep visits, and why?",
    "Did the formulary change cause the market share shift in the Northeast?",
    "Where are we losing patients between diagnosis and first fill?",
    "Summarise the drivers of Remibrutinib adoption for the leadership review.",
)


@dataclass(frozen=True, slots=True)
class DemoResult:
    report: OrchestratorReport
    metrics: QualityMetrics | None
    """Per-agent metrics over the demo's window, read back from the store."""
    storage: str
    """Where the spans are stored, e.g. `SQLite database /path/observability.db`."""
    sqlite_path: Path | None
    opik_enabled: bool
    elapsed_s: float


def demo_requests(count: int) -> list[str]:
    """`count` distinct analytics questions (the topics, cycled and numbered)."""
    return [f"{_TOPICS[i % len(_TOPICS)]} (request {i + 1})" for i in range(count)]


def _check_arguments(requests: object, concurrency: object, failure_rate: object) -> None:
    for name, value in (("requests", requests), ("concurrency", concurrency)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    ok = isinstance(failure_rate, int | float) and not isinstance(failure_rate, bool)
    if not ok or not 0.0 <= failure_rate <= 1.0:  # type: ignore[operator]
        raise ValueError(f"failure_rate must be a number between 0 and 1, got {failure_rate!r}")


def _demo_opik(config: ObservabilityConfig) -> tuple[ObservabilityConfig, str]:
    """The config the demo runs with, and a sentence saying where spans go besides the DB."""
    opik = config.opik
    if not opik.enabled:
        return config, "Opik: disabled by configuration (opik.enabled: false); database only."
    if opik.url_override is None and opik.api_key is None:
        off = config.model_copy(update={"opik": opik.model_copy(update={"enabled": False})})
        return off, (
            f"Opik: disabled for this demo: neither {ENV_OPIK_URL} nor {ENV_OPIK_API_KEY} is "
            "set, so spans go to the database only."
        )
    target = mask_url(opik.url_override) if opik.url_override else "Opik Cloud"
    return config, f"Opik: sending spans to {target} (project {opik.project_name!r})."


def _storage_description(config: ObservabilityConfig) -> tuple[str, Path | None]:
    storage = config.storage
    if storage.backend == "sqlite":
        path = Path(storage.sqlite_path).resolve()
        return f"SQLite database {path}", path
    if storage.backend == "postgres":
        from src.repositories._postgres_pools import describe_target

        secret = storage.url.get_secret_value() if storage.url is not None else ""
        try:
            where = describe_target(secret)[0]
        except ValueError:
            where = "the configured DSN"
        return f"PostgreSQL database {where}", None
    return f"Supabase project {mask_url(storage.supabase_url or '(no url)')}", None


async def _run(
    config: ObservabilityConfig,
    questions: list[str],
    concurrency: int,
    failure_rate: float,
    seed: int,
    settings: OrchestratorSettings,
    console: Console,
) -> OrchestratorReport:
    llm = build_demo_chat_model(DEMO_MODEL, DEMO_LATENCY_S, failure_rate, seed)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    async with ObservabilityConnectorAgent(config) as obs:
        with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("requests", total=len(questions))

            def advance(result: RequestResult) -> None:
                progress.advance(task)

            return await run_orchestrator(obs, llm, questions, concurrency, settings, advance)


def run_demo(
    requests: int = 40,
    concurrency: int = 4,
    failure_rate: float = 0.05,
    seed: int = 7,
    config: ObservabilityConfig | None = None,
    console: Console | None = None,
) -> DemoResult:
    """Run the demo and print its report; ValueError naming a bad argument."""
    _check_arguments(requests, concurrency, failure_rate)
    console = console or make_console()
    config, opik_note = _demo_opik(config if config is not None else load_config())
    storage, sqlite_path = _storage_description(config)
    settings = OrchestratorSettings()
    console.print(
        f"[bold]E2I observability demo[/]: {requests} requests, concurrency {concurrency}, "
        f"LLM failure rate {failure_rate:.0%}, seed {seed}"
    )
    console.print(opik_note)
    started = time.perf_counter()
    questions = demo_requests(requests)
    report = asyncio.run(
        _run(config, questions, concurrency, failure_rate, seed, settings, console)
    )
    elapsed = time.perf_counter() - started
    _print_report(console, report, settings, storage, elapsed)
    return DemoResult(report, report.metrics, storage, sqlite_path, config.opik.enabled, elapsed)


def _print_report(
    console: Console,
    report: OrchestratorReport,
    settings: OrchestratorSettings,
    storage: str,
    elapsed: float,
) -> None:
    ok = report.count("ok")
    console.print(
        f"{len(report.results)} requests in {elapsed:.1f} s: {ok} ok, {report.degraded} degraded "
        f"(a domain agent failed), {report.failed} failed; one trace each"
        + ("" if report.flushed else "; [yellow]some spans were not flushed yet (spooled)[/]")
    )
    for problem in report.problems:
        console.print(printable(problem), style="yellow", markup=False)
    if report.metrics is not None:
        console.print("Per-agent metrics, read back from the store:")
        console.print(metrics_table(report.metrics), crop=False)
    limits = (
        f"p95 > {settings.p95_threshold_ms:,.0f} ms or error rate > "
        f"{settings.error_rate_threshold:.0%}"
    )
    if report.alerts:
        for alert in report.alerts:
            detail = printable(f"{alert.agent_name}: {'; '.join(alert.reasons)}")
            console.print(Text.assemble(("health", "red"), " ", detail))
    else:
        console.print(f"health: no agent over the thresholds ({limits})")
    if report.results:
        console.print(f"example trace id: {report.results[0].trace_id}")
    console.print(f"Data: {storage}, table ml_observability_spans.")
    pad = " " * 12
    console.print(
        "Point it elsewhere with environment variables:\n"
        f"  Postgres  {ENV_DATABASE_URL}=postgresql://user:password@host:5432/dbname\n"
        f"  Supabase  {ENV_SUPABASE_URL}=https://<project>.supabase.co\n"
        f"{pad}{ENV_SUPABASE_KEY}=<service-role key>\n"
        f"  Opik      {ENV_OPIK_URL}=http://localhost:5173/api  (self-hosted)\n"
        f"{pad}{ENV_OPIK_API_KEY}=<key> {ENV_OPIK_WORKSPACE}=<workspace>  (Opik Cloud)",
        highlight=False,
    )
