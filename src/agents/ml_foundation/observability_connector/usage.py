"""Token usage and text, read defensively from whatever a LangChain model returned.

Providers report usage in different places and under different names; some report garbage
(negative, NaN, strings, 10**30, a total smaller than its parts). `extract_usage` looks in
`usage_metadata` first (the standard since langchain-core 0.2.2), then in the provider
fallbacks, and turns a bad count into `None` plus a counted, rate-limited warning: it runs
inside callbacks, where raising would break the agent.

Lookup order for one object (first usage block found wins):
  1. `AIMessage.usage_metadata`
  2. `ChatGeneration.generation_info["usage_metadata"]`
  3. `message.response_metadata["token_usage" | "usage"]`
  4. `LLMResult.llm_output["token_usage" | "usage"]`
For an `LLMResult` only the first generation that carries usage counts (as in langchain-core's
`UsageMetadataCallbackHandler`): with `n > 1` completions providers repeat the call's usage on
every generation, so summing them would over-count.

The token kinds that change a call's price come from the same block: LangChain's
`input_token_details.cache_read` / `.cache_creation` and `output_token_details.reasoning`, or the
provider's own names (`_CACHE_READ_PATHS` ...). As in LangChain, `input_tokens` includes cache
reads and writes and `output_tokens` includes reasoning: the kinds are parts, not extras.
Anthropic's raw `input_tokens` leaves the cache out and Google's raw `candidates_token_count`
leaves thoughts out, so both are added back. The provider comes from `model_provider` in
`response_metadata` (langchain-core >= 1.0) when the message names one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from .models import MAX_TOKEN_COUNT, is_token_count, reconcile_token_counts, storable
from .problems import ProblemCounter

__all__ = [
    "ProblemCounter",
    "TokenUsage",
    "extract_model_name",
    "extract_usage",
    "sanitize_text",
]

logger = logging.getLogger(__name__)

# Raw provider key names, in preference order, for each count.
_INPUT_KEYS = (
    "input_tokens",
    "prompt_tokens",
    "prompt_token_count",
    "promptTokenCount",
    "inputTokens",
)
_OUTPUT_KEYS = (
    "output_tokens",
    "completion_tokens",
    "candidates_token_count",
    "candidatesTokenCount",
    "outputTokens",
)
_TOTAL_KEYS = ("total_tokens", "total_token_count", "totalTokenCount", "totalTokens")
# Anthropic's raw `input_tokens` excludes prompt-cache tokens; langchain-anthropic adds them.
_ANTHROPIC_CACHE_KEYS = ("cache_read_input_tokens", "cache_creation_input_tokens")
_RESPONSE_USAGE_KEYS = ("token_usage", "usage")
_MODEL_KEYS = ("model_name", "model")
_GOOGLE_OUTPUT_KEYS = ("candidates_token_count", "candidatesTokenCount")
_GOOGLE_THOUGHTS_KEYS = ("thoughts_token_count", "thoughtsTokenCount")
# Where each token kind sits, first match wins: LangChain's standard detail, then providers'.
_CACHE_READ_PATHS: tuple[tuple[str, ...], ...] = (
    ("input_token_details", "cache_read"),
    ("prompt_tokens_details", "cached_tokens"),  # OpenAI chat completions
    ("input_tokens_details", "cached_tokens"),  # OpenAI responses
    ("cache_read_input_tokens",),  # Anthropic
    ("cached_content_token_count",),  # Google
    ("cachedContentTokenCount",),
    ("cacheReadInputTokens",),  # Bedrock
)
_CACHE_WRITE_PATHS: tuple[tuple[str, ...], ...] = (
    ("input_token_details", "cache_creation"),
    ("cache_creation_input_tokens",),  # Anthropic
    ("cacheWriteInputTokens",),  # Bedrock
)
_REASONING_PATHS: tuple[tuple[str, ...], ...] = (
    ("output_token_details", "reasoning"),
    ("completion_tokens_details", "reasoning_tokens"),  # OpenAI chat completions
    ("output_tokens_details", "reasoning_tokens"),  # OpenAI responses
    ("thoughts_token_count",),  # Google
    ("thoughtsTokenCount",),
)


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of one LLM call; a count the provider did not report (or garbled) is None."""

    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    model: str | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    provider: str | None = None


INVALID_TOKEN_COUNTS = ProblemCounter(
    "ignored an invalid token count from a model provider", log=logger
)


def _count(raw: Mapping[str, Any], keys: tuple[str, ...], problems: ProblemCounter) -> int | None:
    for key in keys:
        if key in raw and raw[key] is not None:
            return _valid_count(raw[key], key, problems)
    return None


def _valid_count(value: Any, key: str, problems: ProblemCounter) -> int | None:
    if is_token_count(value):
        return int(value)
    problems.record(f"{key}={value!r:.80} (expected an integer in 0..{MAX_TOKEN_COUNT})")
    return None


def _detail(
    raw: Mapping[str, Any], paths: tuple[tuple[str, ...], ...], problems: ProblemCounter
) -> int | None:
    """The first count found along `paths` (nested keys) in a usage block."""
    for path in paths:
        value: Any = raw
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if value is not None:
            return _valid_count(value, ".".join(path), problems)
    return None


def _details(raw: Mapping[str, Any], problems: ProblemCounter) -> tuple[int | None, ...]:
    """(cache_read, cache_write, reasoning) of a usage block."""
    return (
        _detail(raw, _CACHE_READ_PATHS, problems),
        _detail(raw, _CACHE_WRITE_PATHS, problems),
        _detail(raw, _REASONING_PATHS, problems),
    )


def _usage_from_raw(raw: Any, problems: ProblemCounter) -> TokenUsage | None:
    if not isinstance(raw, Mapping):
        return None
    present = (*_INPUT_KEYS, *_OUTPUT_KEYS, *_TOTAL_KEYS)
    if not any(raw.get(key) is not None for key in present):
        return None
    input_tokens = _count(raw, _INPUT_KEYS, problems)
    if input_tokens is not None and "prompt_tokens" not in raw:
        for key in _ANTHROPIC_CACHE_KEYS:
            extra = _count(raw, (key,), problems)
            input_tokens += extra or 0
    output_tokens = _count(raw, _OUTPUT_KEYS, problems)
    output_key = next((k for k in _OUTPUT_KEYS if raw.get(k) is not None), None)
    if output_tokens is not None and output_key in _GOOGLE_OUTPUT_KEYS:
        output_tokens += _count(raw, _GOOGLE_THOUGHTS_KEYS, problems) or 0  # thoughts are billed
    total_tokens = _count(raw, _TOTAL_KEYS, problems)
    total_given = any(raw.get(key) is not None for key in _TOTAL_KEYS)
    counts, fixes = reconcile_token_counts(
        input_tokens, output_tokens, total_tokens, derive_missing_total=not total_given
    )
    for fix in fixes:
        problems.record(fix)
    return TokenUsage(*counts, None, *_details(raw, problems))


def _provider_from(mapping: Any) -> str | None:
    # `type(...) is dict` first: the plain dict every message carries skips the ABC check
    is_mapping = type(mapping) is dict or isinstance(mapping, Mapping)
    value = mapping.get("model_provider") if is_mapping else None
    return value if isinstance(value, str) and value else None


def _model_from(mapping: Any) -> str | None:
    if isinstance(mapping, Mapping):
        for key in _MODEL_KEYS:
            value = mapping.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def _candidates(obj: Any) -> list[tuple[Any, Any]]:
    """(usage-ish mapping, model-ish mapping) pairs in lookup order."""
    if isinstance(obj, Mapping):
        inner = [(obj.get("usage_metadata"), obj.get("response_metadata"))]
        meta = obj.get("response_metadata")
        llm_output = obj.get("llm_output")
        if isinstance(meta, Mapping):
            inner += [(meta.get(k), meta) for k in _RESPONSE_USAGE_KEYS]
        if isinstance(llm_output, Mapping):
            inner += [(llm_output.get(k), llm_output) for k in _RESPONSE_USAGE_KEYS]
        inner += [(obj.get(k), obj) for k in _RESPONSE_USAGE_KEYS]
        return [*inner, (obj, obj)]
    generations = getattr(obj, "generations", None)
    if isinstance(generations, list):  # LLMResult
        pairs: list[tuple[Any, Any]] = []
        for generation in (g for batch in generations if isinstance(batch, list) for g in batch):
            pairs += _candidates(generation)
        llm_output = getattr(obj, "llm_output", None)
        if isinstance(llm_output, Mapping):
            pairs += [(llm_output.get(k), llm_output) for k in _RESPONSE_USAGE_KEYS]
        return pairs
    message = getattr(obj, "message", None)
    info = getattr(obj, "generation_info", None)
    if message is not None or info is not None:  # ChatGeneration / Generation
        pairs = [(getattr(message, "usage_metadata", None), _meta(message))]
        if isinstance(info, Mapping):
            pairs.append((info.get("usage_metadata"), _meta(message) or info))
        meta = _meta(message)
        if isinstance(meta, Mapping):
            pairs += [(meta.get(k), meta) for k in _RESPONSE_USAGE_KEYS]
        return pairs
    meta = _meta(obj)  # AIMessage / AIMessageChunk
    pairs = [(getattr(obj, "usage_metadata", None), meta)]
    if isinstance(meta, Mapping):
        pairs += [(meta.get(k), meta) for k in _RESPONSE_USAGE_KEYS]
    return pairs


def _meta(message: Any) -> Any:
    return getattr(message, "response_metadata", None)


def _first_message(obj: Any) -> Any:
    """The message whose `usage_metadata` comes first in the lookup order, if `obj` is one of
    the two shapes callbacks see on every call (an `LLMResult` of chat generations, an
    `AIMessage`); else None."""
    if type(obj) is LLMResult:
        generations = obj.generations
        if generations and type(generations[0]) is list and generations[0]:
            generation = generations[0][0]
            return generation.message if isinstance(generation, ChatGeneration) else None
        return None
    return obj if isinstance(obj, AIMessage) else None


def _common_usage(obj: Any) -> TokenUsage | None:
    """The common case in one step, or None to take the full walk: the first message's
    `usage_metadata` holds the three standard counts as plain ints in range, a total no
    smaller than input + output, no Anthropic raw cache counts, and details (if any) as plain
    non-negative ints. Exactly what the walk returns
    for such a message."""
    message = _first_message(obj)
    raw = getattr(message, "usage_metadata", None) if message is not None else None
    if type(raw) is not dict:
        return None
    input_tokens = raw.get("input_tokens")
    output_tokens = raw.get("output_tokens")
    total_tokens = raw.get("total_tokens")
    if not (
        type(input_tokens) is int
        and type(output_tokens) is int
        and type(total_tokens) is int
        and 0 <= input_tokens <= MAX_TOKEN_COUNT
        and 0 <= output_tokens <= MAX_TOKEN_COUNT
        and input_tokens + output_tokens <= total_tokens <= MAX_TOKEN_COUNT
        and raw.get(_ANTHROPIC_CACHE_KEYS[0]) is None
        and raw.get(_ANTHROPIC_CACHE_KEYS[1]) is None
    ):
        return None
    cache_read = cache_write = reasoning = None
    details = raw.get("input_token_details")
    if details is not None:
        if type(details) is not dict:
            return None
        cache_read, cache_write = details.get("cache_read"), details.get("cache_creation")
    details = raw.get("output_token_details")
    if details is not None:
        if type(details) is not dict:
            return None
        reasoning = details.get("reasoning")
    for value in (cache_read, cache_write, reasoning):
        if value is not None and (type(value) is not int or not 0 <= value <= MAX_TOKEN_COUNT):
            return None
    meta = message.response_metadata
    model = meta.get("model_name") if type(meta) is dict else None
    if type(model) is not str or not model:
        model = _model_from(meta) or extract_model_name(obj)
    return TokenUsage(
        input_tokens,
        output_tokens,
        total_tokens,
        model,
        cache_read,
        cache_write,
        reasoning,
        _provider_from(meta),
    )


def extract_usage(obj: Any, *, problems: ProblemCounter | None = None) -> TokenUsage | None:
    """Token usage of an AIMessage(Chunk), ChatGeneration, LLMResult or dict; None if absent.

    Never raises: a count that is negative, past 2**31 - 1 (no store's integer column holds it),
    NaN, fractional or not a number becomes None, and a total below input + output is
    recomputed; each is recorded on `problems` (default: the module's `INVALID_TOKEN_COUNTS`).
    """
    try:
        usage = _common_usage(obj)  # runs on every LLM call: skip the walk when it can
    except Exception:  # an odd object: the walk below reports it
        usage = None
    if usage is not None:
        return usage
    problems = problems or INVALID_TOKEN_COUNTS
    garbled: TokenUsage | None = None
    try:
        for raw, model_source in _candidates(obj):
            usage = _usage_from_raw(raw, problems)
            if usage is None:
                continue
            model = _model_from(model_source) or extract_model_name(obj)
            usage = replace(usage, model=model, provider=_provider_from(model_source))
            if (
                usage.input_tokens is None
                and usage.output_tokens is None
                and (usage.total_tokens is None)
            ):
                garbled = garbled or usage  # every count was bad: try the next source
                continue
            return usage
    except Exception as exc:  # a provider object we cannot read is not fatal
        problems.record(f"unreadable usage on {type(obj).__name__}: {exc!r:.120}")
    return garbled


def extract_model_name(obj: Any) -> str | None:
    """Model name from `response_metadata["model_name"|"model"]` or `llm_output["model_name"]`."""
    try:
        if isinstance(obj, Mapping):
            return (
                _model_from(obj.get("response_metadata"))
                or _model_from(obj.get("llm_output"))
                or _model_from(obj)
            )
        generations = getattr(obj, "generations", None)
        if isinstance(generations, list):
            for batch in generations:
                for generation in batch if isinstance(batch, list) else ():
                    name = extract_model_name(generation)
                    if name:
                        return name
            return _model_from(getattr(obj, "llm_output", None))
        message = getattr(obj, "message", None)
        if message is not None:
            return _model_from(_meta(message)) or _model_from(getattr(obj, "generation_info", None))
        return _model_from(_meta(obj)) or _model_from(getattr(obj, "generation_info", None))
    except Exception:  # same contract as extract_usage
        return None


def sanitize_text(text: Any, max_chars: int) -> tuple[str, bool]:
    """Text safe to store and send as UTF-8, cut to `max_chars`; returns (text, truncated).

    Bytes are decoded as UTF-8 with replacement; surrogate code points (lone ones from
    `surrogateescape`, or pairs that never got combined) become valid characters or U+FFFD;
    NUL becomes U+FFFD because PostgreSQL text cannot hold it (both by `models.storable`).
    Other objects go through str().
    """
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 0:
        raise ValueError(f"max_chars must be an integer >= 0, got {max_chars!r}")
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="replace")
    value = storable(text if isinstance(text, str) else str(text))
    if len(value) > max_chars:
        return value[:max_chars], True
    return value, False
