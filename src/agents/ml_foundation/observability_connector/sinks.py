"""Where finished batches go: the Sink protocol and the errors a sink may raise.

The batch processor calls `write(batch)` from its worker thread, one sink at a time, each
independently: one sink failing never blocks another.

- `RetryableSinkError` (or `RepositoryError`, `OSError`, timeouts): transient; the processor
  retries with backoff, then spools the batch to disk and replays it later.
- `PermanentSinkError`: the payload itself is wrong (a 4xx that is not 429); logged with the
  server's message and not retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .models import ObservabilitySpan


class SinkError(RuntimeError):
    """Base of the errors a sink raises on purpose."""


class RetryableSinkError(SinkError):
    """Transient failure: transport error, timeout, 429 or 5xx. Retry, then spool."""


class PermanentSinkError(SinkError):
    """The batch will never be accepted as sent (e.g. 400/422). Log and drop, do not retry."""


class SinkUnavailableError(RetryableSinkError):
    """The sink refuses work for now (e.g. circuit breaker open): spool without retrying."""


@runtime_checkable
class Sink(Protocol):
    name: str
    """Short stable name; also the spool sub-directory and the counter key."""

    def write(self, batch: Sequence[ObservabilitySpan]) -> int:
        """Deliver the batch; return how many spans were accepted. Called from one thread."""
