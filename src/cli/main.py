"""`e2i-obs`: look at what the agents did (metrics, traces, an HTML report) and keep the span
store healthy (schema, retention, spool replay, connector health).

    e2i-obs demo --requests 50                      # a traced demo workload into the store
    e2i-obs metrics --window 1h [--agent NAME] [--json]
    e2i-obs cost --window 7d --by agent|model|provider|day [--agent NAME] [--json]
    e2i-obs traces --window 1h --limit 20
    e2i-obs trace 0af7651916cd43dd8448eb211c80319c
    e2i-obs report --out report.html --window 24h
    e2i-obs db init | db cleanup --days 90 [--yes] | spool replay | health [--json]

Global options: `--config PATH` (else $E2I_OBS_CONFIG, then config/observability.yaml) and
`--database-url URL` (else $E2I_OBS_DATABASE_URL). Exit codes: 0 ok, 1 the store or a sink is
missing or failing (with a hint), 2 a bad argument or configuration; `health` exits 0 when
healthy, 1 when unhealthy (the store does not answer, spans dropped) and 3 when degraded
(working around a failure: Redis down, Opik breaker open, spans waiting in a spool).

The commands are thin: storage is `create_span_repository(config)`, numbers come from
`MetricsService`, the same services the agents use.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from src.agents.ml_foundation.observability_connector.cost_models import CostBreakdownRow
from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    QualityMetrics,
)
from src.agents.ml_foundation.observability_connector.nodes.metrics_aggregator import (
    MetricsService,
)
from src.repositories.span_store import SpanRepository

from . import render
from .maintenance import db_app, spool_app
from .options import (
    OneLineErrorGroup,
    check_cost_by,
    check_fraction,
    check_not_empty,
    check_output_file,
    check_positive,
    check_trace_id,
    check_window,
    settings_of,
)
from .report import render_report, write_report
from .report_data import build_report_data
from .session import (
    EXIT_FAILURE,
    CliError,
    CliSettings,
    describe_store,
    run_with_repository,
    translated_errors,
)
from .terminal import make_console
from .traces import build_span_tree, summarize_trace, summarize_traces

__all__ = ["app", "main"]

SPAN_FETCH_LIMIT = 100_000
"""Most spans `traces` and `report` read for one window (newest first)."""
EXIT_DEGRADED = 3
HEALTH_EXIT_CODES = {"healthy": 0, "unhealthy": EXIT_FAILURE, "degraded": EXIT_DEGRADED}

app = typer.Typer(
    cls=OneLineErrorGroup,
    name="e2i-obs",
    help="Observability of the E2I agents: metrics, traces, an HTML report, store upkeep.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db_app, name="db")
app.add_typer(spool_app, name="spool")

WindowOption = Annotated[
    str,
    typer.Option("--window", "-w", callback=check_window, help="Time window: <n>m, <n>h or <n>d."),
]


@app.callback()
def global_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Configuration file (default: $E2I_OBS_CONFIG, then config/observability.yaml).",
            show_default=False,
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            callback=check_not_empty,
            help="Span store, overriding the configuration like $E2I_OBS_DATABASE_URL: "
            "sqlite:///path.db or postgresql://user@host/db.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Observability of the E2I agents."""
    # The PostgreSQL pool logs every failed connection attempt (8 lines for one wrong
    # password); the command reports the last attempt's reason itself, once.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    ctx.obj = CliSettings(config_path=config, database_url=database_url)


@app.command()
def demo(
    ctx: typer.Context,
    requests: Annotated[
        int, typer.Option(callback=check_positive, help="Orchestrator requests to run.")
    ] = 40,
    concurrency: Annotated[
        int, typer.Option(callback=check_positive, help="Requests in flight at once.")
    ] = 4,
    failure_rate: Annotated[
        float, typer.Option(callback=check_fraction, help="Share of requests that fail (0-1).")
    ] = 0.05,
) -> None:
    """Run a traced demo workload that fills the span store."""
    settings = settings_of(ctx)
    config = settings.load()
    from src.cli.demo import run_demo

    with translated_errors(config), settings.exported():
        run_demo(
            requests=requests,
            concurrency=concurrency,
            failure_rate=failure_rate,
            console=make_console(),
        )


@app.command()
def metrics(
    ctx: typer.Context,
    window: WindowOption = "24h",
    agent: Annotated[
        str | None, typer.Option("--agent", "-a", help="Only this agent.", show_default=False)
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print QualityMetrics as JSON, nothing else.")
    ] = False,
    exact: Annotated[
        bool,
        typer.Option(
            "--exact",
            help="Compute from the raw spans (default: per-minute rollups; counts, tokens "
            "and cost exact, percentiles within 1%).",
        ),
    ] = False,
) -> None:
    """Per-agent span counts, errors, latency percentiles, tokens and cost over a window."""
    config = settings_of(ctx).load()

    async def work(repository: SpanRepository) -> QualityMetrics:
        return await MetricsService(repository).get_quality_metrics(window, agent, exact=exact)

    result = run_with_repository(config, work)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    if not result.agents:
        who = f" for agent {agent!r}" if agent else ""
        typer.echo(f"no spans{who} in the last {window} in {describe_store(config)}")
        return
    make_console().print(render.metrics_table(result), crop=False)


@app.command()
def cost(
    ctx: typer.Context,
    window: WindowOption = "7d",
    by: Annotated[
        str,
        typer.Option(
            "--by", "-b", callback=check_cost_by, help="Group by agent, model, provider or day."
        ),
    ] = "agent",
    agent: Annotated[
        str | None, typer.Option("--agent", "-a", help="Only this agent.", show_default=False)
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the breakdown as JSON, nothing else.")
    ] = False,
) -> None:
    """LLM cost in USD over a window by agent, model, provider or UTC day, with token kinds."""
    config = settings_of(ctx).load()

    async def work(repository: SpanRepository) -> list[CostBreakdownRow]:
        return await repository.get_cost_breakdown(window, by, agent)

    rows = run_with_repository(config, work)
    if by != "day":  # most expensive first; days stay in date order
        rows = sorted(rows, key=lambda r: (-r.cost_usd, r.key))
    if as_json:
        document = {
            "window": window,
            "by": by,
            "agent_name": agent,
            "cost_usd": sum(r.cost_usd for r in rows),
            "llm_calls": sum(r.llm_calls for r in rows),
            "unpriced_llm_calls": sum(r.llm_calls - r.priced_llm_calls for r in rows),
            "rows": [r.model_dump(mode="json") for r in rows],
        }
        typer.echo(json.dumps(document, indent=2))
        return
    if not rows:
        who = f" of agent {agent!r}" if agent else ""
        typer.echo(f"no LLM spans{who} in the last {window} in {describe_store(config)}")
        return
    make_console().print(render.cost_table(rows, by, window), crop=False)


@app.command()
def traces(
    ctx: typer.Context,
    window: WindowOption = "1h",
    limit: Annotated[
        int, typer.Option("--limit", "-n", callback=check_positive, help="Traces to list.")
    ] = 20,
) -> None:
    """One line per trace (newest first): root, agent, start, duration, spans, errors, tokens."""
    config = settings_of(ctx).load()

    async def work(repository: SpanRepository) -> list[ObservabilitySpan]:
        return await repository.get_spans_by_time_window(window, limit=SPAN_FETCH_LIMIT)

    spans = run_with_repository(config, work)
    summaries = summarize_traces(spans)
    if not summaries:
        typer.echo(f"no traces in the last {window} in {describe_store(config)}")
        return
    out = make_console()
    out.print(render.traces_table(summaries[:limit], window), crop=False)
    if len(summaries) > limit:
        out.print(f"{len(summaries) - limit} older traces not shown (use --limit).", style="dim")
    if len(spans) >= SPAN_FETCH_LIMIT:
        out.print(f"only the newest {SPAN_FETCH_LIMIT:,} spans were read.", style="dim")


@app.command()
def trace(
    ctx: typer.Context,
    trace_id: Annotated[
        str,
        typer.Argument(
            callback=check_trace_id, help="32 hex characters (a dashed UUID is accepted too)."
        ),
    ],
) -> None:
    """One trace as a tree of spans: durations, status, model, tokens and cost."""
    config = settings_of(ctx).load()

    async def work(repository: SpanRepository) -> list[ObservabilitySpan]:
        return await repository.get_spans_by_trace(trace_id)

    spans = run_with_repository(config, work)
    if not spans:
        raise CliError(f"no spans of trace {trace_id} in {describe_store(config)}")
    make_console().print(render.trace_tree(summarize_trace(spans), build_span_tree(spans)))


@app.command()
def report(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option("--out", "-o", callback=check_output_file, help="HTML file to write.")
    ] = Path("report.html"),
    window: WindowOption = "24h",
    buckets: Annotated[
        int,
        typer.Option(min=1, max=500, help="Time buckets of the latency charts."),
    ] = 24,
) -> None:
    """Write a self-contained HTML report: latency over time, errors, tokens, slowest traces."""
    config = settings_of(ctx).load()

    async def work(
        repository: SpanRepository,
    ) -> tuple[QualityMetrics, list[ObservabilitySpan]]:
        result = await MetricsService(repository).get_quality_metrics(window)
        spans = await repository.get_spans_by_time_window(window, limit=SPAN_FETCH_LIMIT)
        return result, spans

    quality, spans = run_with_repository(config, work)
    data = build_report_data(
        quality,
        spans,
        buckets=buckets,
        span_limit=SPAN_FETCH_LIMIT,
        store=describe_store(config),
    )
    try:
        write_report(out, render_report(data, datetime.now(UTC)))
    except OSError as exc:
        raise CliError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    typer.echo(
        f"wrote {out} ({quality.total_spans:,} spans, {len(quality.agents)} agents, last {window})"
    )


@app.command()
def health(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the snapshot as JSON.")] = False,
) -> None:
    """Whether the span store and Redis answer, and the connector's queue, spool, drops,
    breaker and cache. Exit 0 healthy, 1 unhealthy, 3 degraded.

    Counters live in each process: from here, the spool (on disk, shared) and whether the
    stores answer are what describe the running agents; call `obs.health()` in an agent for
    its queue, drops and breaker.
    """
    config = settings_of(ctx).load()
    with translated_errors(config):
        from src.agents.ml_foundation.observability_connector.agent import (
            ObservabilityConnectorAgent,
        )

        agent = ObservabilityConnectorAgent(config)
        try:
            snapshot = agent.health()
        finally:
            agent.close(config.batching.shutdown_timeout_seconds)
    code = HEALTH_EXIT_CODES.get(snapshot.status, EXIT_FAILURE)
    if as_json:
        typer.echo(json.dumps(snapshot.as_dict(), indent=2))
        raise typer.Exit(code)
    out = make_console()
    out.print(render.health_table(snapshot))
    out.print(
        "Counters are this command's own process; the spool on disk is shared with the agents. "
        "An agent's live queue, drops and breaker: ObservabilityConnectorAgent.health()."
    )
    if snapshot.reasons:
        out.print(f"{snapshot.status}: {'; '.join(snapshot.reasons)}", markup=False)
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point (`e2i-obs`, also `python -m src.cli.main`)."""
    app(prog_name="e2i-obs")


if __name__ == "__main__":
    main()
