"""Request contexts as E2I's pipelines pass them between stages: plain dicts of ids.

E2I's tier-0 pipeline asks the observability agent for a context per request and hands it to
each stage, which derives a child per operation:

    ctx = obs.create_observability_context(request_id=run_id, sample_rate=0.1)
    child = obs.create_child_context(ctx, operation_name="train")
    async with opik.trace_agent("model_trainer", "train", trace_id=child["trace_id"],
                                parent_span_id=child["parent_span_id"]) as span: ...

Both return the same eight keys (`CONTEXT_KEYS`). Ids are W3C: a new UUIDv7 trace id (32 hex)
and random 16-hex span ids; a parent context carrying dashed-UUID ids (made elsewhere) is read
through `ids.py`, so the child still names the parent's trace. `sampled` is decided from the
trace id and `sample_rate` with the batch processor's own rule (`sampling.trace_sampled`), so
every stage and process that samples this trace at this rate makes the same choice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from .ids import normalize_span_id, normalize_trace_id
from .nodes.context_manager import new_span_id, new_trace_id
from .sampling import check_sample_rate, trace_sampled

__all__ = ["CONTEXT_KEYS", "create_child_context", "create_observability_context"]

CONTEXT_KEYS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "request_id",
    "experiment_id",
    "user_id",
    "sampled",
    "sample_rate",
)


def _optional_id(value: object, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} must be a non-empty string, a uuid.UUID or None, got {value!r}")
    return value


def create_observability_context(
    request_id: str,
    experiment_id: str | None = None,
    user_id: str | None = None,
    sample_rate: float = 1.0,
) -> dict[str, Any]:
    """A new trace for one request: new trace and span ids, no parent, the sampling decision."""
    if request_id is None:
        raise ValueError("request_id must be a non-empty string or a uuid.UUID, got None")
    rate = check_sample_rate(sample_rate)
    trace_id = new_trace_id()
    return {
        "trace_id": trace_id,
        "span_id": new_span_id(),
        "parent_span_id": None,
        "request_id": _optional_id(request_id, "request_id"),
        "experiment_id": _optional_id(experiment_id, "experiment_id"),
        "user_id": _optional_id(user_id, "user_id"),
        "sampled": trace_sampled(trace_id, rate),
        "sample_rate": rate,
    }


def create_child_context(
    parent_context: Mapping[str, Any], operation_name: str | None = None
) -> dict[str, Any]:
    """A child of `parent_context`: same trace, request ids and sampling, a new span id, and
    `parent_span_id` = the parent's span id. `operation_name` is checked, not stored (the
    context keeps E2I's eight keys; the span that uses it carries the operation)."""
    if not isinstance(parent_context, Mapping):
        raise ValueError(
            "parent_context must be a dict from create_observability_context or "
            f"create_child_context, got {type(parent_context).__name__}"
        )
    if operation_name is not None and (
        not isinstance(operation_name, str) or not operation_name.strip()
    ):
        raise ValueError(
            f"operation_name must be a non-empty string or None, got {operation_name!r}"
        )
    for key in ("trace_id", "span_id"):
        if parent_context.get(key) is None:
            raise ValueError(f"parent_context[{key!r}] is missing; accepted: a context dict")
    trace_id = normalize_trace_id(parent_context["trace_id"], "parent_context['trace_id']")
    parent_span_id = normalize_span_id(parent_context["span_id"], "parent_context['span_id']")
    rate = check_sample_rate(
        parent_context.get("sample_rate", 1.0), "parent_context['sample_rate']"
    )
    sampled = parent_context.get("sampled")
    if not isinstance(sampled, bool):
        sampled = trace_sampled(trace_id, rate)
    return {
        "trace_id": trace_id,
        "span_id": new_span_id(),
        "parent_span_id": parent_span_id,
        "request_id": parent_context.get("request_id"),
        "experiment_id": parent_context.get("experiment_id"),
        "user_id": parent_context.get("user_id"),
        "sampled": sampled,
        "sample_rate": rate,
    }
