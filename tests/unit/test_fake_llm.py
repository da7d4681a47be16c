"""The demo chat model: realistic usage metadata, seeded behaviour, injected failures."""

from __future__ import annotations

import asyncio
import math

import pytest
from langchain_core.callbacks import UsageMetadataCallbackHandler

from src.reference_orchestrator.fake_llm import (
    InjectedLLMFailure,
    UsageLedger,
    build_demo_chat_model,
)

PROMPTS = [f"Why did sales change in region {i}?" for i in range(12)]


async def outcomes(prompts: list[str], *, seed: int, failure_rate: float) -> dict[str, object]:
    model = build_demo_chat_model("demo-x", 0.0, failure_rate, seed)
    found: dict[str, object] = {}
    for prompt in prompts:
        try:
            found[prompt] = (await model.ainvoke(prompt)).content
        except InjectedLLMFailure:
            found[prompt] = "failed"
    return found


async def test_demo_model__reply__usage_metadata_from_prompt_and_reply_lengths() -> None:
    ledger = UsageLedger()
    model = build_demo_chat_model("demo-x", 0.0, 0.0, 1, usage=ledger)
    reference = UsageMetadataCallbackHandler()

    reply = await model.ainvoke(PROMPTS[0], config={"callbacks": [reference]})

    expected_in = math.ceil(len(PROMPTS[0]) / 4)
    expected_out = math.ceil(len(reply.content) / 4)
    assert reply.usage_metadata == {
        "input_tokens": expected_in,
        "output_tokens": expected_out,
        "total_tokens": expected_in + expected_out,
    }
    assert reply.response_metadata["model_name"] == "demo-x"
    assert reference.usage_metadata == {"demo-x": reply.usage_metadata}
    assert ledger.totals() == {"calls": 1, "failures": 0, **reply.usage_metadata}


async def test_demo_model__same_seed_any_call_order__same_replies_and_failures() -> None:
    forward = await outcomes(PROMPTS, seed=4, failure_rate=0.4)
    backward = await outcomes(PROMPTS[::-1], seed=4, failure_rate=0.4)
    other_seed = await outcomes(PROMPTS, seed=5, failure_rate=0.4)

    assert forward == backward
    assert forward != other_seed
    assert "failed" in forward.values() and set(forward.values()) != {"failed"}


async def test_demo_model__failure_rate_one__raises_and_ledger_counts_the_failure() -> None:
    ledger = UsageLedger()
    model = build_demo_chat_model("demo-x", 0.0, 1.0, 0, usage=ledger)

    with pytest.raises(InjectedLLMFailure, match=r"failure_rate=1\.0"):
        await model.ainvoke("hello")
    with pytest.raises(InjectedLLMFailure):
        model.invoke("hello")
    assert ledger.totals()["failures"] == 2
    assert ledger.totals()["total_tokens"] == 0


async def test_demo_model__choices_line__replies_with_a_subset_of_the_choices() -> None:
    model = build_demo_chat_model("demo-x", 0.0, 0.0, 9)
    replies = await asyncio.gather(
        *(model.ainvoke(f"Route request {i}\nChoices: a, b, c\nReply.") for i in range(20))
    )
    picked = [set(str(r.content).split(", ")) for r in replies]
    assert all(p and p <= {"a", "b", "c"} for p in picked)
    assert len({frozenset(p) for p in picked}) > 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"model_name": ""}, "model_name must be a non-empty string"),
        ({"latency_s": -1}, "latency_s must be a number >= 0"),
        ({"failure_rate": 2}, r"failure_rate must be a number in \[0, 1\], got 2"),
        ({"seed": "7"}, "seed must be an integer, got '7'"),
    ],
)
def test_build_demo_chat_model__bad_argument__value_error_naming_it(
    arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_demo_chat_model(**arguments)  # type: ignore[arg-type]
