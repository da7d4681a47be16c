"""What a span may carry into any sink: redaction, input/output switches, size limits.

Why one place: the database, Opik, the spool and any later sink must all see the same masked,
bounded span, so the policy (`spans:` in the config) runs once, where spans enter the pipeline
(the batch processor, before it samples, spools or fans out), and never again. It works on the
worker thread, not the agent's.

- Redaction: the value of every key matching `redact_patterns` becomes `[REDACTED]`, at any
  depth of the attributes (input and output included) and in event attributes. A pattern made
  only of letters, digits, `_`, `-`, `.` and spaces is a key name matched word by word, case
  ignored, words split at `_ - .`, spaces and camelCase: `token` masks `access_token`,
  `X-Auth-Token` and `refreshToken`, not `input_tokens`; `api_key` masks `openai_api_key` and
  `apiKey`. Any other pattern is a regular expression searched in the key, case ignored.
- Input is the `input` attribute (the callback handler's, E2I's `input_data`) and `llm.prompt`
  (the connector's prompt text); output is `output` and `llm.response`. With `include_input` /
  `include_output` false they are removed (and their `_truncated` / `_original_chars` markers).
- Sizes are UTF-8 bytes of the value (a string as is, anything else as compact JSON). An input
  or output value over its limit is cut to the limit (`truncate_on_overflow`; a non-string
  becomes its JSON text) with `<key>_truncated: true` and `<key>_original_bytes`, or removed
  with `<key>_omitted_bytes`. The other attributes together are held to
  `max_metadata_size_bytes` by cutting (or removing) their largest values first, listed in
  `attributes_truncated` / `attributes_omitted` (that list itself is not counted), so small
  values such as token counts survive.

`apply` never raises: a span it cannot process loses its attributes and events (a secret must
not slip through) and gets `span_policy_error`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from .config import SpansSettings
from .models import ObservabilitySpan

__all__ = [
    "INPUT_ATTRIBUTES",
    "OUTPUT_ATTRIBUTES",
    "REDACTED",
    "SpanPolicy",
]

REDACTED = "[REDACTED]"
INPUT_ATTRIBUTES = ("input", "llm.prompt")
OUTPUT_ATTRIBUTES = ("output", "llm.response")
_MARKER_SUFFIXES = ("_truncated", "_original_chars", "_original_bytes", "_omitted_bytes")
_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\- ]+")
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_MAX_DEPTH = 64
_CONTAINERS = (dict, list, tuple)
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":"))
_KEY_CACHE_SIZE = 4096
_PAYLOAD = frozenset((*INPUT_ATTRIBUTES, *OUTPUT_ATTRIBUTES))


def _words(text: str) -> tuple[str, ...]:
    return tuple(w.lower() for w in _WORDS.findall(text))


def _key_matcher(patterns: Iterable[str]) -> Callable[[str], bool]:
    names: list[tuple[str, ...]] = []
    regexes: list[re.Pattern[str]] = []
    for pattern in patterns:
        if _NAME_PATTERN.fullmatch(pattern) and _words(pattern):
            names.append(_words(pattern))
        else:
            regexes.append(re.compile(pattern, re.IGNORECASE))

    def matches(key: str) -> bool:
        words = _words(key)
        for name in names:
            n = len(name)
            if any(words[i : i + n] == name for i in range(len(words) - n + 1)):
                return True
        return any(r.search(key) for r in regexes)

    return matches


def _size(value: Any) -> int:
    text = value if isinstance(value, str) else _ENCODER.encode(value)
    return len(text.encode("utf-8", "surrogatepass"))


_SCALAR_BOUNDS = {bool: 5, type(None): 4, float: 24}


def _size_bound(value: Any) -> int:
    """An upper bound of `_size(value)` without encoding, for a string or a scalar; anything
    else gets an unbounded answer (the caller then encodes it)."""
    kind = value.__class__
    if kind is str:
        return 6 * len(value) + 2  # a control character escapes to 6 bytes; others <= 4
    if kind is int:
        return value.bit_length() // 3 + 2
    return _SCALAR_BOUNDS.get(kind, 1 << 62)


def _cut(value: Any, limit: int) -> str:
    """`value` (its JSON text if not a string) cut to at most `limit` UTF-8 bytes."""
    text = value if isinstance(value, str) else _ENCODER.encode(value)
    return text.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore")


class SpanPolicy:
    """`spans:` settings applied to spans; reusable across threads (its key cache is a dict
    whose races only cost a recomputation)."""

    def __init__(self, settings: SpansSettings) -> None:
        self.settings = settings
        self._matches = _key_matcher(settings.redact_patterns)
        self._key_cache: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"SpanPolicy({self.settings!r})"

    def apply_all(self, spans: Iterable[ObservabilitySpan]) -> list[ObservabilitySpan]:
        return [self.apply(span) for span in spans]

    def apply(self, span: ObservabilitySpan) -> ObservabilitySpan:
        """The span as sinks may see it: the same object when nothing changes, else a copy."""
        try:
            if not span.events and self._flat_and_clean(span.attributes):
                return span  # the common span, decided in one pass (see `_flat_and_clean`)
            attributes, changed = self._attributes(span.attributes)
            events, events_changed = self._events(span) if span.events else (span.events, False)
        # broad except, on purpose: a span we cannot inspect must not reach a sink unmasked
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
            return span.model_copy(
                update={"attributes": {"span_policy_error": error}, "events": []}
            )
        if not changed and not events_changed:
            return span
        return span.model_copy(update={"attributes": attributes, "events": events})

    def _flat_and_clean(self, attributes: dict[str, Any]) -> bool:
        """True when the full walk would leave these attributes as they are, decided in one
        pass for the common case (this runs on the worker for every span): only scalar
        values, under keys already known not to be secret, none of them input or output,
        and within `max_metadata_size_bytes` by the same upper bound `_within_limits` uses.
        False means "not sure": the full walk decides."""
        secret = self._key_cache.get
        bound = 0
        for key, value in attributes.items():
            kind = value.__class__
            if kind is str:
                size = 6 * len(value) + 2
            elif kind is int:
                size = value.bit_length() // 3 + 2
            elif kind in _SCALAR_BOUNDS:
                size = _SCALAR_BOUNDS[kind]
            else:  # a container (or an odd scalar): the walk looks inside
                return False
            if secret(key, True) or key in _PAYLOAD:  # secret, not cached yet, or payload
                return False
            bound += len(key) * 4 + 4 + size
        return bound <= self.settings.max_metadata_size_bytes

    # -- redaction ------------------------------------------------------------------------
    def _is_secret(self, key: str) -> bool:
        hit = self._key_cache.get(key)
        if hit is None:
            hit = self._matches(key)
            if len(self._key_cache) < _KEY_CACHE_SIZE:
                self._key_cache[key] = hit
        return hit

    def _redact(self, value: Any, depth: int = 0) -> tuple[Any, bool]:
        """`value` with secret keys masked, and whether anything changed (no copy if not)."""
        if depth >= _MAX_DEPTH:
            return "[too deep]", True
        if isinstance(value, dict):
            out: dict[Any, Any] | None = None
            for key, item in value.items():
                if isinstance(key, str) and self._is_secret(key):
                    new: Any = REDACTED
                elif isinstance(item, _CONTAINERS):
                    new, changed = self._redact(item, depth + 1)
                    if not changed:
                        continue
                else:
                    continue  # a scalar under an ordinary key: kept as is
                if out is None:
                    out = dict(value)
                out[key] = new
            return (value, False) if out is None else (out, True)
        items = [
            self._redact(item, depth + 1) if isinstance(item, _CONTAINERS) else (item, False)
            for item in value
        ]
        if any(changed for _, changed in items):
            return [v for v, _ in items], True
        return value, False

    def _events(self, span: ObservabilitySpan) -> tuple[list[Any], bool]:
        events, changed = [], False
        for event in span.events:
            attributes, event_changed = self._redact(event.attributes)
            if event_changed:
                event = event.model_copy(update={"attributes": attributes})
                changed = True
            events.append(event)
        return events, changed

    # -- input, output, metadata ----------------------------------------------------------
    def _attributes(self, original: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        if not original:
            return original, False
        attributes, changed = self._redact(original)
        if self._within_limits(attributes):
            return attributes, changed
        attributes = dict(attributes)
        s = self.settings
        for keys, include, limit in (
            (INPUT_ATTRIBUTES, s.include_input, s.max_input_size_bytes),
            (OUTPUT_ATTRIBUTES, s.include_output, s.max_output_size_bytes),
        ):
            for key in keys:
                if key not in attributes:
                    continue
                if not include:
                    del attributes[key]
                    for suffix in _MARKER_SUFFIXES:
                        attributes.pop(key + suffix, None)
                    changed = True
                elif self._limit(attributes, key, limit):
                    changed = True
        return attributes, self._limit_metadata(attributes) or changed

    def _within_limits(self, attributes: dict[str, Any]) -> bool:
        """Nothing to remove or cut? Decided cheaply for the common span (a few short scalar
        attributes) from an upper bound of its size, encoding only when the bound says maybe."""
        s = self.settings
        bound = 0
        for key, value in attributes.items():
            if key in INPUT_ATTRIBUTES or key in OUTPUT_ATTRIBUTES:
                include, limit = (
                    (s.include_input, s.max_input_size_bytes)
                    if key in INPUT_ATTRIBUTES
                    else (s.include_output, s.max_output_size_bytes)
                )
                if not include or (_size_bound(value) > limit and _size(value) > limit):
                    return False
                continue
            bound += len(key) * 4 + 4 + _size_bound(value)
        limit = s.max_metadata_size_bytes
        if bound <= limit:
            return True
        payload = (*INPUT_ATTRIBUTES, *OUTPUT_ATTRIBUTES)
        return _size({k: v for k, v in attributes.items() if k not in payload}) <= limit

    def _limit(self, attributes: dict[str, Any], key: str, limit: int) -> bool:
        value = attributes[key]
        if _size_bound(value) <= limit:
            return False
        size = _size(value)
        if size <= limit:
            return False
        if self.settings.truncate_on_overflow:
            attributes[key] = _cut(attributes[key], limit)
            attributes[f"{key}_truncated"] = True
            attributes[f"{key}_original_bytes"] = size
        else:
            del attributes[key]
            attributes[f"{key}_omitted_bytes"] = size
        return True

    def _limit_metadata(self, attributes: dict[str, Any]) -> bool:
        limit = self.settings.max_metadata_size_bytes
        payload = {k for k in attributes if k in INPUT_ATTRIBUTES or k in OUTPUT_ATTRIBUTES}
        sizes = {k: _size(v) for k, v in attributes.items() if k not in payload}
        total = sum(sizes.values()) + sum(len(k.encode()) + 4 for k in sizes)
        if total <= limit:
            return False
        cut: list[str] = []
        truncate = self.settings.truncate_on_overflow
        for key in sorted(sizes, key=sizes.__getitem__, reverse=True):
            if total <= limit:
                break
            if truncate:
                attributes[key] = _cut(attributes[key], max(0, sizes[key] - (total - limit)))
                total -= sizes[key] - _size(attributes[key])
            else:
                del attributes[key]
                total -= sizes[key] + len(key.encode()) + 4
            cut.append(key)
        attributes["attributes_truncated" if truncate else "attributes_omitted"] = cut
        return True
