"""`StoreProbe`: does the span store answer right now? One cheap read, for `health()`.

Why a probe and not the counters: a process that has written nothing yet (the `e2i-obs health`
command, an agent between batches) has no failed write to show, and reported `healthy` with
PostgreSQL stopped. The probe asks the store one indexed question (the newest span of the last
minute) through the same repository the agents write with, so a wrong password, a dropped
and a stopped server answer "unreachable", with the store's own reason. A store that answers
but has no span table yet is "reachable, no schema yet": the first write creates it.

The read runs on the probe's private event loop (a `LoopThread`), so `health()` works from
synchronous code and from inside a running loop alike. It is bounded by the repository's own
timeout (`storage.timeout_seconds`, after which the PostgreSQL pool names the last connection
error) plus a grace period. The reason never holds a secret: URL credentials and `password=`
values are masked, and it is one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .loop_thread import LoopThread
from .redaction import describe_failure

__all__ = ["PROBE_GRACE_SECONDS", "ProbeResult", "StoreProbe"]

PROBE_GRACE_SECONDS = 2.0
"""How much longer than the repository's own timeout the probe waits for its answer."""
# how each backend says "the table is not there": SQLite, PostgreSQL, PostgREST (Supabase)
_MISSING_SCHEMA_MARKERS = ("no such table", "42p01", "pgrst205", "undefinedtable")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    state: str
    """`reachable`, `reachable, no schema yet` or `unreachable`."""
    error: str | None = None
    """Why the store did not answer (one line, no secrets); None when it did."""

    @property
    def reachable(self) -> bool:
        return self.error is None


class StoreProbe:
    """Calls `repository.get_spans_by_time_window("1m", limit=1)` and says how it went."""

    def __init__(self, repository: Any, timeout: float) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if not math.isfinite(timeout) or timeout <= 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        self._repository = repository
        self._timeout = float(timeout) + PROBE_GRACE_SECONDS
        self._loop_thread = LoopThread("obs-store-probe")

    def __call__(self) -> ProbeResult:
        try:
            self._loop_thread.run(
                lambda: self._repository.get_spans_by_time_window("1m", limit=1),
                timeout=self._timeout,
            )
        except Exception as exc:  # broad on purpose: any failure is the answer, not a crash
            reason = describe_failure(exc, self._timeout)
            if any(marker in reason.lower() for marker in _MISSING_SCHEMA_MARKERS):
                return ProbeResult("reachable, no schema yet")
            return ProbeResult("unreachable", reason)
        return ProbeResult("reachable")

    def close(self, timeout: float = 5.0) -> None:
        """Stop the probe's loop. Safe to call twice."""
        self._loop_thread.stop(timeout)
