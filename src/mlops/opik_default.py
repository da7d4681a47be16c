"""The process-default `OpikConnector`, built lazily from configuration.

    repository  = create_span_repository(config)          (SQLite / Postgres / Supabase)
    sinks       = [DatabaseSink(repository)] + [OpikSink(...)] when opik.enabled
                  + [OtlpSink(...)] when an OTLP endpoint is configured (otlp.active)
    cache       = create_metrics_cache(config.cache)           (memory, or Redis)
    processor   = BatchProcessor(sinks, config.batching, config.storage.spool_dir,
                                 sampler=Sampler(config.sampling),
                                 span_policy=SpanPolicy(config.spans),   (redaction, limits)
                                 on_batch_written=cache.on_batch_written,
                                 on_batch_undelivered=OpikFallbackLog(...) when
                                     circuit_breaker.fallback_log_to_file,
                                 pricer=Pricer(config.pricing))   (prices on the worker)
    connector   = OpikConnector(processor, opik_sink=..., repository=..., registry=agent registry,
                                metrics_service=MetricsService(repository, cache))

Nothing happens at import: the first `get_opik_connector()` builds it (thread-safe, once);
`reset_opik_connector()` closes it (tests, or a forked worker that wants its own). Every class
stays usable without this module: pass your own processor, sink and repository.

E2I's forms work as its modules call them: `get_opik_connector(config=None, force_new=False)`
with `config` an `OpikConfig` or an `ObservabilityConfig` (see `opik_config.resolve_config`),
and `OpikConnector()` / `OpikConnector(config=..., circuit_breaker_config=...)`, which return
this same default. `force_new=True` builds a new default from `config` and closes the old one
(its queued spans are delivered first).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from src.agents.ml_foundation.observability_connector.config import ObservabilityConfig

if TYPE_CHECKING:
    from .opik_connector import OpikConnector

__all__ = ["build_opik_connector", "get_opik_connector", "reset_opik_connector"]

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_default: OpikConnector | None = None


def build_opik_connector(config: ObservabilityConfig) -> OpikConnector:
    """Wire repository -> sinks -> batch processor -> connector for `config`."""
    from src.agents.ml_foundation.observability_connector.batch_processor import BatchProcessor
    from src.agents.ml_foundation.observability_connector.cache import create_metrics_cache
    from src.agents.ml_foundation.observability_connector.db_sink import DatabaseSink
    from src.agents.ml_foundation.observability_connector.nodes.metrics_aggregator import (
        MetricsService,
    )
    from src.agents.ml_foundation.observability_connector.otlp.join import set_otel_join
    from src.agents.ml_foundation.observability_connector.pricing import Pricer
    from src.agents.ml_foundation.observability_connector.registry import load_agent_registry
    from src.agents.ml_foundation.observability_connector.sampling import Sampler
    from src.agents.ml_foundation.observability_connector.span_policy import SpanPolicy
    from src.repositories.observability_span import create_span_repository

    from .circuit_breaker import CircuitBreaker
    from .opik_connector import OpikConnector
    from .opik_fallback_log import OpikFallbackLog
    from .opik_sink import OpikSink, build_opik_client

    registry = load_agent_registry()
    repository = create_span_repository(config)
    # No setup() here: the database sink runs it on its own thread (`prepare`), so building
    # the connector never waits on a database; spans queue or spool meanwhile.
    db_sink = DatabaseSink(
        repository,
        timeout=config.storage.timeout_seconds,
        insert_batch_size=config.storage.insert_batch_size,
    )
    sinks: list[object] = [db_sink]
    opik_sink = None
    fallback_log = None
    if config.opik.enabled:
        breaker = CircuitBreaker.from_settings(config.circuit_breaker)
        client = build_opik_client(config.opik)
        opik_sink = OpikSink(client, config.opik.project_name, breaker, capture=config.capture)
        sinks.append(opik_sink)
        if config.circuit_breaker.fallback_log_to_file:
            fallback_log = OpikFallbackLog(config.circuit_breaker.fallback_log_path, opik_sink.name)
    otlp_sink = None
    if config.otlp.active:
        from src.agents.ml_foundation.observability_connector.otlp.sink import (
            OtlpSink,
            connector_version,
        )

        breaker = CircuitBreaker.from_settings(config.circuit_breaker)
        otlp_sink = OtlpSink(config.otlp, breaker, service_version=connector_version())
        sinks.append(otlp_sink)
    set_otel_join(config.otlp.join_otel_trace)
    cache = create_metrics_cache(config.cache)
    processor = BatchProcessor(
        sinks,  # type: ignore[arg-type]
        config.batching,
        config.storage.spool_dir,
        sampler=Sampler(config.sampling),
        span_policy=SpanPolicy(config.spans),
        on_batch_written=cache.on_batch_written,
        on_batch_undelivered=fallback_log,
        pricer=Pricer(config.pricing) if config.pricing.enabled else None,
    )

    def release() -> None:
        if opik_sink is not None:
            opik_sink.close()
        if otlp_sink is not None:
            otlp_sink.close()
        db_sink.close()
        close_cache = getattr(cache, "close", None)
        if close_cache is not None:
            close_cache()

    return OpikConnector(
        processor,
        opik_sink=opik_sink,
        repository=repository,
        config=config,
        registry=registry,
        metrics_service=MetricsService(repository, cache, ready=db_sink.wait_ready),
        on_close=release,
    )


def get_opik_connector(
    config: Any = None, force_new: bool = False, *, circuit_breaker_config: Any = None
) -> OpikConnector:
    """The process default, built on first call from `config` (default: `load_config()`).

    Later calls return the same connector and ignore their arguments, unless `force_new` or
    the default was closed (then a new one is built).
    """
    global _default
    connector = _default
    if connector is not None and connector.is_enabled and not force_new:
        return connector
    from .opik_config import resolve_config

    old = None
    with _lock:
        if _default is None or not _default.is_enabled or force_new:
            old = _default
            _default = build_opik_connector(resolve_config(config, circuit_breaker_config))
        connector = _default
    if old is not None:
        old.close()
    return connector


def reset_opik_connector(timeout: float | None = None) -> None:
    """Close and forget the process default (the next `get_opik_connector()` builds anew)."""
    global _default
    with _lock:
        connector, _default = _default, None
    if connector is not None:
        connector.close(timeout)
