"""A thread-safe circuit breaker for the Opik sink.

Why: when Opik is down, every batch would otherwise wait for a connect timeout and then for the
batch processor's retries. After `failure_threshold` consecutive failures the breaker *opens* and
callers skip the call at once (the batch goes to the spool). After `reset_timeout_seconds` it is
*half-open*: up to `half_open_max_calls` trial calls are let through at a time (default one);
`success_threshold` successful trials (default one) close the breaker, and any failed trial
opens it again for another full timeout.

    closed --N consecutive failures--> open --reset timeout--> half_open
    half_open --success_threshold trials succeed--> closed;  half_open --a trial fails--> open

Trials that never report back (their caller crashed) do not wedge the breaker: after another
reset timeout new trials are granted. With `enabled=False` every call is allowed and the breaker
never opens (it still counts). Time comes from the injected monotonic `clock`.

E2I's names work too (RAG evaluation guards its own Opik calls with the connector's breaker):
`allow_request()` is `allow()`, and `is_closed` / `is_open` / `is_half_open` read `state`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal

__all__ = ["CircuitBreaker", "CircuitState"]

CircuitState = Literal["closed", "open", "half_open"]

CLOSED: CircuitState = "closed"
OPEN: CircuitState = "open"
HALF_OPEN: CircuitState = "half_open"


class CircuitBreaker:
    """Closed / open / half-open breaker; all methods are safe to call from any thread."""

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        enabled: bool = True,
    ) -> None:
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int):
            raise ValueError(
                f"failure_threshold must be an integer >= 1, got {failure_threshold!r}"
            )
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold!r}")
        if not isinstance(reset_timeout_seconds, int | float) or not reset_timeout_seconds > 0:
            raise ValueError(
                f"reset_timeout_seconds must be a number > 0, got {reset_timeout_seconds!r}"
            )
        for name, value in (
            ("half_open_max_calls", half_open_max_calls),
            ("success_threshold", success_threshold),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self._threshold = failure_threshold
        self._reset_timeout = float(reset_timeout_seconds)
        self._half_open_max_calls = half_open_max_calls
        self._success_threshold = success_threshold
        self.enabled = bool(enabled)
        self._clock = clock
        self._lock = threading.Lock()
        self._state: CircuitState = CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._trials = 0  # trial calls granted and not yet reported, while half-open
        self._trial_successes = 0
        self._probe_started_at: float | None = None  # when the last trial was granted
        self._opens = 0
        self._rejected = 0
        self._failures = 0
        self._successes = 0

    @classmethod
    def from_settings(
        cls, settings: Any, clock: Callable[[], float] = time.monotonic
    ) -> CircuitBreaker:
        """Build from a `CircuitBreakerSettings` section of the configuration."""
        return cls(
            settings.failure_threshold,
            settings.reset_timeout_seconds,
            clock,
            half_open_max_calls=settings.half_open_max_calls,
            success_threshold=settings.success_threshold,
            enabled=settings.enabled,
        )

    @property
    def failure_threshold(self) -> int:
        return self._threshold

    @property
    def reset_timeout_seconds(self) -> float:
        return self._reset_timeout

    @property
    def state(self) -> CircuitState:
        """Current state; an open breaker whose timeout has passed reports `half_open`."""
        with self._lock:
            self._maybe_half_open(self._clock())
            return self._state

    @property
    def opens(self) -> int:
        """How many times the breaker has opened (closed->open and failed probes)."""
        with self._lock:
            return self._opens

    @property
    def consecutive_failures(self) -> int:
        with self._lock:
            return self._consecutive_failures

    def allow(self) -> bool:
        """True when the caller may make the call now; in half-open only the trial calls are.

        A caller that got True must report the outcome with `record_success` or `record_failure`.
        """
        with self._lock:
            now = self._clock()
            self._maybe_half_open(now)
            if self._state == CLOSED:
                return True
            if self._state == HALF_OPEN:
                trials_lost = (
                    self._probe_started_at is not None
                    and now - self._probe_started_at >= self._reset_timeout
                )
                if trials_lost:
                    self._trials = 0
                if self._trials < self._half_open_max_calls:
                    self._trials += 1
                    self._probe_started_at = now
                    return True
            self._rejected += 1
            return False

    def allow_request(self) -> bool:
        """E2I's name for `allow()`."""
        return self.allow()

    @property
    def is_closed(self) -> bool:
        return self.state == CLOSED

    @property
    def is_open(self) -> bool:
        """True while calls are refused (a breaker whose timeout passed is half-open instead)."""
        return self.state == OPEN

    @property
    def is_half_open(self) -> bool:
        return self.state == HALF_OPEN

    def record_success(self) -> None:
        """The call worked: reset the failure count; enough successful trials close the breaker."""
        with self._lock:
            self._successes += 1
            self._consecutive_failures = 0
            if self._state == HALF_OPEN:
                self._trials = max(0, self._trials - 1)
                self._trial_successes += 1
                if self._trial_successes >= self._success_threshold:
                    self._state = CLOSED
                    self._reset_trials()

    def record_failure(self) -> None:
        """The call failed: count it; the Nth consecutive failure or a failed trial opens."""
        with self._lock:
            now = self._clock()
            self._failures += 1
            self._consecutive_failures += 1
            if not self.enabled:
                return
            if self._state == HALF_OPEN or (
                self._state == CLOSED and self._consecutive_failures >= self._threshold
            ):
                self._open(now)
            # Already open: a late failure of a call allowed before opening; keep the timer.

    def stats(self) -> dict[str, Any]:
        """A snapshot for the self-monitor."""
        with self._lock:
            self._maybe_half_open(self._clock())
            return {
                "state": self._state,
                "opens": self._opens,
                "consecutive_failures": self._consecutive_failures,
                "failures": self._failures,
                "successes": self._successes,
                "rejected": self._rejected,
            }

    def _open(self, now: float) -> None:
        self._state = OPEN
        self._opened_at = now
        self._reset_trials()
        self._opens += 1

    def _maybe_half_open(self, now: float) -> None:
        if self._state == OPEN and now - self._opened_at >= self._reset_timeout:
            self._state = HALF_OPEN
            self._reset_trials()

    def _reset_trials(self) -> None:
        self._trials = self._trial_successes = 0
        self._probe_started_at = None

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(state={self._state!r}, failure_threshold={self._threshold}, "
            f"reset_timeout_seconds={self._reset_timeout}, "
            f"half_open_max_calls={self._half_open_max_calls}, "
            f"success_threshold={self._success_threshold}, enabled={self.enabled})"
        )
