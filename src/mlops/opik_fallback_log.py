"""E2I's `circuit_breaker.fallback.log_to_file`: spans Opik missed, appended to a JSONL file.

Why next to the spool and not instead of it: the spool is how those spans still reach Opik
(replayed once it is back); this file is for people, a plain record of what Opik did not get
when it was sent, in the order it happened. The batch processor tells it about each live batch
the Opik sink could not take (breaker open, retries exhausted), once, before spooling it, so a
replayed batch is never written twice. Spans are written after the span policy ran (masked and
bounded), one JSON object a line. Runs on the processor's worker thread; never raises.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan

__all__ = ["OpikFallbackLog"]

logger = logging.getLogger(__name__)


class OpikFallbackLog:
    """`on_batch_undelivered` callback writing the Opik sink's missed batches to `path`."""

    def __init__(self, path: str | Path, sink_name: str = "opik") -> None:
        self.path = Path(path)
        self.sink_name = sink_name
        self.written = 0
        """Spans written so far (for tests and the self-monitor)."""
        self._lock = threading.Lock()
        self._warned = False

    def __repr__(self) -> str:
        return f"OpikFallbackLog(path={str(self.path)!r}, sink_name={self.sink_name!r})"

    def __call__(self, sink_name: str, batch: Sequence[ObservabilitySpan]) -> None:
        if sink_name != self.sink_name or not batch:
            return
        lines = b"".join(
            span.model_dump_json(fallback=str).encode("utf-8", "replace") + b"\n" for span in batch
        )
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("ab") as handle:
                    handle.write(lines)
                self.written += len(batch)
        except OSError as exc:
            if not self._warned:  # once: the spool still holds the spans
                self._warned = True
                logger.warning(
                    "Opik fallback log %s cannot be written (%s: %s); spans stay in the spool",
                    self.path,
                    type(exc).__name__,
                    exc.strerror or exc,
                )
