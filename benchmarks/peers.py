"""The tracers compared in the callback benchmark, each behind the same small interface.

- `floor`: langchain-core's `UsageMetadataCallbackHandler` (the least any callback costs);
- `ours`: `ObservabilityCallbackHandler` -> `BatchProcessor` -> SQLite in the background;
- `ours_handler_only`: the same handler with a connector that discards spans, unbuilt: the
  handler's part on the agent's thread (diagnostic);
- `opik`: `opik.integrations.langchain.OpikTracer`;
- `langfuse`: `langfuse.langchain.CallbackHandler`.

Peers are pointed at the loopback server (`benchmarks.loopback`) on 127.0.0.1 through their
documented environment variables, with telemetry off; they never reach the internet. A peer
whose package is absent is reported as not installed (`None`), never faked.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PEERS", "Tracer", "configure_peer_environment", "make_tracer", "peer_installed"]

PEERS = ("opik", "langfuse")
FLUSH_TIMEOUT_SECONDS = 120.0


@dataclass
class Tracer:
    """Callbacks to attach, plus how to drain and release what they started."""

    name: str
    callbacks: list[Any]
    flush: Callable[[], None] = lambda: None
    close: Callable[[], None] = lambda: None
    info: dict[str, Any] = field(default_factory=dict)


def peer_installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def configure_peer_environment(base_url: str) -> None:
    """Point both SDKs at `base_url` (the loopback server), dummy keys, no telemetry."""
    os.environ.update(
        {
            "OPIK_URL_OVERRIDE": f"{base_url}/api",
            "OPIK_API_KEY": "bench-dummy-key",
            "OPIK_WORKSPACE": "bench",
            "OPIK_PROJECT_NAME": "bench",
            "OPIK_SENTRY_ENABLE": "false",
            "OPIK_ANALYTICS_ENABLE": "false",
            "OPIK_TRACK_DISABLE": "false",  # the test suite's conftest sets it true
            "LANGFUSE_BASE_URL": base_url,
            "LANGFUSE_HOST": base_url,
            "LANGFUSE_PUBLIC_KEY": "pk-lf-bench-dummy",
            "LANGFUSE_SECRET_KEY": "sk-lf-bench-dummy",
            "LANGFUSE_TRACING_ENABLED": "true",
            "LANGFUSE_MEDIA_UPLOAD_ENABLED": "false",
        }
    )
    quiet_peer_loggers()


def quiet_peer_loggers() -> None:
    """The SDKs' startup banners and "could not parse the model" notes (they reset levels
    when their client starts, so call this again after building a tracer)."""
    for noisy in ("opik", "langfuse"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def make_tracer(name: str, work_dir: Path | None = None) -> Tracer | None:
    """The tracer called `name`, or None for a peer that is not installed."""
    if name == "bare":
        return Tracer("bare", [])
    if name == "floor":
        from langchain_core.callbacks import UsageMetadataCallbackHandler

        return Tracer("floor", [UsageMetadataCallbackHandler()])
    if name in ("ours", "ours_no_pricing"):
        directory = work_dir or Path(tempfile.mkdtemp(prefix="e2i-bench-"))
        return _ours(directory, pricing=name == "ours")
    if name == "ours_handler_only":
        from src.agents.ml_foundation.observability_connector.callback import (
            ObservabilityCallbackHandler,
        )

        return Tracer("ours_handler_only", [ObservabilityCallbackHandler("bench", _Discard())])
    if name in PEERS and not peer_installed(name):
        return None
    tracer = _opik() if name == "opik" else _langfuse() if name == "langfuse" else None
    if tracer is None:
        raise ValueError(f"unknown tracer {name!r}; accepted: bare, floor, ours, {PEERS}")
    quiet_peer_loggers()
    return tracer


class _Discard:
    def submit(self, span: Any) -> None:
        """Drop the span: measures the handler alone."""

    def submit_later(self, build: Any) -> None:
        """Drop the call that would build the span on a batch worker: the handler's part on
        the agent's thread alone."""

    def flush(self, timeout: float | None) -> bool:
        return True


def _ours(work_dir: Path, *, pricing: bool = True) -> Tracer:
    """The default path; `pricing=False` leaves out the pricing step (the issue-13 A/B)."""
    from src.agents.ml_foundation.observability_connector.batch_processor import BatchProcessor
    from src.agents.ml_foundation.observability_connector.callback import (
        ObservabilityCallbackHandler,
    )
    from src.agents.ml_foundation.observability_connector.config import BatchingSettings
    from src.agents.ml_foundation.observability_connector.db_sink import DatabaseSink
    from src.agents.ml_foundation.observability_connector.pricing import Pricer
    from src.agents.ml_foundation.observability_connector.registry import load_agent_registry
    from src.mlops.opik_connector import OpikConnector
    from src.repositories.sqlite_repository import SqliteSpanRepository

    name = "ours" if pricing else "ours_no_pricing"
    sink = DatabaseSink(SqliteSpanRepository(work_dir / f"{name}-callback-bench.db"))
    sink.setup()
    processor = BatchProcessor(
        [sink], BatchingSettings(), work_dir / f"{name}-spool", pricer=Pricer() if pricing else None
    )
    # Through OpikConnector, as `get_opik_connector()` wires it (tier filled from the registry).
    connector = OpikConnector(processor, registry=load_agent_registry())
    handler = ObservabilityCallbackHandler(agent_name="gap_analyzer", connector=connector)

    def flush() -> None:
        if not processor.flush(FLUSH_TIMEOUT_SECONDS):
            raise RuntimeError("our batch processor did not flush in time")

    def close() -> None:
        processor.close(FLUSH_TIMEOUT_SECONDS)
        sink.close()

    tracer = Tracer(name, [handler], flush, close)
    tracer.info["stats"] = processor.stats
    return tracer


def _opik() -> Tracer:
    from opik.integrations.langchain import OpikTracer

    tracer = OpikTracer(project_name="bench")

    def close() -> None:
        tracer.flush()
        client = getattr(tracer, "_opik_client", None)
        end = getattr(client, "end", None)
        if end is not None:
            end()

    return Tracer("opik", [tracer], tracer.flush, close)


def _langfuse() -> Tracer:
    from langfuse import Langfuse
    from langfuse.langchain import CallbackHandler

    client = Langfuse()
    return Tracer("langfuse", [CallbackHandler()], client.flush, client.shutdown)
