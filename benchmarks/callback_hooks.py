"""Our callback's own cost, isolated from the noise of a shared machine (issue 15).

    python -m benchmarks.callback_hooks [BLOCKS]     # default 40

One chat-model call's `on_chat_model_start` + `on_llm_end` (the arguments a real
`GenericFakeChatModel.invoke()` passes, recorded once) dispatched through langchain-core's
`handle_event` again and again, for three handlers in interleaved blocks of 1,000: a no-op
`BaseCallbackHandler` (what dispatch alone costs), the floor (`UsageMetadataCallbackHandler`)
and ours over an `OpikConnector` whose processor drops spans (tier from the agent registry;
like the batch processor, it takes the span's build for its worker, which it then drops).
Each figure is the least process CPU per call over the blocks: CPU time ignores the other
processes that share the cores, the minimum the blocks another thread of ours disturbed. The
ratio `(ours - no-op) / (floor - no-op)` is what our hooks cost over the floor's.
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler, UsageMetadataCallbackHandler
from langchain_core.callbacks.manager import handle_event

from src.agents.ml_foundation.observability_connector.callback import (
    ObservabilityCallbackHandler,
)
from src.agents.ml_foundation.observability_connector.registry import load_agent_registry
from src.mlops.opik_connector import OpikConnector

from .bench_callback import make_llm_call

BLOCK = 1000


class _Recorder(BaseCallbackHandler):
    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.start = (serialized, messages, kwargs)

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.end = (response, kwargs)


class _Dropping:
    def submit(self, span: Any) -> None:
        """Drop the span: only the hooks are measured."""

    def submit_later(self, build: Any) -> None:
        """Drop the call that would build the span on a batch worker: only the hooks, the
        agent thread's part, are measured."""

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> bool:
        return True


def measure(blocks: int = 40) -> dict[str, float]:
    """Least process CPU (us) per call for each handler, over `blocks` interleaved blocks."""
    recorder = _Recorder()
    make_llm_call()({"callbacks": [recorder]})
    serialized, messages, start_kwargs = recorder.start
    response, end_kwargs = recorder.end
    start_kwargs = {k: v for k, v in start_kwargs.items() if k != "run_id"}
    end_kwargs = {k: v for k, v in end_kwargs.items() if k != "run_id"}
    connector = OpikConnector(_Dropping(), registry=load_agent_registry())
    handlers = {
        "no-op": BaseCallbackHandler(),
        "floor": UsageMetadataCallbackHandler(),
        "ours": ObservabilityCallbackHandler("gap_analyzer", connector),
    }
    best = dict.fromkeys(handlers, float("inf"))
    for _ in range(blocks):
        for name, handler in handlers.items():
            run_ids = [uuid.uuid4() for _ in range(BLOCK)]
            start = time.process_time()
            for run_id in run_ids:
                handle_event(
                    [handler],
                    "on_chat_model_start",
                    "ignore_chat_model",
                    serialized,
                    messages,
                    run_id=run_id,
                    **start_kwargs,
                )
                handle_event(
                    [handler], "on_llm_end", "ignore_llm", response, run_id=run_id, **end_kwargs
                )
            best[name] = min(best[name], (time.process_time() - start) / BLOCK * 1e6)
    return best


def main(argv: list[str]) -> None:
    best = measure(int(argv[0]) if argv else 40)
    ratio = (best["ours"] - best["no-op"]) / (best["floor"] - best["no-op"])
    figures = ", ".join(f"{name} {value:.2f}" for name, value in best.items())
    print(f"us of CPU per call through handle_event: {figures}; hooks ours/floor {ratio:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
