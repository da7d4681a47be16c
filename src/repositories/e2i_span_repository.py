"""`ObservabilitySpanRepository`: the repository API E2I's modules call, over our `SpanRepository`.

E2I constructs it as `ObservabilitySpanRepository(supabase_client=None)` and awaits the methods
below with E2I's names, keywords and return shapes (a dict from `insert_spans_batch`,
`get_trace_summary` and `delete_old_spans`). It is a thin adapter: every query runs in one of our
backends (`span_store.SpanRepository`), which filter and aggregate in SQL. Differences from the
E2I original, on purpose:

- No client means the configured default backend (`storage.backend`, embedded SQLite unless
  configured otherwise), not "do nothing": spans are always stored somewhere.
- A storage failure raises `RepositoryError` (a bad argument, `ValueError`), instead of being
  logged and answered with an empty result that looks like "no spans".
- Trace ids may be dashed UUIDs, `.hex`, W3C hex or free-form strings (`ids.normalize_trace_id`),
  mapped the way the connector maps them when it records, so a trace is found by the id E2I
  gave it.
- Token totals count `llm` spans only, so a parent span never double-counts its children.
- The schema is applied (idempotently) before the first call, since E2I never calls `setup()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from supabase import AsyncClient, Client

from src.agents.ml_foundation.observability_connector.config import ObservabilityConfig
from src.agents.ml_foundation.observability_connector.ids import normalize_trace_id
from src.agents.ml_foundation.observability_connector.models import (
    LatencyStats,
    ObservabilitySpan,
    QualityMetrics,
    SpanStatus,
)
from src.agents.ml_foundation.observability_connector.nodes.metrics_aggregator import (
    MetricsService,
)
from src.agents.ml_foundation.observability_connector.registry import (
    AgentRegistry,
    load_agent_registry,
)
from src.repositories._arguments import Clock, check_int, current_time, utc_now
from src.repositories.factory import create_span_repository
from src.repositories.span_store import SpanRepository
from src.repositories.supabase_repository import SupabaseSpanRepository

__all__ = ["LATENCY_WINDOW", "ObservabilitySpanRepository"]

LATENCY_WINDOW = "24h"
"""`get_latency_stats` covers the last 24 hours, like E2I's `v_agent_latency_summary` view."""
_STATUS_ALIASES = {"success": SpanStatus.COMPLETED.value}
"""E2I's name for a span that finished without error."""


class ObservabilitySpanRepository:
    """E2I's span repository API. Example (inside E2I, unchanged):

    repo = ObservabilitySpanRepository()                   # configured default backend
    repo = ObservabilitySpanRepository(supabase_client=get_supabase_client())
    await repo.insert_spans_batch(spans)                   # {"success": True, ...}
    summary = await repo.get_trace_summary(str(query_id))  # dashed UUID accepted
    """

    def __init__(
        self,
        supabase_client: AsyncClient | Client | None = None,
        *,
        store: SpanRepository | None = None,
        config: ObservabilityConfig | None = None,
        clock: Clock | None = None,
        registry: AgentRegistry | None = None,
    ) -> None:
        """`supabase_client` (async or sync supabase client) selects the Supabase backend over
        it; else `store`, else the backend `config` (default `load_config()`) names. `clock`
        anchors windows and the retention cutoff; `registry` maps tier names to numbers."""
        if supabase_client is not None and store is not None:
            raise ValueError("give supabase_client or store, not both")
        self._clock = clock or utc_now
        if supabase_client is not None:
            store = _supabase_store(supabase_client, self._clock)
        elif store is None:
            store = create_span_repository(config, clock=self._clock)
        self.store: SpanRepository = store
        """The backend every call goes to (what the pipeline and the CLI use directly)."""
        self._registry = registry
        self._ready = False

    def __repr__(self) -> str:
        return f"ObservabilitySpanRepository(store={self.store!r})"

    async def setup(self) -> None:
        """Apply (or, on Supabase, check) the schema; runs by itself before the first call."""
        await self.store.setup()
        self._ready = True

    async def _store(self) -> SpanRepository:
        if not self._ready:  # idempotent, so two first calls racing here are harmless
            await self.setup()
        return self.store

    # -- writes -------------------------------------------------------------------------------
    async def insert_span(self, span: ObservabilitySpan) -> ObservabilitySpan:
        """Store one span; returns it (also when it was already stored: re-sending is safe)."""
        await (await self._store()).insert_span(_check_span(span, "span"))
        return span

    async def insert_spans_batch(self, spans: Sequence[ObservabilitySpan]) -> dict[str, Any]:
        """Store many spans: `{"success", "inserted_count", "duplicate_count", "failed_count",
        "span_ids"}`; `inserted_count` counts new spans, `span_ids` lists every span now stored
        (`failed_count` is always 0: a failure raises `RepositoryError`)."""
        if isinstance(spans, str | bytes) or not isinstance(spans, Sequence):
            kind = type(spans).__name__
            raise TypeError(f"spans must be a list of ObservabilitySpan, got {kind}")
        checked = [_check_span(span, f"spans[{i}]") for i, span in enumerate(spans)]
        inserted = await (await self._store()).insert_spans_batch(checked) if checked else 0
        return {
            "success": True,
            "inserted_count": inserted,
            "duplicate_count": len(checked) - inserted,
            "failed_count": 0,
            "span_ids": [span.span_id for span in checked],
        }

    async def delete_old_spans(
        self, retention_days: int = 30, batch_size: int = 1000
    ) -> dict[str, Any]:
        """Delete every span that started more than `retention_days` ago, `batch_size` rows per
        transaction: `{"deleted_count", "cutoff_date"}` (ISO-8601 UTC)."""
        check_int("retention_days", retention_days, 0)
        check_int("batch_size", batch_size, 1)
        cutoff = current_time(self._clock) - timedelta(days=retention_days)
        deleted = await (await self._store()).delete_old_spans(retention_days, batch_size)
        return {"deleted_count": deleted, "cutoff_date": cutoff.isoformat()}

    # -- reads --------------------------------------------------------------------------------
    async def get_spans_by_time_window(
        self,
        window: str = "24h",
        agent_name: str | None = None,
        status: SpanStatus | str | None = None,
        limit: int = 1000,
    ) -> list[ObservabilitySpan]:
        """Spans started inside `window` (15m, 1h, 24h, 7d ...), newest first; `status` is
        started, completed (E2I: success) or error."""
        if isinstance(status, str):
            status = _STATUS_ALIASES.get(status, status)
        store = await self._store()
        return await store.get_spans_by_time_window(window, agent_name, limit, status=status)

    async def get_spans_by_trace_id(self, trace_id: str) -> list[ObservabilitySpan]:
        """Every span of one trace, oldest first."""
        return await (await self._store()).get_spans_by_trace(normalize_trace_id(trace_id))

    async def get_trace_summary(self, trace_id: str) -> dict[str, Any]:
        """`{"trace_id" (32 hex), "span_count", "agent_count", "error_count",
        "total_duration_ms", "total_tokens", "input_tokens", "output_tokens", "llm_calls",
        "start_time", "end_time"}`, aggregated by the backend; zeros for an unknown trace."""
        store = await self._store()
        return (await store.get_trace_summary(normalize_trace_id(trace_id))).model_dump()

    async def get_spans_by_agent(
        self, agent_name: str, hours: int = 24, limit: int = 500
    ) -> list[ObservabilitySpan]:
        """One agent's spans of the last `hours`, newest first."""
        if agent_name is None:
            raise ValueError("agent_name must be a non-empty string, got None")
        window = _hours_window(hours)
        return await (await self._store()).get_spans_by_time_window(window, agent_name, limit)

    async def get_spans_by_tier(
        self, agent_tier: int | str, hours: int = 24, limit: int = 1000
    ) -> list[ObservabilitySpan]:
        """Spans of every agent in one tier over the last `hours`, newest first. `agent_tier` is
        a tier name from `config/agent_config.yaml` (e.g. "coordination") or its number 0-5."""
        tier = self._tier_number(agent_tier)
        window = _hours_window(hours)
        store = await self._store()
        return await store.get_spans_by_time_window(window, None, limit, agent_tier=tier)

    async def get_error_spans(self, hours: int = 24, limit: int = 100) -> list[ObservabilitySpan]:
        """Spans with status error over the last `hours`, newest first."""
        window = _hours_window(hours)
        store = await self._store()
        return await store.get_spans_by_time_window(window, None, limit, status=SpanStatus.ERROR)

    async def get_latency_stats(self, agent_name: str | None = None) -> list[LatencyStats]:
        """Per-agent percentiles, errors and llm tokens over the last 24 hours."""
        return await (await self._store()).get_latency_stats(LATENCY_WINDOW, agent_name)

    async def get_quality_metrics(self, time_window: str = "24h") -> QualityMetrics:
        """Window totals and per-agent statistics (the metrics service's numbers, uncached)."""
        service = MetricsService(await self._store(), clock=self._clock)
        return await service.get_quality_metrics(time_window)

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> ObservabilitySpanRepository:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _tier_number(self, agent_tier: int | str) -> int:
        if isinstance(agent_tier, int) and not isinstance(agent_tier, bool):
            if 0 <= agent_tier <= 5:
                return agent_tier
        elif isinstance(agent_tier, str):
            if self._registry is None:
                self._registry = load_agent_registry()
            numbers = {name: number for number, name in self._registry.tier_names.items()}
            if agent_tier in numbers:
                return numbers[agent_tier]
            names = ", ".join(sorted(numbers)) or "none configured"
            raise ValueError(
                f"agent_tier {agent_tier!r} is not a tier of the agent registry "
                f"(config/agent_config.yaml); accepted: {names}, or a number 0-5"
            )
        raise ValueError(f"agent_tier must be a tier name or an integer 0-5, got {agent_tier!r}")


def _check_span(span: object, field: str) -> ObservabilitySpan:
    if not isinstance(span, ObservabilitySpan):
        raise TypeError(f"{field} must be an ObservabilitySpan, got {type(span).__name__}")
    return span


def _hours_window(hours: int) -> str:
    return f"{check_int('hours', hours, 1)}h"


def _supabase_store(client: AsyncClient | Client, clock: Clock) -> SupabaseSpanRepository:
    """The Supabase backend over the caller's client (which stays the caller's to close)."""
    if not isinstance(client, AsyncClient | Client):
        raise TypeError(
            "supabase_client must be a supabase Client or AsyncClient "
            f"(create_client / acreate_client), got {type(client).__name__}"
        )
    url = str(client.supabase_url).rstrip("/")
    return SupabaseSpanRepository(url, client.supabase_key, clock=clock, client=client)
