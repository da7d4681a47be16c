"""What the CLI writes to a terminal: consoles of the right width and style, and stored text
made harmless.

Width: `COLUMNS` when set; the terminal's own width when stdout is one; otherwise (a pipe, a
file, `e2i-obs demo | tail`) `PIPE_WIDTH`, wide enough that a table is never cut to rich's
80-column default: a pipe has no width, so each table takes what it needs.

Style: `NO_COLOR` (any non-empty value, https://no-color.org) turns off all styling, bold and
italic too (rich's own `NO_COLOR` support drops colours only).

Stored text (agent, trace and operation names, error messages, model names) was written by
whoever called the connector: a name holding `ESC [ 2 J` would clear the screen of whoever
reads the traces. `printable()` shows every control character as a visible escape (`\\x1b`),
and is applied to every such string before it is printed, in tables and in error lines alike.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from typing import TextIO

from rich.console import Console

__all__ = ["PIPE_WIDTH", "make_console", "no_color", "printable"]

PIPE_WIDTH = 1000
"""Console width when the output is not a terminal and COLUMNS is not set."""

# C0 and C1 controls, DEL, and the Unicode bidirectional overrides (which reorder what follows)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """`text` as a string with every control character shown as `\\xNN` / `\\uNNNN`."""
    value = text if isinstance(text, str) else str(text)
    return _CONTROL.sub(_escape, value)


def no_color(environ: Mapping[str, str] | None = None) -> bool:
    """True when NO_COLOR asks for plain output."""
    return bool((os.environ if environ is None else environ).get("NO_COLOR"))


def console_width(stream: TextIO, environ: Mapping[str, str] | None = None) -> int | None:
    """COLUMNS if set, None (rich measures the terminal) on a terminal, else PIPE_WIDTH."""
    env = os.environ if environ is None else environ
    columns = env.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    isatty = getattr(stream, "isatty", None)
    return None if isatty is not None and isatty() else PIPE_WIDTH


def make_console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr) following the rules of the module docstring."""
    stream = sys.stderr if stderr else sys.stdout
    plain = no_color()
    return Console(
        stderr=stderr,
        width=console_width(stream),
        color_system=None if plain else "auto",
        no_color=plain,
        highlight=False,
    )
