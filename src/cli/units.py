"""How numbers and times read, the same in the terminal and in the HTML report."""

from __future__ import annotations

import math
from datetime import UTC, datetime

__all__ = ["fmt_count", "fmt_ms", "fmt_percent", "fmt_time", "fmt_tokens", "fmt_usd"]


def fmt_ms(value: float | None) -> str:
    """Milliseconds: one decimal below 100 ms, whole numbers above, seconds from 10 s."""
    if value is None:
        return "–"
    if value >= 10_000:
        return f"{value / 1000:,.1f} s"
    if value >= 100:
        return f"{value:,.0f} ms"
    return f"{value:.1f} ms"


def fmt_count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def fmt_tokens(value: int | float | None) -> str:
    """Token counts: exact below 10k, then k / M with one decimal."""
    if value is None:
        return "–"
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    return f"{int(value):,}"


def fmt_percent(rate: float | None) -> str:
    """A 0..1 rate as a percentage (one decimal; `0%` for exactly none)."""
    if rate is None:
        return "–"
    if rate == 0:
        return "0%"
    return f"{rate * 100:.1f}%"


def fmt_time(moment: datetime, *, seconds: bool = True) -> str:
    """A UTC wall-clock time, `YYYY-MM-DD HH:MM:SS`."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def fmt_usd(value: float | None) -> str:
    """US dollars: cents from $1, three significant digits below (`$0.00412`), `–` unknown."""
    if value is None:
        return "–"
    if value == 0:
        return "$0"
    if value >= 1:
        return f"${value:,.2f}"
    digits = min(8, max(2, 2 - math.floor(math.log10(value))))
    return f"${value:.{digits}f}"
