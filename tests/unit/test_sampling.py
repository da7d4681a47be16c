"""Deterministic per-trace sampling (TraceIdRatioBased over the low 56 bits of the trace id)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from src.agents.ml_foundation.observability_connector.config import SamplingSettings
from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan, SpanStatus
from src.agents.ml_foundation.observability_connector.sampling import Sampler

START = datetime(2025, 1, 1, tzinfo=UTC)


def make_span(trace_id: str, span_id: str = "00000000000000a1", **overrides: object):
    fields: dict[str, object] = {
        "trace_id": trace_id,
        "span_id": span_id,
        "operation_name": "op",
        "agent_name": "orchestrator",
        "start_time": START,
        "end_time": START + timedelta(milliseconds=5),
    }
    fields.update(overrides)
    return ObservabilitySpan(**fields)


def sampler(rate: float, *, errors: bool = True) -> Sampler:
    return Sampler(SamplingSettings(default_rate=rate, always_sample_errors=errors))


def random_trace_ids(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(128) | 1:032x}" for _ in range(n)]


@pytest.mark.parametrize(
    ("environment", "expected"),
    [("production", 0.25), ("PRODUCTION", 0.25), ("development", 0.75), ("staging", 0.75)],
)
def test_sampler__environment__picks_the_matching_rate(environment: str, expected: float) -> None:
    settings = SamplingSettings(environment=environment, default_rate=0.75, production_rate=0.25)

    assert Sampler(settings).rate == expected


def test_sampler__same_trace__same_decision_in_every_sampler_and_span() -> None:
    ids = random_trace_ids(500)
    here, elsewhere = sampler(0.3), sampler(0.3)

    for trace_id in ids:
        decisions = {
            here.should_keep(make_span(trace_id, span_id=f"{n + 1:016x}")) for n in range(3)
        }
        decisions.add(elsewhere.should_keep(make_span(trace_id)))
        assert len(decisions) == 1


def test_sampler__many_random_traces__keeps_about_the_rate() -> None:
    ids = random_trace_ids(20_000)

    kept = sum(sampler(0.2).should_keep_trace(t) for t in ids)

    assert 0.18 * len(ids) < kept < 0.22 * len(ids)


def test_sampler__higher_rate__keeps_a_superset() -> None:
    ids = random_trace_ids(2_000)

    low = {t for t in ids if sampler(0.1).should_keep_trace(t)}
    high = {t for t in ids if sampler(0.5).should_keep_trace(t)}

    assert low < high


def test_sampler__only_the_low_56_bits__decide() -> None:
    low_zero = "ff" + "00" * 15  # high byte set, low 56 bits zero
    low_max = "00" * 9 + "ff" * 7
    same_low_other_high = "ab" * 9 + "ff" * 7

    assert len(low_zero) == len(low_max) == 32
    assert sampler(1e-9).should_keep_trace(low_zero) is True
    assert sampler(0.5).should_keep_trace(low_max) is False
    assert sampler(0.5).should_keep_trace(same_low_other_high) is False
    assert sampler(1.0).should_keep_trace(low_max) is True


def test_sampler__rate_zero__keeps_only_errors_when_configured() -> None:
    ok = make_span("1" * 32)
    failed = make_span("1" * 32, status=SpanStatus.ERROR, error_type="ValueError")

    assert sampler(0.0).filter([ok, failed]) == [failed]
    assert sampler(0.0, errors=False).filter([ok, failed]) == []


def test_sampler__rate_one__keeps_everything() -> None:
    spans = [make_span(t) for t in random_trace_ids(200)]

    assert sampler(1.0).filter(spans) == spans


@pytest.mark.parametrize("bad", ["abc", "A" * 32, "0x" + "1" * 30, "1" * 32 + "\n", 12])
def test_sampler__malformed_trace_id__value_error_naming_it(bad: object) -> None:
    with pytest.raises(ValueError, match="trace_id"):
        sampler(0.5).should_keep_trace(bad)  # type: ignore[arg-type]
