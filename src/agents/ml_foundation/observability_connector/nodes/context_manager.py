"""W3C Trace Context Level 2 propagation, trace/span ids, Opik ids and the current span context.

- `extract(headers)` reads what frameworks hand over (see `trace_headers.header_lines`):
  repeated `tracestate` lines are combined (RFC 9110 §5.3), more than one `traceparent` line is
  invalid. An invalid `traceparent` gives `None` (the caller starts a new trace), is counted for
  the self-monitor and never raises: it arrives from outside and must not break the agent.
- `TraceContext` validates itself (ids, flags, a Level 2 `tracestate` of at most 32 unique
  members), so `inject()` can only write valid headers; reserved flag bits are zeroed on the
  way out (`propagated_flags`), as Level 2 requires, while `sampled` and `random` travel on.
- New trace ids are UUIDv7 (RFC 9562) written as 32 hex: a valid W3C trace-id that, re-dashed,
  is also a valid Opik id. Layout (bits 127..0): 48-bit unix ms | version 0111 | 12 random
  bits | variant 10 | 62 random bits. The version nibble sits in byte 6 and the variant bits
  at the top of byte 8, so the right-most 7 bytes (bits 55..0) are all inside the 62 bits
  drawn from `os.urandom`: uniformly random. A trace this module starts therefore carries the
  Level 2 `random` flag (0x02) next to `sampled`. Trace ids given by a caller (E2I's own) carry
  only `sampled`: nothing says how their low bytes were made.
- Opik needs UUIDv7 span ids too, so `opik_span_uuid` derives one deterministically: a
  replayed span gets the same Opik id.
- The current span lives in a `ContextVar`, so it follows asyncio tasks and threads started
  with `contextvars.copy_context()`.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..models import check_span_id, check_trace_id
from .trace_headers import (
    KNOWN_FLAGS,
    MAX_TRACESTATE_MEMBERS,
    RANDOM_FLAG,
    SAMPLED_FLAG,
    TRACEPARENT_HEADER,
    TRACESTATE_HEADER,
    format_tracestate,
    header_lines,
    parse_tracestate,
    split_traceparent,
    tracestate_error,
)

__all__ = [
    "KNOWN_FLAGS",
    "MAX_TRACESTATE_MEMBERS",
    "RANDOM_FLAG",
    "SAMPLED_FLAG",
    "TRACEPARENT_HEADER",
    "TRACESTATE_HEADER",
    "InvalidContextCounter",
    "TraceContext",
    "current_context",
    "extract",
    "format_traceparent",
    "format_tracestate",
    "inject",
    "new_span_id",
    "new_trace_id",
    "opik_span_uuid",
    "opik_span_uuid_for",
    "opik_trace_uuid",
    "parse_traceparent",
    "parse_tracestate",
    "propagated_flags",
    "reset_current_context",
    "set_current_context",
    "start_child",
    "use_context",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_UNIX_MS = (1 << 48) - 1


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The propagated part of a span: W3C ids, flags and vendor tracestate.

    Checked on construction (a `ValueError` names the field, the value and what is accepted),
    so every context can be written as valid headers. `tracestate` may be given as any
    iterable of (key, value) pairs; it is stored as a tuple of tuples.
    """

    trace_id: str
    """32 lowercase hex, not all zeros."""
    span_id: str
    """16 lowercase hex, not all zeros (the W3C parent-id of outgoing calls)."""
    trace_flags: int
    """8-bit flags as received; bit 0 is `sampled`, bit 1 `random` (Level 2)."""
    tracestate: tuple[tuple[str, str], ...] = ()
    """Vendor (key, value) list members, in order: Level 2 keys, unique, at most 32."""

    def __post_init__(self) -> None:
        check_trace_id(self.trace_id)
        check_span_id(self.span_id)
        flags = self.trace_flags
        if isinstance(flags, bool) or not isinstance(flags, int) or not 0 <= flags <= 255:
            raise ValueError(f"trace_flags must be an int in 0..255, got {flags!r}")
        state = self.tracestate
        if type(state) is not tuple or any(type(m) is not tuple for m in state):
            state = _as_members(state)
            object.__setattr__(self, "tracestate", state)
        if state:
            problem = _tracestate_problem(state)
            if problem is not None:
                raise ValueError(f"tracestate: {problem}")

    @property
    def sampled(self) -> bool:
        return bool(self.trace_flags & SAMPLED_FLAG)

    @property
    def random(self) -> bool:
        """Level 2 `random` flag: the right-most 7 bytes of the trace-id are random."""
        return bool(self.trace_flags & RANDOM_FLAG)


@functools.lru_cache(maxsize=256)
def _checked_tracestate(state: tuple[tuple[str, str], ...]) -> str | None:
    return tracestate_error(state)


def _tracestate_problem(state: tuple[tuple[str, str], ...]) -> str | None:
    """`tracestate_error`, remembered for recent tuples: every child span of a trace carries
    its parent's tracestate, so the same members are checked once, not once per span."""
    try:
        return _checked_tracestate(state)
    except TypeError:  # a member holding something unhashable: invalid, say why
        return tracestate_error(state)


def _as_members(state: object) -> tuple[tuple[str, str], ...]:
    """`tracestate` given as a list, a Mapping or list-pairs, as the stored tuple of tuples."""
    if isinstance(state, Mapping):
        return tuple(state.items())
    if isinstance(state, str | bytes) or not isinstance(state, Iterable):
        raise ValueError(f"tracestate must be a sequence of (key, value) pairs, got {state!r:.80}")
    return tuple(tuple(m) if isinstance(m, list) else m for m in state)


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
    fields = split_traceparent(value)
    return None if fields is None else TraceContext(*fields)


def format_traceparent(ctx: TraceContext) -> str:
    """Write the context as a version-00 `traceparent` (flags as stored; `inject` masks them)."""
    return f"00-{ctx.trace_id}-{ctx.span_id}-{ctx.trace_flags:02x}"


def _uuid7_int(unix_ms: int, rand74: int) -> int:
    """RFC 9562 UUIDv7: 48-bit unix ms | ver 7 | 12 bits rand_a | var 10 | 62 bits rand_b."""
    if not 0 <= unix_ms <= _MAX_UNIX_MS:
        raise ValueError(f"unix_ms must be in 0..2**48-1, got {unix_ms!r}")
    rand_a, rand_b = (rand74 >> 62) & 0xFFF, rand74 & ((1 << 62) - 1)
    return unix_ms << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b


def new_trace_id() -> str:
    """A new W3C trace-id: a random UUIDv7 as 32 lowercase hex (time-ordered, never zero).

    Its right-most 7 bytes are uniformly random (see the module doc), so a trace started with
    it may set the Level 2 `random` flag.
    """
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
    """The flags to propagate: `sampled` and `random` kept, reserved bits zeroed ('Vendors MUST
    set those to zero')."""
    return trace_flags & KNOWN_FLAGS


def start_child(parent: TraceContext | None) -> TraceContext:
    """A new span under `parent` (same trace, `sampled`/`random` flags and tracestate; reserved
    bits zeroed), or the root of a new trace: a UUIDv7 trace-id, flagged `sampled` and
    `random` (its right-most 7 bytes are random, see `new_trace_id`)."""
    if parent is None:
        return TraceContext(new_trace_id(), new_span_id(), SAMPLED_FLAG | RANDOM_FLAG)
    flags = propagated_flags(parent.trace_flags)
    return TraceContext(parent.trace_id, new_span_id(), flags, parent.tracestate)


def inject(
    headers: MutableMapping[str, str], ctx: TraceContext | None = None
) -> MutableMapping[str, str]:
    """Write `traceparent` (and `tracestate` when there are members) for `ctx` or the current
    context, lowercase names, reserved flag bits zeroed (see `propagated_flags`).

    Any `traceparent`/`tracestate` already in `headers` under another spelling, or a stale
    `tracestate`, is removed first, so the request carries exactly this context. Without a
    context `headers` is returned untouched.
    """
    ctx = ctx if ctx is not None else _CURRENT.get()
    if ctx is None:
        return headers
    stale = [
        name
        for name in headers
        if isinstance(name, str)
        and name.lower() in (TRACEPARENT_HEADER, TRACESTATE_HEADER)
        and name != TRACEPARENT_HEADER
    ]
    for name in stale:
        del headers[name]
    flags = propagated_flags(ctx.trace_flags)
    headers[TRACEPARENT_HEADER] = f"00-{ctx.trace_id}-{ctx.span_id}-{flags:02x}"
    if ctx.tracestate:
        headers[TRACESTATE_HEADER] = format_tracestate(ctx.tracestate)
    return headers


def extract(headers: object, counter: InvalidContextCounter | None = None) -> TraceContext | None:
    """Read the remote context from request headers; `None` when there is none to adopt.

    `headers`: a dict or any `Mapping`, a multi-dict whose `items()` yields repeated lines
    (aiohttp/multidict `CIMultiDict`, Starlette `Headers`, `http.client.HTTPMessage`), or an
    iterable of (name, value) pairs (ASGI `scope["headers"]`); str or bytes; names
    case-insensitive. Repeated `tracestate` lines are combined; an invalid `tracestate` is
    discarded whole and the `traceparent` still used. An invalid `traceparent`, or more than
    one, is counted on `counter` and gives `None` (its `tracestate` is not parsed): the caller
    starts a new trace. Only a `headers` object of the wrong shape raises (`TypeError`).
    """
    parents, states = header_lines(headers)
    if not parents:
        return None
    fields = split_traceparent(parents[0]) if len(parents) == 1 else None
    if fields is None:
        if counter is not None:
            counter.increment()
        return None
    return TraceContext(*fields, tuple(parse_tracestate(states)) if states else ())
