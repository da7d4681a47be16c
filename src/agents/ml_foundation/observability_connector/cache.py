"""Metrics cache: window metrics keyed by (time window, agent name or None).

Percentiles over a 24 h window cost a database aggregation; the orchestrator asks for them
far more often than the spans change. Entries live for `CacheSettings.ttl_for(window)` seconds
and every batch written to the database invalidates them all (`on_batch_written`), so a
reader never waits longer than one batch for fresh numbers.

Invalidation uses a generation counter: an entry belongs to the generation that was current
when its value was *requested* (the miss), so a value computed while a batch was being
written is never stored as fresh. In Redis the counter is one key that `invalidate_all`
INCRs, which makes invalidation O(1) and visible to every process sharing the server.

Redis is optional plumbing, never a point of failure: any Redis error or timeout switches to
the in-memory fallback with one warning (no URL, no password), and Redis is tried again
after a back-off. Callers never see a Redis exception.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import redis
from pydantic import SecretStr, ValidationError
from redis.backoff import NoBackoff
from redis.retry import Retry

from .config import CacheSettings, ConfigError
from .models import QualityMetrics

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
CacheKey = tuple[str, str | None]

DATABASE_SINK = "database"
# what a Redis call may raise: server/transport errors, and a generation key that is not an int
_REDIS_FAILURES = (redis.RedisError, OSError, ValueError)
DEFAULT_KEY_PREFIX = "e2i:obs:metrics"


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of one cache's counters, for the self-monitor."""

    backend: str
    """`memory` or `redis` (the configured backend, even while degraded)."""
    hits: int
    misses: int
    invalidations: int
    entries: int | None
    """Entries held in process memory; None when they live in Redis."""
    degraded: bool = False
    """True while Redis is unreachable and the in-memory fallback serves."""
    errors: int = 0
    """Redis errors seen (each one also means a fallback operation)."""


class MetricsCache(ABC):
    """What `MetricsService` needs from a cache. Implementations are thread-safe."""

    @abstractmethod
    def get(self, window: str, agent: str | None) -> QualityMetrics | None:
        """The cached metrics, or None (a miss) when absent, expired or invalidated."""

    @abstractmethod
    def set(self, window: str, agent: str | None, value: QualityMetrics) -> None:
        """Store metrics computed after a miss; dropped if invalidated meanwhile."""

    @abstractmethod
    def invalidate_all(self) -> None:
        """Make every entry stale (new spans were stored)."""

    @abstractmethod
    def stats(self) -> CacheStats: ...

    def on_batch_written(self, sink_name: str, n: int) -> None:
        """Batch processor callback: once per batch, invalidate when the database changed."""
        if sink_name == DATABASE_SINK and n > 0:
            self.invalidate_all()


class _MissGenerations:
    """The generation current at each key's last miss; bounded, oldest forgotten first.
    Not locked: callers hold their own lock."""

    def __init__(self, bound: int) -> None:
        self._bound = bound
        self._seen: OrderedDict[CacheKey, int] = OrderedDict()

    def remember(self, key: CacheKey, generation: int) -> None:
        self._seen[key] = generation
        self._seen.move_to_end(key)
        while len(self._seen) > self._bound:
            self._seen.popitem(last=False)

    def pop(self, key: CacheKey) -> int | None:
        return self._seen.pop(key, None)


@dataclass(slots=True)
class _Entry:
    expires_at: float
    value: QualityMetrics


class InMemoryMetricsCache(MetricsCache):
    """A per-process TTL cache bounded to `max_entries` (least recently used goes first)."""

    backend = "memory"

    def __init__(self, settings: CacheSettings, clock: Clock = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._miss_generation = _MissGenerations(settings.max_entries)
        self._generation = 0
        self._hits = self._misses = self._invalidations = 0

    def get(self, window: str, agent: str | None) -> QualityMetrics | None:
        key = (window, agent)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expires_at > self._clock():
                self._entries.move_to_end(key)
                self._hits += 1
                return entry.value.model_copy(deep=True)
            if entry is not None:
                del self._entries[key]
            self._misses += 1
            self._miss_generation.remember(key, self._generation)
            return None

    def set(self, window: str, agent: str | None, value: QualityMetrics) -> None:
        ttl = self._settings.ttl_for(window)
        if ttl <= 0:
            return
        key = (window, agent)
        with self._lock:
            seen = self._miss_generation.pop(key)
            if seen is not None and seen != self._generation:
                return  # invalidated while the value was being computed: it may be stale
            self._entries[key] = _Entry(self._clock() + ttl, value.model_copy(deep=True))
            self._entries.move_to_end(key)
            while len(self._entries) > self._settings.max_entries:
                self._entries.popitem(last=False)

    def invalidate_all(self) -> None:
        with self._lock:
            self._entries.clear()
            self._generation += 1
            self._invalidations += 1

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                backend=self.backend,
                hits=self._hits,
                misses=self._misses,
                invalidations=self._invalidations,
                entries=len(self._entries),
            )


class RedisMetricsCache(MetricsCache):
    """Metrics shared by every process through Redis, with an in-memory fallback.

    Keys: `<prefix>:generation` (an integer INCRed by `invalidate_all`) and
    `<prefix>:g<generation>:<window>:<agent or *>` holding `QualityMetrics` JSON with `EX ttl`.
    Entries of old generations are never read again and expire on their own.

    A client passed in is used as configured; one built from a URL gets short socket timeouts
    and no client-side retries, because a slow cache is worse than no cache.
    """

    backend = "redis"

    def __init__(
        self,
        client_or_url: redis.Redis | str | SecretStr,
        settings: CacheSettings,
        fallback: InMemoryMetricsCache,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        socket_timeout_seconds: float = 0.25,
        retry_base_seconds: float = 1.0,
        retry_max_seconds: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if isinstance(client_or_url, redis.Redis):
            self._client = client_or_url
            self._secret: str | None = None
        else:
            url = (
                client_or_url.get_secret_value()
                if isinstance(client_or_url, SecretStr)
                else client_or_url
            )
            self._secret = urlsplit(url).password
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout_seconds,
                socket_connect_timeout=socket_timeout_seconds,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
        self._settings = settings
        self._fallback = fallback
        self._prefix = key_prefix
        self._generation_key = f"{key_prefix}:generation"
        self._retry_base = retry_base_seconds
        self._retry_max = retry_max_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._miss_generation = _MissGenerations(settings.max_entries)
        self._degraded = False
        self._failures = 0  # consecutive, drives the back-off
        self._retry_at = 0.0
        self._pending_invalidation = False
        self._hits = self._misses = self._invalidations = self._errors = 0

    # -- public API ---------------------------------------------------------------------------
    def get(self, window: str, agent: str | None) -> QualityMetrics | None:
        key = (window, agent)
        if self._use_redis():
            try:
                generation = self._current_generation()
                raw = self._client.get(self._entry_key(generation, window, agent))
            except _REDIS_FAILURES as exc:
                self._on_error(exc)
            else:
                self._on_success()
                value = self._decode(raw)
                with self._lock:
                    if value is None:
                        self._miss_generation.remember(key, generation)
                self._count(value)
                return value
        value = self._fallback.get(window, agent)
        self._count(value)
        return value

    def set(self, window: str, agent: str | None, value: QualityMetrics) -> None:
        ttl = self._settings.ttl_for(window)
        if ttl <= 0:
            return
        if self._use_redis():
            with self._lock:
                generation = self._miss_generation.pop((window, agent))
            try:
                if generation is None:
                    generation = self._current_generation()
                self._client.set(
                    self._entry_key(generation, window, agent),
                    value.model_dump_json(),
                    ex=max(1, math.ceil(ttl)),
                )
            except _REDIS_FAILURES as exc:
                self._on_error(exc)
            else:
                self._on_success()
                return
        self._fallback.set(window, agent, value)

    def invalidate_all(self) -> None:
        with self._lock:
            self._invalidations += 1
        self._fallback.invalidate_all()
        if not self._use_redis():
            with self._lock:
                self._pending_invalidation = True
            return
        try:
            self._client.incr(self._generation_key)
        except _REDIS_FAILURES as exc:
            with self._lock:
                self._pending_invalidation = True
            self._on_error(exc)
        else:
            self._on_success()

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                backend=self.backend,
                hits=self._hits,
                misses=self._misses,
                invalidations=self._invalidations,
                entries=None,
                degraded=self._degraded,
                errors=self._errors,
            )

    def close(self) -> None:
        """Release the connection pool. Safe to call twice."""
        self._client.close()

    # -- internals ----------------------------------------------------------------------------
    def _count(self, value: QualityMetrics | None) -> None:
        with self._lock:
            if value is None:
                self._misses += 1
            else:
                self._hits += 1

    def _entry_key(self, generation: int, window: str, agent: str | None) -> str:
        agent_part = "*" if agent is None else quote(agent, safe="")
        return f"{self._prefix}:g{generation}:{quote(window, safe='')}:{agent_part}"

    def _current_generation(self) -> int:
        raw = self._client.get(self._generation_key)
        return int(raw) if raw is not None else 0

    def _decode(self, raw: bytes | str | None) -> QualityMetrics | None:
        if raw is None:
            return None
        try:
            return QualityMetrics.model_validate_json(raw)
        except ValidationError:
            logger.debug("metrics cache: unreadable entry ignored (treated as a miss)")
            return None

    def _use_redis(self) -> bool:
        """False while degraded and the back-off has not elapsed; the first call after it is
        the probe. Invalidations made while Redis was away are replayed before any read, so
        no process is served an entry that predates them."""
        with self._lock:
            if not self._degraded:
                return True
            if self._clock() < self._retry_at:
                return False
            pending = self._pending_invalidation
        if pending:
            try:
                self._client.incr(self._generation_key)
            except _REDIS_FAILURES as exc:
                self._on_error(exc)
                return False
            with self._lock:
                self._pending_invalidation = False
            self._on_success()
        return True

    def _on_error(self, exc: BaseException) -> None:
        with self._lock:
            self._errors += 1
            self._failures += 1
            delay = min(self._retry_max, self._retry_base * 2 ** (self._failures - 1))
            self._retry_at = self._clock() + delay
            entering = not self._degraded
            self._degraded = True
        if entering:
            # entries in process memory are from before this outage: start the fallback clean
            self._fallback.invalidate_all()
            logger.warning(
                "metrics cache: Redis unavailable (%s: %s); using the in-memory cache, "
                "retrying Redis after a back-off",
                type(exc).__name__,
                self._scrub(str(exc)),
            )
        else:
            logger.debug("metrics cache: Redis still unavailable (%s)", type(exc).__name__)

    def _on_success(self) -> None:
        with self._lock:
            if not self._degraded:
                return
            self._degraded = False
            self._failures = 0
        logger.info("metrics cache: Redis reachable again")

    def _scrub(self, message: str) -> str:
        if self._secret:
            message = message.replace(self._secret, "***")
        return message


def create_metrics_cache(settings: CacheSettings, clock: Clock = time.monotonic) -> MetricsCache:
    """The cache `settings` ask for: Redis (with a memory fallback) or memory only."""
    memory = InMemoryMetricsCache(settings, clock=clock)
    if settings.backend == "redis":
        if settings.redis_url is None:
            raise ConfigError(
                "cache.backend is 'redis' but cache.redis_url is not set; "
                "set cache.redis_url (or REDIS_URL) or use cache.backend 'memory'"
            )
        return RedisMetricsCache(settings.redis_url, settings, fallback=memory, clock=clock)
    return memory
