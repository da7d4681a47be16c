"""Replay of one sink's spool, oldest first, on that sink's lane (`sink_lane.SinkLane`).

Why apart from the lane: replay is a concept of its own (claims, isolation of refused spans,
what counts as delivered) that the lane's thread runs between live batches. A replay round
claims each file before sending it (so concurrent replays never deliver or count a batch
twice), stops at the first transient failure (the file is given back, first in line), and
yields to a live batch that is waiting, after one file (so a spool drains under live load, a
file between live batches), unless a full replay was asked for. A batch the sink
refuses for good, or that fails for an unexpected reason, is split until the refused spans are
found: those go to `rejected/` with the reason, the rest is delivered; spool lines that no
longer read as spans go to `rejected/` too. So nothing ever blocks the spool.

This is a mixin: `SinkLane` provides the state it uses (sink, spool, lock, counters, failure
bookkeeping).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .delivery import ErrorLog
from .isolation import isolate, reason_of
from .retry import Failure, classify
from .spool import Spool, SpooledBatch

if TYPE_CHECKING:
    from .sinks import Sink

__all__ = ["SpoolReplay"]


class SpoolReplay:
    """The replay half of a sink's lane."""

    sink: Sink
    name: str
    spool_store: Spool | None
    _cond: threading.Condition
    _clock: Callable[[], float]
    _errors: ErrorLog
    _failing: bool
    _just_succeeded: bool
    _live_waiting: bool
    _stopping: bool
    _spool_pending: bool
    _spool_generation: int
    _last_replay_at: float | None

    def _add(self, counter: str, n: int) -> None: ...
    def _failed(self, exc: BaseException, what: str, *, failure: bool = True) -> None: ...
    def _succeeded(self) -> None: ...
    def _notify_written(self, n: int) -> None: ...

    def _replay(self, *, full: bool) -> int:
        """Re-send spooled batches oldest first until one fails transiently (a round yields to a
        live batch that is waiting); return spans delivered."""
        if self.spool_store is None:
            self._spool_pending = False
            return 0
        self._last_replay_at = self._clock()
        self._just_succeeded = False
        with self._cond:
            generation = self._spool_generation
        delivered = 0
        tried = False
        batches = self.spool_store.claimed_batches()
        try:
            while True:
                with self._cond:
                    if self._stopping and not full:
                        return delivered
                    if not full and self._live_waiting and tried:
                        return delivered
                stored = next(batches, None)
                if stored is None:
                    break
                try:
                    sent = self._replay_one(stored)
                except BaseException:
                    self.spool_store.release(stored.handle)  # tried again later, not lost
                    raise
                if sent is None:
                    return delivered
                delivered += sent
                tried = True
        except OSError as exc:
            self._failed(exc, "could not read the spool", failure=False)
            return delivered
        finally:
            batches.close()
        with self._cond:
            # A batch spooled by another thread since we listed the directory keeps it pending.
            if generation == self._spool_generation:
                self._spool_pending = False
        return delivered

    def _replay_one(self, stored: SpooledBatch) -> int | None:
        """Send one claimed batch; spans delivered, or None to stop this round."""
        spool = self.spool_store
        assert spool is not None
        if stored.bad_lines:
            spool.reject_lines(stored.bad_lines, stored.bad_reasons)
            self._add("replay_rejected", len(stored.bad_lines))
        spans = stored.spans
        probing = self._failing
        try:
            if spans:
                self.sink.write(spans)
        except Exception as exc:  # broad on purpose: the sink boundary, classified here
            if probing:
                self._add("retried", 1)
            if classify(exc) is Failure.TRANSIENT:
                self._failed(exc, "replay failed")
                spool.release(stored.handle)
                return None
            self._errors.warn(
                f"refused:{self.name}",
                f"sink {self.name}: refused a spooled batch: {reason_of(exc)}",
            )
            found = isolate(
                spans, exc, self.sink.write, refuses=lambda e: classify(e) is not Failure.TRANSIENT
            )
            if found.refused:
                spool.reject(found.refused, self.name)
            if found.error is not None:
                spool.replace(stored.handle, found.unsent)
            else:
                spool.ack(stored.handle)
            self._add("replay_rejected", len(found.refused))
            sent = len(found.delivered)
            if found.error is not None:
                self._failed(found.error, "replay failed while isolating refused spans")
                self._count_replayed(sent)
                return None
        else:
            if probing and spans:
                self._add("retried", 1)
            spool.ack(stored.handle)
            sent = len(spans)
        self._count_replayed(sent)
        if sent:
            self._succeeded()
        return sent

    def _count_replayed(self, n: int) -> None:
        if n:
            self._add("replayed", n)
            self._notify_written(n)
