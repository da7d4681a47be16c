"""The connector watching itself: one `health()` snapshot of queue, counters, spool, breaker, cache.

A tracer that silently loses spans is worse than none, so every loss path (drops past the
spool cap, sinks refusing batches, invalid traceparents) is a counter here, and `status` turns
them into one word an operator can alert on:

- `healthy`: the span store answers, nothing lost, nothing waiting on disk, Opik reachable
  (or disabled);
- `degraded`: still losing nothing, but working around a failure (breaker open or half-open,
  spans waiting in a spool, Redis down and the cache serving from memory);
- `unhealthy`: the span store does not answer (`database unreachable: <reason>`), spans were
  dropped, or the queue is nearly full.

Counters alone cannot see a store that is down before anything was written to it, so `health()`
asks: the store through a `store_probe` (one cheap read, see `store_probe.py`) and Redis through
the cache's `probe()` (a PING). Each call of `health()` costs those two round trips.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from .processor_stats import ProcessorStats
from .store_probe import ProbeResult

QUEUE_ALERT_FRACTION = 0.9


class _HasStats(Protocol):
    def stats(self) -> Any: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthSnapshot:
    status: str
    """`healthy`, `degraded` or `unhealthy` (see the module docstring)."""
    reasons: list[str] = field(default_factory=list)
    """Why the status is not `healthy`, one short sentence each (the worst first)."""
    store: str = "not checked"
    """`reachable`, `reachable, no schema yet`, `unreachable`, or `not checked` (no probe)."""
    store_error: str | None = None
    """Why the span store did not answer (one line, no secrets)."""
    queue_depth: int
    queue_capacity: int
    submitted: int
    emitted: dict[str, int]
    retried: int
    spooled: int
    replayed: int
    dropped: int
    rejected: int
    sampled_out: int
    spool_bytes: dict[str, int]
    circuit_state: str
    cache_backend: str | None = None
    cache_hits: int = 0
    cache_misses: int = 0
    cache_hit_rate: float | None = None
    cache_degraded: bool = False
    invalid_traceparents: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SelfMonitor:
    """Reads the live counters of its collaborators; holds no state of its own."""

    def __init__(
        self,
        processor: _HasStats,
        *,
        queue_capacity: int,
        circuit_state: Any = None,
        cache: _HasStats | None = None,
        context_counter: Any = None,
        store_probe: Callable[[], ProbeResult] | None = None,
    ) -> None:
        """`circuit_state` is a zero-argument callable returning the breaker state (or None
        when there is no Opik sink); `context_counter` has a `.value` of invalid headers;
        `store_probe()` says whether the span store answers (a `StoreProbe`)."""
        self._processor = processor
        self._queue_capacity = queue_capacity
        self._circuit_state = circuit_state
        self._cache = cache
        self._context_counter = context_counter
        self._store_probe = store_probe

    def health(self) -> HealthSnapshot:
        probe = self._store_probe() if self._store_probe is not None else None
        store_error = probe.error if probe is not None else None
        cache_probe = getattr(self._cache, "probe", None)
        if cache_probe is not None:
            cache_probe()  # a failed PING marks the cache degraded in its stats
        stats: ProcessorStats = self._processor.stats()
        circuit = self._circuit_state() if self._circuit_state is not None else "disabled"
        cache = self._cache.stats() if self._cache is not None else None
        lookups = (cache.hits + cache.misses) if cache is not None else 0
        queue_nearly_full = stats.queue_depth >= QUEUE_ALERT_FRACTION * self._queue_capacity
        reasons = self._reasons(stats, circuit, cache, queue_nearly_full)
        if store_error is not None:
            reasons.insert(0, f"database unreachable: {store_error}")
        if store_error is not None or stats.dropped or queue_nearly_full:
            status = "unhealthy"
        elif reasons:
            status = "degraded"
        else:
            status = "healthy"
        return HealthSnapshot(
            status=status,
            reasons=reasons,
            store=probe.state if probe is not None else "not checked",
            store_error=store_error,
            queue_depth=stats.queue_depth,
            queue_capacity=self._queue_capacity,
            submitted=stats.submitted,
            emitted=dict(stats.emitted),
            retried=stats.retried,
            spooled=stats.spooled,
            replayed=stats.replayed,
            dropped=stats.dropped,
            rejected=stats.rejected,
            sampled_out=stats.sampled_out,
            spool_bytes=dict(stats.spool_bytes),
            circuit_state=circuit,
            cache_backend=cache.backend if cache is not None else None,
            cache_hits=cache.hits if cache is not None else 0,
            cache_misses=cache.misses if cache is not None else 0,
            cache_hit_rate=(cache.hits / lookups) if lookups else None,
            cache_degraded=bool(cache is not None and cache.degraded),
            invalid_traceparents=(
                self._context_counter.value if self._context_counter is not None else 0
            ),
            last_error=stats.last_error,
        )

    def _reasons(
        self, stats: ProcessorStats, circuit: str, cache: Any, queue_nearly_full: bool
    ) -> list[str]:
        reasons = []
        if stats.dropped:
            reasons.append(
                f"{stats.dropped} spans dropped (queue or spool full, or spool unwritable)"
            )
        if queue_nearly_full:
            reasons.append(f"queue {stats.queue_depth}/{self._queue_capacity} nearly full")
        if circuit in ("open", "half_open"):
            reasons.append(f"Opik circuit breaker is {circuit}: database-only mode")
        waiting = {name: n for name, n in stats.spool_bytes.items() if n}
        if waiting:
            listed = ", ".join(f"{name}: {n} bytes" for name, n in sorted(waiting.items()))
            reasons.append(f"spans waiting in the spool for replay ({listed})")
        if cache is not None and cache.degraded:
            reasons.append("Redis unreachable: metrics cache serving from memory")
        return reasons
