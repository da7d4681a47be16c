"""The database as a Sink: runs the async `SpanRepository` from the batch processor's thread.

Why a private event loop: the worker thread is synchronous, and async drivers (psycopg's pool,
asyncio locks) bind to the loop they first run on. So the sink owns one `LoopThread` (a loop in
its own daemon thread, started lazily), runs every repository call on it and stops it in
`close()`. A thread rather than `run_until_complete` in the caller's thread, so `setup()` and
`write()` also work when called from code that is itself inside a running event loop (an agent
built in `async def main()`). Use the same sink (its `setup()` and `close()`) for the
repository's whole life. After `fork()` the child gets a fresh loop, but the repository's own
connections are not fork-safe: give a forked child its own repository.

Failures the processor should retry (RepositoryError, OSError, timeouts) become
`RetryableSinkError`, chained to the cause. A repository whose insert blocks anyway (SQLite)
may offer `insert_spans_batch_blocking(spans) -> int`: `write()` then calls it directly on the
caller's thread, saving two thread hops per batch (its own busy timeout bounds the wait).
`write()` returns how many spans were new; re-sent spans are ignored by the repository (unique
on trace_id + span_id), so replay is harmless.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from src.repositories.span_store import RepositoryError, SpanRepository

from .loop_thread import LoopThread
from .models import ObservabilitySpan
from .sinks import RetryableSinkError

__all__ = ["DatabaseSink"]

T = TypeVar("T")


class DatabaseSink:
    """Sync `Sink` adapter over an async `SpanRepository`."""

    def __init__(
        self, repository: SpanRepository, *, name: str = "database", timeout: float = 30
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if not math.isfinite(timeout) or timeout <= 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.name = name
        self.repository = repository
        self.timeout = float(timeout)
        self._loop_thread = LoopThread(f"obs-{name}-loop")
        self._lock = threading.Lock()  # one repository call at a time; close() waits its turn
        self._closed = False

    def __repr__(self) -> str:
        return f"DatabaseSink(name={self.name!r}, repository={type(self.repository).__name__})"

    def setup(self) -> None:
        """Run `repository.setup()` on the sink's loop (so its connections belong to it)."""
        self._run(self.repository.setup)

    def write(self, batch: Sequence[ObservabilitySpan]) -> int:
        """Insert the batch; return how many spans were new."""
        spans = list(batch)
        blocking = getattr(self.repository, "insert_spans_batch_blocking", None)
        if blocking is None:
            return self._run(lambda: self.repository.insert_spans_batch(spans))
        with self._lock:
            if self._closed:
                raise RuntimeError(f"database sink {self.name!r} is closed")
            try:
                return int(blocking(spans))
            except (RepositoryError, OSError) as exc:
                raise self._retryable(exc) from exc

    def close(self) -> None:
        """Close the repository on the sink's loop, then the loop. Safe to call twice."""
        if self._closed:
            return
        try:
            self._run(self.repository.close)
        finally:
            with self._lock:
                self._closed = True
                self._loop_thread.stop(self.timeout)

    def _run(self, call: Callable[[], Awaitable[T]]) -> T:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"database sink {self.name!r} is closed")
            try:
                return self._loop_thread.run(call, timeout=self.timeout)
            except (RepositoryError, OSError, TimeoutError) as exc:
                raise self._retryable(exc) from exc

    def _retryable(self, exc: Exception) -> RetryableSinkError:
        return RetryableSinkError(f"database sink {self.name!r}: {type(exc).__name__}: {exc}")
