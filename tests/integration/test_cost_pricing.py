"""Done-when for pricing: LLM calls through the callback handler get `cost_usd` equal to
`genai_prices.calc_price` for the same usage, priced on the batch worker, never in the agent.

Each model id is a real one the price database knows; each fake chat model answers with that
provider's real message shape (tests/fixtures/provider_models.py), through invoke, ainvoke,
stream and batch. Spans go handler -> BatchProcessor(pricer) -> SQLite and are read back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price
from langchain_core.messages import AIMessage

from src.agents.ml_foundation.observability_connector.batch_processor import BatchProcessor
from src.agents.ml_foundation.observability_connector.callback import (
    ObservabilityCallbackHandler,
)
from src.agents.ml_foundation.observability_connector.config import (
    BatchingSettings,
    ModelRates,
    PricingSettings,
)
from src.agents.ml_foundation.observability_connector.db_sink import DatabaseSink
from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan, SpanKind
from src.agents.ml_foundation.observability_connector.pricing import Pricer
from src.repositories.sqlite_repository import SqliteSpanRepository
from tests.fixtures.provider_models import (
    ProviderFakeChatModel,
    anthropic_message,
    google_message,
    openai_message,
)

# (provider as LangChain reports it, model id, message)
C4S = "claude-sonnet-4-20250514"
C4O = "claude-opus-4-20250514"
C35H = "claude-3-5-haiku-20241022"
C37S = "claude-3-7-sonnet-20250219"
CASES = [
    ("openai", "gpt-4o", openai_message("gpt-4o", 2400, 310, 1024, 0)),
    ("openai", "gpt-4o-mini", openai_message("gpt-4o-mini", 900, 120, 0, 0)),
    ("openai", "gpt-4.1", openai_message("gpt-4.1", 5000, 700, 4096, 0)),
    ("openai", "o3-mini", openai_message("o3-mini", 1500, 2200, 512, 1800)),
    ("openai", "o4-mini", openai_message("o4-mini", 3000, 4100, 2048, 3900)),
    ("anthropic", C4S, anthropic_message(C4S, 300, 420, 12000, 0)),
    ("anthropic", C4O, anthropic_message(C4O, 800, 900, 0, 6000)),
    ("anthropic", C35H, anthropic_message(C35H, 1200, 250, 3000, 1500)),
    ("anthropic", C37S, anthropic_message(C37S, 60, 1500, 20000, 900)),
    ("google_genai", "gemini-2.5-pro", google_message("gemini-2.5-pro", 4000, 600, 1400, 2048)),
    ("google_genai", "gemini-2.5-flash", google_message("gemini-2.5-flash", 7000, 300, 900, 0)),
    ("google_genai", "gemini-2.0-flash", google_message("gemini-2.0-flash", 1200, 200, 0, 1024)),
]  # fmt: skip
PATHS = ["invoke", "ainvoke", "stream", "batch"]


class RecordingConnector:
    """Forwards to the processor; remembers each span's cost at submit time (agent thread)."""

    def __init__(self, processor: BatchProcessor) -> None:
        self.processor = processor
        self.cost_at_submit: list[float | None] = []

    def submit(self, span: ObservabilitySpan) -> None:
        self.cost_at_submit.append(span.cost_usd)
        self.processor.submit(span)

    def flush(self, timeout: float | None = None) -> bool:
        return self.processor.flush(timeout)


class Pipeline:
    def __init__(self, path: Path, pricing: PricingSettings | None = None) -> None:
        self.repository = SqliteSpanRepository(path)
        self.sink = DatabaseSink(self.repository)
        self.sink.setup()
        self.pricer = Pricer(pricing or PricingSettings())
        self.processor = BatchProcessor(
            [self.sink], BatchingSettings(max_batch_wait_seconds=0.05), None, pricer=self.pricer
        )
        self.connector = RecordingConnector(self.processor)
        self.handler = ObservabilityCallbackHandler("pricing_test", self.connector)

    def llm_spans(self) -> list[ObservabilitySpan]:
        assert self.handler.flush(30)
        spans = self.sink._run(lambda: self.repository.get_spans_by_time_window("1d", limit=1000))
        return sorted((s for s in spans if s.span_kind is SpanKind.LLM), key=lambda s: s.start_time)

    def close(self) -> None:
        self.processor.close(10)
        self.sink.close()


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    made = Pipeline(tmp_path / "spans.db")
    yield made
    made.close()


def expected_usage(message: AIMessage) -> Usage:
    usage = message.usage_metadata
    assert usage is not None
    details_in = usage.get("input_token_details", {})
    details_out = usage.get("output_token_details", {})
    counts = {
        "input_tokens": usage["input_tokens"],
        "output_tokens": usage["output_tokens"],
        "cache_read_tokens": details_in.get("cache_read"),
        "cache_write_tokens": details_in.get("cache_creation"),
        "output_reasoning_tokens": details_out.get("reasoning"),
    }
    return Usage(**{k: v for k, v in counts.items() if v})


async def call(model: ProviderFakeChatModel, path: str, handler: ObservabilityCallbackHandler):
    config = {"callbacks": [handler]}
    if path == "invoke":
        model.invoke("What drove the uplift?", config=config)
    elif path == "ainvoke":
        await model.ainvoke("What drove the uplift?", config=config)
    elif path == "stream":
        assert "".join(str(c.content) for c in model.stream("Why?", config=config))
    else:
        model.batch(["What drove the uplift?"], config=config)


@pytest.mark.parametrize("path", PATHS)
async def test_callback_llm_calls__real_models_and_shapes__cost_equals_calc_price(pipeline, path):
    for provider, _model_id, message in CASES:
        model = ProviderFakeChatModel(messages=iter([message]), provider=provider)
        await call(model, path, pipeline.handler)

    spans = pipeline.llm_spans()

    assert len(spans) == len(CASES)
    assert pipeline.connector.cost_at_submit == [None] * len(CASES)  # not priced in the agent
    for span, (provider, model_id, message) in zip(spans, CASES, strict=True):
        want = calc_price(
            expected_usage(message),
            model_id,
            provider_id=provider,
            genai_request_timestamp=span.start_time,
        )
        assert (span.llm_model, span.provider) == (model_id, provider)
        details_in = message.usage_metadata.get("input_token_details", {})
        details_out = message.usage_metadata.get("output_token_details", {})
        assert span.input_tokens == message.usage_metadata["input_tokens"]
        assert span.cache_read_tokens == details_in.get("cache_read")
        assert span.cache_write_tokens == details_in.get("cache_creation")
        assert span.reasoning_tokens == details_out.get("reasoning")
        assert span.cost_usd == float(want.total_price), model_id
        assert span.cost_usd > 0


async def test_unknown_model__null_cost_and_one_warning__then_a_pricing_entry_prices_it(
    tmp_path, caplog
):
    message = openai_message("acme-private-llm-7b", 1000, 200, 100, 0)
    first = Pipeline(tmp_path / "unknown.db")
    try:
        with caplog.at_level(logging.WARNING, logger="src.agents.ml_foundation"):
            for _ in range(3):
                model = ProviderFakeChatModel(messages=iter([message]), provider="vllm")
                model.invoke("hi", config={"callbacks": [first.handler]})
            spans = first.llm_spans()
    finally:
        first.close()
    warnings = [r.getMessage() for r in caplog.records if "acme-private-llm-7b" in r.getMessage()]
    assert [s.cost_usd for s in spans] == [None, None, None]
    assert len(warnings) == 1
    assert "pricing.models.acme-private-llm-7b" in warnings[0]

    rates = ModelRates(input_mtok=2.0, output_mtok=6.0, cache_read_mtok=0.5)
    second = Pipeline(
        tmp_path / "priced.db", PricingSettings(models={"acme-private-llm-7b": rates})
    )
    try:
        model = ProviderFakeChatModel(messages=iter([message]), provider="vllm")
        model.invoke("hi", config={"callbacks": [second.handler]})
        [span] = second.llm_spans()
    finally:
        second.close()
    # 900 uncached input at 2.0 + 100 cached at 0.5 + 200 output at 6.0, per million
    assert span.cost_usd == pytest.approx((900 * 2.0 + 100 * 0.5 + 200 * 6.0) / 1e6, rel=1e-12)


def test_pricer__caller_set_cost_and_non_llm_spans__left_as_they_are():
    from tests.integration.test_repository_conformance import make_span

    preset = make_span(span_kind=SpanKind.LLM, llm_model="gpt-4o", input_tokens=10, cost_usd=0.5)
    agent = make_span(llm_model="gpt-4o", input_tokens=10)
    no_usage = make_span(span_kind=SpanKind.LLM, llm_model="gpt-4o")
    Pricer().apply([preset, agent, no_usage])
    assert [preset.cost_usd, agent.cost_usd, no_usage.cost_usd] == [0.5, None, None]


def test_pricer__pricing_disabled__nothing_priced():
    from tests.integration.test_repository_conformance import make_span

    span = make_span(span_kind=SpanKind.LLM, llm_model="gpt-4o", input_tokens=10)
    Pricer(PricingSettings(enabled=False)).apply([span])
    assert span.cost_usd is None


def test_pricer__cache_larger_than_input__null_cost_and_counted_not_raised():
    from tests.integration.test_repository_conformance import make_span

    span = make_span(
        span_kind=SpanKind.LLM, llm_model="gpt-4o", input_tokens=10, cache_read_tokens=50
    )
    pricer = Pricer()
    pricer.apply([span])
    assert span.cost_usd is None
    assert pricer.unpriced == 1


class ListSink:
    """A sink that keeps what it is given (the Sink protocol: a name and write)."""

    name = "memory"

    def __init__(self) -> None:
        self.spans: list[ObservabilitySpan] = []

    def write(self, batch):  # type: ignore[no-untyped-def]
        self.spans.extend(batch)
        return len(batch)


async def test_trace_llm_call__provider_given_and_set_cost__caller_price_wins():
    from src.mlops.opik_connector import OpikConnector

    sink = ListSink()
    processor = BatchProcessor([sink], BatchingSettings(), None, pricer=Pricer())
    connector = OpikConnector(processor)
    message = anthropic_message(C4S, 300, 420, 12000, 0)
    try:
        await connector.trace_llm_call(
            model=C4S, prompt="hi", llm_call=lambda: message, provider="anthropic"
        )
        async with connector.trace_llm_call(model=C4S, provider="anthropic") as llm:  # E2I's
            llm.log_tokens(input_tokens=1000, output_tokens=10)
            llm.set_cost(0.5)  # e.g. the provider's invoice price
        assert connector.flush(10)
    finally:
        connector.close(10)

    computed, preset = (s for s in sink.spans if s.span_kind is SpanKind.LLM)
    want = calc_price(
        expected_usage(message),
        C4S,
        provider_id="anthropic",
        genai_request_timestamp=computed.start_time,
    )
    assert (computed.provider, computed.cache_read_tokens) == ("anthropic", 12000)
    assert computed.cost_usd == float(want.total_price)
    assert preset.cost_usd == 0.5


def test_live_span__set_cost_invalid__value_error_naming_it():
    from datetime import UTC, datetime

    from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
        TraceContext,
    )
    from src.mlops.llm_span import LLMSpanContext

    span = LLMSpanContext(
        TraceContext("1" * 32, "2" * 16, 1),
        None,
        agent_name="a",
        operation_name="o",
        span_kind=SpanKind.LLM,
        start_time=datetime.now(UTC),
        clock=lambda: datetime.now(UTC),
    )
    for bad in (-1.0, float("nan"), "0.1", True):
        with pytest.raises(ValueError, match="cost_usd"):
            span.set_cost(bad)  # type: ignore[arg-type]
