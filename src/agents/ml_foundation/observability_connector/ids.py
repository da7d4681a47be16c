"""Identifiers as callers make them, mapped to W3C trace ids (32 hex) and span ids (16 hex).

E2I's modules pass `str(uuid4())`, `str(uuid7())` (dashed), `uuid4().hex`, the connector's own
32/16-hex ids and, in tests, free-form strings such as "trace-123". Storage, `traceparent` and
sampling all need the W3C forms, so every entry point maps an id here, the same way:

Trace ids (`normalize_trace_id`):
- 32 hex (any case) -> lowercased: a dashed UUID and its `.hex` are the same 128 bits, so
  `str(u)`, `u.hex` and `u` (a `uuid.UUID`) all give `u.hex`; braces and `urn:uuid:` too.
- 16 hex (a 64-bit trace id from older tracers) -> left-padded with 16 zeros, as OpenTelemetry
  does when it meets a Jaeger/Zipkin 64-bit id.
- anything else that is a non-empty string (free-form, or an all-zero id, which W3C calls
  invalid) -> the first 32 hex of sha256("trace:" + value): deterministic, so the same string
  finds the same stored trace in every process.

Span ids (`normalize_span_id`):
- 16 hex (any case) -> lowercased.
- a UUID (dashed, 32 hex, or `uuid.UUID`) -> its low 64 bits as 16 hex. In UUIDv4 and UUIDv7
  those are the 2 variant bits and 62 random bits (the high bits of a v7 are its timestamp,
  shared by ids made in the same millisecond), so they are never all zero and rarely collide.
- anything else non-empty (free-form, all zeros) -> the first 16 hex of sha256("span:" + value).

`None`, an empty string or a value of another type is no identifier: a ValueError naming the
field, which a caller that must never raise (a context manager around an agent) turns into
"start a new trace".
"""

from __future__ import annotations

import hashlib
import re
import uuid

__all__ = ["normalize_span_id", "normalize_trace_id"]

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_ZERO32 = "0" * 32
_ZERO16 = "0" * 16
_LOW64 = (1 << 64) - 1


def _as_text(value: object, field: str) -> str:
    if isinstance(value, uuid.UUID):
        return value.hex
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"{field} must be a non-empty string or uuid.UUID (32/16 hex, a dashed UUID, or "
            f"any other text, which is hashed), got {value!r}"
        )
    return value.strip()


def _uuid_hex(text: str) -> str | None:
    """32 lowercase hex when `text` is a UUID in a form `uuid.UUID` reads, else None."""
    if _HEX32.fullmatch(text):
        return text.lower()
    if len(text) < 36:  # shorter than 8-4-4-4-12: not a dashed UUID
        return None
    try:
        return uuid.UUID(text).hex
    except ValueError:
        return None


def _hashed(kind: str, text: str, length: int) -> str:
    digest = hashlib.sha256(f"{kind}:{text}".encode("utf-8", "surrogatepass")).hexdigest()
    # All-zero prefixes do not happen in practice (p = 2**-64); re-hash so the rule is total.
    while digest[:length] == "0" * length:
        digest = hashlib.sha256(digest.encode("ascii")).hexdigest()
    return digest[:length]


def normalize_trace_id(value: object, field: str = "trace_id") -> str:
    """The 32-hex W3C trace id for `value` (see the module docstring for the mapping)."""
    text = _as_text(value, field)
    hex32 = _uuid_hex(text)
    if hex32 is not None and hex32 != _ZERO32:
        return hex32
    if _HEX16.fullmatch(text) and text.strip("0"):
        return _ZERO16 + text.lower()
    return _hashed("trace", text, 32)


def normalize_span_id(value: object, field: str = "span_id") -> str:
    """The 16-hex W3C span id for `value` (see the module docstring for the mapping)."""
    text = _as_text(value, field)
    if _HEX16.fullmatch(text) and text.strip("0"):
        return text.lower()
    hex32 = _uuid_hex(text)
    if hex32 is not None and int(hex32, 16) & _LOW64:
        return f"{int(hex32, 16) & _LOW64:016x}"
    return _hashed("span", text, 16)
