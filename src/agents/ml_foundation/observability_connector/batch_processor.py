"""Bounded queue + background worker that batches spans and fans them out to every sink.

Why this shape (after OpenTelemetry's BatchSpanProcessor): the agent's thread only appends to
a deque under a short lock; a daemon worker flushes when `max_batch_size` spans are queued (woken
early by an Event) or after `max_batch_wait_seconds`, samples, then hands the batch to each sink's
`SinkLane` (retries with backoff, else that sink's durable spool; replay later). A full queue
spills its oldest batch-worth to every sink's spool (disk I/O in the submitting thread, at most
once per batch-worth and only under overload) instead of dropping; spans are dropped, and
counted, only when a spool is full or no spool directory is configured.

Counters: see `processor_stats` (every submitted span is accounted for once per sink). Duplicates
reach a sink only through at-least-once replay (a crash between a write and the spool ack, two
processes replaying one directory) or a `close()` that times out while a sink is still writing
the in-flight batch (that batch is spooled too).

Adaptive batches: while two or more full batches wait, one write takes up to
`max_backlog_batch_size` spans (one transaction / round trip per sink), so the writer's per-batch
cost is paid once per thousands of spans instead of once per 100 and a busy agent does not
outrun it into the spool.

After `fork()` the child starts with an empty queue and zeroed counters (the parent still
exports what it had queued) and starts its own worker on first use.
"""

from __future__ import annotations

import atexit
import itertools
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from .config import BatchingSettings
from .delivery import ErrorLog, build_lanes, check_sinks
from .models import ObservabilitySpan
from .pricing import PricedSink, Pricer
from .processor_stats import ProcessorStats
from .retry import RetryPolicy
from .sampling import Sampler
from .sinks import Sink
from .span_policy import SpanPolicy

__all__ = ["BatchProcessor", "ProcessorStats"]

_REPLAY_BATCHES_PER_ROUND = 8


class BatchProcessor:
    """Batches spans in the background and delivers each batch to every sink independently."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        settings: BatchingSettings,
        spool_dir: Path | None,
        *,
        sampler: Sampler | None = None,
        span_policy: SpanPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        on_batch_written: Callable[[str, int], None] | None = None,
        on_batch_undelivered: Callable[[str, Sequence[ObservabilitySpan]], None] | None = None,
        autostart: bool = True,
        pricer: Pricer | None = None,
    ) -> None:
        """`pricer` prices LLM spans right before each sink write (`PricedSink`), so on this
        worker (live batches and spool replays), never in `submit()`."""
        if not isinstance(settings, BatchingSettings):
            raise TypeError(f"settings must be BatchingSettings, got {type(settings).__name__}")
        check_sinks(tuple(sinks))
        self._sinks = tuple(PricedSink(s, pricer) for s in sinks) if pricer else tuple(sinks)
        self._settings = settings
        self._spool_dir = None if spool_dir is None else Path(spool_dir)
        self._sampler = sampler
        self._span_policy = span_policy
        self._clock = clock
        self._sleep = sleep
        self._on_batch_written = on_batch_written
        self._on_batch_undelivered = on_batch_undelivered
        self._autostart = autostart
        # batching.enabled false: every span is a batch of its own, sent as soon as it is seen
        if settings.enabled:
            self._full_batch = min(settings.max_batch_size, settings.max_queue_size)
            self._backlog_batch = max(self._full_batch, settings.max_backlog_batch_size)
        else:
            self._full_batch = self._backlog_batch = 1
        self._closed = False
        self._close_result = True
        self._reset_runtime()
        atexit.register(self._close_at_exit)
        os.register_at_fork(after_in_child=_reset_after_fork(weakref.ref(self)))
        if autostart:
            self.start()

    def _reset_runtime(self) -> None:
        """Locks, events, queue, lanes and counters: fresh at construction and after fork()."""
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._shutdown = threading.Event()
        self._worker: threading.Thread | None = None
        self._queue: deque[ObservabilitySpan] = deque()
        self._pushed = self._popped = 0
        self._in_progress: dict[int, int] = {}  # token -> sequence number of its first span
        self._tokens = itertools.count()
        self._flush_target = self._replay_asked = self._replay_done = 0
        self._inflight: set[str] | None = None  # lanes still owing the worker's current batch
        self._inflight_batch: list[ObservabilitySpan] = []
        self._submitted = self._invalid = self._sampled_out = 0
        self._errors = ErrorLog()
        self._lanes = build_lanes(
            self._sinks,
            self._spool_dir,
            self._settings.spool_max_bytes,
            policy=RetryPolicy.from_settings(self._settings),
            clock=self._clock,
            wait=self._backoff_wait,
            errors=self._errors,
            on_written=self._on_batch_written,
            on_undelivered=self._on_batch_undelivered,
        )

    # ----------------------------------------------------------------- public API
    def start(self) -> None:
        """Start the worker (done by the constructor unless autostart=False)."""
        with self._lock:
            if self._worker is not None:
                return
            self._worker = threading.Thread(
                target=self._run, name=f"obs-batch-processor-{id(self):x}", daemon=True
            )
        self._worker.start()

    def submit(self, span: ObservabilitySpan) -> None:
        """Queue a finished span. Never blocks on a sink, never raises."""
        try:
            self._submit(span)
        # broad except, on purpose: observability must never break the agent
        except Exception as exc:
            self._errors.warn("submit", f"submit failed: {type(exc).__name__}: {exc}")

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every span submitted before this call was offered to every sink."""
        if threading.current_thread() is self._worker:
            return False
        with self._lock:
            target = self._pushed
            if self._low_watermark() >= target:
                return True
            self._flush_target = max(self._flush_target, target)
        self.start()
        self._wake.set()
        with self._settled:
            return self._settled.wait_for(lambda: self._low_watermark() >= target, timeout)

    def replay_spool(self, timeout: float | None = None) -> int:
        """Re-send every spooled batch to its sink now; return how many spans were delivered.

        Runs on the worker; after `close()`, in the calling thread (timeout then ignored).
        """
        before = self.stats().replayed
        with self._lock:
            self._replay_asked += 1
            ticket, closed = self._replay_asked, self._closed
        if closed:
            for lane in self._lanes:
                lane.replay(max_batches=None, stop=lambda: False)
        else:
            self.start()
            self._wake.set()
            with self._settled:
                self._settled.wait_for(lambda: self._replay_done >= ticket, timeout)
        return self.stats().replayed - before

    def close(self, timeout: float | None = None) -> bool:
        """Stop accepting, drain to the sinks, spool what is left; False if time ran out."""
        timeout = self._settings.shutdown_timeout_seconds if timeout is None else timeout
        with self._lock:
            if self._closed:
                return self._close_result
            self._closed = True
            needs_worker = bool(self._queue) and self._worker is None
        atexit.unregister(self._close_at_exit)
        if needs_worker:
            self.start()
        self._shutdown.set()
        self._wake.set()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)
        drained = worker is None or not worker.is_alive()
        with self._lock:
            leftover = list(self._queue)
            self._queue.clear()
            token = self._take(len(leftover))
            abandoned = set(self._inflight or ())
            abandoned_batch = self._inflight_batch
            if self._inflight:
                self._inflight.clear()
            self._replay_done = self._replay_asked  # nobody is left to serve these
        try:
            self._spool_everywhere(leftover)
            for lane in self._lanes:
                if lane.name in abandoned:
                    lane.spool(abandoned_batch)
        finally:
            self._settle(token)
        self._close_result = drained and not leftover and not abandoned
        return self._close_result

    def stats(self) -> ProcessorStats:
        sinks = {lane.name: lane.counters() for lane in self._lanes}
        with self._lock:
            return ProcessorStats.collect(
                submitted=self._submitted,
                invalid=self._invalid,
                sampled_out=self._sampled_out,
                queue_depth=len(self._queue),
                sinks=sinks,
                last_error=self._errors.last_error,
            )

    # ----------------------------------------------------------------- submit side
    def _submit(self, span: object) -> None:
        if self._worker is None and self._autostart and not self._closed:
            self.start()  # lazily, e.g. in a forked child
        spill: list[ObservabilitySpan] = []
        token = None
        wake = False
        with self._lock:
            self._submitted += 1
            if not isinstance(span, ObservabilitySpan):
                self._invalid += 1
                kind = "invalid"
            elif self._closed:
                kind = "late"
            else:
                kind = "queued"
                if len(self._queue) >= self._settings.max_queue_size:
                    n = min(self._settings.max_batch_size, len(self._queue))
                    spill = [self._queue.popleft() for _ in range(n)]
                    token = self._take(n)
                self._queue.append(span)
                self._pushed += 1
                wake = len(self._queue) == self._full_batch
        if kind == "invalid":
            self._errors.warn(
                "invalid",
                f"submit() got {type(span).__name__}, expected ObservabilitySpan; ignored",
                error=False,
            )
        elif kind == "late":
            self._spool_everywhere([span])  # after close(): straight to disk for the next run
        else:
            if token is not None:
                try:
                    self._spool_everywhere(spill)
                finally:
                    self._settle(token)
            if wake:
                self._wake.set()

    def _take(self, n: int) -> int:
        """Register `n` spans just popped from the queue as in progress (lock held)."""
        token = next(self._tokens)
        self._in_progress[token] = self._popped
        self._popped += n
        return token

    def _settle(self, token: int) -> None:
        with self._settled:
            self._in_progress.pop(token, None)
            self._settled.notify_all()

    def _low_watermark(self) -> int:
        """Sequence number of the oldest span not yet offered to every sink (lock held)."""
        return min(self._in_progress.values(), default=self._popped)

    def _sample(self, spans: list[ObservabilitySpan]) -> list[ObservabilitySpan]:
        """The spans to keep, with the span policy (redaction, limits) applied: every path to
        a sink or a spool goes through here, so no sink ever sees a span before the policy."""
        if self._sampler is None or not spans:
            kept = spans
        else:
            kept = [span for span in spans if self._keep(span)]
            with self._lock:
                self._sampled_out += len(spans) - len(kept)
        if self._span_policy is not None and kept:
            kept = self._span_policy.apply_all(kept)
        return kept

    def _keep(self, span: ObservabilitySpan) -> bool:
        try:
            return self._sampler is None or self._sampler.should_keep(span)
        except ValueError:  # e.g. built with model_construct(): keep it, let the sinks judge
            return True

    def _spool_everywhere(self, spans: list[ObservabilitySpan]) -> None:
        kept = self._sample(spans)
        for lane in self._lanes:
            lane.spool(kept)

    # ----------------------------------------------------------------- worker side
    def _run(self) -> None:
        interval = self._settings.max_batch_wait_seconds
        last_export = self._clock()
        while True:
            try:
                with self._lock:
                    queued, closing = len(self._queue), self._closed
                    flush_asked = self._flush_target > self._popped
                    replay_asked = self._replay_asked
                now = self._clock()
                if queued and (
                    closing
                    or flush_asked
                    or queued >= self._full_batch
                    or now - last_export >= interval
                ):
                    self._export_one_batch()
                    last_export = now
                    continue
                if closing:
                    return
                if replay_asked > self._replay_done:
                    self._replay_all(replay_asked)
                    continue
                if not queued:
                    last_export = now
                for lane in self._lanes:
                    if lane.replay_due(now, interval):
                        lane.replay(
                            max_batches=_REPLAY_BATCHES_PER_ROUND, stop=self._shutdown.is_set
                        )
                self._wake.wait(self._next_wait(now, last_export, queued))
                self._wake.clear()
            # broad except, on purpose: keep the worker alive whatever happens
            except Exception as exc:
                self._errors.warn("worker", f"worker error: {type(exc).__name__}: {exc}")
                self._shutdown.wait(min(1.0, self._settings.max_batch_wait_seconds))  # no hot loop

    def _next_wait(self, now: float, last_export: float, queued: int) -> float:
        interval = self._settings.max_batch_wait_seconds
        due = [last_export + interval] if queued else []
        for lane in self._lanes:
            if lane.replay_due(now, interval):
                return 0.0
            if lane.spool_pending and lane.last_replay_at is not None:
                due.append(lane.last_replay_at + interval)
        # Re-check at least once per interval, so a frozen test clock cannot stall the worker.
        return min(interval, max(0.0, min(due, default=now + interval) - now))

    def _batch_length(self, queued: int) -> int:
        """Spans for the next write: a full batch at light load, up to the backlog cap while two
        or more full batches wait (one bigger transaction beats many small ones)."""
        if queued >= 2 * self._full_batch:
            return min(queued, self._backlog_batch)
        return min(queued, self._full_batch)

    def _export_one_batch(self) -> None:
        with self._lock:
            batch = [self._queue.popleft() for _ in range(self._batch_length(len(self._queue)))]
            token = self._take(len(batch))
        try:
            kept = self._sample(batch)
            if kept:
                self._fan_out(kept)
        finally:
            self._settle(token)

    def _fan_out(self, batch: list[ObservabilitySpan]) -> None:
        owing = {lane.name for lane in self._lanes}
        with self._lock:
            self._inflight, self._inflight_batch = owing, batch
        try:
            for lane in self._lanes:
                with self._lock:
                    if lane.name not in owing:
                        continue  # close() timed out and spooled it for this sink
                lane.deliver(batch, claim=lambda name=lane.name: self._claim(owing, name))
        finally:
            with self._lock:
                self._inflight = None

    def _claim(self, owing: set[str], name: str) -> bool:
        with self._lock:
            if name in owing:
                owing.discard(name)
                return True
            return False

    def _replay_all(self, ticket: int) -> None:
        try:
            for lane in self._lanes:
                lane.replay(max_batches=None, stop=self._shutdown.is_set)
        finally:
            with self._settled:
                self._replay_done = max(self._replay_done, ticket)
                self._settled.notify_all()

    def _backoff_wait(self, seconds: float) -> bool:
        if self._sleep is None:
            return self._shutdown.wait(seconds)
        self._sleep(seconds)
        return self._shutdown.is_set()

    def _close_at_exit(self) -> None:
        # flush_on_shutdown false: do not send at exit; what is queued goes to the spool
        settings = self._settings
        self.close(settings.shutdown_timeout_seconds if settings.flush_on_shutdown else 0.0)


def _reset_after_fork(ref: weakref.ref[BatchProcessor]) -> Callable[[], None]:
    """An after-fork hook that holds the processor weakly (hooks cannot be unregistered)."""

    def hook() -> None:
        processor = ref()
        if processor is not None:
            processor._reset_runtime()

    return hook
