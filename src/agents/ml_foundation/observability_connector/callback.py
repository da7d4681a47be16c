"""LangChain callbacks -> complete `ObservabilitySpan`s, with zero tracing code in the agent.

    handler = ObservabilityCallbackHandler(agent_name="gap_analyzer")
    graph.invoke(inputs, config={"callbacks": [handler]})
    handler.flush(timeout=5.0)

Chat-model and LLM runs become `llm` spans (model, token usage, time to first token when
streaming), tools `tool` spans, LangGraph nodes `chain` spans and the graph's root run an
`agent` span; `callback_runs` says which chain runs are kept. Each finished run is handed to
`connector.submit(span)`, or, when the connector has a worker thread (`submit_later`: the
`OpikConnector` over a `BatchProcessor`), as a call that builds the span there, so that reading
the response's usage and building the span leave the agent's thread. The handler itself does
no I/O. It never raises into the traced program: every hook is guarded, problems are counted
(`stats`) and logged rate-limited.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any, Protocol, TypeVar
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from typing_extensions import override

from .callback_runs import (
    RunRecord,
    build_span,
    error_outcome,
    is_graph_node,
    is_plumbing,
    open_record,
    prompt_text,
    run_name,
    text_attributes,
)
from .fallback_connector import default_connector_or_fallback
from .models import ObservabilitySpan, SpanEvent, SpanKind, utc_now
from .usage import ProblemCounter, extract_model_name, extract_usage

__all__ = ["ObservabilityCallbackHandler", "SpanConnector"]

_F = TypeVar("_F", bound=Callable[..., Any])


class SpanConnector(Protocol):
    """Where finished spans go (the OpikConnector, a BatchProcessor, a test collector).

    One with a worker thread also has `submit_later(build)`: it calls `build()`, which returns
    the span, on that thread (before sampling and any sink), never on the caller's."""

    def submit(self, span: ObservabilitySpan) -> None: ...

    def flush(self, timeout: float | None) -> bool: ...


def _guarded(hook: _F) -> _F:
    """Run a hook; an internal failure is counted and logged, never raised into the agent."""

    @functools.wraps(hook)
    def wrapper(self: ObservabilityCallbackHandler, *args: Any, **kwargs: Any) -> None:
        try:
            hook(self, *args, **kwargs)
        except Exception as exc:  # the traced program must never see our bugs
            self._internal_errors.record(f"{hook.__name__} failed: {exc!r:.200}")

    return wrapper  # type: ignore[return-value]


def _aware(now: datetime) -> datetime:
    """`now` if timezone-aware: spans are built without re-validation (see `build_span`)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"clock must return timezone-aware datetimes, got naive {now!r}")
    return now


_MAX_CACHED_TIERS = 1024
_NOT_CHECKED = object()  # no tzinfo (not even None, a naive clock's) is this


class ObservabilityCallbackHandler(BaseCallbackHandler):
    """Turns LangChain / LangGraph runs into spans submitted to a connector."""

    run_inline = True
    """Cheap and synchronous: async runs call it directly instead of through an executor."""
    raise_error = False

    def __init__(
        self,
        agent_name: str | None = None,
        connector: SpanConnector | None = None,
        *,
        capture_prompts: bool = False,
        max_chars: int = 2000,
        max_runs: int = 10_000,
        trace_inner_chains: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """`capture_prompts`/`max_chars` default like `CaptureSettings`; `max_runs` bounds the
        map of open runs (oldest evicted and counted); `trace_inner_chains=False` keeps only
        the root, graph nodes, LLMs and tools; `clock` returns timezone-aware datetimes.
        Without `connector`: the process default; if a broken configuration keeps it from being
        built, a warning is logged and this handler counts and discards its spans
        (`fallback_connector.py`) rather than raise into the agent."""
        super().__init__()
        if agent_name is not None and (not isinstance(agent_name, str) or not agent_name):
            raise ValueError(f"agent_name must be a non-empty string or None, got {agent_name!r}")
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 0:
            raise ValueError(f"max_chars must be an integer >= 0, got {max_chars!r}")
        if isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1:
            raise ValueError(f"max_runs must be an integer >= 1, got {max_runs!r}")
        if connector is None:  # the process default; a broken config must not break the agent
            connector = default_connector_or_fallback()
        self._agent_name = agent_name
        self._connector = connector
        self._capture = bool(capture_prompts)
        self._max_chars = max_chars
        self._max_runs = max_runs
        self._inner_chains = bool(trace_inner_chains)
        self._clock = clock or utc_now
        # Per-handler caches for the hot path: the time zone the clock was last seen to return
        # aware datetimes in (checked again whenever it changes), and each agent's tier as the
        # connector assigns it (its `tier_of`, e.g. OpikConnector's registry lookup).
        self._aware_tz: tzinfo | object = UTC if clock is None else _NOT_CHECKED
        self._tier_of: Callable[[str], int | None] | None = getattr(connector, "tier_of", None)
        # A connector with a worker thread builds the spans there (`submit_later`): reading the
        # response's usage and building the span leave the agent's thread.
        self._submit_later: Callable[[Callable[[], ObservabilitySpan]], None] | None = getattr(
            connector, "submit_later", None
        )
        self._tiers: dict[str, int | None] = {}
        self._lock = threading.Lock()
        self._runs: OrderedDict[UUID, RunRecord] = OrderedDict()
        self._submitted = 0
        self._internal_errors = ProblemCounter("observability callback internal error")
        self._submit_failures = ProblemCounter("observability callback: connector.submit failed")
        self._evicted = ProblemCounter("observability callback: open-run map full, evicted oldest")
        self._invalid_usage = ProblemCounter("observability callback: invalid token count")

    @property
    def stats(self) -> dict[str, int]:
        """Counters for the self-monitor."""
        with self._lock:
            open_runs, submitted = len(self._runs), self._submitted
        return {
            "open_runs": open_runs,
            "submitted": submitted,
            "evicted_runs": self._evicted.count,
            "internal_errors": self._internal_errors.count,
            "submit_failures": self._submit_failures.count,
            "invalid_token_counts": self._invalid_usage.count,
        }

    def flush(self, timeout: float | None = None) -> bool:
        """Ask the connector to deliver what it holds; False if it could not within `timeout`."""
        try:
            return bool(self._connector.flush(timeout))
        except Exception as exc:  # flushing is best effort, like submitting
            self._submit_failures.record(f"flush failed: {exc!r:.200}")
            return False

    # --- LLM and chat model runs -------------------------------------------------------------

    @override
    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[Any]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        try:  # guarded like `_guarded` does, inline: this hook runs on every chat model call
            self._start_llm(serialized, messages, run_id, kwargs)
        except Exception as exc:  # the traced program must never see our bugs
            self._internal_errors.record(f"on_chat_model_start failed: {exc!r:.200}")

    @override
    @_guarded
    def on_llm_start(
        self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID, **kwargs: Any
    ) -> None:
        self._start_llm(serialized, prompts, run_id, kwargs)

    @override
    @_guarded
    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            record = self._runs.get(run_id)
            if record is None or record.first_token_at is not None:
                return
            now = record.first_token_at = self._clock()
            record.attributes["streaming"] = True
            record.events.append(SpanEvent(name="first_token", timestamp=now))

    @override
    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:  # guarded like `_guarded` does, inline: this hook runs on every LLM call
            self._end_llm(response, run_id)
        except Exception as exc:  # the traced program must never see our bugs
            self._internal_errors.record(f"on_llm_end failed: {exc!r:.200}")

    def _end_llm(self, response: Any, run_id: UUID) -> None:
        self._finish(run_id, response=response)

    def _llm_outcome(self, response: Any, outcome: dict[str, Any]) -> str | None:
        """Add an LLM response's usage (and output text, when captured) to `outcome`; return
        the model name it reports."""
        usage = extract_usage(response, problems=self._invalid_usage)
        if self._capture:
            generations = getattr(response, "generations", None) or [[]]
            text = "\n".join(getattr(g, "text", "") for g in generations[0])
            outcome["attributes"] = text_attributes(self._max_chars, "output", text)
        outcome["usage"] = usage
        # extract_usage already found the model name when the usage block carried one
        return usage.model if usage is not None and usage.model else extract_model_name(response)

    @override
    @_guarded
    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        # a stream that broke off may already have reported usage: those tokens were billed
        partial = kwargs.get("response")
        usage = extract_usage(partial, problems=self._invalid_usage) if partial else None
        self._finish(run_id, usage=usage, **error_outcome(error, self._max_chars))

    # --- chains (graphs, nodes) --------------------------------------------------------------

    @override
    def on_chain_start(
        self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: UUID, **kwargs: Any
    ) -> None:
        try:  # guarded like `_guarded` does, inline: this hook runs for every graph node
            self._start_chain(serialized, run_id, kwargs)
        except Exception as exc:  # the traced program must never see our bugs
            self._internal_errors.record(f"on_chain_start failed: {exc!r:.200}")

    def _start_chain(self, serialized: Any, run_id: UUID, kwargs: Mapping[str, Any]) -> None:
        name = run_name(serialized, kwargs, "chain")
        tags, metadata = kwargs.get("tags"), kwargs.get("metadata") or {}
        node = is_graph_node(name, tags, metadata)
        kind: SpanKind | None = SpanKind.CHAIN
        # a root run (no parent_run_id) is always kept: `open_record` makes it the agent span
        is_root = kwargs.get("parent_run_id") is None
        if not is_root and (is_plumbing(name, tags) or not (node or self._inner_chains)):
            kind = None
        attrs: dict[str, Any] = {}
        if node:
            attrs = {"langgraph.node": name, "langgraph.step": metadata.get("langgraph_step")}
        self._start(run_id, kind, name, kwargs, attrs, node=node)

    @override
    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:  # guarded inline, like on_chain_start
            self._finish(run_id)
        except Exception as exc:  # the traced program must never see our bugs
            self._internal_errors.record(f"on_chain_end failed: {exc!r:.200}")

    @override
    @_guarded
    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._finish(run_id, **error_outcome(error, self._max_chars))

    # --- tools -------------------------------------------------------------------------------

    @override
    @_guarded
    def on_tool_start(
        self, serialized: dict[str, Any], input_str: str, *, run_id: UUID, **kwargs: Any
    ) -> None:
        name = run_name(serialized, kwargs, "tool")
        attrs: dict[str, Any] = {}
        if isinstance(kwargs.get("tool_call_id"), str):
            attrs["tool_call_id"] = kwargs["tool_call_id"]
        if self._capture:
            attrs.update(text_attributes(self._max_chars, "input", input_str))
        self._start(run_id, SpanKind.TOOL, name, kwargs, attrs)

    @override
    @_guarded
    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        content = getattr(output, "content", output)
        attrs = text_attributes(self._max_chars, "output", content) if self._capture else None
        self._finish(run_id, attributes=attrs)

    @override
    @_guarded
    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._finish(run_id, **error_outcome(error, self._max_chars))

    # --- internals ---------------------------------------------------------------------------

    def _start_llm(
        self, serialized: Any, prompts: list[Any], run_id: UUID, kwargs: Mapping[str, Any]
    ) -> None:
        name = run_name(serialized, kwargs, "llm")
        metadata = kwargs.get("metadata")
        # the model name and the provider are looked up once, where the span is built: the
        # response's name wins, these are the fallback (`build_span`)
        sources = (serialized, kwargs.get("invocation_params"), metadata)
        attrs = {}
        if self._capture:
            attrs = text_attributes(self._max_chars, "input", prompt_text(prompts))
        self._start(run_id, SpanKind.LLM, name, kwargs, attrs, sources=sources)

    def _start(
        self,
        run_id: UUID,
        kind: SpanKind | None,
        name: str,
        hook_kwargs: Mapping[str, Any],
        attributes: dict[str, Any],
        *,
        node: bool = False,
        sources: tuple[Any, Any, Any] | None = None,
    ) -> None:
        """Remember a starting run (parent_run_id, tags and metadata come from the hook)."""
        now = self._now()
        parent_run_id = hook_kwargs.get("parent_run_id")
        tags, metadata = hook_kwargs.get("tags"), hook_kwargs.get("metadata") or {}
        evicted = 0
        with self._lock:  # one hold: finding the parent, opening the record, storing it
            runs = self._runs
            record = open_record(
                run_id,
                parent_run_id,
                runs.get(parent_run_id) if parent_run_id is not None else None,
                kind,
                name,
                tags,
                metadata,
                attributes,
                is_node=node,
                model=None,
                agent_name=self._agent_name,
                start_time=now,
                model_sources=sources,
            )
            while len(runs) >= self._max_runs:
                runs.popitem(last=False)
                evicted += 1
            runs[run_id] = record
        for _ in range(evicted):
            self._evicted.record(f"max_runs={self._max_runs} reached")

    def _now(self) -> datetime:
        """The clock's time, checked to be timezone-aware once per time zone it returns."""
        now = self._clock()
        if now.tzinfo is not self._aware_tz:
            self._aware_tz = _aware(now).tzinfo
        return now

    def _tier(self, agent_name: str) -> int | None:
        """The connector's tier for `agent_name`, asked once per agent (None if it has none)."""
        try:
            return self._tiers[agent_name]
        except KeyError:
            pass
        if self._tier_of is None:
            return None
        try:
            tier = self._tier_of(agent_name)
        except Exception:  # the connector's own submit tries again and reports it
            return None
        if len(self._tiers) < _MAX_CACHED_TIERS:
            self._tiers[agent_name] = tier
        return tier

    def _finish(self, run_id: UUID, *, response: Any = None, **outcome: Any) -> None:
        """Close a run; an LLM's `response` is read where its span is built (see `_span`)."""
        end = self._clock()
        extra = outcome.get("attributes")
        interrupted = extra is not None and extra.get("interrupted") is True
        with self._lock:  # one hold: the record, its ancestors, and the submitted count
            record = self._runs.pop(run_id, None)
            ancestor = record
            while interrupted and ancestor and ancestor.parent_run_id:
                # the whole graph paused, not just this node: say so on every open ancestor
                ancestor = self._runs.get(ancestor.parent_run_id)
                if ancestor is not None:
                    ancestor.attributes["interrupted"] = True
            if record is None or record.kind is None:
                return
            self._submitted += 1  # taken back in the rare case no span is handed over
        try:
            if end.tzinfo is not self._aware_tz:
                self._aware_tz = _aware(end).tzinfo
            tier = self._tier(record.agent_name)
            if self._submit_later is None:
                span = self._span(record, end, tier, response, outcome)
        except BaseException:  # reported by the hook's guard as an internal error
            self._not_submitted()
            raise
        try:
            if self._submit_later is None:
                self._connector.submit(span)
            else:  # the span is built on the connector's worker, off the agent's thread
                later = functools.partial(self._span_later, record, end, tier, response, outcome)
                self._submit_later(later)
        except Exception as exc:  # a failing connector must not break the agent
            self._not_submitted()
            self._submit_failures.record(f"{exc!r:.200}")

    def _span(
        self,
        record: RunRecord,
        end: datetime,
        tier: int | None,
        response: Any,
        outcome: dict[str, Any],
    ) -> ObservabilitySpan:
        """The finished run's span: an LLM response's usage and model read, then `build_span`."""
        if response is not None:
            model = self._llm_outcome(response, outcome)
            if model:
                record.llm_model = model
        return build_span(record, end, agent_tier=tier, **outcome)

    def _span_later(self, *span_args: Any) -> ObservabilitySpan:
        """`_span`, called by the connector's worker: a failure is counted here, as a hook's
        would be, before the worker counts the span as not built."""
        try:
            return self._span(*span_args)
        except Exception as exc:
            self._not_submitted()
            self._internal_errors.record(f"building a span failed: {exc!r:.200}")
            raise

    def _not_submitted(self) -> None:
        with self._lock:
            self._submitted -= 1
