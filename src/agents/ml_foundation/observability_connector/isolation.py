"""Find the spans a sink refuses in a batch it refused as a whole, and deliver the rest.

Why: a database refuses a whole batch (one transaction) for one value it cannot hold, and a
REST API answers one 400 for the whole request. Dropping or parking the whole batch makes one
bad span cost every good one beside it (issue 11: 0 of 21 spans stored for one oversized token
count). So the refused batch is split in halves, each half is written, and a refused half is
split again, until every refused span stands alone: k bad spans in n cost about
2 k log2(n) extra writes, and the good ones are delivered in their original order.

A transient failure part-way (the sink went down while we were splitting) stops the search:
what was not yet delivered is returned as `unsent`, to be spooled with the batch's remaining
spans, and the sink is treated as failing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .models import ObservabilitySpan
from .retry import Failure, classify

__all__ = ["Isolation", "isolate", "reason_of"]


@dataclass(slots=True)
class Isolation:
    """What became of a refused batch."""

    delivered: list[ObservabilitySpan] = field(default_factory=list)
    """Spans the sink took, in their original order."""
    refused: list[tuple[ObservabilitySpan, str]] = field(default_factory=list)
    """Spans the sink refused on their own, each with the sink's reason."""
    unsent: list[ObservabilitySpan] = field(default_factory=list)
    """Spans not settled because the sink failed transiently part-way (in order)."""
    error: BaseException | None = None
    """That transient failure, if any."""
    writes: int = 0
    """Calls to the sink made while isolating."""


def reason_of(exc: BaseException) -> str:
    """The sink's reason, as kept beside a refused span."""
    return f"{type(exc).__name__}: {exc}"


def isolate(
    spans: Sequence[ObservabilitySpan],
    refusal: BaseException,
    write: Callable[[Sequence[ObservabilitySpan]], object],
    *,
    refuses: Callable[[BaseException], bool] | None = None,
) -> Isolation:
    """Split `spans`, which `write` refused as a whole with `refusal`, until each refused span
    is alone. `refuses(exc)` says which failures are refusals (default: `Failure.REFUSED`);
    any other failure stops the search (see the module docstring)."""
    refuses = refuses or (lambda exc: classify(exc) is Failure.REFUSED)
    result = Isolation()
    if len(spans) <= 1:
        result.refused = [(span, reason_of(refusal)) for span in spans]
        return result
    parts: deque[Sequence[ObservabilitySpan]] = deque(_halves(spans))
    while parts:
        part = parts.popleft()
        result.writes += 1
        try:
            write(part)
        except Exception as exc:  # broad on purpose: the sink boundary, classified below
            if not refuses(exc):
                result.unsent = [span for rest in (part, *parts) for span in rest]
                result.error = exc
                return result
            if len(part) == 1:
                result.refused.append((part[0], reason_of(exc)))
            else:
                parts.extendleft(reversed(_halves(part)))  # depth first keeps the order
        else:
            result.delivered.extend(part)
    return result


def _halves(spans: Sequence[ObservabilitySpan]) -> tuple[Sequence[ObservabilitySpan], ...]:
    middle = len(spans) // 2
    return spans[:middle], spans[middle:]
