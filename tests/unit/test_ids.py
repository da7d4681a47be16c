"""Caller identifiers (dashed UUIDs, .hex, W3C hex, free-form) mapped to W3C ids."""

from __future__ import annotations

import uuid

import pytest

from src.agents.ml_foundation.observability_connector.ids import (
    normalize_span_id,
    normalize_trace_id,
)
from src.agents.ml_foundation.observability_connector.models import check_span_id, check_trace_id

UUID7 = uuid.UUID("01936f0e-8c3a-7b2d-9e4f-a1b2c3d4e5f6")


@pytest.mark.parametrize(
    "form",
    [str(UUID7), str(UUID7).upper(), UUID7.hex, UUID7, f"{{{UUID7}}}", f"urn:uuid:{UUID7}"],
    ids=["dashed", "dashed_upper", "hex", "uuid_object", "braces", "urn"],
)
def test_normalize_trace_id__uuid_forms__the_same_128_bits_as_32_hex(form):
    assert normalize_trace_id(form) == UUID7.hex == "01936f0e8c3a7b2d9e4fa1b2c3d4e5f6"


def test_normalize_trace_id__w3c_hex__lowercased_unchanged():
    assert normalize_trace_id("4BF92F3577B34DA6A3CE929D0E0E4736") == (
        "4bf92f3577b34da6a3ce929d0e0e4736"
    )


def test_normalize_trace_id__64_bit_id__left_padded_with_zeros():
    assert normalize_trace_id("A3CE929D0E0E4736") == "0000000000000000a3ce929d0e0e4736"


@pytest.mark.parametrize("value", ["trace-123", "0" * 32, str(uuid.UUID(int=0)), "0" * 16, "xyz"])
def test_normalize_trace_id__free_form_or_all_zero__deterministic_valid_hash(value):
    mapped = normalize_trace_id(value)
    assert check_trace_id(mapped) == mapped
    assert normalize_trace_id(value) == mapped
    assert mapped != normalize_trace_id(value + "x")


def test_normalize_trace_id__many_uuid4__valid_and_distinct():
    ids = [uuid.uuid4() for _ in range(500)]
    mapped = {normalize_trace_id(str(u)) for u in ids}
    assert mapped == {u.hex for u in ids}


@pytest.mark.parametrize("value", [None, "", "   ", 123, b"0af7651916cd43dd8448eb211c80319c"])
def test_normalize_ids__not_an_identifier__value_error_naming_field_and_value(value):
    for normalize, field in ((normalize_trace_id, "trace_id"), (normalize_span_id, "span_id")):
        with pytest.raises(ValueError, match=field) as caught:
            normalize(value)
        assert repr(value) in str(caught.value)
        assert "dashed UUID" in str(caught.value)


def test_normalize_trace_id__field_name__used_in_the_error():
    with pytest.raises(ValueError, match="query_id"):
        normalize_trace_id(None, field="query_id")


def test_normalize_span_id__w3c_hex__lowercased_unchanged():
    assert normalize_span_id("00F067AA0BA902B7") == "00f067aa0ba902b7"


@pytest.mark.parametrize("form", [str(UUID7), UUID7.hex, UUID7], ids=["dashed", "hex", "object"])
def test_normalize_span_id__uuid__low_64_bits(form):
    assert normalize_span_id(form) == "9e4fa1b2c3d4e5f6"


def test_normalize_span_id__uuid7_same_millisecond__distinct_ids():
    """Two UUIDv7 made in the same millisecond share their 48 high bits: the mapping keeps the
    random low bits, so their span ids still differ."""
    first, second = UUID7.int, UUID7.int ^ 0x5A5A5A5A5A5A
    assert normalize_span_id(uuid.UUID(int=first)) != normalize_span_id(uuid.UUID(int=second))


@pytest.mark.parametrize("value", ["span-7", "0" * 16, "0" * 32, str(uuid.UUID(int=1 << 64))])
def test_normalize_span_id__free_form_or_zero__deterministic_valid_hash(value):
    mapped = normalize_span_id(value)
    assert check_span_id(mapped) == mapped
    assert normalize_span_id(value) == mapped
