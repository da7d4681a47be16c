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
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from .config import ModelRates, PricingSettings
from .models import ObservabilitySpan, SpanKind
from .price_table import Counts, PriceTable, usage_of
from .sinks import Sink
from .usage import ProblemCounter

__all__ = ["PricedSink", "Pricer"]

logger = logging.getLogger(__name__)

MAX_WARNED_MODELS = 1000
"""Models remembered as already reported (beyond that, unknown models are only counted)."""


def _token_counts(span: ObservabilitySpan) -> Counts:
    """The span's token counts in `price_table.KINDS` order (a missing count is 0)."""
    return (
        span.input_tokens or 0,
        span.output_tokens or 0,
        span.cache_read_tokens or 0,
        span.cache_write_tokens or 0,
        span.reasoning_tokens or 0,
    )


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
        log: logging.Logger = logger,
    ) -> None:
        """Database prices come from `price_table.PriceTable` (built on first use: loading the
        price database takes a third of a second)."""
        self._settings = settings or PricingSettings()
        self._overrides = {name.lower(): rates for name, rates in self._settings.models.items()}
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
            return float(_override_price(rates, usage_of(_token_counts(span))))
        total = self._lookup(_token_counts(span), model, span.provider, span.start_time)
        if total is None:
            self._warn_unknown(model, span.provider)
            return None
        return float(total)

    def _lookup(
        self, counts: Counts, model: str, provider: str | None, when: datetime
    ) -> Decimal | None:
        known = provider if provider is not None and self._provider_known(provider) else None
        if self._table is None:
            self._table = PriceTable()
        return self._table.price(counts, model, known, when)

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
