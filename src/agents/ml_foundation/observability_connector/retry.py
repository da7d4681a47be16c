"""What a sink's failure means for its batch, how hard one batch is retried, and when a failing
sink is tried again.

Three kinds of failure (`classify`):

- `REFUSED`: `PermanentSinkError`, or an error with `permanent` set (a database data or
  integrity error): the payload itself is wrong, retrying the same spans fails the same way. The
  batch is split until the refused spans are found; those go to `rejected/`, the rest is
  delivered (`isolation`).
- `TRANSIENT`: `RetryableSinkError` (and its `SinkUnavailableError`), `RepositoryError`,
  `OSError` (which covers `TimeoutError` and `ConnectionError`).
- `UNEXPECTED`: anything else (`TypeError`, a bug in a sink). A live batch is spooled like a
  transient failure (the spool keeps it whatever the cause); on replay it is treated as refused,
  so it cannot block the batches behind it.

Retries (`call_with_retries`, E2I's `batching.retry` section): a batch that fails transiently
on a sink that was healthy is retried on that sink's own thread, `max_attempts` calls in all,
within `deadline_seconds`; `SinkUnavailableError` (an open breaker) is never retried. Meanwhile
every other batch for that sink goes to its spool at once, so nothing piles up in memory. When
the retries are spent the batch is spooled and the sink counts as failing: it is left alone for
`probe_delay` (the same backoff, capped at `probe_cap_seconds`), then the next replay or live
batch is the probe.

The wait before retry n (0-based) is `base * 2**n` (`base` alone without exponential backoff),
capped at `max_delay_seconds` when set, scaled by a random factor in `[1 - jitter, 1 + jitter]`
so many processes recovering together do not retry in lockstep, and raised to an error's
`retry_after` (seconds) when the sink passes one on.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from src.repositories.span_store import RepositoryError

from .config import BatchingSettings
from .sinks import PermanentSinkError, RetryableSinkError, SinkUnavailableError

__all__ = [
    "RETRYABLE_ERRORS",
    "Failure",
    "RetryPolicy",
    "call_with_retries",
    "classify",
    "is_retryable",
]

T = TypeVar("T")

RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (RetryableSinkError, RepositoryError, OSError)
"""`OSError` covers `TimeoutError` and `ConnectionError`."""


class Failure(Enum):
    REFUSED = "refused"
    TRANSIENT = "transient"
    UNEXPECTED = "unexpected"


def classify(exc: BaseException) -> Failure:
    """See the module docstring."""
    if isinstance(exc, PermanentSinkError) or getattr(exc, "permanent", False) is True:
        return Failure.REFUSED
    if isinstance(exc, RETRYABLE_ERRORS):
        return Failure.TRANSIENT
    return Failure.UNEXPECTED


def is_retryable(exc: BaseException) -> bool:
    """Worth another attempt after a pause? (`SinkUnavailableError` is not: spool it now.)"""
    return classify(exc) is Failure.TRANSIENT and not isinstance(exc, SinkUnavailableError)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How hard to try one batch on one sink before spooling it, and when to try a failing sink
    again."""

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
    probe_cap_seconds: float = 5.0
    """Longest a failing sink is left alone between two tries (when `max_delay_seconds` is
    not set; from `max_batch_wait_seconds`: a sink that is back is found within one interval)."""

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
        if not self.probe_cap_seconds > 0:
            raise ValueError(f"probe_cap_seconds must be > 0, got {self.probe_cap_seconds!r}")

    @classmethod
    def from_settings(cls, settings: BatchingSettings) -> RetryPolicy:
        return cls(
            max_attempts=settings.retry_max_attempts,
            base_delay_seconds=settings.retry_base_delay_seconds,
            deadline_seconds=settings.retry_deadline_seconds,
            exponential=settings.retry_exponential_backoff,
            max_delay_seconds=settings.retry_max_delay_seconds,
            probe_cap_seconds=settings.max_batch_wait_seconds,
        )

    def delay(self, retry_number: int, rng: random.Random) -> float:
        """Seconds to wait before retry `retry_number` (0 for the first retry)."""
        factor = rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        exponent = min(max(retry_number, 0), 62)
        delay = self.base_delay_seconds * (2**exponent if self.exponential else 1)
        if self.max_delay_seconds is not None:
            delay = min(delay, self.max_delay_seconds)
        return delay * factor

    def probe_delay(self, failures: int, rng: random.Random, retry_after: object = None) -> float:
        """Seconds to leave a sink alone after `failures` consecutive failed tries (>= 1)."""
        cap = self.probe_cap_seconds if self.max_delay_seconds is None else self.max_delay_seconds
        exponent = min(max(failures - 1, 0), 62)
        wait = min(self.base_delay_seconds * (2**exponent if self.exponential else 1), cap)
        wait *= rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        if isinstance(retry_after, int | float) and not isinstance(retry_after, bool):
            wait = max(wait, float(retry_after))
        return wait


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
