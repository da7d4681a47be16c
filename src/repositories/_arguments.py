"""Argument checks and time windows shared by the storage backends.

Every backend checks its public arguments the same way, so a bad value gets the same clear
`ValueError` (naming the argument, the value and what is accepted) whichever store is in use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from src.agents.ml_foundation.observability_connector.models import check_trace_id
from src.agents.ml_foundation.observability_connector.time_window import parse_time_window

__all__ = [
    "Clock",
    "Window",
    "check_agent_name",
    "check_limit",
    "check_retention",
    "check_trace_id",
    "current_time",
    "resolve_window",
    "utc_now",
]

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware. Injected so tests get deterministic windows."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Window:
    """A resolved time window: spans with `start <= start_time <= end`."""

    start: datetime
    end: datetime
    length: timedelta

    @property
    def minutes(self) -> float:
        return self.length.total_seconds() / 60.0


def current_time(clock: Clock) -> datetime:
    """The clock's now in UTC; a naive or non-datetime value is a programming error."""
    now = clock()
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"the repository clock must return a timezone-aware datetime, got {now!r}")
    return now.astimezone(UTC)


def resolve_window(window: str, clock: Clock) -> Window:
    """Parse `window` (ValueError naming the accepted forms) and anchor it at the clock's now."""
    length = parse_time_window(window)
    now = current_time(clock)
    return Window(start=now - length, end=now, length=length)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_limit(limit: int) -> int:
    if not _is_int(limit) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    return limit


def check_agent_name(agent_name: str | None) -> str | None:
    if agent_name is not None and (not isinstance(agent_name, str) or not agent_name):
        raise ValueError(f"agent_name must be a non-empty string or None, got {agent_name!r}")
    return agent_name


def check_retention(days: int, batch_size: int) -> timedelta:
    """Validate retention arguments; return the age beyond which spans are deleted."""
    if not _is_int(days) or days < 0:
        raise ValueError(f"days must be a non-negative integer, got {days!r}")
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return timedelta(days=days)
