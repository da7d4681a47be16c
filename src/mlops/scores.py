"""Scores on a trace: `log_metric` and `log_feedback` share one path.

Each score does two things:
- in Opik, a feedback score on the trace, queued on the Opik sink and sent after the next batch
  of spans (never a blocking HTTP call in the agent, and the trace exists first);
- in the database, an event: added to the current `LiveSpan` when the call happens inside
  `trace_agent` / `trace_llm_call` on the same trace, otherwise a zero-duration `chain` span
  named `metric.<name>` / `feedback.<type>` (parented to the current span when there is one
  in that trace). Such a span is never taken as the trace's root in Opik (`opik_mapping`).

Trace ids may come in any form (`ids.normalize_trace_id`); a free-form one keeps its text in
the attribute `trace_id.original`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from src.agents.ml_foundation.observability_connector.callback_runs import UNKNOWN_AGENT
from src.agents.ml_foundation.observability_connector.ids import normalize_trace_id
from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan, SpanKind
from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    SAMPLED_FLAG,
    TraceContext,
    current_context,
    new_span_id,
    new_trace_id,
)
from src.agents.ml_foundation.observability_connector.problems import ProblemCounter

from .live_span import LiveSpan, current_live_span
from .opik_mapping import FEEDBACK_SPAN_PREFIX, METRIC_SPAN_PREFIX
from .opik_sink import FeedbackScore, OpikSink
from .span_factory import ORIGINAL_TRACE_ID_ATTRIBUTE, caller_id

__all__ = ["SCORE_PROBLEMS", "ScoreRecorder", "check_score"]

logger = logging.getLogger(__name__)

SCORE_PROBLEMS = ProblemCounter("a score could not be queued for Opik", log=logger)


def check_score(value: Any, what: str) -> float:
    """`value` as a float; a bool, NaN or inf is a ValueError naming `what`.

    Beyond ±MAX_FEEDBACK_VALUE the score is still stored with the spans; Opik refuses it, so it
    is counted in SCORE_PROBLEMS instead of being sent."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what}: value must be a finite number, got {value!r}")
    return float(value)


class ScoreRecorder:
    """Records scores for one connector (see the module docstring)."""

    def __init__(
        self,
        submit: Callable[[ObservabilitySpan], None],
        opik_sink: OpikSink | None,
        clock: Callable[[], datetime],
    ) -> None:
        self._submit = submit
        self._opik_sink = opik_sink
        self._clock = clock

    def metric(
        self, name: str, value: Any, trace_id: Any = None, metadata: Mapping[str, Any] | None = None
    ) -> str:
        """`log_metric`: score `name`; `metadata["reason"]` becomes the score's reason."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"metric name must be a non-empty string, got {name!r}")
        number = check_score(value, f"metric {name!r}")
        meta = dict(metadata or {})
        reason = meta.get("reason")
        attrs = {"metric.name": name, "metric.value": number, **meta}
        return self.record(
            METRIC_SPAN_PREFIX, name, number, trace_id, attrs, reason=reason and str(reason)
        )

    def feedback(
        self, trace_id: Any, score: Any, feedback_type: str = "quality", reason: Any = None
    ) -> str:
        """`log_feedback`: score `feedback_type` on the trace `trace_id` (required)."""
        if not isinstance(feedback_type, str) or not feedback_type.strip():
            raise ValueError(f"feedback_type must be a non-empty string, got {feedback_type!r}")
        if trace_id is None or (isinstance(trace_id, str) and not trace_id.strip()):
            raise ValueError(
                f"log_feedback needs the trace_id of the trace it scores, got {trace_id!r}"
            )
        number = check_score(score, f"feedback {feedback_type!r}")
        attrs: dict[str, Any] = {"feedback.type": feedback_type, "feedback.score": number}
        text = None if reason is None else str(reason)
        if text is not None:
            attrs["feedback.reason"] = text
        return self.record(
            FEEDBACK_SPAN_PREFIX, feedback_type, number, trace_id, attrs, reason=text
        )

    def record(
        self,
        prefix: str,
        name: str,
        value: float,
        trace_id: Any = None,
        attributes: Mapping[str, Any] | None = None,
        *,
        reason: str | None = None,
    ) -> str:
        """Record the score `name` = `value`; return the 32-hex trace id it landed on."""
        attrs = dict(attributes or {})
        wanted = caller_id(trace_id, normalize_trace_id, attrs, ORIGINAL_TRACE_ID_ATTRIBUTE)
        live, ctx = current_live_span(), current_context()
        if live is not None and wanted in (None, live.trace_id):
            live.add_event(f"{prefix}{name}", attrs)
            landed = live.trace_id
        else:
            same_trace = ctx is not None and wanted in (None, ctx.trace_id)
            parent = ctx.span_id if same_trace and ctx is not None else None
            landed = wanted or (ctx.trace_id if ctx is not None else new_trace_id())
            now = self._clock()
            span = LiveSpan(
                TraceContext(landed, new_span_id(), SAMPLED_FLAG),
                parent,
                agent_name=str(attrs.get("agent_name") or UNKNOWN_AGENT),
                operation_name=f"{prefix}{name}",
                span_kind=SpanKind.CHAIN,
                start_time=now,
                attributes=attrs,
                clock=self._clock,
            )
            self._submit(span.finish(now))
        if self._opik_sink is not None:
            try:
                score = FeedbackScore(landed, name, value, reason=reason or None)
                self._opik_sink.enqueue_feedback_score(score)
            except Exception as exc:  # broad on purpose: Opik trouble never reaches the agent
                SCORE_PROBLEMS.record(f"{name}: {type(exc).__name__}: {exc}")
        return landed
