"""SelfMonitor: counters become one status word an operator can alert on."""

from src.agents.ml_foundation.observability_connector.cache import CacheStats
from src.agents.ml_foundation.observability_connector.processor_stats import (
    ProcessorStats,
    SinkCounters,
)
from src.agents.ml_foundation.observability_connector.self_monitor import SelfMonitor


class FixedStats:
    """Returns the snapshot it was given (the collaborator's contract: a `stats()` method)."""

    def __init__(self, stats):
        self.value = stats

    def stats(self):
        return self.value


def processor_stats(*, dropped=0, queue_depth=0, spool_bytes=0, emitted=10):
    sinks = {"database": SinkCounters(emitted=emitted, dropped=dropped, spool_bytes=spool_bytes)}
    return ProcessorStats.collect(
        submitted=emitted + dropped,
        invalid=0,
        sampled_out=0,
        queue_depth=queue_depth,
        last_error=None,
        sinks=sinks,
    )


def cache_stats(*, hits=3, misses=1, degraded=False):
    return CacheStats(
        backend="memory", hits=hits, misses=misses, invalidations=0, entries=1, degraded=degraded
    )


def test_health__all_quiet__healthy_with_hit_rate():
    monitor = SelfMonitor(
        FixedStats(processor_stats()),
        queue_capacity=100,
        circuit_state=lambda: "closed",
        cache=FixedStats(cache_stats()),
    )
    health = monitor.health()
    assert health.status == "healthy"
    assert health.reasons == []
    assert health.cache_hit_rate == 0.75
    assert health.emitted == {"database": 10}
    assert health.as_dict()["circuit_state"] == "closed"


def test_health__breaker_open_and_spool_waiting__degraded_with_reasons():
    monitor = SelfMonitor(
        FixedStats(processor_stats(spool_bytes=512)),
        queue_capacity=100,
        circuit_state=lambda: "open",
    )
    health = monitor.health()
    assert health.status == "degraded"
    assert any("circuit breaker is open" in r for r in health.reasons)
    assert any("database: 512 bytes" in r for r in health.reasons)
    assert health.cache_hit_rate is None


def test_health__redis_down__degraded():
    monitor = SelfMonitor(
        FixedStats(processor_stats()),
        queue_capacity=100,
        cache=FixedStats(cache_stats(degraded=True)),
    )
    health = monitor.health()
    assert (health.status, health.cache_degraded) == ("degraded", True)
    assert health.circuit_state == "disabled"


def test_health__drops_or_full_queue__unhealthy():
    dropped = SelfMonitor(FixedStats(processor_stats(dropped=2)), queue_capacity=100).health()
    assert dropped.status == "unhealthy"
    assert "2 spans dropped" in dropped.reasons[0]
    full = SelfMonitor(FixedStats(processor_stats(queue_depth=95)), queue_capacity=100).health()
    assert full.status == "unhealthy"
    assert "95/100" in full.reasons[0]


def test_health__store_probe_fails__unhealthy_reason_first():
    """Issue 11 (4): with the store unreachable, health said healthy (its counters were 0)."""
    from src.agents.ml_foundation.observability_connector.store_probe import ProbeResult

    down = ProbeResult("unreachable", "RepositoryError: no connection to db:5432/e2i")
    monitor = SelfMonitor(
        FixedStats(processor_stats(spool_bytes=64)), queue_capacity=100, store_probe=lambda: down
    )
    health = monitor.health()
    assert health.status == "unhealthy"
    assert health.reasons[0] == f"database unreachable: {down.error}"
    assert (health.store, health.store_error) == ("unreachable", down.error)


def test_health__store_answers_or_has_no_schema_yet__not_a_failure():
    from src.agents.ml_foundation.observability_connector.store_probe import ProbeResult

    for state in ("reachable", "reachable, no schema yet"):
        monitor = SelfMonitor(
            FixedStats(processor_stats()),
            queue_capacity=100,
            store_probe=lambda state=state: ProbeResult(state),
        )
        health = monitor.health()
        assert (health.status, health.store, health.store_error) == ("healthy", state, None)


def test_describe_failure__empty_timeout_and_secrets__meaningful_one_line():
    """Issue 11 (8): a setup timeout was logged as `TimeoutError: `."""
    from src.agents.ml_foundation.observability_connector.redaction import describe_failure

    assert describe_failure(TimeoutError(), 12.0) == "TimeoutError: no answer within 12 s"
    text = describe_failure(OSError("connect to postgresql://u:pw123@db/e2i\nfailed"))
    assert text == "OSError: connect to postgresql://u:***@db/e2i failed"
