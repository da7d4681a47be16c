"""Store upkeep commands: `db init`, `db cleanup`, `spool replay`.

`spool replay` uses the same wiring as the agents (`build_opik_connector(config)`: repository,
database and Opik sinks, batch processor) so a replay from the command line delivers exactly
as a restarted agent would, then reports what is still waiting. It exits 1 while a spool is
not empty, so a cron job or an operator notices a sink that is still down.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from src.agents.ml_foundation.observability_connector.processor_stats import ProcessorStats
from src.agents.ml_foundation.observability_connector.time_window import (
    ACCEPTED_WINDOWS,
    parse_time_window,
)
from src.repositories.span_store import SpanRepository

from .options import check_positive, settings_of
from .session import (
    EXIT_USAGE,
    CliError,
    describe_store,
    missing_sqlite_store,
    run_with_repository,
    translated_errors,
)
from .terminal import make_console

__all__ = ["db_app", "spool_app"]

db_app = typer.Typer(help="Span database: schema, retention and rollups.", no_args_is_help=True)
spool_app = typer.Typer(help="The on-disk spool of spans no sink took yet.", no_args_is_help=True)


@db_app.command("init")
def db_init(ctx: typer.Context) -> None:
    """Create or migrate the span table, indexes and SQL functions (idempotent)."""
    config = settings_of(ctx).load()

    async def work(repository: SpanRepository) -> None:
        await repository.setup()

    run_with_repository(config, work, must_exist=False)
    typer.echo(f"schema ready in {describe_store(config)}")


@db_app.command("cleanup")
def db_cleanup(
    ctx: typer.Context,
    days: Annotated[
        int | None,
        typer.Option(
            callback=check_positive,
            help="Delete spans that started more than this many days ago, at least 1 "
            "(default: retention.days of the configuration).",
            show_default=False,
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete without asking (scripts, cron).")
    ] = False,
    dry_run: Annotated[
        bool | None,
        typer.Option(
            "--dry-run/--no-dry-run",
            help="Count the spans that would be deleted, delete none "
            "(default: retention.dry_run of the configuration).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Delete old spans in batches (retention.batch_size rows per statement).

    Deleting is for good, so it asks first; without a terminal to ask on, `--yes` is required.
    """
    config = settings_of(ctx).load()
    retention_days = config.retention.days if days is None else days
    counting = config.retention.dry_run if dry_run is None else dry_run
    store = describe_store(config)
    if (missing := missing_sqlite_store(config)) is not None:
        raise missing  # before asking: there is nothing to delete from
    if not yes and not counting:  # a dry run deletes nothing: no need to ask
        if not sys.stdin.isatty():
            raise CliError(
                f"db cleanup deletes every span older than {retention_days} days from {store} "
                "for good: pass --yes to confirm (stdin is not a terminal, so it cannot ask)",
                EXIT_USAGE,
            )
        typer.confirm(
            f"Delete every span older than {retention_days} days from {store}?", abort=True
        )

    rollup_days = max(config.retention.rollup_days, retention_days)
    minute_days = max(config.retention.rollup_minute_days or retention_days, retention_days)

    async def work(repository: SpanRepository) -> tuple[int, int]:
        if counting:
            return await repository.count_old_spans(retention_days), 0
        spans = await repository.delete_old_spans(retention_days, config.retention.batch_size)
        return spans, await repository.delete_old_rollups(
            rollup_days, min(minute_days, rollup_days)
        )

    count, rollups = run_with_repository(config, work)
    verb = "would delete (dry run, nothing deleted)" if counting else "deleted"
    typer.echo(f"{verb} {count:,} spans older than {retention_days} days from {store}")
    if not counting:  # rollups have their own, longer retention (retention.rollup_days)
        typer.echo(
            f"deleted {rollups:,} rollup rows older than {rollup_days} days "
            f"(minute slots: older than {min(minute_days, rollup_days)} days)"
        )


@db_app.command("rollup")
def db_rollup(
    ctx: typer.Context,
    rebuild: Annotated[
        bool,
        typer.Option("--rebuild", help="Recompute the per-minute/hour rollups from the spans."),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only spans from this hour on: an ISO-8601 time (2026-03-01T00:00:00+00:00; "
            "no offset means UTC) or an age such as 6h or 7d (default: every span).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Rollups feed window metrics; `--rebuild` recomputes them from the stored spans (after
    a restore, an import that bypassed the span table, or a change to the rollup schema).
    Rollups older than the oldest span kept are left as they are."""
    if not rebuild:
        raise CliError("db rollup: nothing to do; pass --rebuild", EXIT_USAGE)
    start = parse_since(since)
    config = settings_of(ctx).load()
    if (missing := missing_sqlite_store(config)) is not None:
        raise missing

    async def work(repository: SpanRepository) -> int:
        return await repository.rebuild_rollups(start)

    count = run_with_repository(config, work)
    scope = "every span" if start is None else f"spans from {start:%Y-%m-%d %H:00} UTC on"
    typer.echo(f"rebuilt rollups of {count:,} spans ({scope}) in {describe_store(config)}")


def parse_since(value: str | None) -> datetime | None:
    """`--since`: an ISO-8601 time (naive means UTC) or an age like `6h`; else a usage error."""
    if value is None:
        return None
    try:
        return datetime.now(UTC) - parse_time_window(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(
            f"--since {value!r} is neither an ISO-8601 time (2026-03-01T00:00:00+00:00) "
            f"nor an age ({ACCEPTED_WINDOWS})",
            EXIT_USAGE,
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _spool_table(stats: ProcessorStats) -> Table:
    table = Table(title="Spool replay")
    table.add_column("Sink")
    table.add_column("Replayed", justify="right")
    table.add_column("Refused for good", justify="right")
    table.add_column("Still spooled", justify="right")
    for name in sorted(stats.sinks):
        counters = stats.sinks[name]
        table.add_row(
            name,
            f"{counters.replayed:,}",
            f"{counters.replay_rejected:,}",
            f"{counters.spool_bytes:,} bytes",
        )
    return table


@spool_app.command("replay")
def spool_replay(ctx: typer.Context) -> None:
    """Re-send every spooled span to its sink now; print what was delivered and what is left."""
    config = settings_of(ctx).load()
    with translated_errors(config):
        from src.mlops.opik_default import build_opik_connector

        connector = build_opik_connector(config)
        try:
            processor = connector.processor
            processor.replay_spool()  # type: ignore[attr-defined]
            stats: ProcessorStats = processor.stats()  # type: ignore[attr-defined]
        finally:
            connector.close(config.batching.shutdown_timeout_seconds)
    make_console().print(_spool_table(stats))
    typer.echo(f"replayed {stats.replayed:,} spans from {config.storage.spool_dir}")
    waiting = {name: c.spool_bytes for name, c in stats.sinks.items() if c.spool_bytes}
    if waiting:
        listed = ", ".join(f"{name} ({size:,} bytes)" for name, size in sorted(waiting.items()))
        reason = f"; last error: {stats.last_error}" if stats.last_error else ""
        raise CliError(f"spans still waiting in the spool for {listed}{reason}")
