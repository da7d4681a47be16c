"""Data models of the observability connector (pydantic v2).

`ObservabilitySpan` is the one record every path produces (callback handler, `trace_agent`,
`trace_llm_call`, the span_emitter node) and every sink consumes (database, Opik).
`LatencyStats` is one agent's window statistics; `WindowSummary` the window's own figures over
all its spans (the p95 of every duration, not an average of the agents' p95s); `QualityMetrics`
is the whole window, with the seed's fields (`successful_spans`, `failed_spans`,
`avg_latency_ms`, `p95_latency_ms`) beside ours.

Datetimes must be timezone-aware: a naive datetime is rejected, because guessing its zone
silently shifts every percentile window by the host's UTC offset.

Values no store can hold are stopped here, where spans enter, so that one of them never costs
a whole batch downstream: a token count must fit a 32-bit integer column (0..2**31 - 1);
`duration_ms` is derived from end - start whenever the span has an end (a given value that
disagrees, `inf` or `1e300` for a 1 s span, is replaced); a total below input + output is
recomputed; attributes nested deeper than `MAX_ATTRIBUTE_DEPTH` are cut with a marker (a
5,000-deep dict would make every JSON encoder give up on the span). Corrections are counted on
`CORRECTED_SPAN_VALUES` (a rate-limited warning), never raised: nothing is lost for them.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    field_validator,
    model_validator,
)

from .cost_models import CostFields, CostSummary, merge_costs
from .problems import ProblemCounter

TRACE_ID_RE = re.compile(r"^[0-9a-f]{32}$")
SPAN_ID_RE = re.compile(r"^[0-9a-f]{16}$")


class SpanStatus(StrEnum):
    STARTED = "started"
    COMPLETED = "completed"
    ERROR = "error"


class SpanKind(StrEnum):
    AGENT = "agent"
    LLM = "llm"
    TOOL = "tool"
    CHAIN = "chain"


def _check_hex_id(value: str, pattern: re.Pattern[str], what: str, length: int) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):  # "$" allows a final "\n"
        raise ValueError(f"{what} must be {length} lowercase hex characters, got {value!r}")
    if value == "0" * length:
        raise ValueError(f"{what} must not be all zeros (W3C Trace Context: invalid id)")
    return value


def check_trace_id(value: str) -> str:
    """Validate a W3C trace-id (32 lowercase hex, not all zeros)."""
    return _check_hex_id(value, TRACE_ID_RE, "trace_id", 32)


def check_span_id(value: str, what: str = "span_id") -> str:
    """Validate a W3C parent-id / span id (16 lowercase hex, not all zeros)."""
    return _check_hex_id(value, SPAN_ID_RE, what, 16)


def _require_aware(value: datetime | None, field: str) -> datetime | None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(
            f"{field} must be timezone-aware (e.g. datetime.now(timezone.utc)); got naive {value!r}"
        )
    return value


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC: the default clock wherever one is injectable."""
    return datetime.now(UTC)


MAX_TOKEN_COUNT = 2**31 - 1
"""The largest token count a span holds: PostgreSQL's `integer` column (and Opik's int32)."""
MAX_ATTRIBUTE_DEPTH = 20
"""Containers nested this deep inside `attributes` are replaced by `DEPTH_MARKER`."""
DEPTH_MARKER = f"[cut: nested deeper than {MAX_ATTRIBUTE_DEPTH} levels]"
DURATION_TOLERANCE_MS = 1.0
"""A given `duration_ms` within this of end - start (or 0.1 % of it) is not reported."""
CORRECTED_SPAN_VALUES = ProblemCounter("corrected a span value no store can hold")


def is_token_count(value: Any) -> bool:
    """True for a count a span can hold: an int, or a float that is a whole finite number,
    in 0..MAX_TOKEN_COUNT. A bool is not a count (it is an int subclass), nor is NaN or inf."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return False
    return 0 <= value <= MAX_TOKEN_COUNT


def check_token_count(value: Any, field: str) -> int | None:
    """`value` as an int (None stays None); anything else is a ValueError naming `field`."""
    if value is None:
        return None
    if not is_token_count(value):
        raise ValueError(
            f"{field} must be a whole number in 0..{MAX_TOKEN_COUNT} (what a 32-bit integer "
            f"column holds), got {value!r}"
        )
    return int(value)


TokenCounts = tuple[int | None, int | None, int | None]


def reconcile_token_counts(
    input_tokens: int | None,
    output_tokens: int | None,
    total_tokens: int | None,
    *,
    derive_missing_total: bool = True,
) -> tuple[TokenCounts, list[str]]:
    """(input, output, total) made consistent, and what was corrected (empty when nothing).

    A missing total is input + output (unless `derive_missing_total` is False: a provider's
    total that was garbled stays unknown); a total below input + output is recomputed; a count
    past `MAX_TOKEN_COUNT` (an input with cache tokens added, a sum) becomes None."""
    fixes: list[str] = []
    if input_tokens is not None and input_tokens > MAX_TOKEN_COUNT:
        fixes.append(f"input_tokens={input_tokens} is past {MAX_TOKEN_COUNT}: dropped")
        input_tokens = None
    if input_tokens is None and output_tokens is None:
        return (None, None, total_tokens), fixes
    parts = (input_tokens or 0) + (output_tokens or 0)
    if total_tokens is not None and total_tokens < parts:
        fixes.append(
            f"total_tokens={total_tokens} is below input_tokens + output_tokens = {parts}: "
            "recomputed"
        )
        total_tokens, derive_missing_total = None, True
    if total_tokens is None and derive_missing_total:
        total_tokens = parts if parts <= MAX_TOKEN_COUNT else None
    return (input_tokens, output_tokens, total_tokens), fixes


def limit_depth(value: Any, max_depth: int = MAX_ATTRIBUTE_DEPTH) -> Any:
    """`value` with every dict, list or tuple nested `max_depth` levels deep replaced by
    `DEPTH_MARKER`; the very same object when nothing is that deep (no copy on the common
    path). Never recurses deeper than `max_depth`, so any depth is safe to pass."""
    return _cut(value, 0, max_depth)


def _cut(value: Any, depth: int, max_depth: int) -> Any:
    if isinstance(value, dict):
        if depth >= max_depth:
            return DEPTH_MARKER
        copy: dict[Any, Any] | None = None
        for key, item in value.items():
            cut = _cut(item, depth + 1, max_depth)
            if cut is not item:
                if copy is None:
                    copy = dict(value)
                copy[key] = cut
        return value if copy is None else copy
    if isinstance(value, list | tuple):
        if depth >= max_depth:
            return DEPTH_MARKER
        items = [_cut(item, depth + 1, max_depth) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    return value


def _attributes_within_depth(value: dict[str, Any], where: str) -> dict[str, Any]:
    cut = limit_depth(value)
    if cut is not value:
        CORRECTED_SPAN_VALUES.record(
            f"{where} nested deeper than {MAX_ATTRIBUTE_DEPTH} levels: cut with a marker"
        )
    return cut  # type: ignore[no-any-return]


TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


def check_cost(value: Any, field: str) -> float | None:
    """`value` as a float of USD (None stays None): a finite number >= 0, not a bool; anything
    else is a ValueError naming `field`."""
    if value is None:
        return None
    number = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        raise ValueError(f"{field} must be a finite number of USD >= 0, got {value!r}")
    return float(value)


REPLACEMENT_CHARACTER = "\ufffd"


def storable(value: Any) -> Any:
    """`value` with every string made storable as UTF-8 text anywhere (recursing into dicts
    and lists): lone surrogates (e.g. from `surrogateescape`-decoded file names or provider
    bytes) and NUL (PostgreSQL text and jsonb reject it) become U+FFFD. Storage and the spool
    apply it, so one bad string never turns a batch into one that fails forever."""
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value.replace("\x00", REPLACEMENT_CHARACTER) if "\x00" in value else value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


class SpanEvent(BaseModel):
    """A point-in-time event inside a span (a log line, a metric, first token)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    timestamp: datetime
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return _require_aware(v, "timestamp")  # type: ignore[return-value]

    @field_validator("attributes")
    @classmethod
    def _depth(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _attributes_within_depth(v, "event attributes")


class ObservabilitySpan(BaseModel):
    """One unit of work: an agent operation, an LLM call, a tool call or a graph node.

    `total_tokens` defaults to input + output (and is recomputed when below it); `duration_ms`
    is end - start whenever there is an end. A span with status `started` may have no
    `end_time`; every other status needs one. See the module docstring for what is corrected.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    id: UUID = Field(default_factory=uuid4)
    span_id: str
    trace_id: str
    parent_span_id: str | None = None
    operation_name: str = Field(min_length=1)
    agent_name: str = Field(min_length=1)
    agent_tier: int | None = Field(default=None, ge=0, le=5)
    span_kind: SpanKind = SpanKind.AGENT
    start_time: datetime
    end_time: datetime | None = None
    duration_ms: float | None = Field(default=None, ge=0)
    status: SpanStatus = SpanStatus.COMPLETED
    error_type: str | None = None
    error_message: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    events: list[SpanEvent] = Field(default_factory=list)
    llm_model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    thread_id: str | None = None
    tracestate: str | None = None
    provider: str | None = None
    """Who served the LLM call (`openai`, `anthropic`, `google_genai`, ...), as reported."""
    cache_read_tokens: int | None = None
    """Input tokens read from the provider's prompt cache (a part of `input_tokens`)."""
    cache_write_tokens: int | None = None
    """Input tokens written to the provider's prompt cache (a part of `input_tokens`)."""
    reasoning_tokens: int | None = None
    """Output tokens spent on reasoning / thinking (a part of `output_tokens`)."""
    cost_usd: float | None = None
    """Price of the call in USD: set by the caller (`set_cost`), else by the pricing step on
    the batch worker; None when no price is known (never a guess)."""

    @field_validator("trace_id")
    @classmethod
    def _trace_id(cls, v: str) -> str:
        return check_trace_id(v)

    @field_validator("span_id")
    @classmethod
    def _span_id(cls, v: str) -> str:
        return check_span_id(v)

    @field_validator("parent_span_id")
    @classmethod
    def _parent_span_id(cls, v: str | None) -> str | None:
        return None if v is None else check_span_id(v, "parent_span_id")

    @field_validator("start_time", "end_time")
    @classmethod
    def _aware(cls, v: datetime | None, info: Any) -> datetime | None:
        return _require_aware(v, info.field_name)

    @field_validator(*TOKEN_FIELDS, mode="before")
    @classmethod
    def _tokens(cls, v: Any, info: Any) -> int | None:
        return check_token_count(v, info.field_name)

    @field_validator("attributes")
    @classmethod
    def _depth(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _attributes_within_depth(v, "attributes")

    @field_validator("cost_usd", mode="before")
    @classmethod
    def _cost(cls, v: Any) -> float | None:
        return check_cost(v, "cost_usd")

    @model_validator(mode="after")
    def _derive(self) -> ObservabilitySpan:
        if self.end_time is not None:
            if self.end_time < self.start_time:
                raise ValueError(
                    f"end_time ({self.end_time.isoformat()}) is before "
                    f"start_time ({self.start_time.isoformat()})"
                )
            self.duration_ms = _duration_of(self.start_time, self.end_time, self.duration_ms)
        elif self.status is not SpanStatus.STARTED:
            raise ValueError(f"a span with status {self.status.value!r} needs an end_time")
        elif self.duration_ms is not None and not math.isfinite(self.duration_ms):
            raise ValueError(
                f"duration_ms must be a finite number of milliseconds, got {self.duration_ms!r}"
            )
        counts, fixes = reconcile_token_counts(
            self.input_tokens, self.output_tokens, self.total_tokens
        )
        if fixes:
            CORRECTED_SPAN_VALUES.record("; ".join(fixes))
        self.input_tokens, self.output_tokens, self.total_tokens = counts
        return self

    @property
    def is_error(self) -> bool:
        return self.status is SpanStatus.ERROR


def _duration_of(start: datetime, end: datetime, given: float | None) -> float:
    """end - start in milliseconds; a given duration that disagrees is reported and replaced."""
    derived = (end - start).total_seconds() * 1000.0
    if given is not None and given != derived:
        tolerance = max(DURATION_TOLERANCE_MS, derived * 1e-3)
        if not math.isfinite(given) or abs(given - derived) > tolerance:
            CORRECTED_SPAN_VALUES.record(
                f"duration_ms={given!r} disagrees with end_time - start_time = {derived:g} ms: "
                "replaced"
            )
    return derived


class LatencyStats(CostFields):
    """One agent's statistics over a time window (durations in milliseconds).

    Token totals and costs count `llm` spans only, so a parent span never double-counts its
    children (cost fields: `cost_models.CostFields`).
    """

    model_config = ConfigDict(extra="forbid")

    agent_name: str
    agent_tier: int | None = None
    time_window: str | None = None
    """The window these figures cover (e.g. `24h`); repositories always set it."""
    count: int = Field(ge=0)
    error_count: int = Field(default=0, ge=0)
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    avg_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    llm_calls: int = Field(default=0, ge=0)
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)
    spans_per_minute: float = Field(default=0.0, ge=0.0)


class WindowSummary(BaseModel):
    """Figures over every span of a window (optionally one agent's), computed by the backend.

    `successful_spans` have status `completed`, `failed_spans` status `error` (a span still
    `started` counts in `total_spans` only). Latencies are over the spans with a duration:
    `avg_latency_ms` their mean, `p95_latency_ms` their 95th percentile (`percentile_cont`,
    i.e. `statistics.quantiles(..., n=100, method="inclusive")[94]`); None when there are none.
    """

    model_config = ConfigDict(extra="forbid")

    time_window: str
    total_spans: int = Field(default=0, ge=0)
    successful_spans: int = Field(default=0, ge=0)
    failed_spans: int = Field(default=0, ge=0)
    avg_latency_ms: float | None = None
    p95_latency_ms: float | None = None


class QualityMetrics(CostFields):
    """Everything the metrics_aggregator node writes into graph state for one window
    (cost fields: `cost_models.CostFields`, over every agent of the window)."""

    model_config = ConfigDict(extra="forbid")

    time_window: str
    window_start: datetime
    window_end: datetime
    agent_name: str | None = None
    total_spans: int = Field(default=0, ge=0)
    successful_spans: int = Field(default=0, ge=0)
    """The seed's field: spans with status `completed` (see `WindowSummary`)."""
    failed_spans: int = Field(default=0, ge=0)
    """The seed's field: spans with status `error` (the same number as `error_count`)."""
    avg_latency_ms: float | None = None
    """The seed's field: mean duration over all spans of the window."""
    p95_latency_ms: float | None = None
    """The seed's field: 95th percentile over all spans of the window (not an average of the
    agents' p95s)."""
    error_count: int = Field(default=0, ge=0)
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    spans_per_minute: float = Field(default=0.0, ge=0.0)
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)
    agents: dict[str, LatencyStats] = Field(default_factory=dict)

    @classmethod
    def from_agent_stats(
        cls,
        time_window: str,
        window_start: datetime,
        window_end: datetime,
        stats: list[LatencyStats],
        agent_name: str | None = None,
        summary: WindowSummary | None = None,
        costs: list[CostSummary] | None = None,
    ) -> QualityMetrics:
        """Roll per-agent statistics up into window totals; the seed's fields come from
        `summary` (the repository's `get_window_summary`). Without one, `successful_spans` is
        total minus errors and the window latencies are None: a p95 over all spans cannot be
        derived from per-agent figures. `costs` (the repository's `get_cost_stats` rows) fill
        each agent's cost fields and, from the whole-window row, the window's; without them the
        window's cost is the sum of the agents'."""
        if costs is not None:
            by_agent = {c.agent_name: c for c in costs}
            stats = [
                s.model_copy(update=by_agent[s.agent_name].cost_fields())
                if s.agent_name in by_agent
                else s
                for s in stats
            ]
            whole = by_agent.get(None)
            window_cost = whole.cost_fields() if whole is not None else merge_costs(stats)
        else:
            window_cost = merge_costs(stats)
        total = sum(s.count for s in stats)
        errors = sum(s.error_count for s in stats)
        minutes = max((window_end - window_start).total_seconds() / 60.0, 1e-9)
        return cls(
            time_window=time_window,
            window_start=window_start,
            window_end=window_end,
            agent_name=agent_name,
            total_spans=total,
            successful_spans=summary.successful_spans if summary else total - errors,
            failed_spans=summary.failed_spans if summary else errors,
            avg_latency_ms=summary.avg_latency_ms if summary else None,
            p95_latency_ms=summary.p95_latency_ms if summary else None,
            error_count=errors,
            error_rate=(errors / total) if total else 0.0,
            spans_per_minute=total / minutes,
            input_tokens=sum(s.input_tokens for s in stats),
            output_tokens=sum(s.output_tokens for s in stats),
            total_tokens=sum(s.total_tokens for s in stats),
            agents={s.agent_name: s for s in stats},
            **window_cost,
        )


class EmissionResult(BaseModel):
    """What the span_emitter node reports back into graph state."""

    model_config = ConfigDict(extra="forbid")

    submitted: int = 0
    sampled_out: int = 0
    rejected: int = 0
    per_sink: dict[str, int] = Field(default_factory=dict)
    circuit_state: str = "closed"
    flushed: bool = False


class TraceSummary(BaseModel):
    """One trace's totals, aggregated by the storage backend (`get_trace_summary`).

    Tokens and `llm_calls` count `llm` spans only, as in `LatencyStats`, so a parent span never
    double-counts its children. `end_time` is the last end (the start, for a span still open).
    """

    model_config = ConfigDict(extra="forbid")

    trace_id: str
    span_count: int = Field(default=0, ge=0)
    agent_count: int = Field(default=0, ge=0)
    error_count: int = Field(default=0, ge=0)
    start_time: datetime | None = None
    end_time: datetime | None = None
    llm_calls: int = Field(default=0, ge=0)
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_duration_ms(self) -> float:
        """First start to last end, in milliseconds (0.0 for a trace with no spans)."""
        if self.start_time is None or self.end_time is None:
            return 0.0
        return (self.end_time - self.start_time).total_seconds() * 1000.0
