"""`src/cli/terminal.py`: stored text made harmless for a terminal, and console width rules."""

from __future__ import annotations

import io

import pytest

from src.cli.terminal import PIPE_WIDTH, console_width, no_color, printable


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("evil\x1b[2Jname", "evil\\x1b[2Jname"),  # ESC: clear screen
        ("title\x1b]0;pwned\x07", "title\\x1b]0;pwned\\x07"),  # OSC window title, BEL
        ("csi\x9b31m", "csi\\x9b31m"),  # the one-byte C1 CSI
        ("line\nbreak\ttab\rcr", "line\\x0abreak\\x09tab\\x0dcr"),
        ("del\x7f", "del\\x7f"),
        ("rtl\u202eexe.txt", "rtl\\u202eexe.txt"),  # bidi override reorders what follows
    ],
)
def test_printable__control_characters__shown_as_visible_escapes(stored: str, shown: str):
    assert printable(stored) == shown


def test_printable__ordinary_unicode__unchanged():
    text = "café – Kisqali 😀 [bold]not markup[/]"
    assert printable(text) == text


def test_console_width__columns_then_terminal_then_wide_pipe():
    pipe = io.StringIO()
    assert console_width(pipe, {"COLUMNS": "132"}) == 132
    assert console_width(pipe, {}) == PIPE_WIDTH
    assert console_width(pipe, {"COLUMNS": "wide"}) == PIPE_WIDTH


def test_no_color__only_a_non_empty_value_counts():
    assert no_color({"NO_COLOR": "1"}) and not no_color({"NO_COLOR": ""}) and not no_color({})
