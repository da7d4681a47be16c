"""Redis metrics cache against a real redis-server: sharing, TTL, invalidation, fallback."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from src.agents.ml_foundation.observability_connector.cache import (
    CacheStats,
    InMemoryMetricsCache,
    create_metrics_cache,
)
from src.agents.ml_foundation.observability_connector.config import CacheSettings
from src.agents.ml_foundation.observability_connector.models import LatencyStats, QualityMetrics
from src.agents.ml_foundation.observability_connector.redis_cache import RedisMetricsCache
from tests.fixtures.redis import RedisServer

pytestmark = pytest.mark.redis

CACHE_LOGGER = "src.agents.ml_foundation.observability_connector.redis_cache"


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def metrics(window: str = "1h", agent: str | None = None, count: int = 4) -> QualityMetrics:
    end = datetime(2025, 3, 1, 9, tzinfo=UTC)
    stats = [
        LatencyStats(agent_name=agent or "causal_impact", count=count, p95_ms=12.5, llm_calls=1)
    ]
    return QualityMetrics.from_agent_stats(window, end - timedelta(hours=1), end, stats, agent)


SETTINGS = CacheSettings(
    backend="redis", ttl_seconds={"1h": 60.0, "24h": 300.0}, default_ttl_seconds=30.0
)


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex}"


@pytest.fixture
def make_cache(prefix: str) -> Iterator[Callable[..., RedisMetricsCache]]:
    made: list[RedisMetricsCache] = []

    def make(url: str, clock: FakeClock | None = None, **kwargs: object) -> RedisMetricsCache:
        clock = clock or FakeClock()
        cache = RedisMetricsCache(
            url,
            SETTINGS,
            fallback=InMemoryMetricsCache(SETTINGS, clock=clock),
            key_prefix=prefix,
            clock=clock,
            **kwargs,  # type: ignore[arg-type]
        )
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_redis_cache__set_then_get__round_trips_json_and_counts(
    make_cache: Callable[..., RedisMetricsCache], redis_url: str
) -> None:
    cache = make_cache(redis_url)
    value = metrics(agent="causal_impact")
    assert cache.get("1h", "causal_impact") is None
    cache.set("1h", "causal_impact", value)
    assert cache.get("1h", "causal_impact") == value
    assert cache.get("1h", None) is None
    assert cache.stats() == CacheStats(
        backend="redis", hits=1, misses=2, invalidations=0, entries=None
    )


def test_redis_cache__entry__stored_as_json_with_window_ttl(
    make_cache: Callable[..., RedisMetricsCache], redis_url: str, admin: redis.Redis, prefix: str
) -> None:
    cache = make_cache(redis_url)
    value = metrics("24h")
    cache.set("24h", None, value)
    keys = [k.decode() for k in admin.keys(f"{prefix}:*")]
    assert keys == [f"{prefix}:g0:24h:*"]
    assert QualityMetrics.model_validate_json(admin.get(keys[0])) == value
    assert 295 <= admin.ttl(keys[0]) <= 300


def test_redis_cache__two_processes__share_entries_and_invalidation(
    make_cache: Callable[..., RedisMetricsCache], redis_url: str, admin: redis.Redis, prefix: str
) -> None:
    """Each cache stands for one process: an INCR by one makes the other's entries stale."""
    writer, reader = make_cache(redis_url), make_cache(redis_url)
    value = metrics()
    writer.set("1h", None, value)
    assert reader.get("1h", None) == value
    writer.on_batch_written("database", 25)
    assert reader.get("1h", None) is None
    assert int(admin.get(f"{prefix}:generation")) == 1
    assert writer.stats().invalidations == 1


def test_redis_cache__invalidated_between_miss_and_set__value_never_served(
    make_cache: Callable[..., RedisMetricsCache], redis_url: str
) -> None:
    reader, writer = make_cache(redis_url), make_cache(redis_url)
    assert reader.get("1h", None) is None  # the reader starts computing
    writer.invalidate_all()  # another process stored a batch meanwhile
    reader.set("1h", None, metrics())
    assert reader.get("1h", None) is None


def test_redis_cache__non_database_sink__does_not_invalidate(
    make_cache: Callable[..., RedisMetricsCache], redis_url: str
) -> None:
    cache = make_cache(redis_url)
    cache.set("1h", None, metrics())
    cache.on_batch_written("opik", 10)
    assert cache.get("1h", None) is not None


def test_redis_cache__corrupt_entry__is_a_miss_not_an_error(
    make_cache: Callable[..., RedisMetricsCache], redis_url: str, admin: redis.Redis, prefix: str
) -> None:
    cache = make_cache(redis_url)
    admin.set(f"{prefix}:g0:1h:*", b"{not json")
    assert cache.get("1h", None) is None
    assert cache.stats().degraded is False


def test_redis_cache__generation_key_not_an_integer__falls_back_without_raising(
    make_cache: Callable[..., RedisMetricsCache], redis_url: str, admin: redis.Redis, prefix: str
) -> None:
    cache = make_cache(redis_url)
    admin.set(f"{prefix}:generation", b"not-a-number")
    assert cache.get("1h", None) is None
    cache.set("1h", None, metrics())
    assert cache.get("1h", None) == metrics()  # served by the fallback
    assert cache.stats().degraded is True


def test_redis_cache__server_stopped_mid_use__falls_back_with_one_warning(
    make_cache: Callable[..., RedisMetricsCache],
    redis_server_factory: Callable[[], RedisServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = redis_server_factory()
    clock = FakeClock()
    cache = make_cache(server.url, clock)
    cache.set("1h", None, metrics(count=1))
    assert cache.get("1h", None) == metrics(count=1)

    server.stop()
    caplog.set_level(logging.DEBUG, logger=CACHE_LOGGER)
    assert cache.get("1h", None) is None  # fallback memory starts clean
    cache.set("1h", None, metrics(count=2))
    assert cache.get("1h", None) == metrics(count=2)  # served from memory
    cache.invalidate_all()
    assert cache.get("1h", None) is None
    clock.advance(1.0)  # back-off elapsed: Redis is tried again, and fails again
    assert cache.get("1h", None) is None

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "in-memory" in warnings[0].getMessage()
    stats = cache.stats()
    assert stats.degraded is True
    assert stats.errors == 2
    assert (stats.hits, stats.misses, stats.invalidations) == (2, 3, 1)


def test_redis_cache__password_in_url__never_logged(
    make_cache: Callable[..., RedisMetricsCache],
    redis_server_factory: Callable[[], RedisServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = redis_server_factory()
    url = f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"
    cache = make_cache(url)
    caplog.set_level(logging.DEBUG, logger=CACHE_LOGGER)
    assert cache.get("1h", None) is None  # no password configured on the server: AUTH error
    server.stop()
    assert cache.get("1h", None) is None
    assert cache.stats().degraded is True
    assert caplog.records, "the fallback must be logged"
    assert all("s3cret-pw" not in r.getMessage() for r in caplog.records)


def test_redis_cache__timeout__falls_back_then_recovers_replaying_invalidation(
    make_cache: Callable[..., RedisMetricsCache],
    redis_server_factory: Callable[[], RedisServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A paused server makes reads time out; invalidations made meanwhile reach Redis later."""
    caplog.set_level(logging.INFO, logger=CACHE_LOGGER)
    server = redis_server_factory()
    clock = FakeClock()
    cache = make_cache(server.url, clock, socket_timeout_seconds=0.2)
    other_process = make_cache(server.url)
    cache.set("1h", None, metrics())
    admin = server.client()
    try:
        admin.execute_command("CLIENT", "PAUSE", "1000", "ALL")
        assert cache.get("1h", None) is None  # times out: served by the fallback
        cache.invalidate_all()  # a batch lands while Redis is away
        assert cache.stats().degraded is True
        assert admin.ping()  # blocks until the pause is over
    finally:
        admin.close()
    assert cache.get("1h", None) is None  # back-off not elapsed: still the fallback
    assert other_process.get("1h", None) is not None  # the pre-outage entry, as yet unseen
    clock.advance(1.0)
    assert cache.get("1h", None) is None  # Redis again; the pending invalidation replayed first
    assert cache.stats().degraded is False
    assert other_process.get("1h", None) is None
    assert "reachable again" in caplog.text


def test_create_metrics_cache__redis_settings__talks_to_the_server(
    redis_url: str, admin: redis.Redis
) -> None:
    settings = CacheSettings(backend="redis", redis_url=redis_url)
    cache = create_metrics_cache(settings)
    assert isinstance(cache, RedisMetricsCache)
    try:
        before = int(admin.get("e2i:obs:metrics:generation") or 0)
        cache.invalidate_all()
        assert int(admin.get("e2i:obs:metrics:generation")) == before + 1
    finally:
        cache.close()
