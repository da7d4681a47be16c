"""Argument checks and time windows shared by the storage backends.

Every backend checks its public and constructor arguments the same way, so a bad value gets the
same clear `ValueError` (naming the argument, the value and what is accepted) whichever store is
in use.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from src.agents.ml_foundation.observability_connector.cost_models import COST_BREAKDOWN_KEYS
from src.agents.ml_foundation.observability_connector.models import (
    SpanStatus,
    check_trace_id,
    utc_now,
)
from src.agents.ml_foundation.observability_connector.time_window import parse_time_window

__all__ = [
    "Clock",
    "Window",
    "check_agent_name",
    "check_agent_tier",
    "check_aware",
    "check_cost_by",
    "check_int",
    "check_limit",
    "check_retention",
    "check_rollup_retention",
    "check_seconds",
    "check_status",
    "check_trace_id",
    "current_time",
    "resolve_window",
    "utc_now",
]

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware. Injected so tests get deterministic windows."""


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


def check_int(name: str, value: int, minimum: int) -> int:
    """An integer (not a bool) >= `minimum`, else a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_seconds(name: str, value: float) -> float:
    """A finite number of seconds > 0 (not a bool), else a ValueError naming `name`."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    return float(value)


def check_limit(limit: int) -> int:
    return check_int("limit", limit, 1)


def check_agent_name(agent_name: str | None) -> str | None:
    if agent_name is not None and (not isinstance(agent_name, str) or not agent_name):
        raise ValueError(f"agent_name must be a non-empty string or None, got {agent_name!r}")
    return agent_name


def check_status(status: SpanStatus | str | None) -> str | None:
    """A span status value (`started`, `completed`, `error`) or None."""
    if status is None:
        return None
    try:
        return SpanStatus(status).value
    except ValueError:
        accepted = ", ".join(s.value for s in SpanStatus)
        raise ValueError(f"status must be one of {accepted} or None, got {status!r}") from None


def check_agent_tier(agent_tier: int | None) -> int | None:
    """A tier number 0-5 (an agent registry priority) or None."""
    if agent_tier is not None and (
        isinstance(agent_tier, bool) or not isinstance(agent_tier, int) or not 0 <= agent_tier <= 5
    ):
        raise ValueError(f"agent_tier must be an integer from 0 to 5 or None, got {agent_tier!r}")
    return agent_tier


def check_aware(name: str, value: datetime) -> datetime:
    """A timezone-aware datetime (in UTC), else a ValueError naming `name`."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def check_cost_by(by: str) -> str:
    """One of `COST_BREAKDOWN_KEYS` (agent, model, day, provider), else a ValueError."""
    if by not in COST_BREAKDOWN_KEYS:
        raise ValueError(f"by must be one of {', '.join(COST_BREAKDOWN_KEYS)}; got {by!r}")
    return by


def check_rollup_retention(days: int, minute_days: int | None) -> tuple[timedelta, timedelta]:
    """Validate rollup retention arguments; return the ages past which all slots and the
    minute slots are deleted (minute slots never outlive the others' age: at most `days`)."""
    older_than = timedelta(days=check_int("days", days, 0))
    if minute_days is None:
        return older_than, older_than
    return older_than, min(older_than, timedelta(days=check_int("minute_days", minute_days, 0)))


def check_retention(days: int, batch_size: int) -> timedelta:
    """Validate retention arguments; return the age beyond which spans are deleted."""
    older_than = timedelta(days=check_int("days", days, 0))
    check_int("batch_size", batch_size, 1)
    return older_than
