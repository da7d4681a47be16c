"""Span storage in a Supabase project, through the `supabase` client over PostgREST.

PostgREST cannot run DDL: the schema comes from `database/ml/mlops_tables.sql`, applied with
`e2i-obs db init` on the project's direct Postgres connection or in the Supabase SQL editor.
Heavy or destructive work runs in SQL functions called with `rpc` (latency percentiles,
retention delete), because PostgREST 13 no longer accepts `delete().limit()`. Retention is one
`rpc` per batch, so each request is a short transaction and a large backlog never runs into
`statement_timeout`.

Inserts are one upsert per chunk with `resolution=ignore-duplicates` on (trace_id, span_id)
and `return=minimal`; `count=exact` makes PostgREST report the rows really inserted in
`Content-Range: */<n>` (the count of its `INSERT ... ON CONFLICT DO NOTHING RETURNING`), so
"how many were new" costs no extra request and no response body.

The client's own retries are off (they sleep up to 7 s on a GET and never retry a POST): the
emission pipeline retries, spools and replays. httpx clients belong to one event loop, so each
loop that uses the repository gets its own client. A caller's own client may be the async
`AsyncClient` or the synchronous `Client` (E2I's `get_supabase_client()`); a synchronous one is
driven from a worker thread, so its blocking requests never hold up the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import httpx
from postgrest.exceptions import APIError
from pydantic import SecretStr
from supabase import AsyncClient, AsyncClientOptions, Client, acreate_client

from src.agents.ml_foundation.observability_connector.cost_models import (
    CostBreakdownRow,
    CostSummary,
)
from src.agents.ml_foundation.observability_connector.models import (
    LatencyStats,
    ObservabilitySpan,
    SpanStatus,
    TraceSummary,
    WindowSummary,
)
from src.agents.ml_foundation.observability_connector.redaction import mask_credentials
from src.repositories._arguments import (
    Clock,
    Window,
    check_agent_name,
    check_agent_tier,
    check_aware,
    check_cost_by,
    check_int,
    check_limit,
    check_retention,
    check_rollup_retention,
    check_seconds,
    check_status,
    check_trace_id,
    current_time,
    resolve_window,
    utc_now,
)
from src.repositories._rows import (
    BREAKDOWN_COLUMNS,
    COST_COLUMNS,
    SPAN_COLUMNS,
    STATS_COLUMNS,
    SUMMARY_COLUMNS,
    WINDOW_SUMMARY_COLUMNS,
    breakdown_from_row,
    cost_from_row,
    span_from_row,
    span_to_json_row,
    stats_from_row,
    summary_from_row,
    window_summary_from_row,
)
from src.repositories.cost_rollups import (
    COST_BOUND_NAMES,
    cost_bounds,
    cost_stats_from_rollups,
)
from src.repositories.rollups import (
    BOUND_NAMES,
    DEFAULT_ROLLUP_RETENTION_DAYS,
    FRAGMENT_COLUMNS,
    WindowMetricsFromRollups,
    latency_stats_from_rollups,
    split_window,
    window_summary_from_rollups,
)
from src.repositories.span_store import TABLE_NAME, RepositoryError
from src.repositories.supabase_errors import (
    SupabaseConnectionError,
    SupabaseRequestError,
    SupabaseSchemaError,
    SupabaseTimeoutError,
    error_from_api_error,
    raise_for_status,
    scrub,
)

__all__ = [
    "MAX_ROWS_PER_REQUEST",
    "SupabaseConnectionError",
    "SupabaseRequestError",
    "SupabaseSchemaError",
    "SupabaseSpanRepository",
    "SupabaseTimeoutError",
]

MAX_ROWS_PER_REQUEST = 500
"""Rows per upsert request: keeps one request body well under gateway limits."""
CONFLICT_KEY = "trace_id,span_id"
SELECT_COLUMNS = ",".join(SPAN_COLUMNS)
STATS_FUNCTION = "ml_agent_latency_stats"
RETENTION_FUNCTION = "ml_delete_old_spans"
SUMMARY_FUNCTION = "ml_trace_summary"
WINDOW_SUMMARY_FUNCTION = "ml_window_summary"
COUNT_OLD_FUNCTION = "ml_count_old_spans"
COST_FUNCTION = "ml_agent_cost_stats"
BREAKDOWN_FUNCTION = "ml_cost_breakdown"
ROLLUP_WINDOW_FUNCTION = "ml_rollup_window"
REBUILD_FUNCTION = "ml_rebuild_rollups"
ROLLUP_RETENTION_FUNCTION = "ml_delete_old_rollups"
_BOUND_ARGS = tuple(f"p_{name}" for name in BOUND_NAMES)
ROLLUP_COSTS_FUNCTION = "ml_rollup_costs"
ROLLUP_COST_COLUMNS = ("agent_name", "llm_model", "cost_usd", "priced_calls", "llm_calls")
ROLLUP_COST_COLUMNS += ("traces", "zero_count", "low", "high", "packed")


class SupabaseSpanRepository(WindowMetricsFromRollups):
    """`SpanRepository` over a Supabase project's REST API (service-role key)."""

    def __init__(
        self,
        url: str,
        key: str | SecretStr,
        *,
        clock: Clock | None = None,
        timeout: float = 10.0,
        client: AsyncClient | Client | None = None,
        rows_per_request: int = MAX_ROWS_PER_REQUEST,
    ) -> None:
        """`clock` returns timezone-aware "now" for windows; `client` replaces the clients
        this repository would create (then it is the caller's to close)."""
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ValueError(
                "supabase_url must be the project URL (https://<ref>.supabase.co), "
                f"got {mask_credentials(url) if isinstance(url, str) else url!r}"
            )
        secret = key if isinstance(key, SecretStr) else SecretStr(key or "")
        if not secret.get_secret_value():
            raise ValueError("supabase_key must be the project's service-role key; it is empty")
        self._url, self._key = url, secret
        self._clock = clock or utc_now
        self._timeout = check_seconds("timeout", timeout)
        self._injected = client
        self._rows_per_request = check_int("rows_per_request", rows_per_request, 1)
        self._clients: dict[asyncio.AbstractEventLoop, tuple[AsyncClient, httpx.AsyncClient]] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"SupabaseSpanRepository(url={self._url!r}, key=SecretStr('**********'))"

    # -- the protocol -----------------------------------------------------------------------
    async def setup(self) -> None:
        """Check that the project answers and the schema was applied (no DDL over REST)."""
        await self._run(
            "setup: read the spans table",
            lambda c: c.table(TABLE_NAME).select("span_id").limit(1).execute(),
        )
        await self._run(
            f"setup: call {STATS_FUNCTION}",
            lambda c: c.rpc(STATS_FUNCTION, self._stats_args("1m", None)).execute(),
        )

    async def insert_span(self, span: ObservabilitySpan) -> bool:
        return await self.insert_spans_batch([span]) == 1

    async def insert_spans_batch(self, spans: Sequence[ObservabilitySpan]) -> int:
        rows = [span_to_json_row(span) for span in spans]
        inserted = 0
        for start in range(0, len(rows), self._rows_per_request):
            chunk = rows[start : start + self._rows_per_request]
            response = await self._run(
                "insert spans",
                lambda c, chunk=chunk: (
                    c.table(TABLE_NAME)
                    .upsert(
                        chunk,
                        on_conflict=CONFLICT_KEY,
                        ignore_duplicates=True,
                        returning="minimal",
                        count="exact",
                    )
                    .execute()
                ),
            )
            if response.count is None:
                raise SupabaseRequestError(
                    None,
                    "NO_COUNT",
                    "the server did not report how many rows it inserted (no Content-Range "
                    "count); is a proxy stripping headers?",
                    operation="insert spans",
                )
            inserted += response.count
        return inserted

    async def get_spans_by_time_window(
        self,
        window: str,
        agent_name: str | None = None,
        limit: int = 1000,
        *,
        status: SpanStatus | str | None = None,
        agent_tier: int | None = None,
    ) -> list[ObservabilitySpan]:
        check_limit(limit)
        filters = {
            "agent_name": check_agent_name(agent_name),
            "status": check_status(status),
            "agent_tier": check_agent_tier(agent_tier),
        }
        span = resolve_window(window, self._clock)

        def query(c: AsyncClient) -> Any:
            builder = c.table(TABLE_NAME).select(SELECT_COLUMNS)
            builder = builder.gte("start_time", span.start.isoformat())
            builder = builder.lte("start_time", span.end.isoformat())
            for column, value in filters.items():
                if value is not None:
                    builder = builder.eq(column, value)
            builder = builder.order("start_time", desc=True).order("trace_id", desc=True)
            return builder.order("span_id", desc=True).limit(limit).execute()

        response = await self._run("read spans by time window", query)
        return [_span(row) for row in response.data]

    async def get_spans_by_trace(self, trace_id: str) -> list[ObservabilitySpan]:
        check_trace_id(trace_id)
        response = await self._run(
            "read spans of a trace",
            lambda c: (
                c.table(TABLE_NAME)
                .select(SELECT_COLUMNS)
                .eq("trace_id", trace_id)
                .order("start_time")
                .order("span_id")
                .execute()
            ),
        )
        return [_span(row) for row in response.data]

    async def get_trace_summary(self, trace_id: str) -> TraceSummary:
        args = {"p_trace_id": check_trace_id(trace_id)}
        response = await self._run(
            f"call {SUMMARY_FUNCTION}", lambda c: c.rpc(SUMMARY_FUNCTION, args).execute()
        )
        (row,) = response.data
        return summary_from_row(trace_id, [row[column] for column in SUMMARY_COLUMNS])

    async def _rollup_read(self, window: str, agent_name: str | None) -> tuple[list[Any], Window]:
        """The window's sketch rows and raw edge groups (`rollups.FRAGMENT_COLUMNS`): one
        `rpc` call. PostgREST sends bytea as hex text (`\\x...`): back to bytes here."""
        resolved = resolve_window(window, self._clock)
        args: dict[str, Any] = {
            name: bound.isoformat()
            for name, bound in zip(_BOUND_ARGS, split_window(resolved).as_tuple(), strict=True)
        }
        args["p_agent"] = check_agent_name(agent_name)
        response = await self._run(
            f"call {ROLLUP_WINDOW_FUNCTION}",
            lambda c: c.rpc(ROLLUP_WINDOW_FUNCTION, args).execute(),
        )
        rows = [_with_bytes([row[c] for c in FRAGMENT_COLUMNS]) for row in response.data]
        return rows, resolved

    async def get_latency_stats(
        self, window: str, agent_name: str | None = None, *, exact: bool = False
    ) -> list[LatencyStats]:
        if not exact:
            rows, resolved = await self._rollup_read(window, agent_name)
            return latency_stats_from_rollups(rows, window, resolved.minutes)
        args = self._stats_args(window, agent_name)
        response = await self._run(
            f"call {STATS_FUNCTION}", lambda c: c.rpc(STATS_FUNCTION, args).execute()
        )
        # The function sorts by agent (COLLATE "C"); json_agg keeps its order.
        return [stats_from_row([row[c] for c in STATS_COLUMNS], window) for row in response.data]

    async def get_window_summary(
        self, window: str, agent_name: str | None = None, *, exact: bool = False
    ) -> WindowSummary:
        if not exact:
            rows, _ = await self._rollup_read(window, agent_name)
            return window_summary_from_rollups(rows, window)
        args = self._stats_args(window, agent_name)
        response = await self._run(
            f"call {WINDOW_SUMMARY_FUNCTION}",
            lambda c: c.rpc(WINDOW_SUMMARY_FUNCTION, args).execute(),
        )
        (row,) = response.data  # the function always returns one row
        return window_summary_from_row([row[c] for c in WINDOW_SUMMARY_COLUMNS], window)

    async def count_old_spans(self, days: int = 90) -> int:
        check_retention(days, 1)
        args = {  # the same interval as delete_old_spans, so a dry run counts what it deletes
            "p_older_than": f"{days} days",
            "p_now": current_time(self._clock).isoformat(),
        }
        response = await self._run(
            f"call {COUNT_OLD_FUNCTION}", lambda c: c.rpc(COUNT_OLD_FUNCTION, args).execute()
        )
        return int(response.data or 0)

    async def get_cost_stats(
        self, window: str, agent_name: str | None = None, *, exact: bool = False
    ) -> list[CostSummary]:
        """Cost per agent and for the window; from rollups and the trace-cost sketch
        (`cost_rollups.py`, one `rpc` call), or from the raw LLM spans with `exact`."""
        if not exact:
            bounds = cost_bounds(resolve_window(window, self._clock))
            rollup_args: dict[str, Any] = {
                f"p_{name}": bound.isoformat()
                for name, bound in zip(COST_BOUND_NAMES, bounds, strict=True)
            }
            rollup_args["p_agent"] = check_agent_name(agent_name)
            rolled = await self._run(
                f"call {ROLLUP_COSTS_FUNCTION}",
                lambda c: c.rpc(ROLLUP_COSTS_FUNCTION, rollup_args).execute(),
            )
            return cost_stats_from_rollups(
                (_with_bytes([row[c] for c in ROLLUP_COST_COLUMNS]) for row in rolled.data),
                agent_name,
            )
        args = self._stats_args(window, agent_name)
        response = await self._run(
            f"call {COST_FUNCTION}", lambda c: c.rpc(COST_FUNCTION, args).execute()
        )
        return [cost_from_row([row[c] for c in COST_COLUMNS]) for row in response.data]

    async def get_cost_breakdown(
        self, window: str, by: str = "agent", agent_name: str | None = None
    ) -> list[CostBreakdownRow]:
        args = {**self._stats_args(window, agent_name), "p_by": check_cost_by(by)}
        response = await self._run(
            f"call {BREAKDOWN_FUNCTION}", lambda c: c.rpc(BREAKDOWN_FUNCTION, args).execute()
        )
        return [breakdown_from_row([row[c] for c in BREAKDOWN_COLUMNS]) for row in response.data]

    async def rebuild_rollups(self, since: datetime | None = None) -> int:
        """Recompute the rollups from the spans that started at or after `since`'s hour
        (None: all spans) in one `rpc`; older rollups stay. Returns the spans rolled up."""
        args = {"p_since": None if since is None else check_aware("since", since).isoformat()}
        response = await self._run(
            f"call {REBUILD_FUNCTION}", lambda c: c.rpc(REBUILD_FUNCTION, args).execute()
        )
        return int(response.data or 0)

    async def delete_old_rollups(
        self, days: int = DEFAULT_ROLLUP_RETENTION_DAYS, minute_days: int | None = None
    ) -> int:
        """Delete rollup rows of slots older than `days` (their own retention) and of minute
        slots older than `minute_days` (None: `days`); the count."""
        older_than, minutes_older_than = check_rollup_retention(days, minute_days)
        args = {
            "p_older_than": f"{older_than.days} days",
            "p_now": current_time(self._clock).isoformat(),
            "p_minute_older_than": f"{minutes_older_than.days} days",
        }
        response = await self._run(
            f"call {ROLLUP_RETENTION_FUNCTION}",
            lambda c: c.rpc(ROLLUP_RETENTION_FUNCTION, args).execute(),
        )
        return int(response.data or 0)

    async def delete_old_spans(self, days: int = 90, batch_size: int = 1000) -> int:
        """One `rpc` per batch (each its own transaction, well inside `statement_timeout`)
        until a batch comes back short; `p_now` is fixed first, so new spans cannot prolong
        it. Batches already deleted stay deleted if a later request fails."""
        check_retention(days, batch_size)
        args = {
            "p_older_than": f"{days} days",
            "p_batch_size": batch_size,
            "p_now": current_time(self._clock).isoformat(),
        }
        total = 0
        while True:
            response = await self._run(
                f"call {RETENTION_FUNCTION}", lambda c: c.rpc(RETENTION_FUNCTION, args).execute()
            )
            deleted = int(response.data or 0)
            total += deleted
            if deleted < batch_size:
                return total

    async def close(self) -> None:
        """Close the HTTP clients this repository made; safe to call twice. Later calls
        raise `RepositoryError`."""
        self._closed = True
        clients, self._clients = self._clients, {}
        current = _running_loop()
        for loop, (_, http) in clients.items():
            if loop is current:
                await http.aclose()
            elif not loop.is_closed() and loop.is_running():
                asyncio.run_coroutine_threadsafe(http.aclose(), loop)

    # -- plumbing ---------------------------------------------------------------------------
    def _stats_args(self, window: str, agent_name: str | None) -> dict[str, Any]:
        span = resolve_window(window, self._clock)
        return {
            "p_window": f"{int(span.length.total_seconds())} seconds",
            "p_agent": check_agent_name(agent_name),
            "p_now": span.end.isoformat(),
        }

    async def _client(self) -> AsyncClient | Client:
        if self._closed:
            raise RepositoryError("the Supabase span repository is closed")
        if self._injected is not None:
            return self._injected
        loop = asyncio.get_running_loop()
        for gone in [other for other in self._clients if other.is_closed()]:
            del self._clients[gone]  # its sockets go with it; a closed loop cannot close them
        entry = self._clients.get(loop)
        if entry is None:
            http = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout),
                event_hooks={"response": [raise_for_status]},
            )
            options = AsyncClientOptions(
                httpx_client=http,
                postgrest_client_retry=False,
                auto_refresh_token=False,
                persist_session=False,
            )
            try:
                client = await acreate_client(self._url, self._key.get_secret_value(), options)
            except BaseException:
                await http.aclose()
                raise
            entry = self._clients.setdefault(loop, (client, http))
            if entry[1] is not http:  # another task of this loop won the race
                await http.aclose()
        return entry[0]

    async def _run(self, operation: str, request: Callable[[AsyncClient], Any]) -> Any:
        """Send one request; every failure becomes a `SupabaseRequestError` without the key."""
        key = self._key.get_secret_value()
        try:
            client = await self._client()
            if isinstance(client, Client):
                return await asyncio.to_thread(request, client)
            return await request(client)
        except SupabaseRequestError as exc:
            raise exc.for_operation(operation, key) from None
        except APIError as exc:
            raise error_from_api_error(exc, operation, key) from None
        except httpx.TimeoutException as exc:
            raise SupabaseTimeoutError(
                operation, f"no answer within {self._timeout:g} s ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            raise SupabaseConnectionError(
                operation, scrub(f"{type(exc).__name__}: {exc}", key)
            ) from None


def _span(row: dict[str, Any]) -> ObservabilitySpan:
    return span_from_row([row[column] for column in SPAN_COLUMNS])


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _with_bytes(values: list[Any]) -> list[Any]:
    """A read's row whose last column is a packed sketch: PostgREST sends bytea as hex text
    (`\\x...`), back to bytes here."""
    if values[-1] is not None:
        values[-1] = bytes.fromhex(values[-1].removeprefix("\\x"))
    return values
