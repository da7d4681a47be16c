"""The metrics cache in Redis: shared by every process, with an in-memory fallback.

The generation counter of `cache.py` is one Redis key that `invalidate_all` INCRs, which makes
invalidation O(1) and visible to every process sharing the server.

Redis is optional plumbing, never a point of failure: any Redis error or timeout switches to
the in-memory fallback with one warning (no URL, no password), and Redis is tried again
after a back-off. Callers never see a Redis exception. Without a fallback (E2I's
`cache.fallback_to_memory: false`, when processes must never disagree) every read while Redis
is away is a miss, i.e. metrics are computed from the database each time.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import redis
from pydantic import SecretStr, ValidationError
from redis.backoff import NoBackoff
from redis.retry import Retry

from .cache import CacheStats, Clock, InMemoryMetricsCache, MetricsCache, MissGenerations
from .config import CacheSettings
from .models import QualityMetrics

__all__ = ["DEFAULT_KEY_PREFIX", "RedisMetricsCache"]

logger = logging.getLogger(__name__)

# what a Redis call may raise: server/transport errors, and a generation key that is not an int
_REDIS_FAILURES = (redis.RedisError, OSError, ValueError)
DEFAULT_KEY_PREFIX = "e2i:obs:metrics"


class RedisMetricsCache(MetricsCache):
    """Metrics shared by every process through Redis, with an in-memory fallback.

    Keys: `<prefix>:generation` (an integer INCRed by `invalidate_all`) and
    `<prefix>:g<generation>:<window>:<agent or *>` holding `QualityMetrics` JSON with `EX ttl`.
    Entries of old generations are never read again and expire on their own.

    A client passed in is used as configured; one built from a URL gets short socket timeouts
    and no client-side retries, because a slow cache is worse than no cache. `db` replaces the
    database number of the URL.
    """

    backend = "redis"

    def __init__(
        self,
        client_or_url: redis.Redis | str | SecretStr,
        settings: CacheSettings,
        fallback: InMemoryMetricsCache | None,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        socket_timeout_seconds: float = 0.25,
        connect_timeout_seconds: float | None = None,
        db: int | None = None,
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
                url if db is None else _with_db(url, db),
                socket_timeout=socket_timeout_seconds,
                socket_connect_timeout=connect_timeout_seconds or socket_timeout_seconds,
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
        self._miss_generation = MissGenerations(settings.max_entries)
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
        value = self._fallback.get(window, agent) if self._fallback is not None else None
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
        if self._fallback is not None:
            self._fallback.set(window, agent, value)

    def invalidate_all(self) -> None:
        with self._lock:
            self._invalidations += 1
        if self._fallback is not None:
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

    def probe(self) -> str | None:
        """PING Redis now (for `health()`): a failure switches to the in-memory fallback like
        any other Redis error and is returned without URL or password. A success does not
        end a degraded spell by itself: the next cache call does, after replaying pending
        invalidations (so no stale entry is served)."""
        try:
            self._client.ping()
        except _REDIS_FAILURES as exc:
            self._on_error(exc)
            return f"{type(exc).__name__}: {self._scrub(str(exc))}"
        return None

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
            if self._fallback is not None:
                self._fallback.invalidate_all()
            logger.warning(
                "metrics cache: Redis unavailable (%s: %s); %s, retrying Redis after a back-off",
                type(exc).__name__,
                self._scrub(str(exc)),
                "using the in-memory cache"
                if self._fallback is not None
                else "no cache meanwhile (cache.fallback_to_memory is off)",
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


def _with_db(url: str, db: int) -> str:
    """`url` selecting database `db` (the path of redis:// URLs, `?db=` of unix:// ones)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"] + [("db", str(db))]
        return urlunsplit(parts._replace(query=urlencode(query)))
    return urlunsplit(parts._replace(path=f"/{db}"))
