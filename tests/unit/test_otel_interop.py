"""Interop with OpenTelemetry's W3C propagator (the real SDK, `TraceContextTextMapPropagator`):
what it writes we read to the same context, what we write it reads to the same context.

Generated tracestates stay inside what both accept: OpenTelemetry's key grammar is Level 1's
(simple keys, or tenant@system with their length limits), a subset of Level 2's; it treats a
repeated key as an invalid header (we keep the left-most), and drops a combined tracestate
longer than 8192 characters. Reserved flag bits: OpenTelemetry passes them through, we zero
them on the way out (Level 2: 'Vendors MUST set those to zero'), so only `sampled` and
`random` are compared after our inject.
"""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    TraceState,
    format_span_id,
    format_trace_id,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    KNOWN_FLAGS,
    TraceContext,
    extract,
    format_tracestate,
    inject,
    start_child,
)

PROPAGATOR = TraceContextTextMapPropagator()
OTEL_MAX_TRACESTATE = 8192

hex32 = st.integers(1, (1 << 128) - 1).map(lambda v: f"{v:032x}")
hex16 = st.integers(1, (1 << 64) - 1).map(lambda v: f"{v:016x}")
_LCALPHA = "abcdefghijklmnopqrstuvwxyz"
_KEYCHARS = _LCALPHA + "0123456789_-*/"
_NBLK = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ",=")


def _joined(*parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(*parts).map("".join)


# Short members mostly (32 of them fit OpenTelemetry's 8192), the longest allowed ones too.
level1_keys = st.one_of(
    _joined(st.sampled_from(_LCALPHA), st.text(_KEYCHARS, max_size=12)),
    _joined(
        st.sampled_from(_LCALPHA + "0123456789"),
        st.text(_KEYCHARS, max_size=6),
        st.just("@"),
        st.sampled_from(_LCALPHA),
        st.text(_KEYCHARS, max_size=5),
    ),
    st.just("k" * 256),
    st.just("t" * 241 + "@" + "s" * 14),
)
values = st.one_of(
    _joined(st.text(" " + _NBLK, max_size=20), st.sampled_from(_NBLK)), st.just(" " + "v" * 255)
)
tracestates = st.lists(st.tuples(level1_keys, values), max_size=32, unique_by=lambda m: m[0])
all_flags = st.integers(0, 255)


@st.composite
def contexts(draw, flags=all_flags):
    state = draw(tracestates)
    assume(len(format_tracestate(state)) <= OTEL_MAX_TRACESTATE)
    return TraceContext(draw(hex32), draw(hex16), draw(flags), tuple(state))


def otel_span_context(ctx: TraceContext) -> SpanContext:
    return SpanContext(
        trace_id=int(ctx.trace_id, 16),
        span_id=int(ctx.span_id, 16),
        is_remote=False,
        trace_flags=TraceFlags(ctx.trace_flags),
        trace_state=TraceState(list(ctx.tracestate)),
    )


def otel_inject(ctx: TraceContext) -> dict[str, str]:
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier, trace.set_span_in_context(NonRecordingSpan(otel_span_context(ctx))))
    return carrier


def otel_extract(carrier: dict[str, object]) -> TraceContext | None:
    span_context = trace.get_current_span(PROPAGATOR.extract(carrier)).get_span_context()
    if not span_context.is_valid:
        return None
    assert span_context.is_remote
    return TraceContext(
        format_trace_id(span_context.trace_id),
        format_span_id(span_context.span_id),
        int(span_context.trace_flags),
        tuple(span_context.trace_state.items()),
    )


@given(contexts())
def test_otel_writes__extract_reads_the_same_context(ctx):
    assert extract(otel_inject(ctx)) == ctx


@given(contexts())
def test_inject_writes__otel_reads_the_same_context(ctx):
    read = otel_extract(inject({}, ctx))
    assert read == TraceContext(
        ctx.trace_id, ctx.span_id, ctx.trace_flags & KNOWN_FLAGS, ctx.tracestate
    )


@given(contexts(flags=st.integers(0, KNOWN_FLAGS)))
def test_inject_and_otel__same_context__byte_identical_headers(ctx):
    """With only defined flags set, both write exactly the same header values."""
    assert inject({}, ctx) == otel_inject(ctx)


@given(contexts(), st.lists(st.integers(0, 32), max_size=3))
def test_tracestate_over_several_lines__both_read_the_same_context(ctx, cuts):
    """A tracestate split over several lines (a list value, as OpenTelemetry's getter takes
    repeated lines) is combined the same way by both."""
    members = format_tracestate(ctx.tracestate).split(",")
    bounds = sorted(cuts)
    lines = [",".join(members[a:b]) for a, b in zip([0, *bounds], [*bounds, None], strict=True)]
    carrier = {"traceparent": f"00-{ctx.trace_id}-{ctx.span_id}-{ctx.trace_flags:02x}"}
    carrier_with_lines = {**carrier, "tracestate": lines}
    assert extract(carrier_with_lines) == otel_extract(carrier_with_lines) == ctx


def test_otel_sdk_spans_and_ours__one_trace_random_flag_kept_both_ways():
    """Real SDK spans (RandomIdGenerator, Level 2 aware): an SDK root is read by us with
    `sampled` and `random`; our new trace continued by an SDK span keeps our trace-id, and
    the SDK carries our `random` flag on, so the round trip ends in our trace with it set."""
    tracer = TracerProvider().get_tracer("interop-test")

    with tracer.start_as_current_span("otel-root") as root:
        carrier: dict[str, str] = {}
        PROPAGATOR.inject(carrier)
    ours = extract(carrier)
    root_context = root.get_span_context()
    assert ours == TraceContext(
        format_trace_id(root_context.trace_id), format_span_id(root_context.span_id), 0x03
    )

    mine = start_child(None)
    incoming = PROPAGATOR.extract(inject({}, mine))
    with tracer.start_as_current_span("otel-child", context=incoming) as child:
        back: dict[str, str] = {}
        PROPAGATOR.inject(back)
    child_context = child.get_span_context()
    assert format_trace_id(child_context.trace_id) == mine.trace_id
    assert child.parent is not None and format_span_id(child.parent.span_id) == mine.span_id
    assert child_context.trace_flags.random_trace_id and child_context.trace_flags.sampled
    returned = extract(back)
    assert returned is not None
    assert (returned.trace_id, returned.trace_flags) == (mine.trace_id, 0x03)
    assert returned.span_id == format_span_id(child_context.span_id)
