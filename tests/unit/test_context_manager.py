"""W3C Trace Context Level 2 `traceparent`, `TraceContext`, inject/extract, ids and the
current-context ContextVar (tracestate grammar and header containers: test_trace_headers.py).

Each traceparent rule has its own test; its docstring quotes the clause of the W3C Trace Context
recommendation it checks.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    InvalidContextCounter,
    TraceContext,
    current_context,
    extract,
    format_traceparent,
    inject,
    new_span_id,
    new_trace_id,
    opik_span_uuid,
    opik_span_uuid_for,
    opik_trace_uuid,
    parse_traceparent,
    reset_current_context,
    set_current_context,
    start_child,
    use_context,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{SPAN_ID}-01"
HEX = "0123456789abcdef"


def _uuid_fields(hex32: str) -> tuple[int, int, int]:
    """(unix_ms, version, variant) of a UUID given as 32 hex."""
    value = int(hex32, 16)
    return value >> 80, (value >> 76) & 0xF, (value >> 62) & 0b11


# --- traceparent: one test per rule -------------------------------------------------------


def test_parse_traceparent__spec_example__fields_parsed():
    """'Value = 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ... // sampled'"""
    ctx = parse_traceparent(VALID)
    assert ctx == TraceContext(TRACE_ID, SPAN_ID, 1)
    assert ctx.sampled is True
    assert parse_traceparent(f"00-{TRACE_ID}-{SPAN_ID}-00").sampled is False


def test_parse_traceparent__surrounding_spaces_and_tabs__accepted():
    """OWS around the value is not part of it (regex `^[ \\t]*...[ \\t]*$`)."""
    assert parse_traceparent(f" \t{VALID}\t ") == TraceContext(TRACE_ID, SPAN_ID, 1)


def test_parse_traceparent__uppercase_hex__rejected():
    """'HEXDIGLC = DIGIT / "a" / "b" / "c" / "d" / "e" / "f" ; lowercase hex character'"""
    assert parse_traceparent(f"00-{TRACE_ID.upper()}-{SPAN_ID}-01") is None
    assert parse_traceparent(f"00-{TRACE_ID}-{SPAN_ID.upper()}-01") is None
    assert parse_traceparent(f"00-{TRACE_ID}-{SPAN_ID}-0A") is None


def test_parse_traceparent__version_ff__rejected():
    """'Version (version) is 1 byte representing an 8-bit unsigned integer. Version ff is
    invalid.'"""
    assert parse_traceparent(f"ff-{TRACE_ID}-{SPAN_ID}-01") is None


def test_parse_traceparent__all_zero_trace_id__rejected():
    """'All bytes as zero (00000000000000000000000000000000) is considered an invalid value.
    ... If the trace-id value is invalid ... vendors MUST ignore the traceparent.'"""
    assert parse_traceparent(f"00-{'0' * 32}-{SPAN_ID}-01") is None


def test_parse_traceparent__all_zero_parent_id__rejected():
    """'All bytes as zero (0000000000000000) is considered an invalid value.'"""
    assert parse_traceparent(f"00-{TRACE_ID}-{'0' * 16}-01") is None


def test_parse_traceparent__non_hex_parent_id__rejected():
    """'Vendors MUST ignore the traceparent when the parent-id is invalid (for example, if it
    contains non-lowercase hex characters).'"""
    assert parse_traceparent(f"00-{TRACE_ID}-00f067aa0ba902bz-01") is None


def test_parse_traceparent__version_00_with_trailing_field__rejected():
    """'The following version-format definition is used for version 00.
    version-format = trace-id "-" parent-id "-" trace-flags' (nothing after the flags)."""
    assert parse_traceparent(f"{VALID}-what-the-future-holds") is None
    assert parse_traceparent(f"{VALID}-") is None


def test_parse_traceparent__future_version_with_trailing_fields__first_four_fields_used():
    """'If a higher version is detected, the implementation SHOULD try to parse it ... If all
    three values were parsed successfully, the vendor should use them.'"""
    ctx = parse_traceparent(f"cc-{TRACE_ID}-{SPAN_ID}-01-what-the-future-holds")
    assert ctx == TraceContext(TRACE_ID, SPAN_ID, 1)
    assert parse_traceparent(f"01-{TRACE_ID}-{SPAN_ID}-00") == TraceContext(TRACE_ID, SPAN_ID, 0)


def test_parse_traceparent__future_version_flags_not_followed_by_dash__rejected():
    """'Vendors MUST check that the 2 characters are either at the end of the string or followed
    by a dash.'"""
    assert parse_traceparent(f"cc-{TRACE_ID}-{SPAN_ID}-01x") is None


def test_parse_traceparent__short_header__rejected():
    """'If the size of the header is shorter than 55 characters, the vendor should not parse the
    header and should restart the trace.'"""
    assert parse_traceparent(VALID[:54]) is None
    assert parse_traceparent(f"00-{TRACE_ID}-{SPAN_ID}-1") is None


def test_parse_traceparent__unparseable_version_prefix__rejected():
    """'When the version prefix cannot be parsed (it's not 2 hex characters followed by a dash
    (-)), the implementation should restart the trace.'"""
    assert parse_traceparent(f"0-{TRACE_ID}-{SPAN_ID}-01") is None
    assert parse_traceparent(f"000{TRACE_ID}-{SPAN_ID}-01") is None


@pytest.mark.parametrize("value", [None, "", "   ", "garbage", 42])
def test_parse_traceparent__absent_or_not_a_header__none(value):
    """An absent or non-string header gives None (a new trace starts); it never raises."""
    assert parse_traceparent(value) is None


def test_format_traceparent__any_context__version_00_with_two_digit_flags():
    """'Vendors MUST use these fields to construct the new traceparent field according to the
    highest version of the specification known to the implementation (... 00).'"""
    ctx = parse_traceparent(f"cc-{TRACE_ID}-{SPAN_ID}-09-extra")
    assert format_traceparent(ctx) == f"00-{TRACE_ID}-{SPAN_ID}-09"


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("trace_id", {"trace_id": TRACE_ID.upper()}),
        ("trace_id", {"trace_id": "0" * 32}),
        ("span_id", {"span_id": SPAN_ID[:-1]}),
        ("trace_flags", {"trace_flags": 256}),
        ("trace_flags", {"trace_flags": True}),
    ],
)
def test_trace_context__invalid_field__value_error_names_field(field, kwargs):
    args = {"trace_id": TRACE_ID, "span_id": SPAN_ID, "trace_flags": 1} | kwargs
    with pytest.raises(ValueError, match=field):
        TraceContext(**args)


@pytest.mark.parametrize(
    ("tracestate", "message"),
    [
        ((("ven dor", "1"),), r"member 0 key 'ven dor' is not a tracestate key: a lowercase"),
        ((("ok", "1"), ("@x", "1")), r"member 1 key '@x'"),
        ((("k", ""),), r"member 0 value '' for key 'k' is not 1 to 256 printable ASCII"),
        ((("k", "a,b"),), r"value 'a,b'"),
        ((("k", "trailing "),), r"value 'trailing '"),
        ((("k", "1"), ("k", "2")), r"member 1 repeats the key 'k'"),
        (tuple((f"k{i}", "v") for i in range(33)), r"33 members; at most 32 are allowed"),
        ((("k", "1", "x"),), r"member 0 .* is not a \(key, value\) pair"),
        ("k=v", r"tracestate must be a sequence of \(key, value\) pairs, got 'k=v'"),
    ],
)
def test_trace_context__invalid_tracestate__value_error_names_the_member(tracestate, message):
    """`TraceContext` holds only what `inject` may send: 'Adding a key/value pair MUST NOT
    result in the same key being present multiple times', at most 32 members, Level 2 keys and
    values. The error names the member, its value and what is accepted."""
    with pytest.raises(ValueError, match=message):
        TraceContext(TRACE_ID, SPAN_ID, 1, tracestate)


def test_trace_context__tracestate_as_list_or_mapping__stored_as_tuple_of_pairs():
    expected = (("rojo", "1"), ("congo@t", "2"))
    assert TraceContext(TRACE_ID, SPAN_ID, 1, [["rojo", "1"], ("congo@t", "2")]).tracestate == (
        expected
    )
    assert TraceContext(TRACE_ID, SPAN_ID, 1, {"rojo": "1", "congo@t": "2"}).tracestate == expected
    assert TraceContext(TRACE_ID, SPAN_ID, 1, []).tracestate == ()
    assert hash(TraceContext(TRACE_ID, SPAN_ID, 1, [("a", "b")]))  # still hashable


# --- traceparent properties ---------------------------------------------------------------

trace_ids = st.text(alphabet=HEX, min_size=32, max_size=32).filter(lambda s: s != "0" * 32)
span_ids = st.text(alphabet=HEX, min_size=16, max_size=16).filter(lambda s: s != "0" * 16)
flags = st.integers(min_value=0, max_value=255)


@given(trace_ids, span_ids, flags)
def test_traceparent__round_trip__identity(trace_id, span_id, trace_flags):
    ctx = TraceContext(trace_id, span_id, trace_flags)
    assert parse_traceparent(format_traceparent(ctx)) == ctx


def _set(fields: list[str], index: int, value: str) -> str:
    return "-".join([*fields[:index], value, *fields[index + 1 :]])


@st.composite
def invalid_headers(draw):
    """A valid version-00 header with exactly one field mutated to an invalid value."""
    fields = ["00", draw(trace_ids), draw(span_ids), f"{draw(flags):02x}"]
    index = draw(st.integers(min_value=0, max_value=3))
    field = fields[index]
    kind = draw(
        st.sampled_from(["uppercase", "length", "zeros", "version_ff", "non_hex", "extra_field"])
    )
    if kind == "uppercase":
        pos = draw(st.integers(0, len(field) - 1))
        return _set(fields, index, field[:pos] + draw(st.sampled_from("ABCDEF")) + field[pos + 1 :])
    if kind == "length":
        if draw(st.booleans()):
            return _set(fields, index, field[: draw(st.integers(0, len(field) - 1))])
        return _set(fields, index, field + draw(st.text(alphabet=HEX, min_size=1, max_size=8)))
    if kind == "zeros":
        index = draw(st.sampled_from([1, 2]))
        return _set(fields, index, "0" * len(fields[index]))
    if kind == "version_ff":
        return _set(fields, 0, "ff")
    if kind == "non_hex":
        pos = draw(st.integers(0, len(field) - 1))
        bad = draw(st.characters(exclude_characters=HEX))
        return _set(fields, index, field[:pos] + bad + field[pos + 1 :])
    return "-".join(fields) + "-" + draw(st.text(max_size=20))


@given(invalid_headers())
def test_parse_traceparent__any_single_invalid_mutation__rejected(header):
    assert parse_traceparent(header) is None


# --- ids ----------------------------------------------------------------------------------


def test_new_trace_id__layout__uuid7_with_current_timestamp():
    before = time.time_ns() // 1_000_000
    trace_id = new_trace_id()
    after = time.time_ns() // 1_000_000
    assert len(trace_id) == 32 and set(trace_id) <= set(HEX)
    unix_ms, version, variant = _uuid_fields(trace_id)
    assert (version, variant) == (7, 0b10)
    assert before <= unix_ms <= after
    assert uuid.UUID(hex=trace_id).version == 7
    assert parse_traceparent(f"00-{trace_id}-{SPAN_ID}-01").trace_id == trace_id


def test_new_trace_id__many_calls__distinct():
    assert len({new_trace_id() for _ in range(1000)}) == 1000


def test_new_span_id__many_calls__sixteen_hex_nonzero_distinct():
    ids = {new_span_id() for _ in range(1000)}
    assert len(ids) == 1000
    for span_id in ids:
        assert len(span_id) == 16 and set(span_id) <= set(HEX) and span_id != "0" * 16


START = datetime(2025, 3, 14, 15, 9, 26, 535_897, tzinfo=UTC)


def test_opik_span_uuid__same_input__same_uuid7_with_start_timestamp():
    first = opik_span_uuid(TRACE_ID, SPAN_ID, START)
    assert first == opik_span_uuid(TRACE_ID, SPAN_ID, START)
    parsed = uuid.UUID(first)
    assert str(parsed) == first and first == first.lower()
    assert parsed.version == 7
    unix_ms, version, variant = _uuid_fields(parsed.hex)
    assert (version, variant) == (7, 0b10)
    assert unix_ms == int(START.timestamp()) * 1000 + 535


def test_opik_span_uuid__other_zone_same_instant__same_uuid():
    shifted = START.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert opik_span_uuid(TRACE_ID, SPAN_ID, shifted) == opik_span_uuid(TRACE_ID, SPAN_ID, START)


def test_opik_span_uuid__different_span_or_trace__different_uuid():
    base = opik_span_uuid(TRACE_ID, SPAN_ID, START)
    assert opik_span_uuid(TRACE_ID, "00f067aa0ba902b8", START) != base
    assert opik_span_uuid("4bf92f3577b34da6a3ce929d0e0e4737", SPAN_ID, START) != base


def test_opik_span_uuid__naive_start__value_error():
    with pytest.raises(ValueError, match="timezone-aware"):
        opik_span_uuid(TRACE_ID, SPAN_ID, START.replace(tzinfo=None))


def test_opik_span_uuid_for__ids_only__deterministic_uuid7_with_trace_time_prefix():
    trace_id = new_trace_id()
    first = opik_span_uuid_for(trace_id, SPAN_ID)
    assert first == opik_span_uuid_for(trace_id, SPAN_ID)
    assert uuid.UUID(first).version == 7 and str(uuid.UUID(first)) == first
    assert _uuid_fields(uuid.UUID(first).hex)[0] == _uuid_fields(trace_id)[0]
    sibling = opik_span_uuid_for(trace_id, "00f067aa0ba902b8")
    assert sibling != first and sibling[:13] == first[:13]  # same 48-bit time prefix


def test_opik_span_uuid_for__foreign_trace_id__uuid7_from_mapped_trace_time():
    mapped = opik_span_uuid_for(TRACE_ID, SPAN_ID)
    assert uuid.UUID(mapped).version == 7
    assert mapped[:13] == opik_trace_uuid(TRACE_ID)[:13]


def test_opik_trace_uuid__uuid7_trace_id__same_bits_dashed():
    trace_id = new_trace_id()
    assert opik_trace_uuid(trace_id) == str(uuid.UUID(hex=trace_id))


def test_opik_trace_uuid__foreign_trace_id__version_and_variant_set_rest_kept():
    mapped = opik_trace_uuid(TRACE_ID)  # 4bf92f35-77b3-4da6-a3ce-929d0e0e4736: version 4
    assert mapped == "4bf92f35-77b3-7da6-a3ce-929d0e0e4736"
    assert uuid.UUID(mapped).version == 7
    assert opik_trace_uuid(TRACE_ID) == mapped
    assert opik_trace_uuid("ffffffffffffffffffffffffffffffff") == (
        "ffffffff-ffff-7fff-bfff-ffffffffffff"
    )


def test_opik_trace_uuid__invalid_trace_id__value_error():
    with pytest.raises(ValueError, match="trace_id"):
        opik_trace_uuid("not-a-trace-id")


# --- current context ----------------------------------------------------------------------

PARENT = TraceContext(TRACE_ID, SPAN_ID, 1, (("congo", "t61rcWkgMzE"),))


def test_use_context__block__set_inside_restored_after():
    assert current_context() is None
    with use_context(PARENT) as ctx:
        assert ctx is PARENT and current_context() is PARENT
        child = start_child(PARENT)
        with use_context(child):
            assert current_context() is child
        assert current_context() is PARENT
    assert current_context() is None


def test_set_current_context__token__reset_restores_previous():
    token = set_current_context(PARENT)
    try:
        assert current_context() is PARENT
    finally:
        reset_current_context(token)
    assert current_context() is None


async def test_current_context__asyncio_tasks__inherited_and_isolated():
    seen: dict[str, TraceContext | None] = {}

    async def worker(name: str) -> None:
        seen[f"{name}-inherited"] = current_context()
        with use_context(start_child(current_context())):
            await asyncio.sleep(0)
            seen[name] = current_context()

    with use_context(PARENT):
        await asyncio.gather(worker("a"), worker("b"))
        assert current_context() is PARENT
    assert seen["a-inherited"] is PARENT and seen["b-inherited"] is PARENT
    assert seen["a"].trace_id == seen["b"].trace_id == TRACE_ID
    assert seen["a"].span_id != seen["b"].span_id


def test_start_child__parent__same_trace_flags_tracestate_new_span():
    child = start_child(PARENT)
    assert (child.trace_id, child.trace_flags, child.tracestate) == (
        PARENT.trace_id,
        PARENT.trace_flags,
        PARENT.tracestate,
    )
    assert child.span_id != PARENT.span_id


@pytest.mark.parametrize(
    ("raw", "kept"), [(0xFF, 0x03), (0x02, 0x02), (0x81, 0x01), (0x06, 0x02), (0xFC, 0x00)]
)
def test_start_child__reserved_flag_bits__zeroed_sampled_and_random_kept(raw, kept):
    """'The behavior of other flags, such as (00000100) is not defined and is reserved for
    future use. Vendors MUST set those to zero.' and 'If the [random] flag is set in the
    incoming traceparent header, it MUST also be set in all outgoing traceparent headers which
    use the same trace-id.' (Level 2, Random Trace ID Flag)"""
    parent = TraceContext(TRACE_ID, SPAN_ID, raw)
    assert start_child(parent).trace_flags == kept
    assert parse_traceparent(f"00-{TRACE_ID}-{SPAN_ID}-{raw:02x}").trace_flags == raw


def test_start_child__no_parent__new_uuid7_trace_flagged_sampled_and_random():
    """'When at least the right-most 7 bytes of the trace-id are randomly (or pseudo-randomly)
    generated, the random-trace-id flag SHOULD be set to 1.' Our new trace ids are UUIDv7s
    whose right-most 7 bytes are random (see the next test)."""
    root = start_child(None)
    assert root.trace_id != TRACE_ID and root.tracestate == ()
    assert (root.trace_flags, root.sampled, root.random) == (0x03, True, True)
    assert _uuid_fields(root.trace_id)[1:] == (7, 0b10)


def test_new_trace_id__right_most_7_bytes__every_bit_varies():
    """The random flag is honest: the version nibble (byte 6) and the variant bits (top of
    byte 8) of the UUIDv7 lie outside the right-most 7 bytes, and each of those 56 bits takes
    both values over 2000 ids (a fixed bit fails this; a random one does with p = 2**-1999)."""
    mask = (1 << 56) - 1
    ones = zeros = 0
    for _ in range(2000):
        value = int(new_trace_id(), 16) & mask
        ones |= value
        zeros |= ~value & mask
    assert ones == mask and zeros == mask


# --- inject / extract ---------------------------------------------------------------------


def test_inject__explicit_context__traceparent_and_tracestate_written():
    headers = inject({"accept": "*/*"}, PARENT)
    assert headers == {
        "accept": "*/*",
        "traceparent": VALID,
        "tracestate": "congo=t61rcWkgMzE",
    }


def test_inject__current_context_without_tracestate__only_traceparent():
    with use_context(TraceContext(TRACE_ID, SPAN_ID, 0)):
        headers = inject({})
    assert headers == {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-00"}


def test_inject__reserved_flag_bits__zeroed_in_outgoing_traceparent():
    """'The behavior of other flags, such as (00000100) is not defined and is reserved for
    future use. Vendors MUST set those to zero.' (Level 2, Other Flags)"""
    received = extract({"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-07"})
    assert received is not None and format_traceparent(received).endswith("-07")  # raw kept
    assert inject({}, received) == {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-03"}
    with use_context(TraceContext(TRACE_ID, SPAN_ID, 0xFC)):
        assert inject({}) == {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-00"}


def test_inject__headers_already_carry_a_context__replaced_not_doubled():
    """A request carries one traceparent: one already in the headers under another spelling is
    replaced, and a stale tracestate that does not belong to this context is removed."""
    headers = {"TraceParent": "00-old", "TRACESTATE": "old=1", "tracestate": "old=2", "x": "y"}
    assert inject(headers, TraceContext(TRACE_ID, SPAN_ID, 1)) == {"x": "y", "traceparent": VALID}


def test_inject__no_context__headers_unchanged():
    assert inject({"a": "b"}) == {"a": "b"}


def test_extract__inject_output__same_context():
    assert extract(inject({}, PARENT)) == PARENT


def test_extract__mixed_case_header_names__read():
    """'Vendors MUST expect the header name in any case (upper, lower, mixed)'"""
    headers = {"TraceParent": VALID, "TRACESTATE": "rojo=1, congo=2"}
    assert extract(headers) == TraceContext(TRACE_ID, SPAN_ID, 1, (("rojo", "1"), ("congo", "2")))


def test_extract__invalid_traceparent__none_tracestate_ignored_and_counted():
    """'If the vendor failed to parse traceparent, it MUST NOT attempt to parse tracestate.'"""
    counter = InvalidContextCounter()
    headers = {"traceparent": f"ff-{TRACE_ID}-{SPAN_ID}-01", "tracestate": "congo=x"}
    assert extract(headers, counter=counter) is None
    assert extract({"traceparent": "nonsense"}, counter=counter) is None
    assert counter.value == 2


def test_extract__invalid_tracestate__traceparent_still_used():
    """'Note that the opposite is not true: failure to parse tracestate MUST NOT affect the
    parsing of traceparent.'"""
    counter = InvalidContextCounter()
    ctx = extract({"traceparent": VALID, "tracestate": "BAD KEY=1,=,,"}, counter=counter)
    assert ctx == TraceContext(TRACE_ID, SPAN_ID, 1)
    assert counter.value == 0


def test_extract__two_traceparent_lines__none_and_counted():
    """More than one traceparent line: its value is not a list, so RFC 9110 §5.3 cannot
    combine the lines; the context is invalid and a new trace starts."""
    counter = InvalidContextCounter()
    assert extract([("traceparent", VALID), ("TraceParent", VALID)], counter) is None
    assert extract({"traceparent": [VALID, VALID]}, counter) is None
    assert counter.value == 2


def test_extract__repeated_tracestate_lines__combined_in_order():
    """'When receiving multiple tracestate header fields, they MUST be combined into a single
    header according to RFC9110.'"""
    headers = [
        ("tracestate", "rojo=1"),
        ("traceparent", VALID),
        ("x-other", "1"),
        ("TRACESTATE", ""),
        ("tracestate", "congo=2, baz=3"),
    ]
    expected = (("rojo", "1"), ("congo", "2"), ("baz", "3"))
    assert extract(headers) == TraceContext(TRACE_ID, SPAN_ID, 1, expected)


def test_extract__no_traceparent__none_not_counted():
    counter = InvalidContextCounter()
    assert extract({"tracestate": "congo=x"}, counter=counter) is None
    assert counter.value == 0


def test_invalid_context_counter__concurrent_threads__no_lost_increments():
    counter = InvalidContextCounter()
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        for _ in range(2000):
            extract({"traceparent": "00-bad"}, counter=counter)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.value == 16_000
