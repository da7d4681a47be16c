"""Time windows such as `15m`, `1h`, `24h`, `7d`.

The seed silently fell back to 24 h on anything it did not understand; a wrong window is a
wrong answer, so here anything else is a `ValueError` naming the accepted forms.
"""

from __future__ import annotations

import re
from datetime import timedelta

_WINDOW_RE = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
ACCEPTED_WINDOWS = "<n>m, <n>h or <n>d with n a positive integer (e.g. 15m, 1h, 24h, 7d)"
MAX_WINDOW = timedelta(days=3650)


def parse_time_window(window: str) -> timedelta:
    """Return the window as a timedelta, or raise ValueError saying what is accepted."""
    match = _WINDOW_RE.fullmatch(window) if isinstance(window, str) else None  # not "1h\n"
    if match is None:
        raise ValueError(f"invalid time window {window!r}: expected {ACCEPTED_WINDOWS}")
    amount, unit = int(match.group(1)), match.group(2)
    delta = timedelta(**{_UNITS[unit]: amount})
    if delta > MAX_WINDOW:
        raise ValueError(f"invalid time window {window!r}: longer than {MAX_WINDOW.days} days")
    return delta
