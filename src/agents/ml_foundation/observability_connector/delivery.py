"""Delivery diagnostics shared by the pipeline: rate-limited warnings without secrets, and the
checks every sink must pass before a processor takes it.

The lanes themselves (one thread per sink: write, spool, replay) live in `sink_lane`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence

from .sinks import Sink

__all__ = ["ErrorLog", "check_sinks", "redact"]

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
