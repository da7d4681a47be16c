"""Tier 0 observability connector: tracing, latency percentiles, token usage and errors.

The names most callers need, imported lazily (importing this package loads nothing else):

    from src.agents.ml_foundation.observability_connector import (
        ObservabilityCallbackHandler, ObservabilityConnectorAgent, build_observability_graph,
    )
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ObservabilityCallbackHandler": ".callback",
    "ObservabilityConnectorAgent": ".agent",
    "build_observability_graph": ".graph",
    "ObservabilityState": ".state",
    "ObservabilitySpan": ".models",
    "LatencyStats": ".models",
    "QualityMetrics": ".models",
    "load_config": ".config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module, __name__), name)
