"""The Opik sink: finished spans -> Opik REST batch creates, behind a circuit breaker.

Per batch: one `Trace_Write` per trace id not yet sent by this sink (a bounded LRU; a trace sent
as a placeholder is sent again once its root span arrives, see `opik_mapping`), then the spans,
created complete, then any queued feedback scores. Requests go through `call_opik`, which maps
failures onto sink errors and the circuit breaker (see `opik_client`).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from src.agents.ml_foundation.observability_connector.config import CaptureSettings
from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    check_trace_id,
)
from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    opik_trace_uuid,
)
from src.agents.ml_foundation.observability_connector.sinks import (
    PermanentSinkError,
    RetryableSinkError,
    SinkUnavailableError,
)
from src.agents.ml_foundation.observability_connector.usage import ProblemCounter

from .circuit_breaker import CircuitBreaker
from .opik_client import (
    OPIK_CLOUD_URL,
    OpikRejectedError,
    build_opik_client,
    call_opik,
    close_opik_client,
    import_rest_api,
)
from .opik_mapping import opik_span_fields, opik_trace_fields

if TYPE_CHECKING:
    from opik.rest_api import OpikApi

__all__ = ["OPIK_CLOUD_URL", "FeedbackScore", "OpikRejectedError", "OpikSink", "build_opik_client"]

logger = logging.getLogger(__name__)

MAX_ITEMS_PER_REQUEST = 1000  # Opik's maxItems for span, trace and feedback-score batches
MAX_FEEDBACK_VALUE = 999_999_999.0


@dataclass(frozen=True, slots=True)
class FeedbackScore:
    """One feedback score on a trace (what `log_metric` sends)."""

    trace_id: str
    name: str
    value: float
    reason: str | None = None

    def __post_init__(self) -> None:
        check_trace_id(self.trace_id)
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"feedback score name must be a non-empty string, got {self.name!r}")
        value = self.value
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or abs(value) > MAX_FEEDBACK_VALUE:
            raise ValueError(
                f"feedback score {self.name!r}: value must be a finite number within "
                f"±{MAX_FEEDBACK_VALUE:.0f}, got {value!r}"
            )


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class OpikSink:
    """Sink writing complete spans (and one trace per trace id) to Opik; see the module doc."""

    decides_retries = True
    """Its circuit breaker decides when Opik is tried again (open: `SinkUnavailableError` at
    once, no request), so the batch processor offers it every batch (see `sink_lane`)."""

    def __init__(
        self,
        client: OpikApi,
        project_name: str,
        breaker: CircuitBreaker,
        *,
        name: str = "opik",
        capture: CaptureSettings | None = None,
        trace_cache_size: int = 10_000,
        max_pending_scores: int = 1000,
    ) -> None:
        if not isinstance(project_name, str) or not project_name.strip():
            raise ValueError(f"project_name must be a non-empty string, got {project_name!r}")
        if trace_cache_size < 1 or max_pending_scores < 1:
            raise ValueError(
                f"trace_cache_size and max_pending_scores must be >= 1, got "
                f"{trace_cache_size!r} and {max_pending_scores!r}"
            )
        self.name = name
        self.project_name = project_name
        self.breaker = breaker
        self._client = client
        self._capture = capture or CaptureSettings()
        self._lock = threading.Lock()
        self._sent_traces: OrderedDict[str, bool] = OrderedDict()  # trace_id -> named by root
        self._trace_cache_size = trace_cache_size
        self._pending: deque[FeedbackScore] = deque()
        self._max_pending = max_pending_scores
        self._counts = dict.fromkeys(
            (
                "spans_sent",
                "spans_unconvertible",
                "traces_sent",
                "scores_sent",
                "scores_dropped",
                "unavailable",
            ),
            0,
        )
        self._score_problems = ProblemCounter("Opik feedback scores not delivered", log=logger)
        self._span_problems = ProblemCounter("a span could not be converted for Opik", log=logger)

    def __repr__(self) -> str:
        return f"OpikSink(name={self.name!r}, project_name={self.project_name!r})"

    # -- Sink protocol ---------------------------------------------------------------------
    def write(self, batch: Sequence[ObservabilitySpan]) -> int:
        """Create the batch's traces (once per trace id) then its spans; then pending scores."""
        if not batch:
            return 0
        rest = import_rest_api()
        span_writes, converted = [], []
        for span in batch:
            try:
                fields = opik_span_fields(span, self.project_name, self._capture)
                span_writes.append(rest.SpanWrite(**fields))
                converted.append(span)
            except (ValueError, TypeError) as exc:  # one odd span must not sink the batch
                with self._lock:
                    self._counts["spans_unconvertible"] += 1
                self._span_problems.record(f"span {span.span_id!r} not sent to Opik: {exc}")
        traces = self._traces_to_send(converted)
        trace_writes = [rest.TraceWrite(**fields) for fields, _, _ in traces]
        for chunk in _chunks(trace_writes, MAX_ITEMS_PER_REQUEST):
            self._call("trace batch", self._client.traces.create_traces, traces=chunk)
        self._remember_traces([(trace_id, rooted) for _, trace_id, rooted in traces])
        for chunk in _chunks(span_writes, MAX_ITEMS_PER_REQUEST):
            self._call("span batch", self._client.spans.create_spans, spans=chunk)
        with self._lock:
            self._counts["spans_sent"] += len(span_writes)
            self._counts["traces_sent"] += len(trace_writes)
        self.flush_feedback_scores()
        return len(span_writes)

    # -- feedback scores -------------------------------------------------------------------
    def log_feedback_scores(self, scores: Sequence[FeedbackScore]) -> int:
        """Send scores now (raises like `write`); return how many were accepted."""
        if not scores:
            return 0
        rest = import_rest_api()
        items = [
            rest.FeedbackScoreBatchItem(
                id=opik_trace_uuid(s.trace_id),
                project_name=self.project_name,
                name=s.name,
                value=float(s.value),
                source="sdk",
                **({"reason": s.reason} if s.reason else {}),
            )
            for s in scores
        ]
        for chunk in _chunks(items, MAX_ITEMS_PER_REQUEST):
            self._call("feedback scores", self._client.traces.score_batch_of_traces, scores=chunk)
        with self._lock:
            self._counts["scores_sent"] += len(items)
        return len(items)

    def enqueue_feedback_score(self, score: FeedbackScore) -> None:
        """Queue a score for the next `write`/`flush_feedback_scores` (never blocks on HTTP).

        Sending after the spans means the trace exists in Opik first. The queue is bounded:
        when full, the oldest score is dropped and counted.
        """
        with self._lock:
            if len(self._pending) >= self._max_pending:
                self._pending.popleft()
                self._counts["scores_dropped"] += 1
            self._pending.append(score)

    def flush_feedback_scores(self) -> int:
        """Send queued scores; never raises. Transient failures keep them queued."""
        with self._lock:
            pending = list(self._pending)
            self._pending.clear()
        if not pending:
            return 0
        try:
            return self.log_feedback_scores(pending)
        except PermanentSinkError as exc:
            with self._lock:
                self._counts["scores_dropped"] += len(pending)
            self._score_problems.record(f"dropped {len(pending)}: {exc}")
        except RetryableSinkError as exc:
            with self._lock:
                room = self._max_pending - len(self._pending)
                kept = pending[-room:] if room > 0 else []
                self._pending.extendleft(reversed(kept))
                self._counts["scores_dropped"] += len(pending) - len(kept)
            self._score_problems.record(f"kept {len(kept)} queued: {exc}")
        return 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self._counts, pending_scores=len(self._pending))
        return {**counts, "breaker": self.breaker.stats()}

    def close(self) -> None:
        """Close the HTTP connection pool of the client."""
        close_opik_client(self._client)

    # -- internals -------------------------------------------------------------------------
    def _traces_to_send(
        self, batch: Sequence[ObservabilitySpan]
    ) -> list[tuple[dict[str, Any], str, bool]]:
        by_trace: dict[str, list[ObservabilitySpan]] = {}
        for span in batch:
            by_trace.setdefault(span.trace_id, []).append(span)
        out = []
        with self._lock:
            for trace_id, spans in by_trace.items():
                fields, rooted = opik_trace_fields(spans, self.project_name)
                already = self._sent_traces.get(trace_id)
                if already is None or (rooted and not already):
                    out.append((fields, trace_id, rooted))
        return out

    def _remember_traces(self, sent: list[tuple[str, bool]]) -> None:
        with self._lock:
            for trace_id, rooted in sent:
                self._sent_traces[trace_id] = rooted or self._sent_traces.get(trace_id, False)
                self._sent_traces.move_to_end(trace_id)
            while len(self._sent_traces) > self._trace_cache_size:
                self._sent_traces.popitem(last=False)

    def _call(self, what: str, fn: Callable[..., Any], **kwargs: Any) -> None:
        try:
            call_opik(self.breaker, self.name, what, fn, **kwargs)
        except SinkUnavailableError:
            with self._lock:
                self._counts["unavailable"] += 1
            raise
