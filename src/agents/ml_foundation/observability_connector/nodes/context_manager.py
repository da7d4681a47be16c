"""W3C Trace Context (level 1), trace/span ids, Opik ids and the current span context.

- `traceparent` is parsed strictly; an invalid header gives `None` (the caller starts a new
  trace) and never raises, because it arrives from outside and must not break the agent.
- `tracestate` keeps at most 32 valid list members and travels with the context.
- Level 1 defines only the `sampled` flag; the other bits are reserved, so a child span and an
  outgoing header carry `flags & SAMPLED_FLAG` (parsing and `format_traceparent` keep raw bits).
- New trace ids are UUIDv7 (RFC 9562) written as 32 hex: a valid W3C trace-id that, re-dashed,
  is also a valid Opik id. Opik needs UUIDv7 span ids too, so `opik_span_uuid` derives one
  deterministically: a replayed span gets the same Opik id.
- The current span lives in a `ContextVar`, so it follows asyncio tasks and threads started
  with `contextvars.copy_context()`.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from ..models import check_span_id, check_trace_id

TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"
MAX_TRACESTATE_MEMBERS = 32
SAMPLED_FLAG = 0x01

_TRACEPARENT_RE = re.compile(
    r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*$"
)
_KEY_CHARS = r"[_0-9a-z\-\*/]"
_TRACESTATE_KEY_RE = re.compile(
    rf"[a-z]{_KEY_CHARS}{{0,255}}|[a-z0-9]{_KEY_CHARS}{{0,240}}@[a-z]{_KEY_CHARS}{{0,13}}"
)
# value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E
_TRACESTATE_VALUE_RE = re.compile(
    r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
_OWS = " \t"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_UNIX_MS = (1 << 48) - 1


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The propagated part of a span: W3C ids, flags and vendor tracestate."""

    trace_id: str
    """32 lowercase hex, not all zeros."""
    span_id: str
    """16 lowercase hex, not all zeros (the W3C parent-id of outgoing calls)."""
    trace_flags: int
    """8-bit flags; bit 0 is `sampled`."""
    tracestate: tuple[tuple[str, str], ...] = ()
    """Vendor (key, value) list members, in order, at most 32."""

    def __post_init__(self) -> None:
        check_trace_id(self.trace_id)
        check_span_id(self.span_id)
        flags = self.trace_flags
        if isinstance(flags, bool) or not isinstance(flags, int) or not 0 <= flags <= 255:
            raise ValueError(f"trace_flags must be an int in 0..255, got {flags!r}")

    @property
    def sampled(self) -> bool:
        return bool(self.trace_flags & SAMPLED_FLAG)


class InvalidContextCounter:
    """Thread-safe count of invalid `traceparent` headers, for the self-monitor."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def increment(self) -> None:
        with self._lock:
            self._value += 1

    @property
    def value(self) -> int:
        with self._lock:
            return self._value


def parse_traceparent(value: str | None) -> TraceContext | None:
    """Parse a `traceparent` header; `None` when absent or invalid (never raises)."""
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT_RE.fullmatch(value)
    if match is None:
        return None
    version, trace_id, span_id, flags, trailing = match.groups()
    if version == "ff" or (version == "00" and trailing is not None):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return TraceContext(trace_id, span_id, int(flags, 16))


def format_traceparent(ctx: TraceContext) -> str:
    """Write the context as a version-00 `traceparent`."""
    return f"00-{ctx.trace_id}-{ctx.span_id}-{ctx.trace_flags:02x}"


def parse_tracestate(value: str | None) -> list[tuple[str, str]]:
    """Parse `tracestate`: invalid members and repeated keys are dropped, at most 32 kept."""
    members: list[tuple[str, str]] = []
    if not isinstance(value, str):
        return members
    seen: set[str] = set()
    for raw in value.split(","):
        member = raw.strip(_OWS)
        key, sep, val = member.partition("=")
        if not sep or key in seen:
            continue
        if _TRACESTATE_KEY_RE.fullmatch(key) and _TRACESTATE_VALUE_RE.fullmatch(val):
            seen.add(key)
            members.append((key, val))
            if len(members) == MAX_TRACESTATE_MEMBERS:
                break
    return members


def format_tracestate(members: Iterable[tuple[str, str]]) -> str:
    return ",".join(f"{key}={val}" for key, val in members)


def _uuid7_int(unix_ms: int, rand74: int) -> int:
    """RFC 9562 UUIDv7: 48-bit unix ms | ver 7 | 12 bits rand_a | var 10 | 62 bits rand_b."""
    if not 0 <= unix_ms <= _MAX_UNIX_MS:
        raise ValueError(f"unix_ms must be in 0..2**48-1, got {unix_ms!r}")
    rand_a, rand_b = (rand74 >> 62) & 0xFFF, rand74 & ((1 << 62) - 1)
    return unix_ms << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b


def new_trace_id() -> str:
    """A new W3C trace-id: a random UUIDv7 as 32 lowercase hex (time-ordered, never zero)."""
    unix_ms = time.time_ns() // 1_000_000
    rand74 = int.from_bytes(os.urandom(10), "big") >> 6
    return f"{_uuid7_int(unix_ms, rand74):032x}"


def new_span_id() -> str:
    """A new W3C span id: 16 random lowercase hex, never all zeros."""
    while True:
        raw = os.urandom(8)
        if any(raw):
            return raw.hex()


def opik_span_uuid(trace_id: str, span_id: str, start_time: datetime) -> str:
    """The Opik span id: a UUIDv7 from the span's start (ms) and sha256(trace_id + span_id).

    Deterministic, so a retried or replayed span lands on the same Opik id.
    """
    if start_time.tzinfo is None or start_time.utcoffset() is None:
        raise ValueError(f"start_time must be timezone-aware, got naive {start_time!r}")
    return _hashed_span_uuid7((start_time - _EPOCH) // timedelta(milliseconds=1), trace_id, span_id)


def opik_span_uuid_for(trace_id: str, span_id: str) -> str:
    """The Opik span id computed from the W3C ids alone, so a child can name its parent.

    A UUIDv7 whose 48 time bits are those of `opik_trace_uuid(trace_id)` (the trace's own
    time) and whose 74 other bits come from sha256(trace_id + span_id), as in `opik_span_uuid`.
    Every span of a trace shares the time prefix; ids differ in the hashed bits. Used by the
    Opik sink for `id` and `parent_span_id` (a child never knows its parent's start time).
    """
    return _hashed_span_uuid7(uuid.UUID(opik_trace_uuid(trace_id)).int >> 80, trace_id, span_id)


def _hashed_span_uuid7(unix_ms: int, trace_id: str, span_id: str) -> str:
    """A dashed UUIDv7: `unix_ms` plus 74 bits of sha256(trace_id + span_id)."""
    key = check_trace_id(trace_id) + check_span_id(span_id)
    digest = hashlib.sha256(key.encode("ascii")).digest()
    return str(uuid.UUID(int=_uuid7_int(unix_ms, int.from_bytes(digest[:10], "big") >> 6)))


def opik_trace_uuid(trace_id: str) -> str:
    """The Opik trace id for a W3C trace-id, dashed.

    A UUIDv7 trace-id (ours) is returned as is. A foreign one keeps its own bits except the
    version nibble (hex digit 13, set to 7) and the two variant bits (set to 10), so it stays
    recognisable next to the W3C id and maps the same way every time.
    """
    value = int(check_trace_id(trace_id), 16)
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0b11 << 62)) | (0b10 << 62)
    return str(uuid.UUID(int=value))


_CURRENT: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar(
    "e2i_obs_current_trace_context", default=None
)


def current_context() -> TraceContext | None:
    return _CURRENT.get()


def set_current_context(ctx: TraceContext | None) -> contextvars.Token[TraceContext | None]:
    return _CURRENT.set(ctx)


def reset_current_context(token: contextvars.Token[TraceContext | None]) -> None:
    _CURRENT.reset(token)


@contextmanager
def use_context(ctx: TraceContext | None) -> Iterator[TraceContext | None]:
    """Make `ctx` the current context inside the block; restore the previous one after."""
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)


def propagated_flags(trace_flags: int) -> int:
    """The flags to propagate: W3C level 1 reserves every bit but `sampled` (set them to zero)."""
    return trace_flags & SAMPLED_FLAG


def start_child(parent: TraceContext | None) -> TraceContext:
    """A new span under `parent` (same trace, sampled flag and tracestate; reserved flag bits
    zeroed), or a new sampled trace."""
    if parent is None:
        return TraceContext(new_trace_id(), new_span_id(), SAMPLED_FLAG)
    flags = propagated_flags(parent.trace_flags)
    return TraceContext(parent.trace_id, new_span_id(), flags, parent.tracestate)


def inject(
    headers: MutableMapping[str, str], ctx: TraceContext | None = None
) -> MutableMapping[str, str]:
    """Write `traceparent` (and a non-empty `tracestate`) for `ctx` or the current context;
    reserved flag bits are zeroed (see `propagated_flags`)."""
    ctx = ctx if ctx is not None else _CURRENT.get()
    if ctx is not None:
        flags = propagated_flags(ctx.trace_flags)
        outgoing = ctx if flags == ctx.trace_flags else replace(ctx, trace_flags=flags)
        headers[TRACEPARENT_HEADER] = format_traceparent(outgoing)
        if ctx.tracestate:
            headers[TRACESTATE_HEADER] = format_tracestate(ctx.tracestate)
    return headers


def extract(
    headers: Mapping[str, str], counter: InvalidContextCounter | None = None
) -> TraceContext | None:
    """Read the context from headers (names case-insensitive).

    An invalid `traceparent` is counted and gives `None`; its `tracestate` is then ignored.
    """
    found: dict[str, str] = {}
    for name, value in headers.items():
        found.setdefault(name.lower(), value)
    raw = found.get(TRACEPARENT_HEADER)
    if raw is None:
        return None
    ctx = parse_traceparent(raw)
    if ctx is None:
        if counter is not None:
            counter.increment()
        return None
    tracestate = tuple(parse_tracestate(found.get(TRACESTATE_HEADER)))
    return TraceContext(ctx.trace_id, ctx.span_id, ctx.trace_flags, tracestate)
