"""extract_usage / extract_model_name / sanitize_text / ProblemCounter on every provider shape."""

from __future__ import annotations

import logging
import math

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGeneration, Generation, LLMResult

from src.agents.ml_foundation.observability_connector.usage import (
    ProblemCounter,
    TokenUsage,
    extract_model_name,
    extract_usage,
    sanitize_text,
)

USAGE = {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}
OPENAI = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def problems() -> ProblemCounter:
    return ProblemCounter("test", clock=FakeClock())


def test_extract_usage__ai_message_usage_metadata__counts_and_model(problems):
    msg = AIMessage("x", usage_metadata=USAGE, response_metadata={"model_name": "gpt-4o"})
    assert extract_usage(msg, problems=problems) == TokenUsage(11, 7, 18, "gpt-4o")


def test_extract_usage__ai_message_chunk__counts(problems):
    chunk = AIMessageChunk(content="x", usage_metadata=USAGE, response_metadata={"model": "m"})
    assert extract_usage(chunk, problems=problems) == TokenUsage(11, 7, 18, "m")


def test_extract_usage__chat_generation_and_llm_result__same_counts(problems):
    generation = ChatGeneration(message=AIMessage("x", usage_metadata=USAGE))
    expected = TokenUsage(11, 7, 18, None)
    assert extract_usage(generation, problems=problems) == expected
    assert extract_usage(LLMResult(generations=[[generation]]), problems=problems) == expected


def test_extract_usage__llm_output_token_usage_openai_keys__counts_and_model(problems):
    result = LLMResult(
        generations=[[Generation(text="x")]],
        llm_output={"token_usage": OPENAI, "model_name": "gpt-3.5-turbo-instruct"},
    )
    assert extract_usage(result, problems=problems) == TokenUsage(
        11, 7, 18, "gpt-3.5-turbo-instruct"
    )


def test_extract_usage__llm_output_usage_anthropic_keys__cache_tokens_added_total_derived(
    problems,
):
    raw = {
        "input_tokens": 5,
        "output_tokens": 7,
        "cache_read_input_tokens": 4,
        "cache_creation_input_tokens": 2,
    }
    result = LLMResult(generations=[[Generation(text="x")]], llm_output={"usage": raw})
    assert extract_usage(result, problems=problems) == TokenUsage(
        11, 7, 18, None, cache_read_tokens=4, cache_write_tokens=2
    )


def test_extract_usage__generation_info_usage_metadata__counts(problems):
    generation = Generation(text="x", generation_info={"usage_metadata": USAGE, "model": "g"})
    assert extract_usage(generation, problems=problems) == TokenUsage(11, 7, 18, "g")


@pytest.mark.parametrize("key", ["token_usage", "usage"])
def test_extract_usage__response_metadata_usage__counts(problems, key):
    msg = AIMessage("x", response_metadata={key: OPENAI, "model_name": "m"})
    assert extract_usage(msg, problems=problems) == TokenUsage(11, 7, 18, "m")
    in_result = LLMResult(generations=[[ChatGeneration(message=msg)]])
    assert extract_usage(in_result, problems=problems) == TokenUsage(11, 7, 18, "m")


@pytest.mark.parametrize(
    "obj",
    [
        USAGE,
        OPENAI,
        {"usage_metadata": USAGE},
        {"response_metadata": {"token_usage": OPENAI}},
        {"llm_output": {"usage": OPENAI}},
        {"usage": {"prompt_token_count": 11, "candidates_token_count": 7, "total_token_count": 18}},
        {"usage": {"inputTokens": 11, "outputTokens": 7, "totalTokens": 18}},
    ],
)
def test_extract_usage__dict_shapes__counts(problems, obj):
    assert extract_usage(obj, problems=problems) == TokenUsage(11, 7, 18, None)


def test_extract_usage__usage_metadata_and_fallback__usage_metadata_wins(problems):
    msg = AIMessage(
        "x",
        usage_metadata=USAGE,
        response_metadata={"token_usage": {"prompt_tokens": 1, "completion_tokens": 1}},
    )
    result = LLMResult(
        generations=[[ChatGeneration(message=msg)]],
        llm_output={"token_usage": {"prompt_tokens": 9}},
    )
    assert extract_usage(result, problems=problems) == TokenUsage(11, 7, 18, None)


def test_extract_usage__n_generations_each_with_usage__first_only_not_summed(problems):
    gens = [ChatGeneration(message=AIMessage(str(i), usage_metadata=USAGE)) for i in range(3)]
    assert extract_usage(LLMResult(generations=[gens]), problems=problems).total_tokens == 18


def test_extract_usage__no_usage_anywhere__none(problems):
    assert extract_usage(AIMessage("x"), problems=problems) is None
    assert extract_usage(LLMResult(generations=[[Generation(text="x")]]), problems=problems) is None
    assert extract_usage({"foo": 1}, problems=problems) is None
    assert extract_usage(None, problems=problems) is None
    assert problems.count == 0


@pytest.mark.parametrize(
    "bad", [-1, 2**31, 10**30, 2**63, math.nan, math.inf, -math.inf, 2.5, "12", True, [3], {"n": 1}]
)
def test_extract_usage__misbehaving_count__that_count_none_and_counted(problems, bad):
    raw = {"prompt_tokens": bad, "completion_tokens": 7, "total_tokens": 30}
    assert extract_usage({"usage": raw}, problems=problems) == TokenUsage(None, 7, 30, None)
    assert problems.count == 1


@pytest.mark.parametrize("huge", [2**31, 10**30, 2**63])
def test_extract_usage__provider_count_past_int32__none_and_counted_fast_path_too(problems, huge):
    """Issue 11 item 1: a provider's 10**30 passed validation and lost its whole batch."""
    message = AIMessage(
        "x", usage_metadata={"input_tokens": huge, "output_tokens": 7, "total_tokens": huge + 7}
    )
    assert extract_usage(message, problems=problems) == TokenUsage(None, 7, None, None)
    assert problems.count == 2


def test_extract_usage__total_below_input_plus_output__recomputed_and_counted(problems):
    usage = {"input_tokens": 5, "output_tokens": 5, "total_tokens": 1}
    message = AIMessage("x", usage_metadata=usage)
    assert extract_usage(message, problems=problems) == TokenUsage(5, 5, 10, None)
    assert problems.count == 1


def test_extract_usage__integral_float_count__accepted_as_int(problems):
    usage = extract_usage({"prompt_tokens": 3.0, "completion_tokens": 4}, problems=problems)
    assert usage == TokenUsage(3, 4, 7, None) and isinstance(usage.input_tokens, int)


def test_extract_usage__all_counts_garbled_in_usage_metadata__falls_back_to_llm_output(problems):
    garbled = {"input_tokens": -5, "output_tokens": math.nan, "total_tokens": "x"}
    # AIMessage validates usage_metadata, so the garbled block arrives as a plain dict
    obj = {"usage_metadata": garbled, "llm_output": {"token_usage": OPENAI}}
    assert extract_usage(obj, problems=problems) == TokenUsage(11, 7, 18, None)
    assert problems.count == 3


def test_extract_usage__only_garbled_usage__all_none_result(problems):
    usage = extract_usage({"usage": {"input_tokens": -1}}, problems=problems)
    assert usage == TokenUsage(None, None, None, None) and problems.count == 1


def test_extract_usage__object_raising_on_access__none_and_counted(problems):
    class Hostile:
        @property
        def generations(self):
            raise RuntimeError("boom")

    assert extract_usage(Hostile(), problems=problems) is None
    assert problems.count == 1


def test_extract_model_name__each_source__found():
    assert extract_model_name(AIMessage("x", response_metadata={"model_name": "a"})) == "a"
    assert extract_model_name(AIMessage("x", response_metadata={"model": "b"})) == "b"
    result = LLMResult(generations=[[Generation(text="x")]], llm_output={"model_name": "c"})
    assert extract_model_name(result) == "c"
    assert extract_model_name({"response_metadata": {"model_name": "d"}}) == "d"
    assert extract_model_name(AIMessage("x")) is None


def test_problem_counter__burst__counts_all_logs_once_per_interval(caplog):
    clock = FakeClock()
    counter = ProblemCounter("bad counts", interval_seconds=60.0, clock=clock)
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            counter.record("x=-1")
        clock.now = 61.0
        counter.record("x=-2")
    messages = [r.getMessage() for r in caplog.records]
    assert counter.count == 6 and len(messages) == 2
    assert "x=-1" in messages[0] and "4 similar suppressed" in messages[1]


def test_sanitize_text__short_ascii__unchanged():
    assert sanitize_text("hello", 10) == ("hello", False)


def test_sanitize_text__over_limit__cut_and_flagged():
    assert sanitize_text("abcdef", 4) == ("abcd", True)
    assert sanitize_text("abc", 0) == ("", True)


def test_sanitize_text__lone_surrogate__replaced_and_utf8_encodable():
    text, truncated = sanitize_text("a\udc80b", 10)
    assert text == "a\ufffdb" and not truncated
    text.encode("utf-8")


def test_sanitize_text__surrogate_pair__combined_into_one_character():
    assert sanitize_text("x\ud83d\ude00", 10) == ("x\U0001f600", False)


def test_sanitize_text__invalid_utf8_bytes__decoded_with_replacement():
    assert sanitize_text(b"ok\xff\xfe", 10) == ("ok\ufffd\ufffd", False)


def test_sanitize_text__nul__replaced():
    assert sanitize_text("a\x00b", 10) == ("a\ufffdb", False)


def test_sanitize_text__non_string__str_of_it():
    assert sanitize_text(12345, 3) == ("123", True)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_sanitize_text__bad_max_chars__value_error_names_it(bad):
    with pytest.raises(ValueError, match="max_chars"):
        sanitize_text("x", bad)
