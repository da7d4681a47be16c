"""The Pricer's fast path (`price_table`) gives exactly `genai_prices.calc_price`'s price.

Real genai-prices database, no stand-ins: many usages (cache read / write, reasoning, zeros,
large counts) over real models of several providers, one with tiered prices, at two dates;
unknown models still warn once; config overrides still win.
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime

import pytest
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ModelPrice, TieredPrices

from src.agents.ml_foundation.observability_connector.config import ModelRates, PricingSettings
from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan, SpanKind
from src.agents.ml_foundation.observability_connector.price_table import KINDS, PriceTable
from src.agents.ml_foundation.observability_connector.pricing import Pricer

WHEN = [datetime(2025, 3, 1, tzinfo=UTC), datetime(2026, 11, 30, 12, tzinfo=UTC)]
MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("openai", "o3-mini"),
    ("anthropic", "claude-sonnet-4-20250514"),
    ("anthropic", "claude-3-5-haiku-20241022"),
    ("google", "gemini-2.5-pro"),
    ("google", "gemini-2.0-flash"),
    (None, "gpt-4.1"),
]


def _usages(seed: int, n: int = 60) -> list[tuple[int, int, int, int, int]]:
    rng = random.Random(seed)
    found = [(0, 0, 0, 0, 0), (1, 0, 0, 0, 0), (0, 1, 0, 0, 0), (10**9, 10**9, 0, 0, 0)]
    for _ in range(n):
        inp = rng.choice([0, 1, 17, 999, rng.randrange(10**6), 200_001, 300_000, 10**8])
        read = rng.randrange(inp + 1) if rng.random() < 0.5 else 0
        write = rng.randrange(inp - read + 1) if rng.random() < 0.4 else 0
        out = rng.choice([0, 1, rng.randrange(50_000), 10**7])
        reasoning = rng.randrange(out + 1) if rng.random() < 0.5 else 0
        found.append((inp, out, read, write, reasoning))
    return found


def _library(counts, model, provider, when):  # type: ignore[no-untyped-def]
    usage = Usage(**{kind: n for kind, n in zip(KINDS, counts, strict=True) if n})
    if provider is None:
        return calc_price(usage, model, genai_request_timestamp=when).total_price
    return calc_price(usage, model, provider_id=provider, genai_request_timestamp=when).total_price


def _tiered_model() -> tuple[str, str]:
    for provider in get_snapshot().providers:
        for model in provider.models:
            prices = model.prices if isinstance(model.prices, ModelPrice) else None
            if prices is not None and any(
                isinstance(v, TieredPrices) for v in vars(prices).values()
            ):
                return provider.id, model.id
    raise AssertionError("the price database has no model with tiered prices any more")


@pytest.mark.parametrize("when", WHEN, ids=["2025-03", "2026-11"])
def test_price_table__real_models_many_usages__equals_calc_price_exactly(when):
    table = PriceTable()
    for provider, model in [*MODELS, _tiered_model()]:
        for counts in _usages(hash((model, when.year)) & 0xFFFF):
            want = _library(counts, model, provider, when)
            got = table.price(counts, model, provider, when)
            assert got == want, (provider, model, counts)
            assert float(got) == float(want)


def test_price_table__plain_model__formula_built_and_used():
    table = PriceTable()
    table.price((10, 10, 0, 0, 0), "gpt-4o", "openai", WHEN[1])
    formulas = [formula for _, formula in table._formulas.values()]
    assert formulas and all(formula is not None for formula in formulas)


def test_price_table__tiered_model__no_formula_library_prices_it():
    provider, model = _tiered_model()
    table = PriceTable()
    counts = (300_000, 1_000, 0, 0, 0)  # past the usual 200k tier
    assert table.price(counts, model, provider, WHEN[1]) == _library(
        counts, model, provider, WHEN[1]
    )
    assert [formula for _, formula in table._formulas.values()] == [None]


def test_price_table__unknown_model__none_and_remembered():
    table = PriceTable()
    assert table.price((10, 5, 0, 0, 0), "acme-private-llm-7b", None, WHEN[1]) is None
    assert table._models[("acme-private-llm-7b", None)] is None
    assert table.price((10, 5, 0, 0, 0), "acme-private-llm-7b", None, WHEN[1]) is None


def test_price_table__usage_the_library_refuses__refused_the_same_way():
    table = PriceTable()
    with pytest.raises(ValueError, match="cache_read_tokens"):
        table.price((10, 5, 50, 0, 0), "gpt-4o", "openai", WHEN[1])


def _llm_span(model: str, **tokens: int) -> ObservabilitySpan:
    return ObservabilitySpan(
        span_id="00000000000000aa",
        trace_id="0" * 31 + "1",
        operation_name="llm",
        agent_name="gap_analyzer",
        span_kind=SpanKind.LLM,
        llm_model=model,
        start_time=WHEN[1],
        end_time=WHEN[1],
        **tokens,
    )


def test_pricer__spans_through_the_fast_path__cost_equals_calc_price():
    pricer = Pricer()
    for counts in _usages(7, 30):
        inp, out, read, write, reasoning = counts
        span = _llm_span(
            "gpt-4o",
            input_tokens=inp,
            output_tokens=out,
            cache_read_tokens=read,
            cache_write_tokens=write,
            reasoning_tokens=reasoning,
        )
        pricer.apply([span])
        want = float(_library(counts, "gpt-4o", None, WHEN[1]))
        assert span.cost_usd == want, counts


def test_pricer__unknown_model_many_spans__warns_once(caplog):
    pricer = Pricer()
    with caplog.at_level(logging.WARNING):
        spans = [_llm_span("acme-private-llm-7b", input_tokens=10) for _ in range(5)]
        pricer.apply(spans)
    warnings = [r for r in caplog.records if "acme-private-llm-7b" in r.getMessage()]
    assert len(warnings) == 1
    assert [s.cost_usd for s in spans] == [None] * 5
    assert pricer.unpriced == 5


def test_pricer__config_override__wins_over_the_database():
    rates = ModelRates(input_mtok=1.0, output_mtok=2.0)
    pricer = Pricer(PricingSettings(models={"gpt-4o": rates}))
    span = _llm_span("gpt-4o", input_tokens=1_000_000, output_tokens=1_000_000)
    pricer.apply([span])
    assert span.cost_usd == 3.0
