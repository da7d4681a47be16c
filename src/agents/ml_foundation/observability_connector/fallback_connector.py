"""What a callback handler submits to when the process-default connector cannot be built.

`ObservabilityCallbackHandler()` with no connector builds the process default from the
configuration. A broken configuration (a file that is not UTF-8, an invalid value, an unknown
key) used to raise out of the handler's constructor, that is, out of the agent's own code. The
rule is that observability never breaks the traced program, so instead the failure is logged
(a warning naming the reason, at most once a minute, counted) and the handler gets a
`DiscardingConnector`: every span is counted and dropped, and `flush()` answers False, since
nothing was delivered. Fix the configuration and restart the process to trace again.

Explicit misuse (a bad argument to the handler itself) still raises `ValueError` at the call:
that is a programming error, seen at once, not an environment that changed under the agent.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .problems import ProblemCounter
from .redaction import describe_failure

__all__ = ["DEFAULT_CONNECTOR_FAILURES", "DiscardingConnector", "default_connector_or_fallback"]

logger = logging.getLogger(__name__)

DEFAULT_CONNECTOR_FAILURES = ProblemCounter(
    "observability disabled for this handler (its spans are discarded): the default connector "
    "could not be built",
    log=logger,
)


class DiscardingConnector:
    """Counts and drops every span; `flush()` is False (nothing was delivered)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        """Why the real connector could not be built (one line, no secrets)."""
        self._lock = threading.Lock()
        self._discarded = 0

    def __repr__(self) -> str:
        return f"DiscardingConnector(reason={self.reason!r}, discarded={self.discarded})"

    @property
    def discarded(self) -> int:
        with self._lock:
            return self._discarded

    def submit(self, span: Any) -> None:
        with self._lock:
            self._discarded += 1

    def flush(self, timeout: float | None = None) -> bool:
        return False


def default_connector_or_fallback() -> Any:
    """`get_opik_connector()`, or a `DiscardingConnector` (logged and counted) if it fails."""
    from src.mlops.opik_connector import get_opik_connector

    try:
        return get_opik_connector()
    except Exception as exc:  # broad on purpose: building it must never break the agent
        reason = describe_failure(exc)
        DEFAULT_CONNECTOR_FAILURES.record(reason)
        return DiscardingConnector(reason)
