"""One sink's lane in the batch processor: write with retries, else spool; replay the spool.

Why a lane per sink: each sink succeeds or fails on its own (Opik down must not stop the
database), so each has its own spool directory, its own replay schedule and its own counters.
`deliver()` and `replay()` run on the processor's worker thread only (sinks are called from one
thread); `spool()` and `counters()` may be called from any thread.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .models import ObservabilitySpan
from .processor_stats import SinkCounters
from .retry import RETRYABLE_ERRORS, RetryPolicy, call_with_retries
from .sinks import PermanentSinkError, Sink, SinkUnavailableError
from .spool import Spool, SpooledBatch

__all__ = ["ErrorLog", "SinkLane", "build_lanes", "check_sinks", "redact"]

logger = logging.getLogger(__name__)

_SINK_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")
_SECRET_VALUES = re.compile(
    r"(?i)\b(password|passwd|pwd|api[_-]?key|apikey|token|secret|authorization)\b"
    r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)"
)


def redact(text: str, limit: int = 300) -> str:
    """Strip URL credentials and `password=...`-style values; cap the length."""
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    text = _SECRET_VALUES.sub(r"\1\2***", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ErrorLog:
    """Rate-limited warnings (one per key per interval) and the last error, redacted."""

    def __init__(self, interval_seconds: float = 30.0) -> None:
        self.interval_seconds = interval_seconds
        self.last_error: str | None = None
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def warn(self, key: str, message: str, *, error: bool = True) -> None:
        text = redact(message)
        now = time.monotonic()
        with self._lock:
            if error:
                self.last_error = text
            last = self._last_logged.get(key)
            if last is not None and now - last < self.interval_seconds:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last_logged[key] = now
            suppressed = self._suppressed.pop(key, 0)
        more = f" ({suppressed} similar messages suppressed)" if suppressed else ""
        logger.warning("%s%s", text, more)


class SinkLane:
    """Delivery to one sink: retries with backoff, then the durable spool, then replay."""

    def __init__(
        self,
        sink: Sink,
        spool: Spool | None,
        *,
        policy: RetryPolicy,
        clock: Callable[[], float],
        wait: Callable[[float], bool],
        errors: ErrorLog,
        on_written: Callable[[str, int], None] | None = None,
        on_undelivered: Callable[[str, Sequence[ObservabilitySpan]], None] | None = None,
    ) -> None:
        self.sink = sink
        self.name: str = sink.name
        self.spool_store = spool
        self.spool_pending = spool is not None
        """Maybe batches in the spool; True at start so the first replay looks."""
        self.just_succeeded = False
        self.failing = False
        """The sink failed its last delivery or replay: live batches get one attempt and no
        retries (a live success or the replay round is the probe), so a sink that is down
        does not hold back the other sinks for a full retry schedule per batch."""
        self.last_replay_at: float | None = None
        self._policy = policy
        self._single_attempt = dataclasses.replace(policy, max_attempts=1)
        self._clock = clock
        self._wait = wait
        self._errors = errors
        self._on_written = on_written
        self._on_undelivered = on_undelivered
        """Told once about each live batch this sink could not take (before it is spooled)."""
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._spool_generation = 0
        self._counts = dict.fromkeys(
            ("emitted", "spooled", "dropped", "rejected", "retried", "replayed", "replay_rejected"),
            0,
        )

    def counters(self) -> SinkCounters:
        with self._lock:
            counts = dict(self._counts)
        try:
            size = self.spool_store.size_bytes() if self.spool_store is not None else 0
        except OSError:
            size = 0  # unreadable spool directory: reported through last_error on use
        return SinkCounters(**counts, spool_bytes=size)

    def deliver(self, batch: Sequence[ObservabilitySpan], claim: Callable[[], bool]) -> None:
        """Offer a live batch. `claim()` is asked once before counting, and says whether this
        delivery still owns the outcome (close() may have spooled the batch meanwhile)."""
        try:
            call_with_retries(
                lambda: self.sink.write(batch),
                self._single_attempt if self.failing else self._policy,
                clock=self._clock,
                wait=self._wait,
                rng=self._rng,
                on_retry=self._note_retry,
            )
        except PermanentSinkError as exc:
            self._fail(exc, "refused the batch")
            if claim():
                self._add("rejected", len(batch))
        # broad except, on purpose: export boundary: a broken sink never stops us, and anything
        # but a refusal for good (unavailable, retries exhausted, a bug) waits in the spool
        except Exception as exc:
            self._fail(exc, _why_undelivered(exc))
            self.failing = True
            if claim():
                self._notify_undelivered(batch)
                self.spool(batch)
        else:
            self.just_succeeded = True
            self.failing = False
            if claim():
                self._add("emitted", len(batch))
                self._notify_written(len(batch))

    def spool(self, batch: Sequence[ObservabilitySpan]) -> bool:
        """Store the batch for replay; count it as spooled, or as dropped if it cannot be."""
        if not batch:
            return True
        stored = False
        if self.spool_store is None:
            reason = "no spool directory configured"
        else:
            try:
                stored = self.spool_store.append(batch)
                reason = f"spool is full ({self.spool_store.max_bytes} bytes)"
            # broad except, on purpose: a span that cannot even be encoded (an attribute whose
            # str() raises) must be counted as dropped, not end the fan-out to other sinks
            except Exception as exc:
                reason = f"spool write failed: {type(exc).__name__}: {exc}"
        if stored:
            with self._lock:
                self._spool_generation += 1
                self.spool_pending = True
                self._counts["spooled"] += len(batch)
        else:
            self._add("dropped", len(batch))
            self._errors.warn(
                f"drop:{self.name}", f"sink {self.name}: dropped {len(batch)} spans: {reason}"
            )
        return stored

    def replay_due(self, now: float, interval: float) -> bool:
        if not self.spool_pending:
            return False
        last = self.last_replay_at
        return self.just_succeeded or last is None or now - last >= interval

    def replay(self, *, max_batches: int | None, stop: Callable[[], bool]) -> int:
        """Re-send spooled batches oldest first until one fails; return spans delivered."""
        if self.spool_store is None:
            self.spool_pending = False
            return 0
        self.last_replay_at = self._clock()
        self.just_succeeded = False
        with self._lock:
            generation = self._spool_generation
        delivered = 0
        try:
            for done, stored in enumerate(self.spool_store.pending_batches()):
                if stop() or (max_batches is not None and done >= max_batches):
                    return delivered
                sent = self._replay_one(stored)
                if sent is None:
                    return delivered
                delivered += sent
        except OSError as exc:
            self._fail(exc, "could not read the spool")
            return delivered
        with self._lock:
            # A batch spooled by another thread since we listed the directory keeps it pending.
            if generation == self._spool_generation:
                self.spool_pending = False
        return delivered

    def _replay_one(self, stored: SpooledBatch) -> int | None:
        """Send one spooled batch; spans delivered, or None to stop this round."""
        n = len(stored.spans)
        outcome = "replayed"
        if n:
            try:
                self.sink.write(stored.spans)
            except PermanentSinkError as exc:
                self._fail(exc, "refused a spooled batch")
                outcome = "replay_rejected"
            # broad except, on purpose: export boundary. A transient failure keeps the batch
            # at the head for the next round; anything else (a bug, a payload the sink will
            # never take) would fail forever and hold back every batch behind it: move it aside.
            except Exception as exc:
                if isinstance(exc, RETRYABLE_ERRORS):
                    self._fail(exc, "replay failed")
                    self.failing = True
                    return None
                self._fail(exc, "a spooled batch cannot be delivered; moved to rejected/")
                return self._set_aside(stored, n)
        try:
            self.spool_store.ack(stored.handle)  # type: ignore[union-attr]
        except OSError as exc:
            self._fail(exc, "could not delete a replayed spool file")
            return None
        self._add(outcome, n)
        if outcome == "replayed" and n:
            self.just_succeeded = True
            self.failing = False
            self._notify_written(n)
            return n
        return 0

    def _set_aside(self, stored: SpooledBatch, n: int) -> int | None:
        try:
            self.spool_store.quarantine(stored.handle)  # type: ignore[union-attr]
        except OSError as exc:
            self._fail(exc, "could not move an undeliverable spool file aside")
            return None
        self._add("replay_rejected", n)
        return 0

    def _add(self, counter: str, n: int) -> None:
        with self._lock:
            self._counts[counter] += n

    def _note_retry(self, attempt: int, exc: BaseException) -> None:
        self._add("retried", 1)
        self._fail(exc, f"attempt {attempt} failed, retrying")

    def _fail(self, exc: BaseException, what: str) -> None:
        self.just_succeeded = False
        self._errors.warn(
            f"{what}:{self.name}", f"sink {self.name}: {what}: {type(exc).__name__}: {exc}"
        )

    def _notify_undelivered(self, batch: Sequence[ObservabilitySpan]) -> None:
        self._call_hook(self._on_undelivered, "on_batch_undelivered", batch)

    def _notify_written(self, n: int) -> None:
        self._call_hook(self._on_written, "on_batch_written", n)

    def _call_hook(self, hook: Callable[[str, Any], None] | None, key: str, value: Any) -> None:
        if hook is None:
            return
        try:
            hook(self.name, value)
        # broad except, on purpose: a user callback (or the fallback log) must not stop delivery
        except Exception as exc:
            self._errors.warn(key, f"{key} raised {type(exc).__name__}: {exc}")


def _why_undelivered(exc: Exception) -> str:
    if isinstance(exc, SinkUnavailableError):
        return "unavailable"
    if isinstance(exc, RETRYABLE_ERRORS):
        return "failed after retries"
    return "raised an unexpected error"


def build_lanes(
    sinks: Sequence[Sink],
    spool_dir: Path | None,
    spool_max_bytes: int,
    **lane_options: object,
) -> list[SinkLane]:
    """One lane per sink, spooling to `spool_dir / sink.name`."""
    check_sinks(sinks)
    return [
        SinkLane(
            sink,
            None if spool_dir is None else Spool(Path(spool_dir) / sink.name, spool_max_bytes),
            **lane_options,  # type: ignore[arg-type]
        )
        for sink in sinks
    ]


def check_sinks(sinks: Sequence[Sink]) -> None:
    """Names usable as directory names and counter keys, unique; a callable `write`."""
    names = [getattr(sink, "name", None) for sink in sinks]
    for sink, name in zip(sinks, names, strict=True):
        if not isinstance(name, str) or not _SINK_NAME.fullmatch(name):
            raise ValueError(f"sink {sink!r}: name {name!r} must match {_SINK_NAME.pattern}")
        if not callable(getattr(sink, "write", None)):
            raise TypeError(f"sink {name!r} has no callable write(batch)")
    if len(set(names)) != len(names):
        raise ValueError(f"sink names must be unique, got {names}")
