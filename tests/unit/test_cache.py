"""In-memory metrics cache: TTL per window (injected clock), LRU bound, counters, invalidation."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from src.agents.ml_foundation.observability_connector.cache import (
    CacheStats,
    InMemoryMetricsCache,
    create_metrics_cache,
)
from src.agents.ml_foundation.observability_connector.config import CacheSettings, ConfigError
from src.agents.ml_foundation.observability_connector.models import LatencyStats, QualityMetrics
from src.agents.ml_foundation.observability_connector.redis_cache import RedisMetricsCache


class FakeClock:
    """A monotonic clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def metrics(window: str = "1h", agent: str | None = None, count: int = 3) -> QualityMetrics:
    end = datetime(2025, 1, 1, 12, tzinfo=UTC)
    stats = [LatencyStats(agent_name=agent or "gap_analyzer", count=count, p50_ms=10.0 * count)]
    return QualityMetrics.from_agent_stats(window, end - timedelta(hours=1), end, stats, agent)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_cache(clock: FakeClock, **settings: object) -> InMemoryMetricsCache:
    base: dict[str, object] = {"ttl_seconds": {"1h": 60.0, "24h": 300.0}, "default_ttl_seconds": 30}
    base.update(settings)
    return InMemoryMetricsCache(CacheSettings(**base), clock=clock)


def test_memory_cache__set_then_get__returns_equal_value_and_counts_hit(clock: FakeClock) -> None:
    cache = make_cache(clock)
    value = metrics()
    cache.set("1h", None, value)
    assert cache.get("1h", None) == value
    assert cache.stats() == CacheStats(
        backend="memory", hits=1, misses=0, invalidations=0, entries=1
    )


def test_memory_cache__unknown_key__is_a_miss(clock: FakeClock) -> None:
    cache = make_cache(clock)
    assert cache.get("1h", "gap_analyzer") is None
    assert cache.stats().misses == 1
    assert cache.stats().hits == 0


def test_memory_cache__agent_and_window_are_part_of_the_key(clock: FakeClock) -> None:
    cache = make_cache(clock)
    all_agents, one_agent = metrics(count=5), metrics(agent="gap_analyzer", count=2)
    cache.set("1h", None, all_agents)
    cache.set("1h", "gap_analyzer", one_agent)
    assert cache.get("1h", None) == all_agents
    assert cache.get("1h", "gap_analyzer") == one_agent
    assert cache.get("24h", None) is None


def test_memory_cache__ttl_per_window__expires_at_configured_age(clock: FakeClock) -> None:
    cache = make_cache(clock)
    cache.set("1h", None, metrics("1h"))
    cache.set("24h", None, metrics("24h"))
    clock.advance(59.9)
    assert cache.get("1h", None) is not None
    clock.advance(0.1)  # 60 s: the 1h entry's TTL
    assert cache.get("1h", None) is None
    assert cache.get("24h", None) is not None
    clock.advance(240.0)  # 300 s: the 24h entry's TTL
    assert cache.get("24h", None) is None
    assert cache.stats().entries == 0


def test_memory_cache__unlisted_window__uses_default_ttl(clock: FakeClock) -> None:
    cache = make_cache(clock)
    cache.set("15m", None, metrics("15m"))
    clock.advance(29.0)
    assert cache.get("15m", None) is not None
    clock.advance(1.0)
    assert cache.get("15m", None) is None


def test_memory_cache__zero_ttl__disables_caching_for_that_window(clock: FakeClock) -> None:
    cache = make_cache(clock, ttl_seconds={"1h": 0.0})
    cache.set("1h", None, metrics())
    assert cache.get("1h", None) is None
    assert cache.stats().entries == 0


def test_memory_cache__max_entries__evicts_least_recently_used(clock: FakeClock) -> None:
    cache = make_cache(clock, max_entries=2)
    cache.set("1h", "a", metrics(agent="a"))
    cache.set("1h", "b", metrics(agent="b"))
    assert cache.get("1h", "a") is not None  # "a" becomes the most recently used
    cache.set("1h", "c", metrics(agent="c"))
    assert cache.get("1h", "b") is None
    assert cache.get("1h", "a") is not None
    assert cache.get("1h", "c") is not None
    assert cache.stats().entries == 2


def test_memory_cache__invalidate_all__drops_entries_and_counts(clock: FakeClock) -> None:
    cache = make_cache(clock)
    cache.set("1h", None, metrics())
    cache.set("24h", "a", metrics("24h", "a"))
    cache.invalidate_all()
    assert cache.get("1h", None) is None
    assert cache.get("24h", "a") is None
    assert cache.stats() == CacheStats(
        backend="memory", hits=0, misses=2, invalidations=1, entries=0
    )


def test_memory_cache__invalidated_between_miss_and_set__value_not_stored(
    clock: FakeClock,
) -> None:
    """A value computed while a batch was being written may predate that batch."""
    cache = make_cache(clock)
    assert cache.get("1h", None) is None  # miss: the caller starts computing
    cache.invalidate_all()  # a batch lands meanwhile
    cache.set("1h", None, metrics())
    assert cache.get("1h", None) is None
    cache.set("1h", None, metrics())  # computed after the second miss: current
    assert cache.get("1h", None) is not None


def test_memory_cache__returned_value_mutated__cache_unchanged(clock: FakeClock) -> None:
    cache = make_cache(clock)
    value = metrics()
    cache.set("1h", None, value)
    got = cache.get("1h", None)
    assert got is not None
    got.total_spans = 999
    value.total_spans = 998
    assert cache.get("1h", None) == metrics()


@pytest.mark.parametrize(
    ("sink_name", "n", "invalidated"),
    [("database", 10, True), ("opik", 10, False), ("database", 0, False)],
)
def test_memory_cache__on_batch_written__invalidates_only_for_database_writes(
    clock: FakeClock, sink_name: str, n: int, invalidated: bool
) -> None:
    cache = make_cache(clock)
    cache.set("1h", None, metrics())
    cache.on_batch_written(sink_name, n)
    assert (cache.get("1h", None) is None) is invalidated
    assert cache.stats().invalidations == int(invalidated)


def test_memory_cache__concurrent_use__counters_add_up(clock: FakeClock) -> None:
    cache = make_cache(clock, max_entries=8)
    start = threading.Barrier(4)

    def work(worker: int) -> None:
        start.wait()
        for i in range(200):
            agent = f"agent-{(worker + i) % 12}"
            if cache.get("1h", agent) is None:
                cache.set("1h", agent, metrics(agent=agent))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = cache.stats()
    assert stats.hits + stats.misses == 800
    assert stats.entries is not None and stats.entries <= 8


def test_create_metrics_cache__memory_backend__returns_memory_cache(clock: FakeClock) -> None:
    cache = create_metrics_cache(CacheSettings(), clock=clock)
    assert isinstance(cache, InMemoryMetricsCache)
    assert cache.stats().backend == "memory"


def test_create_metrics_cache__redis_backend_with_url__returns_redis_cache_lazily(
    clock: FakeClock,
) -> None:
    """Building the cache opens no connection (nothing listens on port 1)."""
    settings = CacheSettings(backend="redis", redis_url="redis://127.0.0.1:1/0")
    cache = create_metrics_cache(settings, clock=clock)
    assert isinstance(cache, RedisMetricsCache)
    assert cache.stats() == CacheStats(
        backend="redis", hits=0, misses=0, invalidations=0, entries=None
    )
    cache.close()


def test_create_metrics_cache__redis_backend_without_url__raises_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"cache\.redis_url"):
        create_metrics_cache(CacheSettings(backend="redis"))
