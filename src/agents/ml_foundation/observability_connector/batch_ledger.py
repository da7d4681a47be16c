"""What `flush()` needs to tell the truth: which spans are settled, and which were dropped.

Every span `submit()` accepts gets a sequence number, queued or dropped. A batch carries the
sequence numbers of its first and last span and is *settled* once every sink's lane has an
outcome for it (delivered, spooled, kept in `rejected/`, or dropped). `flush()` waits until the
oldest unsettled sequence number (the low watermark: the oldest batch in flight, else the oldest
queued span) is past the last span submitted before the call, then asks the ledger whether any
span of its window was dropped. A window starts where the last completed flush ended, so a drop
is reported by exactly one completed flush (two flushes running at once may both report it).

Not thread-safe: the batch processor calls it under its own lock.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .models import ObservabilitySpan

__all__ = ["Batch", "Ledger"]

_MAX_DROP_RANGES = 10_000
"""Past this many remembered drop ranges per sink they are merged into one (a flush may then
report a drop from outside its window: False too often, never True wrongly)."""


class Batch:
    """One batch on its way to every sink; `claim` then `finish` once per sink."""

    __slots__ = ("_lock", "_on_settled", "_owing", "dropped", "first_seq", "last_seq", "spans")

    def __init__(
        self,
        spans: Sequence[ObservabilitySpan],
        first_seq: int,
        last_seq: int,
        sinks: Iterable[str],
        on_settled: Callable[[Batch], None],
    ) -> None:
        self.spans = spans
        self.first_seq = first_seq
        self.last_seq = last_seq
        self.dropped: dict[str, int] = {}
        """Per sink, spans of this batch that sink lost."""
        self._owing = {name: False for name in sinks}  # sink -> claimed
        self._lock = threading.Lock()
        self._on_settled = on_settled

    def claim(self, sink: str) -> bool:
        """True once per sink: the caller now owns that sink's outcome and must `finish` it.
        (The lane and `close()` may both try; the first one wins.)"""
        with self._lock:
            if self._owing.get(sink) is not False:
                return False
            self._owing[sink] = True
            return True

    def finish(self, sink: str, dropped: int = 0) -> None:
        """Record the claimed sink's outcome; the last sink settles the batch."""
        with self._lock:
            if self._owing.pop(sink, None) is None:
                return
            if dropped:
                self.dropped[sink] = self.dropped.get(sink, 0) + dropped
            settled = not self._owing
        if settled:
            self._on_settled(self)

    def owed_by(self, sink: str) -> bool:
        with self._lock:
            return sink in self._owing


@dataclass(slots=True)
class _DropRange:
    first: int
    last: int
    spans: int


class Ledger:
    """Sequence numbers in flight and the drop history, for `flush()` (see module docstring)."""

    def __init__(self) -> None:
        self.pushed = 0
        """Sequence number the next accepted span gets (the processor counts it up inline:
        `submit()` is the agent's hot path)."""
        self._in_flight: dict[int, int] = {}  # batch id -> first sequence number
        self._drops: dict[str, list[_DropRange]] = {}
        self._reported = 0  # sequence numbers below this were covered by a completed flush
        self._open_windows: Counter[int] = Counter()

    def begin_batch(self, batch_id: int, first_seq: int) -> None:
        self._in_flight[batch_id] = first_seq

    def end_batch(self, batch_id: int) -> None:
        self._in_flight.pop(batch_id, None)

    def low_watermark(self, oldest_queued: int | None) -> int:
        """The oldest sequence number not settled yet (`pushed` when everything is)."""
        oldest = self.pushed if oldest_queued is None else oldest_queued
        return min(min(self._in_flight.values(), default=oldest), oldest)

    def note_drop(self, sink: str, first: int, last: int, spans: int) -> None:
        ranges = self._drops.setdefault(sink, [])
        if ranges and ranges[-1].last + 1 == first:  # consecutive drops (a full queue): one range
            ranges[-1].last = last
            ranges[-1].spans += spans
            return
        ranges.append(_DropRange(first, last, spans))
        if len(ranges) > _MAX_DROP_RANGES:
            first, last = min(r.first for r in ranges), max(r.last for r in ranges)
            merged = _DropRange(first, last, sum(r.spans for r in ranges))
            self._drops[sink] = [merged]

    def open_window(self) -> int:
        """Start of a flush's window: the end of the last completed flush."""
        start = self._reported
        self._open_windows[start] += 1
        return start

    def close_window(self, start: int, end: int, *, completed: bool) -> dict[str, int]:
        """Spans dropped per sink among sequence numbers [start, end); a completed flush (every
        span before `end` settled) moves the next window's start to `end`."""
        dropped: dict[str, int] = {}
        for sink, ranges in self._drops.items():
            n = sum(r.spans for r in ranges if r.last >= start and r.first < end)
            if n:
                dropped[sink] = n
        self._open_windows[start] -= 1
        if not self._open_windows[start]:
            del self._open_windows[start]
        if completed:
            self._reported = max(self._reported, end)
        self._forget_reported()
        return dropped

    def _forget_reported(self) -> None:
        horizon = min(self._open_windows, default=self._reported)
        horizon = min(horizon, self._reported)
        for sink, ranges in list(self._drops.items()):
            kept = [r for r in ranges if r.last >= horizon]
            if kept:
                self._drops[sink] = kept
            else:
                del self._drops[sink]
