"""W3C Trace Context Level 2 header grammar: the header lines a framework hands over,
`traceparent` fields and `tracestate` lists, as plain strings.

`context_manager` builds `TraceContext` from these functions; nothing here raises on what a
remote peer sent (an invalid value gives `None` or an empty list), only on a caller's mistake.

- Header lines: HTTP may repeat a field line, and the spec says repeated `tracestate` lines MUST
  be combined as RFC 9110 §5.3 says (joined with ","), while more than one `traceparent` makes
  the request's context invalid. So every line is read, whatever the container: a `dict` or any
  `Mapping` (a list/tuple value counts as repeated lines, as OpenTelemetry's getter reads it),
  a multi-dict whose `items()` yields repeats (multidict/aiohttp `CIMultiDict`, Starlette and
  Werkzeug `Headers`, `http.client.HTTPMessage`, `wsgiref` `Headers`), or an iterable of
  `(name, value)` pairs (ASGI's `scope["headers"]`). Names and values may be `str` or `bytes`
  (decoded as ISO-8859-1, as ASGI and http.client do); names compare ASCII case-insensitively.
- `tracestate` (Level 2): key = (lcalpha / DIGIT) 0*255(lcalpha / DIGIT / "_" / "-" / "*" /
  "/" / "@"), value = 0*255(chr) nblk-chr. The spec lets a vendor drop bad members or the whole
  header; we discard the whole header on any invalid member or on more than 32 members
  (repeats counted), the strict choice the official suite checks at STRICT_LEVEL=2 and
  OpenTelemetry makes. Empty and whitespace-only members are allowed and skipped. A repeated
  key keeps its left-most (most recent) entry, which the spec allows ("vendors MAY also discard
  duplicate keys"; OpenTelemetry discards the header instead).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"
MAX_TRACESTATE_MEMBERS = 32
SAMPLED_FLAG = 0x01
"""Level 1: the caller may have recorded trace data."""
RANDOM_FLAG = 0x02
"""Level 2: at least the right-most 7 bytes of the trace-id are (pseudo-)random."""
KNOWN_FLAGS = SAMPLED_FLAG | RANDOM_FLAG
"""Every other bit is reserved: 'Vendors MUST set those to zero' when propagating."""

_TRACEPARENT_RE = re.compile(
    r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*"
)
_KEY_RE = re.compile(r"[a-z0-9][a-z0-9_\-*/@]{0,255}")
_VALUE_RE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
_OWS = " \t"
_ACCEPTED = (
    "a Mapping of header names to values (a list/tuple value is repeated lines), a multi-dict "
    "whose items() yields repeated lines, or an iterable of (name, value) pairs; names and "
    "values str or bytes"
)
KEY_GRAMMAR = "a lowercase letter or digit, then up to 255 of a-z 0-9 _ - * / @"
VALUE_GRAMMAR = (
    "1 to 256 printable ASCII characters (0x20-0x7E) except ',' and '=', not ending in a space"
)


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    return None


def header_lines(headers: object) -> tuple[list[str | None], list[str | None]]:
    """Every `traceparent` and every `tracestate` field line of `headers`, in arrival order.

    A value that is neither `str` nor `bytes` is kept as `None` (an invalid line, never an
    exception: it came from outside). A `headers` argument of the wrong shape is the caller's
    bug and raises `TypeError`. `None` means no headers.
    """
    parents: list[str | None] = []
    states: list[str | None] = []
    if headers is None:
        return parents, states
    if isinstance(headers, str | bytes | bytearray):
        raise TypeError(f"headers must be {_ACCEPTED}; got a {type(headers).__name__}")
    items = getattr(headers, "items", None)
    pairs = items() if callable(items) else headers
    try:
        iterator = iter(pairs)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"headers must be {_ACCEPTED}; got {type(headers).__name__}") from None
    for pair in iterator:
        try:
            raw_name, value = pair
        except (TypeError, ValueError):
            raise TypeError(
                f"headers must be {_ACCEPTED}; got the item {pair!r:.80}, not a (name, value) pair"
            ) from None
        name = _text(raw_name)
        if name is None:
            continue
        name = name.lower()
        if name == TRACEPARENT_HEADER:
            target = parents
        elif name == TRACESTATE_HEADER:
            target = states
        else:
            continue
        if isinstance(value, list | tuple) and isinstance(headers, Mapping):
            target.extend(_text(v) for v in value)
        else:
            target.append(_text(value))
    return parents, states


def split_traceparent(value: str | None) -> tuple[str, str, int] | None:
    """(trace_id, parent_id, flags) of a `traceparent` value, or `None` when it is invalid.

    Version 00 is exactly `00-<32 hex>-<16 hex>-<2 hex>` (lowercase), OWS around it ignored.
    A higher version (not ff) is read by its first four fields, the flags followed by the end
    or a dash; trace-id and parent-id may not be all zeros. Flags come back with every bit.
    """
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
    return trace_id, span_id, int(flags, 16)


def parse_tracestate(value: object) -> list[tuple[str, str]]:
    """The members of a `tracestate` header (one value, or a list of its field lines, which
    are joined with "," first), or `[]` when the header is absent or invalid (see the module
    doc: any invalid member or more than 32 non-empty members discards it all)."""
    if isinstance(value, str):
        combined = value
    elif isinstance(value, list | tuple) and all(isinstance(line, str) for line in value):
        combined = ",".join(value)
    else:  # absent, or not text: nothing to adopt (never raises, the value came from outside)
        return []
    members: dict[str, str] = {}
    count = 0
    for raw in combined.split(","):
        member = raw.strip(_OWS)
        if not member:
            continue
        count += 1
        key, sep, val = member.partition("=")
        if (
            count > MAX_TRACESTATE_MEMBERS
            or not sep
            or _KEY_RE.fullmatch(key) is None
            or _VALUE_RE.fullmatch(val) is None
        ):
            return []
        members.setdefault(key, val)
    return list(members.items())


def tracestate_error(members: Iterable[object]) -> str | None:
    """Why `members` cannot be sent as a `tracestate` (a message naming the bad member), or
    `None` when it can: (key, value) string pairs in the Level 2 grammar, keys unique, at most
    32 of them."""
    seen: set[str] = set()
    count = 0
    for index, member in enumerate(members):
        count += 1
        if not (isinstance(member, tuple) and len(member) == 2):
            return f"member {index} {member!r:.80} is not a (key, value) pair"
        key, val = member
        if not isinstance(key, str) or _KEY_RE.fullmatch(key) is None:
            return f"member {index} key {key!r:.80} is not a tracestate key: {KEY_GRAMMAR}"
        if not isinstance(val, str) or _VALUE_RE.fullmatch(val) is None:
            return f"member {index} value {val!r:.80} for key {key!r:.40} is not {VALUE_GRAMMAR}"
        if key in seen:
            return f"member {index} repeats the key {key!r:.80}; a key may appear once"
        seen.add(key)
    if count > MAX_TRACESTATE_MEMBERS:
        return f"{count} members; at most {MAX_TRACESTATE_MEMBERS} are allowed"
    return None


def format_tracestate(members: Iterable[tuple[str, str]]) -> str:
    """The single-line header value ("" for no members; the caller then sends no header)."""
    return ",".join(f"{key}={val}" for key, val in members)
