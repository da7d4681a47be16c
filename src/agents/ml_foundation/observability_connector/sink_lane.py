"""One sink's lane: a thread of its own that writes live batches, replays the spool, and tells
the batch processor whether it can take the next batch.

Why a thread per sink: a sink call may block for seconds (a database that is down costs a
connect timeout per attempt, Opik a request timeout). On its own thread that wait holds back
neither the other sinks nor the processor's worker, which keeps batching and, when a lane
cannot take a batch, writes it to that lane's spool itself. So the spans held only in memory
stay within a fixed bound whatever is down.

A lane is `READY` (idle and healthy: the batch is handed over, at most one at a time), `BUSY`
(writing, replaying or preparing: the worker keeps the batch in memory for it, and spools it
only when its queue is nearly full) or `SPOOL` (failing: the batch goes to the spool at once).
A healthy lane with a spool replays it when idle and, while it keeps up (the live batch it just
wrote was not a backlog the worker had to hold for it), one spool file between two live
batches, so a spool written in a burst drains under sustained load instead of growing to its
cap; a lane that is behind serves live batches only (and one file per
`max_batch_wait_seconds`) until it has caught up.

After a failure the sink is left alone for the retry policy's wait; then the next replay of its
spool (oldest first), or the next live batch when nothing is spooled, is the probe. A success
ends the failing state. A sink with a circuit breaker of its own (`decides_retries`: the Opik
and OTLP sinks) is offered every batch instead: while its breaker is open it refuses at once,
without a request, and the batch is spooled.

A batch the sink refuses for good is split until the refused spans are found (`isolation`);
they are kept in the spool's `rejected/` with the sink's reason, the rest is delivered. Replay
follows the same rule, so a poison batch never blocks the spool.
"""

from __future__ import annotations

import dataclasses
import enum
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .batch_ledger import Batch
from .delivery import ErrorLog
from .isolation import isolate, reason_of
from .lane_replay import SpoolReplay
from .models import ObservabilitySpan
from .processor_stats import SinkCounters
from .redaction import describe_failure
from .retry import Failure, RetryPolicy, call_with_retries, classify
from .sinks import Sink
from .spool import Spool

__all__ = ["LaneState", "SinkLane"]


class LaneState(enum.Enum):
    READY = "ready"
    BUSY = "busy"
    SPOOL = "spool"


_COUNTERS = ("emitted", "spooled", "dropped", "rejected", "retried", "replayed", "replay_rejected")


class SinkLane(SpoolReplay):
    """Delivery to one sink on its own thread; see the module docstring."""

    def __init__(
        self,
        sink: Sink,
        spool: Spool | None,
        *,
        policy: RetryPolicy,
        interval: float,
        clock: Callable[[], float],
        errors: ErrorLog,
        wake: Callable[[], None],
        on_written: Callable[[str, int], None] | None = None,
        on_undelivered: Callable[[str, Sequence[ObservabilitySpan]], None] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        """`on_undelivered(name, spans)` hears of each live batch this sink could not take
        when first offered (before it is spooled); `sleep` replaces the retry waits (tests)."""
        self.sink = sink
        self.name: str = sink.name
        self.spool_store = spool
        self._policy = policy
        self._interval = interval
        self._clock = clock
        self._errors = errors
        self._wake = wake
        self._on_written = on_written
        self._on_undelivered = on_undelivered
        self._sleep = sleep
        self._single_attempt = dataclasses.replace(policy, max_attempts=1)
        self._rng = random.Random()
        self._own_breaker = getattr(sink, "decides_retries", False) is True
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._handed: Batch | None = None
        self._current: Batch | None = None
        self._busy = False
        self._retrying = False  # retrying a live batch: the others are spooled meanwhile
        self._failing = False
        self._failures = 0
        self._retry_at = 0.0
        self._just_succeeded = False
        self._live_waiting = False
        self._behind = False  # the last live batch was a backlog held for this lane
        self._spool_pending = spool is not None  # True at start, so the first replay looks
        self._spool_generation = 0
        self._last_replay_at: float | None = None
        self._replay_asked = self._replay_done = 0
        self._closing = self._stopping = False
        self._counts_lock = threading.Lock()
        self._counts = dict.fromkeys(_COUNTERS, 0)

    # ------------------------------------------------------------------ processor's side
    def start(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"obs-sink-{self.name}-{id(self):x}", daemon=True
            )
        self._thread.start()

    @property
    def failing(self) -> bool:
        return self._failing

    def state(self, now: float) -> LaneState:
        """Can the lane take a live batch now? (BUSY also asks a replay to make way.)"""
        with self._cond:
            self._live_waiting = False
            if self._retrying:
                return LaneState.SPOOL
            if self._failing:
                probe = now >= self._retry_at and not self._spool_pending
                if probe and self._idle():
                    return LaneState.READY
                return LaneState.SPOOL
            if self._idle():
                return LaneState.READY
            self._live_waiting = True  # until the current job ends (the worker asks again)
            return LaneState.BUSY

    def offer(self, batch: Batch, now: float, *, backlog: bool = False) -> bool:
        """Hand `batch` to the lane's thread if it can take it now; else False (spool it).
        `backlog`: the worker held it while the lane was busy (the lane is behind)."""
        with self._cond:
            if self._stopping or self._thread is None:
                return False
            if self._failing and (now < self._retry_at or self._spool_pending):
                return False
            if not self._idle():
                return False
            self._handed = batch
            self._behind = backlog
            self._live_waiting = False
            self._cond.notify_all()
        return True

    def spool_batch(self, batch: Batch, *, live: bool = True) -> None:
        """Settle this lane's part of `batch` by spooling it (on the caller's thread); `live`:
        offered for the first time (the sink is failing or busy), so `on_undelivered` hears."""
        if batch.claim(self.name):
            if live:
                self._notify_undelivered(batch.spans)
            batch.finish(self.name, self._store(batch.spans))

    def request_replay(self) -> int:
        with self._cond:
            self._replay_asked += 1
            self._cond.notify_all()
            return self._replay_asked

    def wait_replay(self, ticket: int, timeout: float | None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._replay_done >= ticket, timeout)

    def replay_now(self) -> int:
        """Replay the whole spool on the caller's thread (once the lane's thread is stopped)."""
        return self._replay(full=True)

    def begin_close(self) -> None:
        """No more replay rounds; live batches are still taken."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def stop(self, timeout: float | None) -> bool:
        """End the thread after its current job; True if it ended within `timeout`."""
        with self._cond:
            self._stopping = True
            self._closing = True
            self._replay_done = self._replay_asked  # nobody is left to serve these
            self._cond.notify_all()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def in_flight(self) -> Batch | None:
        """The live batch the lane's thread holds (for `close()` to spool if it is stuck)."""
        with self._cond:
            return self._current or self._handed

    def counters(self) -> SinkCounters:
        with self._counts_lock:
            counts = dict(self._counts)
        try:
            size = self.spool_store.size_bytes() if self.spool_store is not None else 0
        except OSError:
            size = 0  # unreadable spool directory: reported through last_error on use
        return SinkCounters(**counts, spool_bytes=size)

    def count_dropped(self, n: int) -> None:
        self._add("dropped", n)

    def store_late(self, spans: Sequence[ObservabilitySpan]) -> None:
        """Spool spans submitted after `close()` (no lane is running any more)."""
        self._store(spans)

    def owns_thread(self, thread: threading.Thread) -> bool:
        return thread is self._thread

    # ------------------------------------------------------------------ the lane's thread
    def _idle(self) -> bool:
        return not self._busy and self._handed is None and self._thread is not None

    def _run(self) -> None:
        self._prepare()
        while True:
            with self._cond:
                job = self._next_job()
                if job is None:
                    return
                self._busy = True
            try:
                kind, arg = job
                if kind == "live":
                    self._deliver(arg)
                else:
                    self._replay(full=kind == "replay")
            # broad except, on purpose: keep the lane alive whatever a sink does
            except Exception as exc:
                self._errors.warn(f"lane:{self.name}", f"sink {self.name}: lane error: {exc!r}")
            finally:
                with self._cond:
                    self._busy = False
                    self._current = None
                    self._live_waiting = False
                    if job[0] == "replay":
                        self._replay_done = max(self._replay_done, job[1])
                    self._cond.notify_all()
                self._wake()

    def _next_job(self) -> tuple[str, Any] | None:
        """Wait for work (lock held): a live batch first, then a replay asked for, then a
        replay that is due. None once stopping with nothing handed over."""
        while True:
            if self._handed is not None:
                self._current, self._handed = self._handed, None
                return ("live", self._current)
            if self._stopping:
                return None
            if self._replay_asked > self._replay_done:
                return ("replay", self._replay_asked)
            now = self._clock()
            if not self._closing and self._replay_due(now):
                return ("round", None)
            self._cond.wait(self._wait_seconds(now))

    def _replay_due(self, now: float) -> bool:
        if not self._spool_pending or self.spool_store is None:
            return False
        if self._failing:
            return now >= self._retry_at
        last = self._last_replay_at
        keeping_up = self._just_succeeded and not self._behind
        return keeping_up or last is None or now - last >= self._interval

    def _wait_seconds(self, now: float) -> float:
        due = None
        if self._spool_pending:
            if self._failing:
                due = self._retry_at
            elif self._last_replay_at is not None:
                due = self._last_replay_at + self._interval
        # Re-check at least once per interval, so a frozen test clock cannot stall the lane.
        if due is None:
            return self._interval
        return min(self._interval, max(0.0, due - now))

    def _prepare(self) -> None:
        prepare = getattr(self.sink, "prepare", None)
        if prepare is None:
            return
        with self._cond:
            self._busy = True
        try:
            prepare()
        except Exception as exc:  # broad on purpose: the sink boundary; batches spool meanwhile
            self._failed(exc, "could not be prepared")
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
            self._wake()

    # ------------------------------------------------------------------ live batches
    def _deliver(self, batch: Batch) -> None:
        spans = batch.spans
        delivered: Sequence[ObservabilitySpan] = ()
        refused: list[tuple[ObservabilitySpan, str]] = []
        unsent: Sequence[ObservabilitySpan] = ()
        probing = self._failing
        try:
            call_with_retries(
                lambda: self.sink.write(spans),
                self._single_attempt if probing else self._policy,
                clock=self._clock,
                wait=self._retry_wait,
                rng=self._rng,
                on_retry=self._note_retry,
            )
        except Exception as exc:  # broad on purpose: the sink boundary, classified here
            if probing:
                self._add("retried", 1)
            if classify(exc) is Failure.REFUSED:
                self._errors.warn(
                    f"refused:{self.name}", f"sink {self.name}: refused a batch: {reason_of(exc)}"
                )
                found = isolate(spans, exc, self.sink.write)
                delivered, refused, unsent = found.delivered, found.refused, found.unsent
                if found.error is not None:
                    self._failed(found.error, "failed while isolating refused spans")
                else:
                    self._succeeded()
            else:
                unsent = spans
                self._failed(exc, "failed; batch spooled")
        else:
            if probing:
                self._add("retried", 1)
            delivered = spans
            self._succeeded()
        finally:
            with self._cond:
                self._retrying = False
        if not batch.claim(self.name):
            return  # close() gave up on us and spooled the batch
        if unsent:
            self._notify_undelivered(unsent)
        dropped = self._store(unsent) + self._keep_rejected(refused)
        if delivered:
            self._add("emitted", len(delivered))
            self._notify_written(len(delivered))
        batch.finish(self.name, dropped)

    # ------------------------------------------------------------------ outcomes
    def _store(self, spans: Sequence[ObservabilitySpan]) -> int:
        """Spool `spans` for this sink; counted as spooled, or dropped (returned) if not."""
        if not spans:
            return 0
        stored = False
        if self.spool_store is None:
            reason = "no spool directory configured"
        else:
            try:
                stored = self.spool_store.append(spans)
                reason = f"spool is full ({self.spool_store.max_bytes} bytes)"
            # broad except, on purpose: a span that cannot even be encoded (an attribute whose
            # str() raises) must be counted as dropped, not end the lane
            except Exception as exc:
                reason = f"spool write failed: {type(exc).__name__}: {exc}"
        if stored:
            with self._cond:
                self._spool_generation += 1
                self._spool_pending = True
            self._add("spooled", len(spans))
            return 0
        self._add("dropped", len(spans))
        self._errors.warn(
            f"drop:{self.name}", f"sink {self.name}: dropped {len(spans)} spans: {reason}"
        )
        return len(spans)

    def _keep_rejected(self, refused: list[tuple[ObservabilitySpan, str]]) -> int:
        """Keep refused spans in `rejected/`: counted as rejected, or dropped (returned) when
        they cannot be kept (no spool directory, a failed write)."""
        if not refused:
            return 0
        try:
            if self.spool_store is None:
                raise OSError("no spool directory configured")
            self.spool_store.reject(refused, self.name)
        except Exception as exc:  # broad on purpose: count the loss, never end the lane
            self._add("dropped", len(refused))
            self._errors.warn(
                f"drop:{self.name}",
                f"sink {self.name}: lost {len(refused)} refused spans: {type(exc).__name__}: {exc}",
            )
            return len(refused)
        self._add("rejected", len(refused))
        return 0

    def _succeeded(self) -> None:
        with self._cond:
            self._failing = False
            self._failures = 0
            self._just_succeeded = True

    def _failed(self, exc: BaseException, what: str, *, failure: bool = True) -> None:
        self._errors.warn(
            f"{what}:{self.name}", f"sink {self.name}: {what}: {describe_failure(exc)}"
        )
        if not failure:
            return
        with self._cond:
            self._just_succeeded = False
            if self._own_breaker:  # the sink's breaker decides when it is tried again
                return
            self._failing = True
            self._failures += 1
            wait = self._policy.probe_delay(
                self._failures, self._rng, getattr(exc, "retry_after", None)
            )
            self._retry_at = self._clock() + wait

    def _note_retry(self, attempt: int, exc: BaseException) -> None:
        with self._cond:
            self._retrying = True  # from now on the worker spools this sink's other batches
        self._add("retried", 1)
        self._errors.warn(
            f"retrying:{self.name}",
            f"sink {self.name}: attempt {attempt} failed, retrying: {describe_failure(exc)}",
        )

    def _retry_wait(self, seconds: float) -> bool:
        """Pause between two attempts; True when the lane is stopping (give up now)."""
        if self._sleep is not None:
            self._sleep(seconds)
            return self._stopping
        with self._cond:
            return self._cond.wait_for(lambda: self._stopping, seconds)

    def _notify_undelivered(self, spans: Sequence[ObservabilitySpan]) -> None:
        if self._on_undelivered is not None and spans:
            self._call_back("on_undelivered", self._on_undelivered, spans)

    def _notify_written(self, n: int) -> None:
        if self._on_written is not None:
            self._call_back("on_batch_written", self._on_written, n)

    def _call_back(self, what: str, callback: Callable[[str, Any], None], arg: object) -> None:
        try:
            callback(self.name, arg)
        # broad except, on purpose: a user callback (cache, fallback log) must not stop delivery
        except Exception as exc:
            self._errors.warn(what, f"{what} raised {type(exc).__name__}: {exc}")

    def _add(self, counter: str, n: int) -> None:
        with self._counts_lock:
            self._counts[counter] += n
