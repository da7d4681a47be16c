"""Join a running OpenTelemetry trace: the OTel span current in the caller's context, if any.

When an E2I API request is traced by OpenTelemetry (FastAPI instrumentation, say) and calls an
agent, the agent's root span should be a child of that request's span, not a new trace. Where
the connector starts a root span it asks `ambient_context()`: our own current span first, else
the recording OpenTelemetry span current at that moment (same trace id, parent = that span).
We only read OTel's context; we never create OTel SDK spans, so nothing is exported twice.

`opentelemetry-api` is optional: without it this is a no-op. `set_otel_join(False)` (config
`otlp.join_otel_trace: false`, applied by the default connector) turns joining off for the
process.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..nodes.context_manager import TraceContext, current_context

__all__ = ["ambient_context", "otel_current_context", "set_otel_join"]

_state: dict[str, object] = {"enabled": True, "trace_module": None}
_MISSING = object()


def set_otel_join(enabled: bool) -> None:
    """Process-wide switch (the OTel context is process-wide too)."""
    _state["enabled"] = bool(enabled)


def _otel_trace() -> ModuleType | None:
    module = _state["trace_module"]
    if module is None:
        try:
            module = importlib.import_module("opentelemetry.trace")
        except ImportError:
            module = _MISSING
        _state["trace_module"] = module
    return None if module is _MISSING else module  # type: ignore[return-value]


def otel_current_context() -> TraceContext | None:
    """The current recording OpenTelemetry span as a W3C context, or None."""
    if not _state["enabled"]:
        return None
    trace = _otel_trace()
    if trace is None:
        return None
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    sc = span.get_span_context()
    if not sc.is_valid:
        return None
    ids, flags = (format(sc.trace_id, "032x"), format(sc.span_id, "016x")), int(sc.trace_flags)
    try:
        return TraceContext(*ids, flags, tuple(sc.trace_state.items()))
    except ValueError:  # a tracestate our stricter W3C checks refuse: keep ids and flags
        return TraceContext(*ids, flags)


def ambient_context() -> TraceContext | None:
    """Our current span's context, else the current OpenTelemetry span's, else None."""
    return current_context() or otel_current_context()
