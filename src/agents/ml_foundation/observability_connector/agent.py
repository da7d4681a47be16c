"""`ObservabilityConnectorAgent`: the one object other agents hold.

    async with ObservabilityConnectorAgent() as obs:          # the process-default connector
        handler = obs.callback_handler("gap_analyzer")        # zero-code LLM/node/tool spans
        await graph.ainvoke(inputs, config={"callbacks": [handler]})
        state = await obs.graph.ainvoke({"operation": "query_metrics", "time_window": "1h"})
        obs.health()                                          # queue, spool, breaker, cache

It wires nothing itself: `build_opik_connector(config)` builds repository -> sinks -> batch
processor -> connector (with the metrics cache invalidated per written batch); this class adds
the compiled graph, the callback-handler factory and the self-monitor on top.

Built with no arguments (as E2I's factories build every agent), it adopts the process-default
connector (`get_opik_connector()`), so E2I's other callers and this agent feed one pipeline;
closing it then only flushes, since the default belongs to the process. It also makes E2I's
request contexts (`create_observability_context`, `create_child_context`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from src.mlops.opik_connector import OpikConnector
from src.mlops.opik_default import build_opik_connector, get_opik_connector

from .callback import ObservabilityCallbackHandler
from .config import ObservabilityConfig
from .graph import build_observability_graph
from .models import QualityMetrics
from .nodes.context_manager import InvalidContextCounter
from .observability_context import create_child_context, create_observability_context
from .self_monitor import HealthSnapshot, SelfMonitor
from .store_probe import StoreProbe


class ObservabilityConnectorAgent:
    """Config, repository, connector, batch processor, cache and graph in one place."""

    def __init__(
        self,
        config: ObservabilityConfig | None = None,
        *,
        connector: OpikConnector | None = None,
    ) -> None:
        """Build everything from `config`, or adopt `connector`; with neither, share the
        process-default connector (`get_opik_connector()`), which `close()` then only flushes."""
        self._owns_connector = config is not None or connector is not None
        if connector is None:
            connector = build_opik_connector(config) if config is not None else get_opik_connector()
        self.connector = connector
        # `connector.config` is E2I's OpikConfig view; `settings` is the full configuration.
        self.config = config if config is not None else connector.settings
        self.processor = connector.processor
        self.repository = connector.repository
        self.metrics_service = connector.metrics_service
        self.cache = connector.metrics_cache
        self.invalid_traceparents = InvalidContextCounter()
        self._store_probe = (
            StoreProbe(self.repository, _store_timeout(self.config))
            if self.repository is not None
            else None
        )
        self.monitor = SelfMonitor(
            self.processor,  # type: ignore[arg-type]
            queue_capacity=self.config.batching.max_queue_size,
            circuit_state=lambda: self.connector.circuit_state,
            cache=self.cache,
            context_counter=self.invalid_traceparents,
            store_probe=self._store_probe,
        )
        self._graph: Any = None

    @property
    def graph(self) -> Any:
        """The compiled observability graph (built on first use), bound to this connector."""
        if self._graph is None:
            self._graph = build_observability_graph(
                self.connector,
                self.metrics_service,
                context_counter=self.invalid_traceparents,
            )
        return self._graph

    def callback_handler(
        self, agent_name: str | None = None, **options: Any
    ) -> ObservabilityCallbackHandler:
        """A LangChain callback handler that submits to this connector."""
        options.setdefault("capture_prompts", self.config.capture.prompts)
        options.setdefault("max_chars", self.config.capture.max_chars)
        return ObservabilityCallbackHandler(agent_name, connector=self.connector, **options)

    async def get_quality_metrics(
        self, window: str = "24h", agent_name: str | None = None, *, exact: bool = False
    ) -> QualityMetrics:
        """Per-agent latency percentiles, errors and tokens over `window` (cached; from
        rollups, percentiles within 1%; `exact=True`: from the raw spans, not cached)."""
        if self.metrics_service is None:
            raise RuntimeError("this connector was built without a metrics service")
        if exact:
            return await self.metrics_service.get_quality_metrics(window, agent_name, exact=True)
        return await self.metrics_service.get_quality_metrics(window, agent_name)

    def create_observability_context(
        self,
        request_id: str,
        experiment_id: str | None = None,
        user_id: str | None = None,
        sample_rate: float = 1.0,
    ) -> dict[str, Any]:
        """A new trace for one request (E2I's context dict; see `observability_context`)."""
        return create_observability_context(request_id, experiment_id, user_id, sample_rate)

    def create_child_context(
        self, parent_context: dict[str, Any], operation_name: str | None = None
    ) -> dict[str, Any]:
        """The same trace, a new span id, `parent_span_id` = the parent's span id."""
        return create_child_context(parent_context, operation_name)

    def health(self) -> HealthSnapshot:
        """Queue, counters, spool, breaker, cache, and whether the span store and Redis answer
        now (one read and one PING, each bounded by its timeout: not for a hot loop)."""
        return self.monitor.health()

    def flush(self, timeout: float | None = None) -> bool:
        """True once every span submitted so far is in every sink or durably spooled; False
        on timeout or when any was dropped (details: `connector.last_flush`)."""
        return self.connector.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush, stop the worker (unsent spans go to the spool), release connections; for the
        shared process-default connector, only flush."""
        if self._store_probe is not None:
            self._store_probe.close()
        if not self._owns_connector:
            return self.connector.flush(timeout)
        return self.connector.close(timeout)

    async def aclose(self, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self.close, timeout)

    def __enter__(self) -> ObservabilityConnectorAgent:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> ObservabilityConnectorAgent:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _store_timeout(config: ObservabilityConfig) -> float:
    """The longest a store call may take: the call's own timeout, or the PostgreSQL pool's wait
    for a connection if longer (the probe then reads the pool's reason, not its own timeout)."""
    storage = config.storage
    return max(storage.timeout_seconds, getattr(storage, "pool_timeout_seconds", 0.0))
