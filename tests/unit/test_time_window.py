"""Time windows: `<n>m`, `<n>h`, `<n>d`; anything else is a ValueError naming the forms."""

from __future__ import annotations

from datetime import timedelta

import pytest

from src.agents.ml_foundation.observability_connector.time_window import (
    ACCEPTED_WINDOWS,
    MAX_WINDOW,
    parse_time_window,
)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("90m", timedelta(minutes=90)),
    ],
)
def test_parse_time_window__accepted_form__timedelta(window, expected):
    assert parse_time_window(window) == expected


@pytest.mark.parametrize(
    "window", ["", "24", "0h", "-1d", "1w", "abc", None, "1H", " 1h", "1h ", "1h\n"]
)
def test_parse_time_window__rejected_form__value_error_naming_value_and_forms(window):
    with pytest.raises(ValueError) as excinfo:
        parse_time_window(window)
    message = str(excinfo.value)
    assert repr(window) in message
    assert ACCEPTED_WINDOWS in message
    assert "15m, 1h, 24h, 7d" in message


def test_parse_time_window__longest_allowed__accepted():
    assert parse_time_window(f"{MAX_WINDOW.days}d") == MAX_WINDOW


def test_parse_time_window__beyond_limit__value_error_naming_limit():
    with pytest.raises(ValueError, match=f"longer than {MAX_WINDOW.days} days"):
        parse_time_window(f"{MAX_WINDOW.days + 1}d")
