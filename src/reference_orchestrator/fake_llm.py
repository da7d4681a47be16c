"""An offline chat model for the demo and the tests: real langchain-core, fake intelligence.

`DemoChatModel` is a `BaseChatModel`, so LangChain callbacks, `usage_metadata` handling and
LangGraph see exactly what a provider model gives them: an `AIMessage` with `usage_metadata`
(input tokens from the prompt's length, output tokens from the reply's, ~4 characters a token)
and `response_metadata["model_name"]`. It waits `latency_s` times a seeded log-normal jitter
(so percentiles differ) and fails a seeded share of calls with `InjectedLLMFailure`.

Determinism under concurrency: each call's randomness comes from (seed, model, prompt, how
often this prompt was seen), not from one shared stream, so the same requests give the same
replies, latencies and failures whatever order concurrent calls happen in.

Replies: a prompt holding a line `Choices: a, b, c` gets a non-empty subset of those choices
(comma-separated), like a model told to pick; any other prompt gets a short analytic sentence.
Each finished call is appended to an optional `UsageLedger`, an independent record of tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

__all__ = [
    "DemoChatModel",
    "InjectedLLMFailure",
    "LLMCallRecord",
    "UsageLedger",
    "build_demo_chat_model",
    "estimate_tokens",
]

CHARS_PER_TOKEN = 4
CHOICES_PREFIX = "Choices:"
_VOCABULARY = (
    "uplift", "conversion", "territory", "cohort", "baseline", "variance", "lift",
    "incremental", "prescriber", "adoption", "segment", "confidence", "driver", "signal",
    "trend", "effect", "region", "quarter", "gap", "share", "response", "campaign",
    "counterfactual", "estimate", "robust", "attribution",
)  # fmt: skip


class InjectedLLMFailure(RuntimeError):
    """The demo model failed this call on purpose (its `failure_rate`)."""


@dataclass(frozen=True, slots=True)
class LLMCallRecord:
    """One call as the model itself saw it."""

    model: str
    input_tokens: int
    output_tokens: int
    total_tokens: int
    failed: bool


class UsageLedger:
    """Thread-safe list of every call a demo model finished: the tests' independent count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[LLMCallRecord] = []

    def record(self, call: LLMCallRecord) -> None:
        with self._lock:
            self._calls.append(call)

    @property
    def calls(self) -> list[LLMCallRecord]:
        with self._lock:
            return list(self._calls)

    def totals(self) -> dict[str, int]:
        """Tokens of successful calls (a failed call returned no usage) and call counts."""
        calls = self.calls
        ok = [c for c in calls if not c.failed]
        return {
            "calls": len(calls),
            "failures": len(calls) - len(ok),
            "input_tokens": sum(c.input_tokens for c in ok),
            "output_tokens": sum(c.output_tokens for c in ok),
            "total_tokens": sum(c.total_tokens for c in ok),
        }


def estimate_tokens(text: str) -> int:
    """About four characters a token, at least one."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def _prompt_text(messages: Sequence[BaseMessage]) -> str:
    return "\n".join(str(m.content) for m in messages)


def _reply(prompt: str, rng: random.Random) -> str:
    for line in prompt.splitlines():
        if line.startswith(CHOICES_PREFIX):
            choices = [c.strip() for c in line[len(CHOICES_PREFIX) :].split(",") if c.strip()]
            if choices:
                picked = rng.sample(choices, rng.randint(1, min(2, len(choices))))
                return ", ".join(c for c in choices if c in picked)
    words = [rng.choice(_VOCABULARY) for _ in range(rng.randint(12, 48))]
    return " ".join(words).capitalize() + "."


class DemoChatModel(BaseChatModel):
    """Deterministic, offline chat model with realistic usage metadata (see module docs)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    model_name: str = "demo-gpt"
    latency_s: float = Field(default=0.05, ge=0.0)
    """Median wait per call, in seconds."""
    failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of calls that raise `InjectedLLMFailure`."""
    seed: int = 0
    jitter_sigma: float = Field(default=0.35, ge=0.0)
    """Spread of the log-normal latency factor (0 = always exactly `latency_s`)."""
    usage: UsageLedger | None = None
    """Where each finished call is recorded; None records nothing."""

    _seen: Counter[str] = PrivateAttr(default_factory=Counter)
    _seen_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "e2i-demo-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def _plan(self, messages: Sequence[BaseMessage]) -> tuple[str, float, bool, str]:
        """(prompt, wait in seconds, fail?, reply) for this call."""
        prompt = _prompt_text(messages)
        digest = hashlib.sha256(prompt.encode("utf-8", "replace")).hexdigest()
        with self._seen_lock:
            self._seen[digest] += 1
            occurrence = self._seen[digest]
        rng = random.Random(f"{self.seed}|{self.model_name}|{digest}|{occurrence}")
        wait = self.latency_s * rng.lognormvariate(0.0, self.jitter_sigma)
        fail = rng.random() < self.failure_rate
        return prompt, wait, fail, _reply(prompt, rng)

    def _finish(self, prompt: str, fail: bool, reply: str) -> ChatResult:
        input_tokens = estimate_tokens(prompt)
        if fail:
            self._record(input_tokens, 0, failed=True)
            raise InjectedLLMFailure(
                f"demo model {self.model_name!r} failed on purpose "
                f"(failure_rate={self.failure_rate}, seed={self.seed})"
            )
        output_tokens = estimate_tokens(reply)
        self._record(input_tokens, output_tokens, failed=False)
        message = AIMessage(
            content=reply,
            usage_metadata={
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
            response_metadata={"model_name": self.model_name, "finish_reason": "stop"},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _record(self, input_tokens: int, output_tokens: int, *, failed: bool) -> None:
        if self.usage is not None:
            total = input_tokens + output_tokens
            self.usage.record(
                LLMCallRecord(self.model_name, input_tokens, output_tokens, total, failed)
            )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt, wait, fail, reply = self._plan(messages)
        time.sleep(wait / 2 if fail else wait)
        return self._finish(prompt, fail, reply)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt, wait, fail, reply = self._plan(messages)
        await asyncio.sleep(wait / 2 if fail else wait)  # a failure gives up half way
        return self._finish(prompt, fail, reply)


def build_demo_chat_model(
    model_name: str = "demo-gpt",
    latency_s: float = 0.05,
    failure_rate: float = 0.0,
    seed: int = 0,
    *,
    usage: UsageLedger | None = None,
) -> DemoChatModel:
    """A `DemoChatModel`; ValueError naming the argument when one is out of range."""
    if not isinstance(model_name, str) or not model_name.strip():
        raise ValueError(f"model_name must be a non-empty string, got {model_name!r}")
    if isinstance(latency_s, bool) or not isinstance(latency_s, int | float) or latency_s < 0:
        raise ValueError(f"latency_s must be a number >= 0 (seconds), got {latency_s!r}")
    if (
        isinstance(failure_rate, bool)
        or not isinstance(failure_rate, int | float)
        or not 0.0 <= failure_rate <= 1.0
    ):
        raise ValueError(f"failure_rate must be a number in [0, 1], got {failure_rate!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return DemoChatModel(
        model_name=model_name,
        latency_s=float(latency_s),
        failure_rate=float(failure_rate),
        seed=seed,
        usage=usage,
    )
