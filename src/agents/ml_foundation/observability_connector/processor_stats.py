"""What the batch processor counts, and how the counts add up.

All counts are spans unless said otherwise. Once `BatchProcessor.flush()` has returned True and
nothing else is submitted, for every sink `s`:

    submitted == invalid + sampled_out
                 + sinks[s].emitted + sinks[s].spooled + sinks[s].dropped + sinks[s].rejected

(`ProcessorStats.accounted(s)` is the right-hand side.) Every submitted span ends in exactly one
of those for each sink: not a span at all (`invalid`), dropped by sampling (`sampled_out`),
accepted by the sink (`emitted`), stored in the sink's spool (`spooled`), lost because the spool
was full or absent (`dropped`), or refused for good by the sink (`rejected`).

`replayed` and `replay_rejected` are outside the equation: replayed spans were counted as
`spooled` when they were stored, possibly by an earlier process. `retried` counts write attempts
on a sink that was failing (probes).

`FlushResult` is what `flush()` returns: truthy only when every span submitted before the call
is in every sink, durably in its spool, or kept in `rejected/` (refused for good), and none of
them was dropped; it carries the counters above as they stood when `flush()` returned (a
snapshot: reading it later does not change it).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FlushResult", "ProcessorStats", "SinkCounters"]


@dataclass(frozen=True, slots=True)
class SinkCounters:
    """One sink's counts, in spans. See `ProcessorStats` for how they add up."""

    emitted: int = 0
    """Spans the sink accepted when first offered (a successful `write`)."""
    spooled: int = 0
    """Spans written to the sink's spool (retries exhausted, sink unavailable, overflow, close)."""
    dropped: int = 0
    """Spans lost for this sink: the queue was full, the spool was full, disabled or failed, or
    a refused span could not be kept in `rejected/`."""
    rejected: int = 0
    """Spans the sink refused for good (`PermanentSinkError`), found by splitting the batch
    and kept in the spool's `rejected/` with the reason; never retried."""
    retried: int = 0
    """Write attempts on the sink while it was failing: probes (not spans)."""
    replayed: int = 0
    """Spans delivered from the spool (spooled earlier by this or another process)."""
    replay_rejected: int = 0
    """Spooled spans (or unreadable spool lines) the sink refused for good on replay, moved
    to `rejected/`."""
    spool_bytes: int = 0
    """Bytes currently held in the sink's spool directory."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessorStats:
    """A snapshot of the processor's counters (spans unless said otherwise)."""

    submitted: int
    """Calls to `submit()`."""
    invalid: int
    """`submit()` arguments that were not spans (never offered to a sink)."""
    sampled_out: int
    rejected: int
    """`invalid` plus the spans any sink refused for good (`PermanentSinkError`)."""
    emitted: dict[str, int]
    """Per sink: spans accepted when first offered."""
    spooled: int
    """Spans written to spools, summed over sinks (a span spooled for two sinks counts twice)."""
    replayed: int
    dropped: int
    retried: int
    """Write attempts that were retries, summed over sinks."""
    queue_depth: int
    spool_bytes: dict[str, int]
    last_error: str | None
    """Last sink or spool error, secrets redacted."""
    sinks: dict[str, SinkCounters]
    """Every counter per sink; the invariant holds per sink."""

    @classmethod
    def collect(
        cls,
        *,
        submitted: int,
        invalid: int,
        sampled_out: int,
        queue_depth: int,
        last_error: str | None,
        sinks: dict[str, SinkCounters],
    ) -> ProcessorStats:
        per = sinks.values()
        return cls(
            submitted=submitted,
            invalid=invalid,
            sampled_out=sampled_out,
            rejected=invalid + sum(c.rejected for c in per),
            emitted={name: c.emitted for name, c in sinks.items()},
            spooled=sum(c.spooled for c in per),
            replayed=sum(c.replayed for c in per),
            dropped=sum(c.dropped for c in per),
            retried=sum(c.retried for c in per),
            queue_depth=queue_depth,
            spool_bytes={name: c.spool_bytes for name, c in sinks.items()},
            last_error=last_error,
            sinks=sinks,
        )

    def accounted(self, sink: str) -> int:
        """Right-hand side of the invariant for one sink (equals `submitted` when idle)."""
        c = self.sinks[sink]
        return self.invalid + self.sampled_out + c.emitted + c.spooled + c.dropped + c.rejected


@dataclass(frozen=True, slots=True, kw_only=True)
class FlushResult:
    """What `flush()` found; `bool(result)` is `ok`, so `if processor.flush(): ...` still reads
    as before."""

    ok: bool
    """Every span submitted before the call is in every sink, in its spool or in
    `rejected/`, and none was dropped."""
    timed_out: bool
    """The timeout passed before every span submitted before the call was settled."""
    dropped: dict[str, int]
    """Per sink, spans submitted before the call (since the last completed flush) that were
    lost: the queue or the spool was full, or the spool could not be written."""
    stats: ProcessorStats
    """Every counter, per sink (`stats.sinks[name]`), as they stood when `flush()` returned."""

    def __bool__(self) -> bool:
        return self.ok
