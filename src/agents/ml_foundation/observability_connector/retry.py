"""Bounded retries with jittered exponential backoff, and which sink errors deserve them.

Retried: `RetryableSinkError`, `RepositoryError`, `OSError` (which covers `TimeoutError` and
`ConnectionError`). Not retried: `SinkUnavailableError` (the sink says "not now", e.g. an open
circuit breaker: spool at once), `PermanentSinkError` (the payload is wrong) and programming errors
such as `TypeError` (retrying them only repeats the bug).

The delay before retry n (0-based) is `base * 2**n` (`base` alone without exponential backoff),
capped at `max_delay_seconds` when set, scaled by a random factor in `[1 - jitter, 1 + jitter]`
so many processes recovering together do not retry in lockstep, and raised to an error's
`retry_after` (seconds) when the sink passes one on. Retrying stops after
`max_attempts` calls in total, when the next wait would end past `deadline_seconds` from the first
call, or when the waiting function reports a shutdown.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from src.repositories.span_store import RepositoryError

from .config import BatchingSettings
from .sinks import RetryableSinkError, SinkUnavailableError

__all__ = ["RETRYABLE_ERRORS", "RetryPolicy", "call_with_retries", "is_retryable"]

T = TypeVar("T")

RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (RetryableSinkError, RepositoryError, OSError)
"""`OSError` covers `TimeoutError` and `ConnectionError`."""


def is_retryable(exc: BaseException) -> bool:
    """Worth another attempt after a pause? (`SinkUnavailableError` is not: spool it now.)"""
    return isinstance(exc, RETRYABLE_ERRORS) and not isinstance(exc, SinkUnavailableError)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How hard to try one batch on one sink before spooling it."""

    max_attempts: int
    """Calls in total, the first one included (>= 1)."""
    base_delay_seconds: float
    """Wait before the first retry; doubles for each further retry."""
    deadline_seconds: float
    """No wait may end later than this long after the first call."""
    jitter: float = 0.2
    """Each wait is scaled by a random factor in [1 - jitter, 1 + jitter]."""
    exponential: bool = True
    """Double the wait for each further retry; False: every wait is `base_delay_seconds`."""
    max_delay_seconds: float | None = None
    """Cap on one wait (before jitter); None: only the deadline bounds it."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts!r}")
        if self.base_delay_seconds <= 0 or self.deadline_seconds <= 0:
            raise ValueError(
                "base_delay_seconds and deadline_seconds must be > 0, got "
                f"{self.base_delay_seconds!r} and {self.deadline_seconds!r}"
            )
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")
        if self.max_delay_seconds is not None and not self.max_delay_seconds > 0:
            raise ValueError(f"max_delay_seconds must be > 0, got {self.max_delay_seconds!r}")

    @classmethod
    def from_settings(cls, settings: BatchingSettings) -> RetryPolicy:
        return cls(
            max_attempts=settings.retry_max_attempts,
            base_delay_seconds=settings.retry_base_delay_seconds,
            deadline_seconds=settings.retry_deadline_seconds,
            exponential=settings.retry_exponential_backoff,
            max_delay_seconds=settings.retry_max_delay_seconds,
        )

    def delay(self, retry_number: int, rng: random.Random) -> float:
        """Seconds to wait before retry `retry_number` (0 for the first retry)."""
        factor = rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        delay = self.base_delay_seconds * (2**retry_number if self.exponential else 1)
        if self.max_delay_seconds is not None:
            delay = min(delay, self.max_delay_seconds)
        return delay * factor


def call_with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    *,
    clock: Callable[[], float],
    wait: Callable[[float], bool],
    rng: random.Random,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """Return `call()`, retrying retryable errors; re-raise the last error when giving up.

    `wait(seconds)` pauses and returns True if a shutdown cut it short (then we stop retrying).
    `on_retry(attempt, error)` runs before each retry, attempt being the number of failed calls.
    """
    started = clock()
    failures = 0
    while True:
        try:
            return call()
        except Exception as exc:
            failures += 1
            if not is_retryable(exc) or failures >= policy.max_attempts:
                raise
            delay = policy.delay(failures - 1, rng)
            retry_after = getattr(exc, "retry_after", None)
            if isinstance(retry_after, int | float) and retry_after > delay:
                delay = float(retry_after)
            if clock() + delay - started > policy.deadline_seconds:
                raise
            if on_retry is not None:
                on_retry(failures, exc)
            if wait(delay):
                raise
