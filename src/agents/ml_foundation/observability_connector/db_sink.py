"""The database as a Sink: runs the async `SpanRepository` from the batch processor's thread.

Why a private event loop: the worker thread is synchronous, and async drivers (psycopg's pool,
asyncio locks) bind to the loop they first run on. So the sink owns one `LoopThread` (a loop in
its own daemon thread, started lazily), runs every repository call on it and stops it in
`close()`. A thread rather than `run_until_complete` in the caller's thread, so `setup()` and
`write()` also work when called from code that is itself inside a running event loop (an agent
built in `async def main()`). Use the same sink (its `setup()` and `close()`) for the
repository's whole life. After `fork()` the child gets a fresh loop, but the repository's own
connections are not fork-safe: give a forked child its own repository.

Failures worth another try later (RepositoryError, OSError, timeouts) become
`RetryableSinkError`, chained to the cause. Data the database refuses for what it is (a
`RepositoryError` with `permanent` set: SQLSTATE class 22 or 23, a value SQLite cannot bind) or
that cannot even be encoded (ValueError, TypeError, OverflowError while building rows) becomes
`PermanentSinkError`: the processor then splits the batch to find the refused spans. A closed
sink, or one whose `setup()` has not succeeded yet, raises `SinkUnavailableError` (spool now).

Setup: `prepare()` is what the batch processor calls on its own thread before the first batch,
so creating a connector never waits on the database; `write()` runs `setup()` first until it
has succeeded once. `setup_attempted` is set after the first attempt, either way (readers that
need the table may wait on it).

A repository whose insert blocks anyway (SQLite) may offer
`insert_spans_batch_blocking(spans) -> int`: `write()` then calls it directly on the caller's
thread, saving two thread hops per batch (its own busy timeout bounds the wait). `write()`
returns how many spans were new; re-sent spans are ignored by the repository (unique on
trace_id + span_id), so replay is harmless. With `insert_batch_size` (E2I's
`database.insert_batch_size`, 1 for `batch_insert: false`) a batch is inserted in chunks of that
many spans; a failed chunk fails the write, and the retry re-sends the stored chunks harmlessly.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from src.repositories.span_store import RepositoryError, SpanRepository

from .loop_thread import LoopThread
from .models import ObservabilitySpan
from .redaction import describe_failure
from .sinks import PermanentSinkError, RetryableSinkError, SinkUnavailableError

__all__ = ["DatabaseSink"]

T = TypeVar("T")
_ENCODING_ERRORS = (ValueError, TypeError, OverflowError)


class DatabaseSink:
    """Sync `Sink` adapter over an async `SpanRepository`."""

    def __init__(
        self,
        repository: SpanRepository,
        *,
        name: str = "database",
        timeout: float = 30,
        insert_batch_size: int | None = None,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if not math.isfinite(timeout) or timeout <= 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if insert_batch_size is not None and (
            isinstance(insert_batch_size, bool)
            or not isinstance(insert_batch_size, int)
            or insert_batch_size < 1
        ):
            raise ValueError(
                f"insert_batch_size must be an integer >= 1, got {insert_batch_size!r}"
            )
        self.insert_batch_size = insert_batch_size
        self.name = name
        self.repository = repository
        self.timeout = float(timeout)
        self._loop_thread = LoopThread(f"obs-{name}-loop")
        self._lock = threading.Lock()  # one repository call at a time; close() waits its turn
        self._closed = False
        self._ready = False
        self.setup_attempted = threading.Event()
        """Set once `setup()` has run, whether it succeeded or not."""

    def __repr__(self) -> str:
        return f"DatabaseSink(name={self.name!r}, repository={type(self.repository).__name__})"

    def setup(self) -> None:
        """Run `repository.setup()` on the sink's loop (so its connections belong to it)."""
        try:
            self._run(self.repository.setup)
            self._ready = True
        finally:
            self.setup_attempted.set()

    async def wait_ready(self) -> None:
        """Wait (at most `timeout`) until `setup()` has been attempted once: for readers that
        query right after start-up, while setup runs on the batch processor's thread."""
        if not self.setup_attempted.is_set():
            await asyncio.to_thread(self.setup_attempted.wait, self.timeout)

    def prepare(self) -> None:
        """`setup()` unless done; called by the batch processor on its worker. A failure is
        raised (the processor logs it and spools); `write()` tries again."""
        self._ensure_ready()

    def write(self, batch: Sequence[ObservabilitySpan]) -> int:
        """Insert the batch (in chunks of `insert_batch_size`); return how many were new."""
        self._ensure_ready()
        size = self.insert_batch_size
        if size is None or len(batch) <= size:
            return self._write(list(batch))
        return sum(self._write(list(batch[i : i + size])) for i in range(0, len(batch), size))

    def _write(self, spans: list[ObservabilitySpan]) -> int:
        blocking = getattr(self.repository, "insert_spans_batch_blocking", None)
        try:
            if blocking is None:
                return self._run(lambda: self.repository.insert_spans_batch(spans))
            with self._lock:
                self._check_open()
                try:
                    return int(blocking(spans))
                except (RepositoryError, OSError) as exc:
                    raise self._translated(exc) from exc
        except _ENCODING_ERRORS as exc:
            raise PermanentSinkError(
                f"database sink {self.name!r}: cannot encode: {type(exc).__name__}: {exc}"
            ) from exc

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

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        try:
            self.setup()
        except SinkUnavailableError:
            raise
        except Exception as exc:  # broad on purpose: whatever setup hit, the spans wait
            raise SinkUnavailableError(
                f"database sink {self.name!r}: setup failed: {describe_failure(exc, self.timeout)}"
            ) from exc

    def _check_open(self) -> None:
        if self._closed:
            raise SinkUnavailableError(f"database sink {self.name!r} is closed")

    def _run(self, call: Callable[[], Awaitable[T]]) -> T:
        with self._lock:
            self._check_open()
            try:
                return self._loop_thread.run(call, timeout=self.timeout)
            except (RepositoryError, OSError, TimeoutError) as exc:
                raise self._translated(exc) from exc

    def _translated(self, exc: Exception) -> RetryableSinkError | PermanentSinkError:
        # describe_failure: a bare TimeoutError() used to read `TimeoutError: `
        text = f"database sink {self.name!r}: {describe_failure(exc, self.timeout)}"
        if getattr(exc, "permanent", False):
            return PermanentSinkError(text)
        return RetryableSinkError(text)
