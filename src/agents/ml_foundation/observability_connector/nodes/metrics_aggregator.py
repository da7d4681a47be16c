"""Window metrics for graph state: `MetricsService` and the metrics_aggregator node.

The service is the one place metrics come from (this node, the CLI, the agent facade): it
validates the window before anything else, asks the repository for per-agent statistics, for
per-agent LLM cost and for the window's own summary (the seed's fields: a p95 over all spans
cannot be derived from per-agent figures), all aggregated in SQL by the backend, never by
loading spans, and asked concurrently; rolls them up with `QualityMetrics.from_agent_stats`, and
keeps the result in the metrics cache. The node only translates between graph state and the
service, and turns failures into `errors` messages, because a bad window from a parent graph
must not crash that graph.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from src.repositories.span_store import RepositoryError, SpanRepository

from ..cache import MetricsCache
from ..cost_models import CostSummary
from ..models import LatencyStats, QualityMetrics, utc_now
from ..time_window import parse_time_window

__all__ = ["DEFAULT_WINDOW", "MetricsService", "make_metrics_aggregator_node"]

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = "24h"
WallClock = Callable[[], datetime]


def _check_agent_name(agent_name: object) -> str | None:
    if agent_name is not None and (not isinstance(agent_name, str) or not agent_name.strip()):
        raise ValueError(f"agent_name must be a non-empty string or None, got {agent_name!r}")
    return agent_name


def _raise_first(*outcomes: object) -> None:
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


class MetricsService:
    """Quality metrics over a time window, through an optional cache.

    `clock` returns timezone-aware "now" (the window's end); give it the repository's clock so
    `window_start`/`window_end` describe exactly the spans the repository counted.
    The cache is called inline: in memory it costs microseconds, and the Redis cache has short
    socket timeouts and backs off after a failure, so it cannot stall the event loop for long.
    """

    def __init__(
        self,
        repository: SpanRepository,
        cache: MetricsCache | None = None,
        clock: WallClock | None = None,
        *,
        ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`ready` is awaited before each repository query: the default connector passes the
        database sink's `wait_ready`, so a query made right after start-up waits for the
        schema setup that runs in the background instead of finding no table."""
        self.repository = repository
        self.cache = cache
        self._clock = clock or utc_now
        self._ready = ready

    async def get_quality_metrics(
        self, window: str = DEFAULT_WINDOW, agent_name: str | None = None, *, exact: bool = False
    ) -> QualityMetrics:
        """Totals and per-agent statistics; ValueError for a bad window or agent name.

        By default the repository reads its per-minute rollups (counts, tokens and cost exact;
        percentiles within 1%); `exact=True` computes everything from the raw spans, past
        the cache (neither read nor written, so a cached rollup answer never stands in)."""
        length = parse_time_window(window)
        _check_agent_name(agent_name)
        if not isinstance(exact, bool):
            raise ValueError(f"exact must be True or False, got {exact!r}")
        if self.cache is not None and not exact:
            cached = self.cache.get(window, agent_name)
            if cached is not None:
                return cached
        end = self._clock()
        if end.tzinfo is None or end.utcoffset() is None:
            raise ValueError(f"the metrics clock must return an aware datetime, got {end!r}")
        raw = {"exact": True} if exact else {}  # a store without rollups takes no keyword
        if self._ready is not None:
            await self._ready()
        one_read = None if exact else getattr(self.repository, "get_window_metrics", None)
        if one_read is not None:  # stats and summary from one rollup read
            both, costs = await asyncio.gather(
                one_read(window, agent_name),
                self._cost_stats(window, agent_name, raw),
                return_exceptions=True,  # all settle: no orphaned failure logged later
            )
            _raise_first(both, costs)
            stats, summary = both
        else:
            stats, summary, costs = await asyncio.gather(
                self.repository.get_latency_stats(window, agent_name, **raw),
                self.repository.get_window_summary(window, agent_name, **raw),
                self._cost_stats(window, agent_name, raw),
                return_exceptions=True,
            )
            _raise_first(stats, summary, costs)
        metrics = QualityMetrics.from_agent_stats(
            window, end - length, end, stats, agent_name, summary, costs=costs
        )
        if self.cache is not None and not exact:
            self.cache.set(window, agent_name, metrics)
        return metrics

    async def _cost_stats(
        self, window: str, agent_name: str | None, raw: dict[str, bool]
    ) -> list[CostSummary] | None:
        """The repository's cost rows (from raw spans with `raw` = {"exact": True}); None for
        a store without cost statistics."""
        cost_stats = getattr(self.repository, "get_cost_stats", None)
        return None if cost_stats is None else await cost_stats(window, agent_name, **raw)

    async def get_latency_stats(
        self, window: str = DEFAULT_WINDOW, agent_name: str | None = None, *, exact: bool = False
    ) -> list[LatencyStats]:
        """Per-agent statistics sorted by agent (shares the cache with get_quality_metrics)."""
        metrics = await self.get_quality_metrics(window, agent_name, exact=exact)
        return [metrics.agents[name] for name in sorted(metrics.agents)]


class QualityMetricsSource(Protocol):
    def get_quality_metrics(
        self, window: str = ..., agent_name: str | None = ..., *, exact: bool = ...
    ) -> Awaitable[QualityMetrics]: ...


def make_metrics_aggregator_node(
    service: QualityMetricsSource,
) -> Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]:
    """The metrics_aggregator node: `time_window` (24h when absent; an empty or None window is
    reported, never silently widened) and `agent_name` in, `quality_metrics` out, or one
    message in `errors`."""

    async def metrics_aggregator(state: Mapping[str, Any]) -> dict[str, Any]:
        window = state.get("time_window", DEFAULT_WINDOW)  # "" or None is an error
        agent_name = state.get("agent_name")
        try:
            exact = state.get("exact_metrics", False)
            if exact:
                metrics = await service.get_quality_metrics(window, agent_name, exact=exact)
            else:  # a caller's own metrics service may predate `exact`
                metrics = await service.get_quality_metrics(window, agent_name)
        except ValueError as exc:  # bad window / agent name / configuration
            return {"errors": [f"metrics_aggregator: {exc}"]}
        except (RepositoryError, OSError, TimeoutError) as exc:
            logger.warning("metrics_aggregator: metrics unavailable: %s", type(exc).__name__)
            return {
                "errors": [f"metrics_aggregator: metrics unavailable ({type(exc).__name__}: {exc})"]
            }
        return {"quality_metrics": metrics}

    return metrics_aggregator
