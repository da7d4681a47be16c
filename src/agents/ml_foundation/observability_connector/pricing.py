"""Price every LLM span in USD, on the batch worker, never on the agent's thread.

Why here: a lookup in the price database costs a few hundred microseconds (more than the whole
callback), and the database itself (`genai-prices`, Pydantic's maintained list of model prices
with their history) takes a third of a second to load. So the callback handler and
`trace_llm_call` only record what the provider reported (model, provider, input, output, cache
read, cache write and reasoning tokens); `PricedSink` calls `Pricer.apply(batch)` just before a
batch is written to a sink, i.e. on the batch processor's worker (live batches and replays) or
in `close()`.

Rules, in order, for an `llm` span:
1. a price the caller set (`LiveSpan.set_cost`) is kept;
2. config `pricing.models.<model>` (per-million-token rates by kind) prices it;
3. `genai_prices.calc_price` at the span's start time, with the span's provider when the
   database knows it (a provider it does not know, e.g. a fake model's class name, is left out
   and the model name alone decides), with cache and reasoning tokens decomposed the library's
   way (they are parts of input / output, as in LangChain); `price_table` gives the same
   Decimal without the library's per-call cost for prices without tiers;
4. otherwise `cost_usd` stays None (never a guess) and one warning per model names the config
   key that would price it. A span without a model or without token counts stays None quietly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from .config import ModelRates, PricingSettings
from .models import ObservabilitySpan, SpanKind
from .price_table import PriceTable
from .sinks import Sink
from .usage import ProblemCounter

__all__ = ["PricedSink", "Pricer", "genai_usage"]

logger = logging.getLogger(__name__)

MAX_WARNED_MODELS = 1000
"""Models remembered as already reported (beyond that, unknown models are only counted)."""

Calc = Callable[..., Any]


def genai_usage(span: ObservabilitySpan) -> Any:
    """The span's token counts as a `genai_prices.Usage` (a missing input or output is 0)."""
    from genai_prices import Usage

    counts = {
        "input_tokens": span.input_tokens or 0,
        "output_tokens": span.output_tokens or 0,
        "cache_read_tokens": span.cache_read_tokens,
        "cache_write_tokens": span.cache_write_tokens,
        "output_reasoning_tokens": span.reasoning_tokens,
    }
    return Usage(**{key: value for key, value in counts.items() if value})


def _override_price(rates: ModelRates, usage: Any) -> Decimal:
    from genai_prices.types import ModelPrice

    prices = {
        "input_mtok": rates.input_mtok,
        "output_mtok": rates.output_mtok,
        "cache_read_mtok": rates.cache_read_mtok,
        "cache_write_mtok": rates.cache_write_mtok,
        "output_reasoning_mtok": rates.reasoning_mtok,
    }
    model_price = ModelPrice(
        **{key: Decimal(str(value)) for key, value in prices.items() if value is not None}
    )
    total: Decimal = model_price.calc_price(usage)["total_price"]
    return total


class Pricer:
    """Fills `cost_usd` of LLM spans that have none; see the module docstring for the rules."""

    def __init__(
        self,
        settings: PricingSettings | None = None,
        *,
        calc_price: Calc | None = None,
        log: logging.Logger = logger,
    ) -> None:
        """`calc_price` defaults to `genai_prices.calc_price` (imported on first use), priced
        through `price_table.PriceTable` (the same result, without its per-call cost)."""
        self._settings = settings or PricingSettings()
        self._overrides = {name.lower(): rates for name, rates in self._settings.models.items()}
        self._calc = calc_price
        self._table: PriceTable | None = None
        self._log = log
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._providers: dict[str, bool] = {}
        self.priced = 0
        self.unpriced = 0
        self._failures = ProblemCounter("pricing an LLM span failed", log=log)

    @property
    def enabled(self) -> bool:
        return self._settings.enabled

    def apply(self, spans: Sequence[ObservabilitySpan]) -> None:
        """Set `cost_usd` in place on every LLM span of `spans` that has none. Never raises."""
        if not self._settings.enabled:
            return
        for span in spans:
            if span.span_kind is not SpanKind.LLM or span.cost_usd is not None:
                continue
            try:
                cost = self.price(span)
            except Exception as exc:  # broad on purpose: a price is never worth a lost span
                self._failures.record(f"{span.llm_model!r}: {type(exc).__name__}: {exc}")
                cost = None
            if cost is not None:
                span.cost_usd = cost
                self.priced += 1
            else:
                self.unpriced += 1

    def price(self, span: ObservabilitySpan) -> float | None:
        """The span's price in USD, or None (see the module docstring)."""
        model = span.llm_model
        if not model or (span.input_tokens is None and span.output_tokens is None):
            return None
        rates = self._overrides.get(model.lower())
        if rates is not None:
            return float(_override_price(rates, genai_usage(span)))
        total = self._lookup(span, model, span.provider, span.start_time)
        if total is None:
            self._warn_unknown(model, span.provider)
            return None
        return float(total)

    def _lookup(
        self, span: ObservabilitySpan, model: str, provider: str | None, when: datetime
    ) -> Decimal | None:
        known = provider if provider is not None and self._provider_known(provider) else None
        if self._calc is None:  # the library's prices, through its exact cached fast path
            if self._table is None:
                self._table = PriceTable()
            counts = (
                span.input_tokens or 0,
                span.output_tokens or 0,
                span.cache_read_tokens or 0,
                span.cache_write_tokens or 0,
                span.reasoning_tokens or 0,
            )
            return self._table.price(counts, model, known, when)
        usage = genai_usage(span)
        try:
            if known is not None:
                result = self._calc(usage, model, provider_id=known, genai_request_timestamp=when)
            else:
                result = self._calc(usage, model, genai_request_timestamp=when)
        except LookupError:  # no such model (for that provider)
            return None
        total: Decimal = result.total_price
        return total

    def _provider_known(self, provider: str) -> bool:
        """Whether the price database knows `provider` (by id or its match rules, so
        `google_genai` is Google); cached per name, bounded like the warnings."""
        known = self._providers.get(provider)
        if known is None:
            from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

            known = find_provider_by_id(get_snapshot().providers, provider) is not None
            with self._lock:
                if len(self._providers) < MAX_WARNED_MODELS:
                    self._providers[provider] = known
        return known

    def _warn_unknown(self, model: str, provider: str | None) -> None:
        with self._lock:
            if model in self._warned or len(self._warned) >= MAX_WARNED_MODELS:
                return
            self._warned.add(model)
        self._log.warning(
            "no known price for LLM model %r (provider %r): its spans get cost_usd null. "
            "To price it, add to config/observability.yaml: pricing.models.%s: "
            "{input_mtok: <USD per 1M input tokens>, output_mtok: <USD per 1M output tokens>} "
            "(optional: cache_read_mtok, cache_write_mtok, reasoning_mtok)",
            model,
            provider,
            model,
        )


class PricedSink:
    """A sink that prices a batch (in place) before handing it to the sink it wraps; any
    other attribute (`prepare()`, counters, ...) is the wrapped sink's."""

    def __init__(self, sink: Sink, pricer: Pricer) -> None:
        self.sink = sink
        self.name: str = sink.name
        self._pricer = pricer

    def __repr__(self) -> str:
        return f"PricedSink({self.sink!r})"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sink, name)

    def write(self, batch: Sequence[ObservabilitySpan]) -> int:
        self._pricer.apply(batch)
        return self.sink.write(batch)
