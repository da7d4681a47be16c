"""Every case of the official W3C Trace Context test suite, as our own test data.

Source: the public w3c/trace-context repository, commit acab820, `test/test.py` (W3C 3-clause
BSD license; see its LICENSE.md). Its header values and expectations are transcribed here, one
`W3CCase` per request the suite sends (`official` names the suite's test and the request's
index in it), with the rule of the Level 2 text each one checks. The suite's code is not copied.

Where the suite accepts several behaviours, `tracestate` pins ours: an invalid `tracestate` is
discarded whole (what the suite checks at STRICT_LEVEL=2), a repeated key keeps its left-most
entry. `flags` is the outgoing trace-flags byte: a kept trace keeps `sampled` and `random`
(reserved bits zeroed); a new trace is ours, a UUIDv7 whose right-most 7 bytes are random, so
it carries `sampled` and `random` (03).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TRACE_ID = "12345678901234567890123456789012"
PARENT_ID = "1234567890123456"
TP_01 = f"00-{TRACE_ID}-{PARENT_ID}-01"
TP_00 = f"00-{TRACE_ID}-{PARENT_ID}-00"
NEW_TRACE_FLAGS = 0x03

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class W3CCase:
    official: str
    """`Suite.test_name[i]`: the official test and which of its requests this is."""
    rule: str
    """The rule of the W3C Trace Context Level 2 text (or RFC 9110) the case checks."""
    headers: Headers
    """Header lines sent to the service, in order; a repeated name is a repeated line."""
    trace: Literal["kept", "new"]
    """`kept`: the callback carries TRACE_ID with a new parent-id; `new`: a new trace-id."""
    flags: int = NEW_TRACE_FLAGS
    tracestate: str | None = None
    """The exact `tracestate` the service sends on; None: no `tracestate` line."""
    counted: bool = False
    """The service counted an invalid `traceparent` (the self-monitor's counter)."""
    strict: bool = False
    """The suite runs it only at STRICT_LEVEL=2 (tracestate size and grammar checks)."""
    callbacks: int = 1
    """How many outgoing calls the service makes (AdvancedTest asks for 3)."""


# --- rules (quoted from the Level 2 text unless marked RFC 9110) ----------------------------

NO_TRACEPARENT = (
    "A vendor receiving a request without a traceparent header SHOULD generate traceparent "
    "headers for outbound requests, effectively starting a new trace."
)
PROPAGATE = (
    "A vendor receiving a traceparent request header MUST send it to outgoing requests. ... "
    "Update parent-id: ... set to the new value representing the ID of the current operation."
)
ONE_TRACEPARENT = (
    "RFC 9110 §5.3: a field may be sent as several lines only if its value is a "
    "comma-separated list; traceparent's value is not, so two traceparent lines are an "
    "invalid traceparent: the trace restarts."
)
HEADER_NAME = (
    "Header name: traceparent ... The header name is a single word; it does not contain any "
    "delimiters such as a hyphen."
)
HEADER_CASE = (
    "The header name is ASCII case-insensitive. That is, TRACEPARENT, TraceParent, and "
    "traceparent are considered the same header."
)
VERSION_00 = (
    'The following version-format definition is used for version 00: trace-id "-" parent-id '
    '"-" trace-flags (nothing may follow the flags).'
)
HIGHER_VERSION = (
    "If a higher version is detected, the implementation SHOULD try to parse it ... Vendors "
    "MUST check that the 2 characters [of the flags] are either at the end of the string or "
    "followed by a dash. If all three values were parsed successfully, the vendor should use "
    "them."
)
VERSION_FF = 'Version 255 ("ff") is invalid.'
VERSION_PREFIX = (
    "When the version prefix cannot be parsed (it's not 2 hex characters followed by a dash "
    "(-)), the implementation should restart the trace."
)
TRACE_ID_FORMAT = (
    "trace-id = 32HEXDIGLC ... If the trace-id value is invalid (for example if it contains "
    "non-allowed characters or all zeros), vendors MUST ignore the entire header."
)
TRACE_ID_ZERO = (
    "All bytes as zero (00000000000000000000000000000000) is considered an invalid value."
)
PARENT_ID_FORMAT = (
    "parent-id = 16HEXDIGLC ... Vendors MUST ignore the traceparent when the parent-id is "
    "invalid (for example, if it contains non-lowercase hex characters)."
)
PARENT_ID_ZERO = "All bytes as zero (0000000000000000) is considered an invalid value."
FLAGS_FORMAT = "trace-flags = 2HEXDIGLC ; 8 bit flags."
TRACEPARENT_OWS = (
    "RFC 9110 §5.5: a field value does not include leading or trailing whitespace (OWS around "
    "the traceparent value is ignored)."
)
TRACESTATE_NEEDS_TRACEPARENT = (
    "If the vendor failed to parse traceparent, it MUST NOT attempt to parse tracestate. ... "
    "Vendors SHOULD clean up tracestate collection on traceparent restart."
)
TRACESTATE_PROPAGATE = (
    "Vendors receiving a tracestate request header MUST send it to outgoing requests."
)
TRACESTATE_NAME = "Header name: tracestate ... it does not contain any delimiters such as a hyphen."
TRACESTATE_CASE = (
    "The header name is ASCII case-insensitive. That is, TRACESTATE, TraceState, and tracestate "
    "are considered the same header."
)
TRACESTATE_EMPTY = (
    "Empty and whitespace-only list members are allowed. Vendors MUST accept empty tracestate "
    "headers but SHOULD avoid sending them."
)
TRACESTATE_COMBINE = (
    "When receiving multiple tracestate header fields, they MUST be combined into a single "
    "header according to RFC9110 (§5.3: in order, joined with a comma)."
)
TRACESTATE_DUPLICATE = (
    "Adding a key/value pair MUST NOT result in the same key being present multiple times. ... "
    "Vendors MAY also discard duplicate keys that were not generated by them (we keep the "
    "left-most entry)."
)
TRACESTATE_GRAMMAR = (
    'key = ( lcalpha / DIGIT ) 0*255 ( keychar ); keychar = lcalpha / DIGIT / "_" / "-"/ "*" / '
    '"/" / "@"; value = 0*255(chr) nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E; '
    "chr = %x20 / nblk-chr"
)
TRACESTATE_OWS = "Spaces and horizontal tabs surrounding list-members are ignored."
TRACESTATE_INVALID_KEY = (
    "A key MUST begin with a lowercase letter or a digit and contain up to 256 characters "
    "including lowercase letters, digits, _, -, *, / and @ (an invalid member: the whole "
    "header is discarded, the strict choice)."
)
TRACESTATE_MEMBERS = (
    "There can be a maximum of 32 list-members in a list (33: the whole header is discarded)."
)
TRACESTATE_INVALID_VALUE = (
    "The value is an opaque string containing up to 256 printable ASCII characters ... except "
    "comma (,) and (=) (an invalid member: the whole header is discarded)."
)
PARENT_ID_PER_CALL = (
    "Update parent-id: The value of the parent-id field can be set to the new value "
    "representing the ID of the current operation (each outgoing call is its own span)."
)
RANDOM_KEPT = (
    "If the [random-trace-id] flag is set in the incoming traceparent header, it MUST also be "
    "set in all outgoing traceparent headers which use the same trace-id."
)


def _tp(value: str) -> Headers:
    return (("traceparent", value),)


def _with_state(*states: str, parent: str = TP_00, name: str = "tracestate") -> Headers:
    return (("traceparent", parent), *((name, s) for s in states))


_TC = "TraceContextTest"
_BAR_32 = [
    "bar01=01,bar02=02,bar03=03,bar04=04,bar05=05,bar06=06,bar07=07,bar08=08,bar09=09,bar10=10",
    "bar11=11,bar12=12,bar13=13,bar14=14,bar15=15,bar16=16,bar17=17,bar18=18,bar19=19,bar20=20",
    "bar21=21,bar22=22,bar23=23,bar24=24,bar25=25,bar26=26,bar27=27,bar28=28,bar29=29,bar30=30",
    "bar31=31,bar32=32",
]
_KEY_NO_VENDOR = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
_KEY_WITH_VENDOR = _KEY_NO_VENDOR + "@a-z0-9_-*/"
_ALL_VALUE_CHARS = "".join(
    chr(c) for c in (*range(0x20, 0x2B + 1), *range(0x2D, 0x3C + 1), *range(0x3E, 0x7E + 1))
)

CASES: tuple[W3CCase, ...] = (
    W3CCase(f"{_TC}.test_both_traceparent_and_tracestate_missing[0]", NO_TRACEPARENT, (), "new"),
    W3CCase(
        f"{_TC}.test_traceparent_included_tracestate_missing[0]",
        PROPAGATE,
        _tp(TP_01),
        "kept",
        0x01,
    ),
    W3CCase(
        f"{_TC}.test_traceparent_duplicated[0]",
        ONE_TRACEPARENT,
        (
            ("traceparent", f"00-{TRACE_ID[:-1]}1-{PARENT_ID}-01"),
            ("traceparent", TP_01),
        ),
        "new",
        counted=True,
    ),
    W3CCase(
        f"{_TC}.test_traceparent_header_name[0]", HEADER_NAME, (("trace-parent", TP_01),), "new"
    ),
    W3CCase(
        f"{_TC}.test_traceparent_header_name[1]", HEADER_NAME, (("trace.parent", TP_01),), "new"
    ),
    *(
        W3CCase(
            f"{_TC}.test_traceparent_header_name_valid_casing[{i}]",
            HEADER_CASE,
            ((name, TP_01),),
            "kept",
            0x01,
        )
        for i, name in enumerate(("TraceParent", "TrAcEpArEnT", "TRACEPARENT"))
    ),
    W3CCase(
        f"{_TC}.test_traceparent_version_0x00[0]", VERSION_00, _tp(f"{TP_01}."), "new", counted=True
    ),
    W3CCase(
        f"{_TC}.test_traceparent_version_0x00[1]",
        VERSION_00,
        _tp(f"{TP_01}-what-the-future-will-be-like"),
        "new",
        counted=True,
    ),
    W3CCase(
        f"{_TC}.test_traceparent_version_0xcc[0]",
        HIGHER_VERSION,
        _tp(f"cc-{TRACE_ID}-{PARENT_ID}-01"),
        "kept",
        0x01,
    ),
    W3CCase(
        f"{_TC}.test_traceparent_version_0xcc[1]",
        HIGHER_VERSION,
        _tp(f"cc-{TRACE_ID}-{PARENT_ID}-01-what-the-future-will-be-like"),
        "kept",
        0x01,
    ),
    W3CCase(
        f"{_TC}.test_traceparent_version_0xcc[2]",
        HIGHER_VERSION,
        _tp(f"cc-{TRACE_ID}-{PARENT_ID}-01.what-the-future-will-be-like"),
        "new",
        counted=True,
    ),
    W3CCase(
        f"{_TC}.test_traceparent_version_0xff[0]",
        VERSION_FF,
        _tp(f"ff-{TRACE_ID}-{PARENT_ID}-01"),
        "new",
        counted=True,
    ),
    *(
        W3CCase(
            f"{_TC}.test_traceparent_version_{name}[{i}]",
            VERSION_PREFIX,
            _tp(f"{version}-{TRACE_ID}-{PARENT_ID}-01"),
            "new",
            counted=True,
        )
        for name, versions in (
            ("illegal_characters", (".0", "0.")),
            ("too_long", ("000", "0000")),
            ("too_short", ("0",)),
        )
        for i, version in enumerate(versions)
    ),
    W3CCase(
        f"{_TC}.test_traceparent_trace_id_all_zero[0]",
        TRACE_ID_ZERO,
        _tp(f"00-{'0' * 32}-{PARENT_ID}-01"),
        "new",
        counted=True,
    ),
    *(
        W3CCase(
            f"{_TC}.test_traceparent_trace_id_{name}[{i}]",
            TRACE_ID_FORMAT,
            _tp(f"00-{trace_id}-{PARENT_ID}-01"),
            "new",
            counted=True,
        )
        for name, trace_ids in (
            ("illegal_characters", (f".{TRACE_ID[1:]}", f"{TRACE_ID[:-1]}.")),
            ("too_long", (f"{TRACE_ID}3",)),
            ("too_short", (TRACE_ID[:-1],)),
        )
        for i, trace_id in enumerate(trace_ids)
    ),
    W3CCase(
        f"{_TC}.test_traceparent_parent_id_all_zero[0]",
        PARENT_ID_ZERO,
        _tp(f"00-{TRACE_ID}-{'0' * 16}-01"),
        "new",
        counted=True,
    ),
    *(
        W3CCase(
            f"{_TC}.test_traceparent_parent_id_{name}[{i}]",
            PARENT_ID_FORMAT,
            _tp(f"00-{TRACE_ID}-{parent_id}-01"),
            "new",
            counted=True,
        )
        for name, parent_ids in (
            ("illegal_characters", (f".{PARENT_ID[1:]}", f"{PARENT_ID[:-1]}.")),
            ("too_long", (f"{PARENT_ID}7",)),
            ("too_short", (PARENT_ID[:-1],)),
        )
        for i, parent_id in enumerate(parent_ids)
    ),
    *(
        W3CCase(
            f"{_TC}.test_traceparent_trace_flags_{name}[{i}]",
            FLAGS_FORMAT,
            _tp(f"00-{TRACE_ID}-{PARENT_ID}-{flags}"),
            "new",
            counted=True,
        )
        for name, all_flags in (
            ("illegal_characters", (".0", "0.")),
            ("too_long", ("001",)),
            ("too_short", ("1",)),
        )
        for i, flags in enumerate(all_flags)
    ),
    *(
        W3CCase(
            f"{_TC}.test_traceparent_ows_handling[{i}]", TRACEPARENT_OWS, _tp(value), "kept", 0x01
        )
        for i, value in enumerate(
            (f" {TP_01}", f"\t{TP_01}", f"{TP_01} ", f"{TP_01}\t", f"\t {TP_01} \t")
        )
    ),
    W3CCase(
        f"{_TC}.test_tracestate_included_traceparent_missing[0]",
        TRACESTATE_NEEDS_TRACEPARENT,
        (("tracestate", "foo=1"),),
        "new",
    ),
    W3CCase(
        f"{_TC}.test_tracestate_included_traceparent_missing[1]",
        TRACESTATE_NEEDS_TRACEPARENT,
        (("tracestate", "foo=1,bar=2"),),
        "new",
    ),
    W3CCase(
        f"{_TC}.test_tracestate_included_traceparent_included[0]",
        TRACESTATE_PROPAGATE,
        _with_state("foo=1,bar=2"),
        "kept",
        0x00,
        "foo=1,bar=2",
    ),
    *(
        W3CCase(
            f"{_TC}.test_tracestate_header_name[{i}]",
            TRACESTATE_NAME,
            _with_state("foo=1", name=name),
            "kept",
            0x00,
        )
        for i, name in enumerate(("trace-state", "trace.state"))
    ),
    *(
        W3CCase(
            f"{_TC}.test_tracestate_header_name_valid_casing[{i}]",
            TRACESTATE_CASE,
            _with_state("foo=1", name=name),
            "kept",
            0x00,
            "foo=1",
        )
        for i, name in enumerate(("TraceState", "TrAcEsTaTe", "TRACESTATE"))
    ),
    W3CCase(
        f"{_TC}.test_tracestate_empty_header[0]", TRACESTATE_EMPTY, _with_state(""), "kept", 0x00
    ),
    W3CCase(
        f"{_TC}.test_tracestate_empty_header[1]",
        TRACESTATE_EMPTY,
        _with_state("foo=1", ""),
        "kept",
        0x00,
        "foo=1",
    ),
    W3CCase(
        f"{_TC}.test_tracestate_empty_header[2]",
        TRACESTATE_EMPTY,
        _with_state("", "foo=1"),
        "kept",
        0x00,
        "foo=1",
    ),
    W3CCase(
        f"{_TC}.test_tracestate_multiple_headers_different_keys[0]",
        TRACESTATE_COMBINE,
        _with_state("foo=1,bar=2", "rojo=1,congo=2", "baz=3"),
        "kept",
        0x00,
        "foo=1,bar=2,rojo=1,congo=2,baz=3",
    ),
    *(
        W3CCase(
            f"{_TC}.test_tracestate_duplicated_keys[{i}]",
            TRACESTATE_DUPLICATE,
            _with_state(*states),
            "kept",
            0x00,
            "foo=1",
            strict=True,
        )
        for i, states in enumerate(
            (("foo=1,foo=1",), ("foo=1,foo=2",), ("foo=1", "foo=1"), ("foo=1", "foo=2"))
        )
    ),
    *(
        W3CCase(
            f"{_TC}.test_tracestate_all_allowed_characters[{i}]",
            TRACESTATE_GRAMMAR,
            _with_state(f"{key}={_ALL_VALUE_CHARS}"),
            "kept",
            0x00,
            f"{key}={_ALL_VALUE_CHARS}",
        )
        for i, key in enumerate((_KEY_NO_VENDOR, _KEY_WITH_VENDOR))
    ),
    *(
        W3CCase(
            f"{_TC}.test_tracestate_ows_handling[{i}]",
            TRACESTATE_OWS,
            _with_state(state),
            "kept",
            0x00,
            expected,
        )
        for i, (state, expected) in enumerate(
            (
                ("foo=1 \t , \t bar=2, \t baz=3", "foo=1,bar=2,baz=3"),
                ("foo=1\t \t,\t \tbar=2,\t \tbaz=3", "foo=1,bar=2,baz=3"),
                (" foo=1", "foo=1"),
                ("\tfoo=1", "foo=1"),
                ("foo=1 ", "foo=1"),
                ("foo=1\t", "foo=1"),
                ("\t foo=1 \t", "foo=1"),
            )
        )
    ),
    *(
        W3CCase(
            f"{_TC}.test_tracestate_key_illegal_characters[{i}]",
            TRACESTATE_INVALID_KEY,
            _with_state(state),
            "kept",
            0x00,
            strict=True,
        )
        for i, state in enumerate(("foo =1", "FOO=1", "foo.bar=1"))
    ),
    *(
        W3CCase(
            f"{_TC}.test_tracestate_key_illegal_vendor_format[{i}]",
            TRACESTATE_INVALID_KEY,
            _with_state(state),
            "kept",
            0x00,
            expected,
            strict=True,
        )
        for i, (state, expected) in enumerate(
            (
                ("foo@=1,bar=2", "foo@=1,bar=2"),
                ("@foo=1,bar=2", None),
                ("foo@@bar=1,bar=2", "foo@@bar=1,bar=2"),
                ("foo@bar@baz=1,bar=2", "foo@bar@baz=1,bar=2"),
            )
        )
    ),
    W3CCase(
        f"{_TC}.test_tracestate_member_count_limit[0]",
        TRACESTATE_MEMBERS,
        _with_state(*_BAR_32),
        "kept",
        0x00,
        ",".join(_BAR_32),
        strict=True,
    ),
    W3CCase(
        f"{_TC}.test_tracestate_member_count_limit[1]",
        TRACESTATE_MEMBERS,
        _with_state(*_BAR_32[:3], "bar31=31,bar32=32,bar33=33"),
        "kept",
        0x00,
        strict=True,
    ),
    *(
        W3CCase(
            f"{_TC}.test_tracestate_key_length_limit[{i}]",
            TRACESTATE_INVALID_KEY,
            _with_state("foo=1", f"{key}=1"),
            "kept",
            0x00,
            None if len(key) > 256 else f"foo=1,{key}=1",
            strict=True,
        )
        for i, key in enumerate(
            ("z" * 256, "z" * 257, "t" * 241 + "@" + "v" * 14, "t" * 242 + "@v", "t@" + "v" * 15)
        )
    ),
    *(
        W3CCase(
            f"{_TC}.test_tracestate_value_illegal_characters[{i}]",
            TRACESTATE_INVALID_VALUE,
            _with_state(state),
            "kept",
            0x00,
            strict=True,
        )
        for i, state in enumerate(("foo=bar=baz", "foo=,bar=3"))
    ),
    W3CCase(
        "AdvancedTest.test_multiple_requests_with_valid_traceparent[0]",
        PARENT_ID_PER_CALL,
        _tp(TP_01),
        "kept",
        0x01,
        callbacks=3,
    ),
    W3CCase(
        "AdvancedTest.test_multiple_requests_without_traceparent[0]",
        PARENT_ID_PER_CALL,
        (),
        "new",
        callbacks=3,
    ),
    W3CCase(
        "AdvancedTest.test_multiple_requests_with_illegal_traceparent[0]",
        TRACE_ID_ZERO,
        _tp(f"00-{'0' * 32}-{PARENT_ID}-01"),
        "new",
        counted=True,
        callbacks=3,
    ),
    W3CCase(
        "TraceContext2Test.test_propagates_random_flag[0]",
        RANDOM_KEPT,
        _tp(f"00-{TRACE_ID}-{PARENT_ID}-02"),
        "kept",
        0x02,
    ),
)

OFFICIAL_TESTS = 41
"""Tests in the official suite at SPEC_LEVEL=2 (TraceContextTest, AdvancedTest,
TraceContext2Test); every one has at least one case above."""
