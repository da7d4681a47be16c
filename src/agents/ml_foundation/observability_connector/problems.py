"""`ProblemCounter`: count a recoverable problem, warn about it at a bounded rate.

Why a module of its own: the callback handler, the models, the Opik connector and the sinks all
meet problems where raising is not an option (inside callbacks, on the agent's thread, at entry
into the pipeline); each counts them the same way, and none should import another for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["ProblemCounter"]

logger = logging.getLogger(__name__)


class ProblemCounter:
    """Counts a kind of recoverable problem and logs at most one warning per `interval` seconds.

    Used where raising is not an option (callbacks): every occurrence is counted, the log is
    not flooded.
    """

    def __init__(
        self,
        what: str,
        *,
        interval_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        log: logging.Logger = logger,
    ) -> None:
        self._what = what
        self._interval = interval_seconds
        self._clock = clock
        self._log = log
        self._lock = threading.Lock()
        self._count = 0
        self._last_logged: float | None = None
        self._suppressed = 0

    @property
    def count(self) -> int:
        return self._count

    def record(self, detail: str) -> None:
        """Count one occurrence; warn unless a warning went out less than `interval` ago."""
        with self._lock:
            self._count += 1
            now = self._clock()
            if self._last_logged is not None and now - self._last_logged < self._interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last_logged = self._suppressed, 0, now
            total = self._count
        extra = f" ({suppressed} similar suppressed)" if suppressed else ""
        self._log.warning("%s: %s [total %d]%s", self._what, detail, total, extra)
