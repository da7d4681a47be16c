"""Argument checks shared by the commands, and the command group that prints one-line errors.

A bad argument must read as one line, `Error: Invalid value for '--window': ...`, with exit
code 2, not click's usage block; a `CliError` from a command prints `Error: <message>` with its
own exit code. Both go to stderr, so `--json` output on stdout stays parseable.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from typer import rich_utils
from typer.core import TyperGroup

from src.agents.ml_foundation.observability_connector.cost_models import COST_BREAKDOWN_KEYS
from src.agents.ml_foundation.observability_connector.time_window import parse_time_window

from .session import EXIT_USAGE, CliError, CliSettings
from .terminal import no_color, printable
from .traces import normalize_trace_id

__all__ = [
    "OneLineErrorGroup",
    "check_cost_by",
    "check_fraction",
    "check_not_empty",
    "check_output_file",
    "check_positive",
    "check_trace_id",
    "check_window",
    "settings_of",
]


def _exit(code: int, standalone_mode: bool) -> int:
    if standalone_mode:
        sys.exit(code)
    return code


class OneLineErrorGroup(TyperGroup):
    """`TyperGroup` whose usage errors and `CliError`s print as one `Error: ...` line (control
    characters escaped: a message may quote stored text); `NO_COLOR` also plains the help."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        saved_color_system = rich_utils.COLOR_SYSTEM
        if no_color():
            rich_utils.COLOR_SYSTEM = None  # typer's help console: no bold either
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # typer's (vendored) click usage errors
            if type(exc).__name__ == "NoArgsIsHelpError":  # `e2i-obs db`: the help, as is
                typer.echo(exc.format_message(), err=True)
                return _exit(EXIT_USAGE, standalone_mode)
            message = printable(" ".join(exc.format_message().split()))
            typer.echo(f"Error: {message}", err=True)
            return _exit(exc.exit_code, standalone_mode)
        except CliError as exc:
            typer.echo(f"Error: {printable(exc.message)}", err=True)
            return _exit(exc.exit_code, standalone_mode)
        except typer.Abort:
            typer.echo("Aborted.", err=True)
            return _exit(1, standalone_mode)
        finally:
            rich_utils.COLOR_SYSTEM = saved_color_system
        code = result if isinstance(result, int) else 0
        return _exit(code, standalone_mode)


def settings_of(ctx: typer.Context) -> CliSettings:
    """The global options, stored on the root context by the app callback."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, CliSettings) else CliSettings()


def check_window(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_time_window(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


def check_cost_by(value: str | None) -> str | None:
    if value is not None and value not in COST_BREAKDOWN_KEYS:
        raise typer.BadParameter(f"must be one of {', '.join(COST_BREAKDOWN_KEYS)}, got {value!r}")
    return value


def check_positive(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise typer.BadParameter(f"must be a positive integer, got {value}")
    return value


def check_not_empty(value: str | None) -> str | None:
    """An option given as '' is a mistake (an unset shell variable), not "use the default"."""
    if value is not None and not value.strip():
        raise typer.BadParameter(
            "is empty; give sqlite:///path.db or postgresql://user@host/db, or leave it out"
        )
    return value


def check_fraction(value: float | None) -> float | None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise typer.BadParameter(f"must be between 0 and 1 (e.g. 0.1 for 10%), got {value}")
    return value


def check_trace_id(value: str) -> str:
    try:
        return normalize_trace_id(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def check_output_file(value: Path) -> Path:
    if value.is_dir():
        raise typer.BadParameter(f"{value} is a directory; give a file name such as report.html")
    parent = value.parent if str(value.parent) else Path(".")
    if not parent.is_dir():
        raise typer.BadParameter(f"directory {parent} does not exist")
    return value
