"""Bounded queue + a worker that batches spans and hands each batch to every sink's lane.

Why this shape (after OpenTelemetry's BatchSpanProcessor): the agent's thread only appends to a
deque under a short lock and never does I/O; when the queue is full the span is dropped and
counted (the worker spills long before that, so it happens only when even the disk cannot keep
up). A daemon worker takes a batch when `max_batch_size` spans are queued (woken early by an
Event), after `max_batch_wait_seconds`, or when `flush()` asks; samples it; and hands it to each
sink's lane (`sink_lane`: one thread per sink, which writes, isolates refused spans, spools
failures and replays). A lane whose sink is failing gets nothing in memory: the worker writes
its batches to that lane's spool at once (encoding and fsync on the worker).

A lane that is busy but healthy (a slow database, a burst) keeps its backlog in memory, because
spooling a batch only moves the work (JSON, fsync, then the replay's write) onto the same cores
later: below the hold mark (`min(B, max_queue_size // 2)`) the worker waits and the backlog
grows in the queue into one bigger batch; at the hold mark it pops one batch (up to
`max_backlog_batch_size`) and holds it, handing it over the moment the lane is free, which also
makes room in the queue for a burst of a whole `max_queue_size`. Only when the queue reaches
the spill mark, `max_queue_size - max(max_batch_size, max_queue_size // 5, held)` (80% by
default, lower while a bigger batch is held), while a batch is still held for a busy lane, does
the worker pop the next batch and spool it for the busy lanes (the held, older one stays for
the lane). Why: spooling a batch takes the worker a while (encoding and one fsync of up to B
spans: 5,000 took 0.09 s on a quiet core, up to 0.47 s on a loaded 2-core machine), and the
agents keep submitting meanwhile, from many threads at up to the rate the worker encodes
(8 threads flat out filled the last 5,000 places while 5,000 spans were spooled); the pop
leaves the queue room for about twice the batch being spooled, so a span is dropped at a full
queue only when even the spool cannot keep up, while a burst of a whole `max_queue_size`
still stays under the mark (the held batch took its half). So for each sink, the spans held
only in memory (what `kill -9` loses) are at most `max_queue_size + 3 * B`: the queue, the
batch the worker holds, the batch it is spooling and the batch the lane is writing, whatever
is down (B below).

Adaptive batches: while two or more full batches wait, one batch takes up to
`max_backlog_batch_size` spans (one transaction / round trip per sink, one fsync when spooled),
so the per-batch cost is paid once per thousands of spans and a busy agent does not outrun
the writers. So the in-memory bound above is, precisely, `max_queue_size + 3 * B` with
`B = min(max_queue_size, max(max_batch_size, max_backlog_batch_size))`.

`flush()` returns a `FlushResult`: truthy only when every span submitted before the call is in
every sink, durably in its spool or kept in `rejected/`, and none was dropped (see
`batch_ledger`). Counters: see `processor_stats` (every submitted span is accounted for once
per sink). Duplicates reach a sink only through at-least-once replay (a crash between a write
and the spool's acknowledgement) or a `close()` that times out while a sink is still writing
the in-flight batch (that batch is spooled too).

After `fork()` the child starts with an empty queue and zeroed counters (the parent still
exports what it had queued) and starts its own worker and lanes on first use.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from .batch_ledger import Batch, Ledger
from .config import BatchingSettings
from .delivery import ErrorLog, check_sinks
from .models import ObservabilitySpan
from .pricing import PricedSink, Pricer
from .processor_stats import FlushResult, ProcessorStats
from .retry import RetryPolicy
from .sampling import Sampler
from .sink_lane import LaneState, SinkLane
from .sinks import Sink
from .span_policy import SpanPolicy
from .spool import Spool

__all__ = ["BatchProcessor", "FlushResult", "ProcessorStats"]

_Queued = ObservabilitySpan | Callable[[], ObservabilitySpan]
"""A span, or the call that builds it on the worker (`submit_later`)."""
_Popped = tuple[int, int, int, list[_Queued]]
"""(batch id, first sequence number, last sequence number, spans) taken off the queue."""
_GIL_SLICE = 16
"""Spans the worker builds, samples and passes through the span policy between two releases of
the GIL. An agent thread that needs the GIL while the worker runs Python waits until the worker
releases it, or for the 5 ms switch interval: one pass over a batch of 100 spans that the
callback handler left to be built (`submit_later`) took ~1-2 ms, and each batch's pass delayed
one agent call by as much (on 2 shared cores the traced call's p99 went from 2-3x the bare
call's to 9-13x in one pass, back to 2-3x in slices)."""
_DROP_WARNING_EVERY = 1024
"""Spans dropped at submit between two warnings (the warning itself is rate-limited too)."""


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
        """`span_policy` (redaction, size limits) is applied to sampling's survivors before any
        sink or spool sees them; `sleep` replaces the waits between retries (tests);
        `on_batch_undelivered(sink, spans)` hears of each live batch a sink could not take;
        `pricer` prices LLM spans right before each sink write (`PricedSink`), so on the sink's
        thread (live batches and spool replays), never in `submit()`."""
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
        queue = settings.max_queue_size
        # Hold mark / spill mark: see the module docstring for why these two.
        self._hold_at = max(1, min(self._backlog_batch, queue // 2))
        self._spill_base = max(self._hold_at, queue - max(self._full_batch, queue // 5))
        self._max_queue = queue
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
        self._worker: threading.Thread | None = None
        self._halted = False  # close() gave up waiting: the worker stops where it is
        self._held: Batch | None = None  # popped, owed to the busy lanes in _held_for
        self._spill_at = self._spill_base  # lowered while a big batch is held: _hold()
        self._held_for: list[SinkLane] = []
        self._held_backlog = False  # popped at the hold mark while a lane was busy
        self._queue: deque[tuple[int, _Queued]] = deque()
        self._ledger = Ledger()
        self._batch_ids = itertools.count()
        self._flush_target = 0
        self._submitted = self._invalid = self._sampled_out = self._queue_drops = 0
        self._errors = ErrorLog()
        policy = RetryPolicy.from_settings(self._settings)
        self._lanes = [
            SinkLane(
                sink,
                None
                if self._spool_dir is None
                else Spool(self._spool_dir / sink.name, self._settings.spool_max_bytes),
                policy=policy,
                interval=self._settings.max_batch_wait_seconds,
                clock=self._clock,
                errors=self._errors,
                wake=self._wake.set,
                on_written=self._on_batch_written,
                on_undelivered=self._on_batch_undelivered,
                sleep=self._sleep,
            )
            for sink in self._sinks
        ]

    # ----------------------------------------------------------------- public API
    def start(self) -> None:
        """Start the worker and the lanes (done by the constructor unless autostart=False)."""
        with self._lock:
            if self._worker is not None:
                return
            self._worker = threading.Thread(
                target=self._run, name=f"obs-batch-processor-{id(self):x}", daemon=True
            )
        for lane in self._lanes:
            lane.start()
        self._worker.start()

    def submit(self, span: ObservabilitySpan) -> None:
        """Queue a finished span: a deque append, no I/O. Never blocks, never raises."""
        try:
            self._submit(span)
        # broad except, on purpose: observability must never break the agent
        except Exception as exc:
            self._errors.warn("submit", f"submit failed: {type(exc).__name__}: {exc}")

    def submit_later(self, build: Callable[[], ObservabilitySpan]) -> None:
        """Queue a span that the worker builds: `build()` is called there, before sampling
        (the callback handler's way to keep building spans off the agent's thread). A `build`
        that raises or returns no span is counted as invalid. Never blocks, never raises."""
        try:
            self._submit(build, later=True)
        # broad except, on purpose: observability must never break the agent
        except Exception as exc:
            self._errors.warn("submit", f"submit failed: {type(exc).__name__}: {exc}")

    def flush(self, timeout: float | None = None) -> FlushResult:
        """Wait until every span submitted before this call is settled for every sink (see
        the module docstring); not-ok on timeout or when any of them was dropped."""
        if self._on_pipeline_thread():
            return FlushResult(ok=False, timed_out=True, dropped={}, stats=self.stats())
        with self._lock:
            target = self._ledger.pushed
            window = self._ledger.open_window()
            self._flush_target = max(self._flush_target, target)
        self.start()
        self._wake.set()
        with self._settled:
            done = self._settled.wait_for(lambda: self._watermark() >= target, timeout)
            dropped = self._ledger.close_window(window, target, completed=done)
        return FlushResult(
            ok=done and not dropped, timed_out=not done, dropped=dropped, stats=self.stats()
        )

    def replay_spool(self, timeout: float | None = None) -> int:
        """Re-send every spooled batch to its sink now; return how many spans were delivered.

        Runs on each sink's lane; after `close()`, in the calling thread (timeout then ignored).
        """
        before = self.stats().replayed
        with self._lock:
            closed = self._closed
        if closed:
            for lane in self._lanes:
                lane.replay_now()
        else:
            tickets = [(lane, lane.request_replay()) for lane in self._lanes]
            self.start()  # after asking: a lane starting now serves the request first
            deadline = None if timeout is None else time.monotonic() + timeout
            for lane, ticket in tickets:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                lane.wait_replay(ticket, left)
        return self.stats().replayed - before

    def close(self, timeout: float | None = None) -> bool:
        """Stop accepting, drain to the sinks, spool what is left; False if time ran out."""
        timeout = self._settings.shutdown_timeout_seconds if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closed:
                return self._close_result
            self._closed = True
            needs_worker = bool(self._queue) and self._worker is None
        atexit.unregister(self._close_at_exit)
        if needs_worker:
            self.start()
        for lane in self._lanes:
            lane.begin_close()
        self._wake.set()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(max(0.0, deadline - time.monotonic()))
        drained = worker is None or not worker.is_alive()
        with self._lock:
            self._halted = True
            popped = self._pop(len(self._queue), whole=True)
            held, held_for = self._held, list(self._held_for)
        leftover = self._make_batch(popped)
        self._wake.set()
        stopped = [lane.stop(max(0.0, deadline - time.monotonic())) for lane in self._lanes]
        abandoned = [lane for lane in self._lanes if self._abandon(lane)]
        if held is not None:  # the worker stopped while a busy lane was still owed it
            for lane in held_for:
                lane.spool_batch(held, live=False)
        if leftover is not None:
            for lane in self._lanes:
                lane.spool_batch(leftover, live=False)
        self._close_result = (
            drained and all(stopped) and leftover is None and held is None and not abandoned
        )
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
    def _submit(self, span: object, *, later: bool = False) -> None:
        if self._worker is None and self._autostart and not self._closed:
            self.start()  # lazily, e.g. in a forked child
        wake = False
        with self._lock:
            self._submitted += 1
            if not (callable(span) if later else isinstance(span, ObservabilitySpan)):
                self._invalid += 1
                kind = "invalid"
            elif self._closed:
                kind = "late"
            else:
                ledger = self._ledger
                seq = ledger.pushed
                ledger.pushed = seq + 1
                depth = len(self._queue)
                if depth < self._max_queue:
                    kind = "queued"
                    self._queue.append((seq, span))
                    wake = depth + 1 in (self._full_batch, self._hold_at, self._spill_at)
                else:
                    kind = "full"
                    self._queue_drops += 1
                    for lane in self._lanes:
                        ledger.note_drop(lane.name, seq, seq, 1)
        if kind == "queued":
            if wake:
                self._wake.set()
        elif kind == "full":
            for lane in self._lanes:
                lane.count_dropped(1)
            if self._queue_drops % _DROP_WARNING_EVERY == 1:
                self._errors.warn(
                    "queue-full",
                    f"queue full ({self._settings.max_queue_size} spans): dropped "
                    f"{self._queue_drops} spans so far (the worker cannot spill fast enough)",
                )
        elif kind == "invalid":
            self._errors.warn(
                "invalid",
                f"submit{'_later' if later else ''}() got {type(span).__name__}, expected "
                f"{'a callable' if later else 'ObservabilitySpan'}; ignored",
                error=False,
            )
        else:  # after close() there is no worker left: the caller spools it for the next run
            kept = self._sample([span])  # type: ignore[list-item]
            for lane in self._lanes:
                lane.store_late(kept)

    # ----------------------------------------------------------------- worker side
    def _run(self) -> None:
        interval = self._settings.max_batch_wait_seconds
        last_export = self._clock()
        while True:
            try:
                with self._lock:
                    if self._halted:
                        return
                    queued, closing = len(self._queue), self._closed
                    flush_asked = bool(queued) and self._flush_target > self._queue[0][0]
                now = self._clock()
                due = self._held is not None or (
                    bool(queued)
                    and (
                        closing
                        or flush_asked
                        or queued >= self._full_batch
                        or now - last_export >= interval
                    )
                )
                if due:
                    if self._export_one_batch(now, queued):
                        last_export = now
                        continue
                    wait = min(interval, 1.0)  # a lane is busy: it wakes us when it is done
                elif closing:
                    return
                else:
                    if not queued:
                        last_export = now
                    wait = self._next_wait(now, last_export, queued)
                self._wake.wait(wait)
                self._wake.clear()
            # broad except, on purpose: keep the worker alive whatever happens
            except Exception as exc:
                self._errors.warn("worker", f"worker error: {type(exc).__name__}: {exc}")
                time.sleep(min(1.0, self._settings.max_batch_wait_seconds))  # no hot loop

    def _next_wait(self, now: float, last_export: float, queued: int) -> float:
        interval = self._settings.max_batch_wait_seconds
        due = last_export + interval if queued else now + interval
        # Re-check at least once per interval, so a frozen test clock cannot stall the worker.
        return min(interval, max(0.0, due - now))

    def _export_one_batch(self, now: float, queued: int) -> bool:
        """Place the held batch, or pop the next one and place it (see the module docstring);
        False (nothing moved) while a busy lane keeps its backlog waiting in memory."""
        if self._held is not None:
            if self._place_held(now) or queued < self._spill_at:
                return self._held is None
            return self._spill_next(now)
        states = {lane: lane.state(now) for lane in self._lanes}
        busy = LaneState.BUSY in states.values()
        if busy and queued < self._hold_at:
            return False  # the backlog grows in the queue into one bigger batch
        batch = self._next_batch()
        if batch is None:
            return True
        self._hold(batch)
        self._held_for, self._held_backlog = list(self._lanes), busy
        self._place_held(now, states=states)
        return True

    def _spill_next(self, now: float) -> bool:
        """The queue reached the spill mark while a busy lane is still owed the held batch: pop
        the next batch and spool it for every lane that cannot take it now (the held batch
        stays held, so the busy lane gets its older backlog first)."""
        batch = self._next_batch()
        if batch is None:
            return True
        for lane in self._lanes:
            if not (lane.state(now) is LaneState.READY and lane.offer(batch, now)):
                lane.spool_batch(batch)  # busy past the spill mark, or failing
        return True

    def _next_batch(self) -> Batch | None:
        """Pop the next batch (sized for the backlog) and sample it; None when halted or
        when nothing is left for the sinks."""
        with self._lock:
            if self._halted:
                return None
            popped = self._pop(self._batch_length(len(self._queue)))
        batch = self._make_batch(popped)
        return batch if batch is not None and batch.spans else None

    def _hold(self, batch: Batch | None) -> None:
        """Hold `batch` (None: nothing held) and set the spill mark for it: at the mark the
        worker pops a batch of up to that size, so while it is spooled the queue has room for
        twice the batch, since the agents keep submitting meanwhile (many threads at once)."""
        self._held = batch
        room = 0 if batch is None else len(batch.spans)
        with self._lock:
            self._spill_at = max(self._hold_at, min(self._spill_base, self._max_queue - room))

    def _place_held(self, now: float, *, states: dict[SinkLane, LaneState] | None = None) -> bool:
        """Offer the held batch to the lanes still owed it: a ready lane takes it, a failing
        one gets it spooled at once, a busy one keeps it held. True when no lane is owed it
        any more."""
        batch = self._held
        assert batch is not None
        waiting: list[SinkLane] = []
        for lane in self._held_for:
            state = states[lane] if states is not None else lane.state(now)
            if state is LaneState.READY:
                # a lane that was busy when a backlog batch was popped for it is behind
                if lane.offer(batch, now, backlog=self._held_backlog and states is None):
                    continue
                state = lane.state(now)  # it just started a job of its own
            if state is LaneState.BUSY:
                waiting.append(lane)
            else:
                lane.spool_batch(batch)  # failing
        self._held_for = waiting
        if not waiting:
            self._hold(None)
        return not waiting

    def _pop(self, limit: int, *, whole: bool = False) -> _Popped | None:
        """Pop up to `limit` queued spans (stopping at a pending flush's boundary unless
        `whole`) and register them in the ledger as in flight (lock held)."""
        if not self._queue or limit <= 0:
            return None
        pending_flush = self._flush_target > self._queue[0][0] and not whole
        cut = self._flush_target if pending_flush else None
        items: list[tuple[int, _Queued]] = []
        while self._queue and len(items) < limit:
            if cut is not None and self._queue[0][0] >= cut and items:
                break
            items.append(self._queue.popleft())
        batch_id = next(self._batch_ids)
        self._ledger.begin_batch(batch_id, items[0][0])
        return batch_id, items[0][0], items[-1][0], [span for _, span in items]

    def _make_batch(self, popped: _Popped | None) -> Batch | None:
        """Sampling and the span policy (outside the lock), then the batch every lane settles;
        one whose every span was sampled out is settled at once."""
        if popped is None:
            return None
        batch_id, first, last, spans = popped
        kept = self._sample(spans)
        names = [lane.name for lane in self._lanes] if kept else []
        batch = Batch(kept, first, last, names, functools.partial(self._on_settled, batch_id))
        if not kept:
            with self._settled:
                self._ledger.end_batch(batch_id)
                self._settled.notify_all()
        return batch

    def _on_settled(self, batch_id: int, batch: Batch) -> None:
        with self._settled:
            for sink, n in batch.dropped.items():
                self._ledger.note_drop(sink, batch.first_seq, batch.last_seq, n)
            self._ledger.end_batch(batch_id)
            self._settled.notify_all()

    def _watermark(self) -> int:
        """Oldest sequence number not settled for every sink (lock held)."""
        return self._ledger.low_watermark(self._queue[0][0] if self._queue else None)

    def _sample(self, queued: list[_Queued]) -> list[ObservabilitySpan]:
        """The spans to keep (those queued by `submit_later` built first), with the span
        policy (redaction, limits) applied: every path to a sink or a spool goes through here,
        so no sink ever sees a span before the policy. Done `_GIL_SLICE` spans at a time, the
        GIL given up in between (see `_GIL_SLICE`)."""
        if len(queued) <= _GIL_SLICE:
            return self._sample_slice(queued)
        kept: list[ObservabilitySpan] = []
        for start in range(0, len(queued), _GIL_SLICE):
            if start:
                time.sleep(0)  # releases the GIL: a waiting agent thread can take it now
            kept += self._sample_slice(queued[start : start + _GIL_SLICE])
        return kept

    def _sample_slice(self, queued: list[_Queued]) -> list[ObservabilitySpan]:
        spans = self._built(queued)
        kept = spans
        if self._sampler is not None and spans:
            kept = [span for span in spans if self._keep(span)]
            with self._lock:
                self._sampled_out += len(spans) - len(kept)
        if self._span_policy is not None and kept:
            kept = self._span_policy.apply_all(kept)
        return kept

    def _built(self, queued: list[_Queued]) -> list[ObservabilitySpan]:
        """`queued` with every `submit_later` call replaced by the span it builds; a call that
        fails or returns no span is left out and counted as invalid."""
        if all(type(item) is ObservabilitySpan for item in queued):
            return queued  # type: ignore[return-value]
        spans: list[ObservabilitySpan] = []
        failures: list[str] = []
        for item in queued:
            if not isinstance(item, ObservabilitySpan):
                try:
                    item = item()
                except Exception as exc:  # broad on purpose: one bad span must not stop a batch
                    failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if not isinstance(item, ObservabilitySpan):
                    failures.append(f"returned {type(item).__name__}")
                    continue
            spans.append(item)
        if failures:
            with self._lock:
                self._invalid += len(failures)
            self._errors.warn(
                "invalid",
                f"{len(failures)} span(s) queued by submit_later() not built: {failures[0]:.200}",
            )
        return spans

    def _keep(self, span: ObservabilitySpan) -> bool:
        try:
            return self._sampler is None or self._sampler.should_keep(span)
        except ValueError:  # e.g. built with model_construct(): keep it, let the sinks judge
            return True

    def _abandon(self, lane: SinkLane) -> bool:
        """Spool the batch a lane that did not stop in time still holds; True if it held one."""
        batch = lane.in_flight()
        if batch is None or not batch.owed_by(lane.name):
            return False
        lane.spool_batch(batch, live=False)
        return True

    def _on_pipeline_thread(self) -> bool:
        current = threading.current_thread()
        return current is self._worker or any(lane.owns_thread(current) for lane in self._lanes)

    def _batch_length(self, queued: int) -> int:
        """Spans for the next batch: a full batch at light load, up to the backlog cap while
        two or more full batches wait (one bigger transaction beats many small ones)."""
        if queued >= 2 * self._full_batch:
            return min(queued, self._backlog_batch)
        return min(queued, self._full_batch)

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
