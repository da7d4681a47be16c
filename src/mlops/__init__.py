"""MLOps integrations. The observability connector's names, imported lazily (importing this
package loads nothing else); in an E2I checkout these lines are added to E2I's own exports:

    from src.mlops import OpikConnector, get_opik_connector
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "OpikConnector": ".opik_connector",
    "OpikConfig": ".opik_config",
    "SpanContext": ".opik_connector",
    "LLMSpanContext": ".llm_span",
    "SpanType": ".opik_mapping",
    "SpanStatus": ".opik_connector",
    "CircuitBreaker": ".circuit_breaker",
    "get_opik_connector": ".opik_default",
    "reset_opik_connector": ".opik_default",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module, __name__), name)
