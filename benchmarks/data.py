"""Synthetic spans for the storage benchmarks: 18 agents, realistic shapes, deterministic.

`make_spans` builds validated `ObservabilitySpan`s (what the pipeline carries); `seed_rows`
yields rows in `SPAN_COLUMNS` order directly (the fastest way to seed a million spans: no model
objects), spread evenly over `days` before `now`, durations log-normal-ish, 1 in 20 an error,
1 in 3 an LLM span with tokens.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanKind,
    SpanStatus,
)
from src.repositories._rows import format_utc

__all__ = ["AGENTS", "NOW", "SEED_SQL", "make_spans", "seed_rows", "seed_sql_params"]

NOW = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
AGENTS = (
    "orchestrator",
    "tool_composer",
    "observability_connector",
    "scope_definer",
    "data_preparer",
    "feature_analyzer",
    "model_selector",
    "model_trainer",
    "model_deployer",
    "causal_impact",
    "gap_analyzer",
    "heterogeneous_optimizer",
    "drift_monitor",
    "experiment_designer",
    "health_score",
    "prediction_synthesizer",
    "resource_optimizer",
    "explainer",
)
_EMPTY_EVENTS = "[]"


def _duration_ms(rng: random.Random) -> float:
    return round(rng.lognormvariate(4.5, 0.8), 3)  # median ~90 ms, long right tail


def make_spans(n: int, *, seed: int = 7, start: datetime = NOW) -> list[ObservabilitySpan]:
    """`n` validated spans in traces of 4 (an agent span and three children)."""
    rng = random.Random(seed)
    spans = []
    for i in range(n):
        begin = start - timedelta(milliseconds=n - i)
        llm = i % 3 == 1
        error = i % 20 == 0
        spans.append(
            ObservabilitySpan(
                span_id=f"{i + 1:016x}",
                trace_id=f"{seed:08x}{i // 4 + 1:024x}",
                parent_span_id=None if i % 4 == 0 else f"{i - i % 4 + 1:016x}",
                operation_name="llm_call" if llm else "process",
                agent_name=AGENTS[i % len(AGENTS)],
                agent_tier=i % 6,
                span_kind=SpanKind.LLM if llm else SpanKind.AGENT,
                start_time=begin,
                end_time=begin + timedelta(milliseconds=_duration_ms(rng)),
                status=SpanStatus.ERROR if error else SpanStatus.COMPLETED,
                error_type="TimeoutError" if error else None,
                error_message="upstream timed out" if error else None,
                attributes={"step": i % 7, "route": "default"},
                llm_model="gpt-4o-mini" if llm else None,
                input_tokens=100 + i % 50 if llm else None,
                output_tokens=20 + i % 10 if llm else None,
                # priced as the worker prices gpt-4o-mini (seed_rows' formula), so the trace
                # costs and cost sketch written with each batch are part of what is measured
                cost_usd=((100 + i % 50) * 0.15 + (20 + i % 10) * 0.6) / 1e6 if llm else None,
            )
        )
    return spans


def seed_rows(
    n: int, *, days: int = 7, now: datetime = NOW, seed: int = 11, text_times: bool = False
) -> Iterator[tuple[Any, ...]]:
    """Rows for `ml_observability_spans` in `SPAN_COLUMNS` order, spread over `days` days.

    `text_times=True` formats timestamps and ids the SQLite way (fixed-width UTC text).
    """
    rng = random.Random(seed)
    span_seconds = days * 86_400
    attributes = json.dumps({"route": "default"})
    for i in range(n):
        start = now - timedelta(seconds=span_seconds * (i + 0.5) / n)
        duration = _duration_ms(rng)
        end = start + timedelta(milliseconds=duration)
        llm = i % 3 == 1
        error = i % 20 == 0
        row_id = uuid.UUID(int=(seed << 64) | (i + 1))
        yield (
            str(row_id) if text_times else row_id,
            f"{i + 1:016x}",
            f"{seed:08x}{i // 4 + 1:024x}",
            None if i % 4 == 0 else f"{i - i % 4 + 1:016x}",
            "llm_call" if llm else "process",
            AGENTS[i % len(AGENTS)],
            i % 6,
            "llm" if llm else "agent",
            format_utc(start) if text_times else start,
            format_utc(end) if text_times else end,
            duration,
            "error" if error else "completed",
            "TimeoutError" if error else None,
            "upstream timed out" if error else None,
            attributes,
            "gpt-4o-mini" if llm else None,
            100 + i % 50 if llm else None,
            20 + i % 10 if llm else None,
            120 + i % 50 + i % 10 if llm else None,
            _EMPTY_EVENTS,
            None,
            None,
            "openai" if llm else None,  # provider, then the cost columns (issue 13)
            None,
            None,
            None,
            ((100 + i % 50) * 0.15 + (20 + i % 10) * 0.6) / 1e6 if llm else None,
        )


SEED_SQL = """
INSERT INTO public.ml_observability_spans (
    id, span_id, trace_id, parent_span_id, operation_name, agent_name, agent_tier, span_kind,
    start_time, end_time, duration_ms, status, error_type, error_message, attributes,
    llm_model, input_tokens, output_tokens, total_tokens, events, provider, cost_usd)
SELECT (lpad(to_hex(%(seed)s::bigint), 16, '0') || lpad(to_hex(g.i + 1), 16, '0'))::uuid,
       lpad(to_hex(g.i + 1), 16, '0'),
       lpad(to_hex(%(seed)s::bigint), 8, '0') || lpad(to_hex(g.i / 4 + 1), 24, '0'),
       CASE WHEN g.i %% 4 = 0 THEN NULL ELSE lpad(to_hex(g.i - g.i %% 4 + 1), 16, '0') END,
       CASE WHEN g.llm THEN 'llm_call' ELSE 'process' END,
       (%(agents)s::text[])[g.i %% %(n_agents)s + 1],
       g.i %% 6,
       CASE WHEN g.llm THEN 'llm' ELSE 'agent' END,
       g.start_time,
       g.start_time + make_interval(secs => g.duration / 1000.0),
       g.duration,
       CASE WHEN g.i %% 20 = 0 THEN 'error' ELSE 'completed' END,
       CASE WHEN g.i %% 20 = 0 THEN 'TimeoutError' END,
       CASE WHEN g.i %% 20 = 0 THEN 'upstream timed out' END,
       '{"route": "default"}'::jsonb,
       CASE WHEN g.llm THEN 'gpt-4o-mini' END,
       CASE WHEN g.llm THEN 100 + g.i %% 50 END,
       CASE WHEN g.llm THEN 20 + g.i %% 10 END,
       CASE WHEN g.llm THEN 120 + g.i %% 50 + g.i %% 10 END,
       '[]'::jsonb,
       CASE WHEN g.llm THEN 'openai' END,
       CASE WHEN g.llm THEN ((100 + g.i %% 50) * 0.15 + (20 + g.i %% 10) * 0.6) / 1e6 END
FROM (
    SELECT r.i, r.i %% 3 = 1 AS llm,
           %(now)s::timestamptz
               - make_interval(secs => %(seconds)s::float8 * (r.i::float8 + 0.5) / %(n)s::float8)
               AS start_time,
           -- log-normal(4.5, 0.8) by Box-Muller over two hashes of i (deterministic)
           round(exp(4.5::float8 + 0.8 * sqrt(-2.0 * ln(r.u1)) * cos(2.0 * pi() * r.u2))
                 ::numeric, 3)
               ::float8 AS duration
    FROM (
        SELECT i,
               ((hashint8extended(i, %(seed)s::bigint) & 4294967295)::float8 + 0.5)
                   / 4294967296.0::float8 AS u1,
               ((hashint8extended(i, %(seed)s::bigint + 1) & 4294967295)::float8 + 0.5)
                   / 4294967296.0::float8 AS u2
        FROM generate_series(%(low)s::bigint, %(high)s::bigint - 1) AS i
    ) AS r
) AS g
"""
"""`seed_rows`' spans generated by the PostgreSQL server itself, rows `[low, high)` of `n`
(parameters from `seed_sql_params`): the same agents, kinds, errors, tokens, cost, trace
shapes and time spread, durations from the same log-normal law (drawn from hashes of the row
number, not Python's generator, so the values differ). Seeding 10M spans this way takes
minutes instead of the half hour a client-side `COPY` of Python rows needs."""


def seed_sql_params(
    n: int, low: int, high: int, *, days: int = 7, now: datetime = NOW, seed: int = 11
) -> dict[str, Any]:
    """Parameters of `SEED_SQL` for rows `[low, high)` of `n`."""
    return {
        "seed": seed,
        "agents": list(AGENTS),
        "n_agents": len(AGENTS),
        "now": now,
        "seconds": days * 86_400,
        "n": n,
        "low": low,
        "high": high,
    }
