"""The span policy (`spans:` config): redaction, input/output switches and size limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from src.agents.ml_foundation.observability_connector.config import SpansSettings
from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan, SpanEvent
from src.agents.ml_foundation.observability_connector.span_policy import REDACTED, SpanPolicy

START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _span(attributes: dict, events: list[SpanEvent] | None = None) -> ObservabilitySpan:
    return ObservabilitySpan(
        span_id="00f067aa0ba902b7",
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        operation_name="op",
        agent_name="gap_analyzer",
        start_time=START,
        end_time=START + timedelta(milliseconds=5),
        attributes=attributes,
        events=events or [],
    )


def _policy(**settings) -> SpanPolicy:
    return SpanPolicy(SpansSettings(**settings))


@pytest.mark.parametrize(
    ("key", "masked"),
    [
        ("password", True),
        ("db_password", True),
        ("PASSWORD", True),
        ("access_token", True),
        ("X-Auth-Token", True),
        ("refreshToken", True),
        ("openai_api_key", True),
        ("apiKey", True),
        ("client_secret", True),
        ("Authorization", True),
        ("input_tokens", False),
        ("total_tokens", False),
        ("keyboard", False),
        ("secretary_name", False),
        ("user", False),
    ],
)
def test_span_policy__default_patterns__key_names_matched_word_by_word(key, masked):
    span = _policy().apply(_span({key: "value-1"}))
    assert (span.attributes[key] == REDACTED) is masked


def test_span_policy__nested_input_output_and_events__masked_everywhere_copy_returned():
    original = _span(
        {
            "input": {"user": "ann", "password": "hunter2", "rows": [{"api_key": "k1"}]},
            "output": {"result": 1, "token": "t"},
            "input_tokens": 12,
        },
        [SpanEvent(name="login", timestamp=START, attributes={"secret": "s", "ok": True})],
    )
    span = _policy().apply(original)
    assert span.attributes == {
        "input": {"user": "ann", "password": REDACTED, "rows": [{"api_key": REDACTED}]},
        "output": {"result": 1, "token": REDACTED},
        "input_tokens": 12,
    }
    assert span.events[0].attributes == {"secret": REDACTED, "ok": True}
    assert original.attributes["input"]["password"] == "hunter2"  # the caller's span untouched


def test_span_policy__nothing_to_change__same_object():
    span = _span({"input": "hello", "llm.model": "m"})
    assert _policy().apply(span) is span


def test_span_policy__regex_pattern__searched_in_the_key():
    span = _policy(redact_patterns=[r"^x-.*-sig$"]).apply(_span({"X-Body-Sig": "a", "sig": "b"}))
    assert span.attributes == {"X-Body-Sig": REDACTED, "sig": "b"}


def test_span_policy__include_input_output_false__removed_with_markers():
    attributes = {
        "input": "q",
        "llm.prompt": "p",
        "llm.prompt_truncated": True,
        "output": "a",
        "llm.response": "r",
        "other": 1,
    }
    span = _policy(include_input=False, include_output=False).apply(_span(attributes))
    assert span.attributes == {"other": 1}


def test_span_policy__input_over_limit__truncated_with_marker():
    span = _policy(max_input_size_bytes=10).apply(_span({"input": "é" * 20}))
    assert span.attributes == {
        "input": "é" * 5,
        "input_truncated": True,
        "input_original_bytes": 40,
    }


def test_span_policy__structured_output_over_limit__cut_json_text():
    value = {"rows": list(range(50))}
    compact = json.dumps(value, separators=(",", ":"))  # sizes are of compact JSON
    span = _policy(max_output_size_bytes=16).apply(_span({"output": value}))
    assert span.attributes["output"] == compact[:16] == '{"rows":[0,1,2,3'
    assert span.attributes["output_original_bytes"] == len(compact)


def test_span_policy__no_truncation__oversized_value_dropped():
    policy = _policy(max_input_size_bytes=4, truncate_on_overflow=False)
    span = policy.apply(_span({"input": "x" * 9}))
    assert span.attributes == {"input_omitted_bytes": 9}


def test_span_policy__metadata_over_limit__largest_values_cut_first_small_kept():
    attributes = {"big": "b" * 5000, "medium": "m" * 300, "input_tokens": 7, "model": "m1"}
    span = _policy(max_metadata_size_bytes=1000).apply(_span(attributes))
    kept = {k: v for k, v in span.attributes.items() if k != "attributes_truncated"}
    assert (kept["input_tokens"], kept["model"], kept["medium"]) == (7, "m1", "m" * 300)
    assert kept["big"] == "b" * len(kept["big"]) and len(kept["big"]) < 1000
    assert span.attributes["attributes_truncated"] == ["big"]
    assert len(json.dumps(kept, separators=(",", ":"))) <= 1000 + 4 * len(kept)


def test_span_policy__metadata_over_limit_no_truncation__largest_dropped():
    attributes = {"big": "b" * 5000, "small": 1}
    span = _policy(max_metadata_size_bytes=100, truncate_on_overflow=False).apply(_span(attributes))
    assert span.attributes == {"small": 1, "attributes_omitted": ["big"]}


def test_span_policy__input_does_not_count_against_metadata():
    span = _policy(max_metadata_size_bytes=50).apply(_span({"input": "i" * 1000, "k": 1}))
    assert span.attributes == {"input": "i" * 1000, "k": 1}


def test_span_policy__uninspectable_attributes__stripped_not_raised():
    class Exploding:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("boom")

        def __str__(self) -> str:
            raise RuntimeError("no str either")

    span = _span({})
    span.attributes = {"password": "hunter2", "weird": Exploding()}  # bypasses validation
    out = _policy(max_metadata_size_bytes=1).apply(span)
    assert "hunter2" not in repr(out.attributes)
    assert list(out.attributes) == ["span_policy_error"]


def test_spans_settings__bad_regex__value_error_names_pattern():
    with pytest.raises(ValueError, match=r"pattern '\(' is not a valid regex"):
        SpansSettings(redact_patterns=["("])


def test_span_policy__flat_scalar_attributes_seen_again__same_answers_as_the_first_walk():
    """The one-pass check for flat spans (keys cached by an earlier walk) must decide exactly
    as the full walk: a clean span is passed through as the same object, a secret key is
    still masked, and scalars over the metadata limit are still cut."""
    policy = _policy(max_metadata_size_bytes=200)
    for _ in range(3):  # first: the full walk fills the key cache; then the one-pass check
        clean = _span({"step": 3, "route": "default", "ok": True, "ratio": 0.5, "none": None})
        assert policy.apply(clean) is clean
        secret = policy.apply(_span({"step": 3, "api_key": "sk-1"}))
        assert secret.attributes == {"step": 3, "api_key": REDACTED}
        big = policy.apply(_span({"step": 3, "route": "x" * 500}))
        assert big.attributes["attributes_truncated"] == ["route"]
        assert len(big.attributes["route"]) < 200
        payload = policy.apply(_span({"step": 3, "input": "q"}))
        assert payload.attributes == {"step": 3, "input": "q"}
