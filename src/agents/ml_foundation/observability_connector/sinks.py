"""Where finished batches go: the Sink protocol and the errors a sink may raise.

The batch processor gives each sink a thread of its own and calls `write(batch)` only from it
(and, after `close()`, from the thread that replays): one sink failing or hanging never blocks
another, nor the agent. An optional `prepare()` (e.g. the database's schema setup) runs there
first, so creating a connector never waits on a sink; if it raises, batches are spooled until a
later attempt succeeds.

- `RetryableSinkError` (or `RepositoryError`, `OSError`, timeouts): transient; the batch goes to
  the sink's durable spool at once, and the sink is tried again later (see `retry`).
- `SinkUnavailableError`: the sink says "not now" (an open circuit breaker): the same.
- `PermanentSinkError`: the payload itself is wrong (a 4xx that is not 429, a database data
  error): the batch is split until the refused spans are found; only those are set aside in
  the spool's `rejected/` with this error's message, the rest is delivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .models import ObservabilitySpan


class SinkError(RuntimeError):
    """Base of the errors a sink raises on purpose."""


class RetryableSinkError(SinkError):
    """Transient failure: transport error, timeout, 429 or 5xx. Spool, try again later."""


class PermanentSinkError(SinkError):
    """The batch will never be accepted as sent (e.g. 400/422): isolate the refused spans."""


class SinkUnavailableError(RetryableSinkError):
    """The sink refuses work for now (e.g. circuit breaker open): spool without retrying."""


@runtime_checkable
class Sink(Protocol):
    name: str
    """Short stable name; also the spool sub-directory and the counter key."""

    def write(self, batch: Sequence[ObservabilitySpan]) -> int:
        """Deliver the batch; return how many spans were accepted. Called from one thread."""


# Optional, read with getattr():
#   prepare() -> None        run once on the sink's thread before the first batch
#   decides_retries: bool    True when the sink's own circuit breaker decides when it is tried
#                            again after failures (it raises SinkUnavailableError while open);
#                            otherwise the batch processor leaves a failing sink alone for the
#                            retry policy's wait (see `retry.RetryPolicy`).
