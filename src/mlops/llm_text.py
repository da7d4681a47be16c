"""Prompt and response text on LLM spans, only when `capture.prompts` is on.

Text is cut to `capture.max_chars` and made storable (`callback_runs.text_attributes`, the
handler's own helper); a cut is recorded as `llm.prompt_truncated` / `llm.response_truncated` =
True plus the original length in `llm.prompt_original_chars` / `llm.response_original_chars`, so
a reader knows the text is partial.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from src.agents.ml_foundation.observability_connector.callback_runs import text_attributes
from src.agents.ml_foundation.observability_connector.config import CaptureSettings
from src.agents.ml_foundation.observability_connector.usage import extract_usage

from .live_span import SPAN_PROBLEMS, LiveSpan
from .opik_mapping import PROMPT_ATTRIBUTE, RESPONSE_ATTRIBUTE

__all__ = ["as_text", "record_llm_response", "record_prompt", "record_response"]


def _message_text(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, list):  # content blocks: keep the text ones
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return "".join(parts)
    return content if isinstance(content, str) else str(content)


def as_text(value: Any) -> str:
    """Readable text of a prompt or response: str, message(s), PromptValue, dict, or str()."""
    if isinstance(value, str):
        return value
    to_string = getattr(value, "to_string", None)
    if callable(to_string):  # PromptValue
        return str(to_string())
    if isinstance(value, list | tuple):
        return "\n".join(
            f"{getattr(m, 'type', 'message')}: {_message_text(m)}"
            if hasattr(m, "content")
            else as_text(m)
            for m in value
        )
    if hasattr(value, "content"):
        return _message_text(value)
    return str(value)


def _record(span: LiveSpan, value: Any, max_chars: int, key: str) -> None:
    original = as_text(value)
    attributes = text_attributes(max_chars, key, original)
    for name, attribute in attributes.items():
        span.set_attribute(name, attribute)
    if f"{key}_truncated" in attributes:
        span.set_attribute(f"{key}_original_chars", len(original))


def record_prompt(span: LiveSpan, prompt: Any, max_chars: int) -> None:
    _record(span, prompt, max_chars, PROMPT_ATTRIBUTE)


def record_response(span: LiveSpan, response: Any, max_chars: int) -> None:
    _record(span, response, max_chars, RESPONSE_ATTRIBUTE)


def record_llm_response(span: LiveSpan, response: Any, capture: CaptureSettings) -> None:
    """Tokens and model from the response's usage metadata; its text when capture is on.

    Never raises: a response we cannot read is counted, and the call's result is unaffected.
    """
    try:
        usage = extract_usage(response)
        if usage is not None:
            span.set_tokens(
                usage.input_tokens,
                usage.output_tokens,
                usage.total_tokens,
                model=usage.model,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                provider=usage.provider,  # kept when the caller named one
            )
        if capture.prompts:
            record_response(span, response, capture.max_chars)
    except Exception as exc:  # broad on purpose: a strange response must not break the call
        SPAN_PROBLEMS.record(f"reading the LLM response failed: {type(exc).__name__}: {exc}")
